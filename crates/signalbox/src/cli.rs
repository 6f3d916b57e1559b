//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Signalbox: the whole microservices platform in one binary.
#[derive(Parser, Debug)]
#[command(name = "signalbox", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node: gateway, console and APIs.
    Serve(ServeOpts),
    /// Validate a config file; prints every problem with its line and key, exits non-zero
    /// when there is one.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Print the SHA-256 of an API key, the form `gateway.routes[].auth.api_keys[].sha256`
    /// stores.
    HashKey {
        /// The API key.
        key: String,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeOpts {
    /// TOML config file; changes to it are applied while running (also on SIGHUP).
    #[arg(long, short, env = "SIGNALBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `node.data_dir`).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Gateway listen address (overrides `gateway.listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Console and API listen address (overrides `console.listen`).
    #[arg(long)]
    pub console_listen: Option<String>,
    /// Add a route: `PREFIX=URL[,URL...]`, e.g. `/api=http://127.0.0.1:9000,http://127.0.0.1:9001`.
    /// Repeatable; these routes come before the file's routes.
    #[arg(long = "route", value_name = "PREFIX=URLS")]
    pub routes: Vec<String>,
}
