//! Runs the agent from a TOML file until SIGTERM or Ctrl-C, printing progress to stderr:
//! `cargo run -p signalbox-agent --example agent -- examples/agent.toml`.
//!
//! The integration tests start it as a child process so they can kill it with SIGKILL and
//! start it again. `signalbox agent -c FILE` is the real entry point.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: agent CONFIG.toml");
        return ExitCode::from(2);
    };
    let config: signalbox_agent::AgentConfig = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(problems) = config.check() {
        for p in problems.list {
            eprintln!("{path}: {p}");
        }
        return ExitCode::from(1);
    }
    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        trigger.trigger();
    });
    match signalbox_agent::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::FAILURE
        }
    }
}
