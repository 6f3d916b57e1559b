//! The `signalbox` binary: parses the command line and hands off to the subcommand. The
//! wiring of components lives in [`serve`]; config loading in [`config`].
//!
//! # Layout
//! - [`cli`]: the clap definitions of every subcommand and flag.
//! - [`config`]: the config file, environment overrides and problem reports.
//! - [`serve`]: `signalbox serve`: builds the components, runs them, reloads, shuts down.
//! - [`gateway`]: `signalbox gateway`: the gateway alone, following a remote control plane.
//! - [`demo`]: `signalbox demo`: a node, sample services, traffic and faults in one process.
//! - [`remote`]: commands that talk to a running node (`config`, `services`).
//! - [`rollouts`]: `signalbox rollout ...` against a running node.
//! - [`logging`]: the node's own structured logs.

mod agent;
mod cli;
mod config;
mod demo;
mod export;
mod gateway;
mod listeners;
mod logging;
mod metrics;
mod remote;
mod rollouts;
mod serve;

use clap::Parser;
use std::process::ExitCode;

// mimalloc: the proxy path allocates small, short-lived buffers on every request, where
// glibc's malloc cost ~15% of user time in the gateway benchmark (docs/benchmarks.md).
// Built without transparent huge pages (`no_thp`): with them, every block of decompressed
// trace columns freshly mapped after a purge faulted in and zeroed whole 2 MiB pages, which
// was most of the trace-by-id p99 (11 ms with, 1.6 ms without; docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Serve(opts) => serve::main(opts),
        cli::Command::Gateway(opts) => gateway::main(opts),
        cli::Command::Agent(opts) => agent::main(opts),
        cli::Command::Demo(opts) => demo::main(opts),
        cli::Command::CheckConfig { file } => check_config(&file),
        cli::Command::CheckRules { files } => check_rules(&files),
        cli::Command::HashKey { key } => {
            println!("{}", signalbox_gateway::auth::hash_key(&key));
            ExitCode::SUCCESS
        }
        cli::Command::Config { node, action } => remote::config(node, action),
        cli::Command::Services { node, name } => remote::services(node, name),
        cli::Command::Switch { node, service, to, back: _ } => remote::switch(node, service, to),
        cli::Command::Traces { node, action } => remote::traces(node, action),
        cli::Command::Logs { node, action } => remote::logs(node, action),
        cli::Command::Rollout { node, action } => rollouts::main(node, action),
    }
}

/// Runs `f` on a multi-threaded runtime; an error is printed and becomes exit status 1.
pub fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signalbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_rules(files: &[std::path::PathBuf]) -> ExitCode {
    let mut problems = 0;
    for f in files {
        match signalbox_metrics::rules::check_file(f) {
            Ok(s) => println!(
                "{}: ok ({} groups, {} recording rules, {} alerting rules)",
                s.file, s.groups, s.recording_rules, s.alerting_rules
            ),
            Err(list) => {
                for p in &list {
                    eprintln!("{p}");
                }
                problems += list.len();
            }
        }
    }
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{problems} problem{} found", if problems == 1 { "" } else { "s" });
        ExitCode::FAILURE
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let loaded = match config::load(Some(file), std::env::vars()) {
        Ok(l) => l,
        Err(mut e) => {
            // Report the remaining keys' validation problems along with the type errors.
            if let Some(c) = e.repaired.take() {
                e.problems.extend(config::locate_all(file, serve::validate(&c)));
            }
            let n = e.problems.len();
            eprintln!("{e}");
            eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
            return ExitCode::FAILURE;
        }
    };
    let problems = serve::validate(&loaded.config);
    if problems.is_empty() {
        println!("{}: ok", file.display());
        ExitCode::SUCCESS
    } else {
        let n = problems.list.len();
        eprintln!("{}", loaded.report(problems));
        eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
        ExitCode::FAILURE
    }
}
