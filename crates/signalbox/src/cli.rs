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
    /// Run the node: gateway, registry and health checks, configuration, console and APIs.
    Serve(ServeOpts),
    /// Run the gateway alone, following a remote control plane for endpoints.
    Gateway(GatewayOpts),
    /// Start a node with sample services, traffic and a fault schedule, and watch it in the
    /// console (docs/demo.md).
    Demo(DemoOpts),
    /// Tail log files and ship them to a node (or any OTLP backend) with no loss.
    Agent(AgentOpts),
    /// Validate a config file; prints every problem with its line and key, exits non-zero
    /// when there is one.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Validate Prometheus rule files (recording and alerting rules); prints every problem as
    /// `file:line: key: message`, exits non-zero when there is one.
    CheckRules {
        /// The rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the SHA-256 of a secret (an API key or access token), the form config files
    /// store.
    HashKey {
        /// The secret.
        key: String,
    },
    /// Read and change central configuration on a running node.
    Config {
        #[command(flatten)]
        node: NodeOpts,
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Read traces from a running node.
    Traces {
        #[command(flatten)]
        node: NodeOpts,
        #[command(subcommand)]
        action: TracesAction,
    },
    /// Search logs on a running node (docs/log-queries.md has the query language).
    Logs {
        #[command(flatten)]
        node: NodeOpts,
        #[command(subcommand)]
        action: LogsAction,
    },
    /// Canary rollouts on a running node: start one, watch it, pause, promote or abort it
    /// (docs/rollouts.md).
    Rollout {
        #[command(flatten)]
        node: NodeOpts,
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// Blue-green: send every request of a service to one version (`--to v2`, refused when
    /// it has no healthy instance), or back to the traffic policy before (`--back`).
    #[command(group(clap::ArgGroup::new("direction").required(true).args(["to", "back"])))]
    Switch {
        #[command(flatten)]
        node: NodeOpts,
        /// The service.
        service: String,
        /// The version to send every request to.
        #[arg(long)]
        to: Option<String>,
        /// Restore the traffic policy before the current one.
        #[arg(long)]
        back: bool,
    },
    /// List services, or one service's instances with their health.
    Services {
        #[command(flatten)]
        node: NodeOpts,
        /// A service name.
        name: Option<String>,
    },
}

/// `signalbox agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentOpts {
    /// The agent's TOML config (crates/agent/examples/agent.toml documents every option).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Override `output.endpoint` (the node's URL, e.g. http://127.0.0.1:9900).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// No progress line on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `signalbox demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoOpts {
    /// How long to run (e.g. `10m`, `90s`); Ctrl-C stops it earlier.
    #[arg(long, default_value = "10m")]
    pub duration: String,
    /// Seed of the load (arrival times and the mix of pages) and of each instance's jitter
    /// and failure draws: the same seed sends the same requests in the same order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time compression: 2 runs the fault schedule, the alert rules' windows and the
    /// circuit timings twice as fast (0.1 to 100).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Console port (0: any free port). The other listeners take free ports.
    #[arg(long, default_value_t = 9900)]
    pub port: u16,
    /// Keep the node's data, the logs and the generated config here (default: a temporary
    /// directory removed at exit).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// How to reach a running node.
#[derive(Args, Debug, Clone)]
pub struct NodeOpts {
    /// The node's console/API address.
    #[arg(long, env = "SIGNALBOX_URL", default_value = "http://127.0.0.1:9900", global = true)]
    pub url: String,
    /// An access token (when the node has access control).
    #[arg(long, env = "SIGNALBOX_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum LogsAction {
    /// Print matching lines, oldest first; `--follow` keeps printing new ones.
    Search {
        /// The query, e.g. `level:error service:checkout "card declined"` (empty: every line).
        #[arg(default_value = "")]
        query: String,
        /// How far back to look.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Most lines to print before following.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing new lines as they arrive (until Ctrl-C).
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TracesAction {
    /// Print a trace as an indented tree with durations.
    Get { id: String },
    /// Find traces; prints one line per trace, newest first.
    Search {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        operation: Option<String>,
        /// Attribute condition `key=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only traces with a failed span.
        #[arg(long)]
        errors: bool,
        #[arg(long)]
        min_duration: Option<String>,
        #[arg(long)]
        max_duration: Option<String>,
        /// How far back to look (default 1h).
        #[arg(long, default_value = "1h")]
        lookback: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum RolloutAction {
    /// Start a canary rollout: the canary gets each step's share of requests, and is
    /// promoted, held or rolled back on the gateway's metrics at the end of each interval.
    Start {
        service: String,
        /// The canary version (instances' `version` meta or `version=...` tag).
        #[arg(long)]
        to: String,
        /// The stable version (default: the traffic policy's main version, or the one other
        /// registered version).
        #[arg(long)]
        from: Option<String>,
        /// Percent of requests on the canary at each step.
        #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
        steps: Vec<u8>,
        /// How long each step is watched (`30s`, `1m`), or `pause` to promote by hand.
        #[arg(long, default_value = "1m")]
        interval: String,
        /// The canary's highest error rate.
        #[arg(long, default_value = "1%")]
        max_error_rate: String,
        /// The canary's highest p99: `+20%` over stable's, or absolute like `250ms`.
        #[arg(long)]
        max_p99: Option<String>,
        /// Requests the canary must serve in an interval before it is judged.
        #[arg(long)]
        min_requests: Option<u64>,
        /// Consecutive holds (too few requests) before the rollout pauses.
        #[arg(long)]
        max_holds: Option<u32>,
    },
    /// Print every rollout, one line each.
    List,
    /// Print a rollout's state, weights and decision history.
    Status { service: String },
    /// Stop automatic decisions (the weights stay).
    Pause { service: String },
    /// Resume a paused rollout.
    Resume { service: String },
    /// Move to the next step now (`--full`: every request to the canary).
    Promote {
        service: String,
        #[arg(long)]
        full: bool,
    },
    /// Stop the rollout and send every request back to the stable version.
    Abort { service: String },
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Print a value (the latest, or `--version N`).
    Get {
        app: String,
        profile: String,
        key: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Write a value (from the argument, or stdin with `-`).
    Set {
        app: String,
        profile: String,
        key: String,
        value: String,
        #[arg(long, short, default_value = "")]
        message: String,
        /// Only write if the current version is this (0: only if absent).
        #[arg(long)]
        expect: Option<u64>,
    },
    /// List the versions of a key.
    History { app: String, profile: String, key: String },
    /// Show what changed between two versions.
    Diff { app: String, profile: String, key: String, from: u64, to: u64 },
    /// Write a new version equal to an old one.
    Rollback {
        app: String,
        profile: String,
        key: String,
        to: u64,
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// Print changes as they happen (optionally of one application and profile).
    Watch { app: Option<String>, profile: Option<String> },
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
    /// Consul API listen address (overrides `consul.listen`).
    #[arg(long)]
    pub consul_listen: Option<String>,
    /// OTLP/gRPC listen address (overrides `otlp.grpc_listen`).
    #[arg(long)]
    pub otlp_grpc_listen: Option<String>,
    /// OTLP/HTTP listen address (overrides `otlp.http_listen`).
    #[arg(long)]
    pub otlp_http_listen: Option<String>,
    /// Zipkin listen address (overrides `zipkin.listen`).
    #[arg(long)]
    pub zipkin_listen: Option<String>,
    /// Add a route: `PREFIX=URL[,URL...]`, e.g. `/api=http://127.0.0.1:9000,http://127.0.0.1:9001`.
    /// Repeatable; these routes come before the file's routes.
    #[arg(long = "route", value_name = "PREFIX=URLS")]
    pub routes: Vec<String>,
    /// Allow listening beyond loopback without access control.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug, Clone)]
pub struct GatewayOpts {
    #[command(flatten)]
    pub serve: ServeOpts,
    /// The control plane to follow: a Signalbox node's console URL. Repeat it (or give a
    /// comma-separated list) to name several nodes sharing their state on etcd: the gateway
    /// follows one and moves to the next when it fails. Default: `[control] control_planes`
    /// of the config file.
    #[arg(long, env = "SIGNALBOX_CONTROL_PLANE", value_delimiter = ',')]
    pub control_plane: Vec<String>,
    /// Token for the control plane (read role) and the OTLP endpoint (ingest role).
    #[arg(long, env = "SIGNALBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the gateway's spans go over OTLP/gRPC (e.g. http://node:4317); none: dropped
    /// and counted.
    #[arg(long, env = "SIGNALBOX_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}
