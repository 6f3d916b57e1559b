//! `signalbox agent -c FILE`: tails log files and ships them to a node with no loss (the
//! `signalbox-agent` crate does the work; docs/agent.md). Problems in the file are printed
//! as `file:line: key: message`; on a terminal the agent redraws a progress line (files
//! followed, lines read, shipped, buffered, lag) every second.

use crate::cli::AgentOpts;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn main(opts: AgentOpts) -> ExitCode {
    crate::block_on(run(opts))
}

async fn run(opts: AgentOpts) -> anyhow::Result<()> {
    let path = opts.config.display().to_string();
    let text = std::fs::read_to_string(&opts.config).map_err(|e| anyhow::anyhow!("{path}: cannot read: {e}"))?;
    let mut config: signalbox_agent::AgentConfig = toml::from_str(&text).map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1)).unwrap_or(0);
        anyhow::anyhow!("{path}:{line}: {}", e.message())
    })?;
    if let Some(url) = &opts.endpoint {
        config.output.endpoint = url.clone();
    }
    if let Err(problems) = config.check() {
        let lines: Vec<String> = problems
            .list
            .iter()
            .map(|p| {
                let line = crate::config::locate(&text, &p.path);
                if line > 0 {
                    format!("{path}:{line}: {}: {}", p.path, p.message)
                } else {
                    format!("{path}: {}: {}", p.path, p.message)
                }
            })
            .collect();
        anyhow::bail!("invalid agent config:\n{}", lines.join("\n"));
    }
    crate::logging::init("text", &std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    let agent = signalbox_agent::Agent::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = agent.progress();
    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot watch SIGTERM"),
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        trigger.trigger();
    });
    let tty = std::io::stderr().is_terminal() && !opts.quiet;
    let printer = tokio::spawn(async move {
        if !tty {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            eprint!("\r\x1b[2K{}", progress.snapshot());
        }
    });
    let result = agent.run(shutdown).await;
    printer.abort();
    if tty {
        eprintln!();
    }
    result.map_err(|e| anyhow::anyhow!("agent: {e}"))
}
