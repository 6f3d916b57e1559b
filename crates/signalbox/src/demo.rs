//! `signalbox demo`: a node and a small microservice system in one process, so that a
//! newcomer sees every signal of the console within a minute. It starts the node (the code
//! `signalbox serve` runs, with a generated config), the sample services, the log agent, a
//! load generator and a fault schedule; it prints the console URL, a line per fault and
//! alert as they happen and a summary every half minute; and at `--duration`, SIGINT or
//! SIGTERM it stops everything in order and removes its temporary directory. docs/demo.md
//! describes what runs.
//!
//! # Layout
//! - [`setup`]: the generated node config, the time-compressed default rules, the agent's
//!   config, and the demo's [`setup::Scale`].
//! - [`topology`]: the sample services, their endpoints and the calls between them.
//! - [`services`]: their running instances ([`services::Fleet`]).
//! - [`telemetry`]: the services' OpenTelemetry tracers, metrics and JSON logs.
//! - [`traffic`]: the seeded load generator.
//! - [`faults`]: the fault schedule.
//! - [`narrate`]: the alert lines and the periodic summaries.
//! - [`rollout`]: the canary rollout of a bad web-frontend version, and its narration.

mod faults;
mod narrate;
mod rollout;
mod services;
mod setup;
mod telemetry;
mod topology;
mod traffic;

use crate::cli::{DemoOpts, ServeOpts};
use anyhow::Context as _;
use setup::Scale;
use signalbox_core::shutdown::ShutdownTrigger;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use telemetry::clock;
use tokio::signal::unix::{SignalKind, signal};

pub fn main(opts: DemoOpts) -> ExitCode {
    let (dir, temporary) = match &opts.data_dir {
        Some(d) => (d.clone(), None),
        None => match tempfile::Builder::new().prefix("signalbox-demo-").tempdir() {
            Ok(t) => (t.path().to_path_buf(), Some(t)),
            Err(e) => {
                eprintln!("signalbox demo: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The runtime (and with it every task of the node) is gone when `block_on` returns, so
    // nothing writes into the directory while it is removed.
    let code = crate::block_on(run(opts, dir.clone(), temporary.is_some()));
    if let Some(t) = temporary
        && let Err(e) = t.close()
    {
        eprintln!("signalbox demo: cannot remove {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    code
}

/// Why the demo stops.
enum Stop {
    Duration,
    Signal(&'static str),
    NodeExited(anyhow::Result<()>),
}

async fn run(opts: DemoOpts, dir: PathBuf, temporary: bool) -> anyhow::Result<()> {
    let duration = signalbox_core::config::parse_duration(&opts.duration)
        .map_err(|e| anyhow::anyhow!("--duration {:?}: {e}", opts.duration))?;
    if !(0.1..=100.0).contains(&opts.speed) {
        anyhow::bail!("--speed {}: expected a number from 0.1 to 100", opts.speed);
    }
    let scale = Scale { speed: opts.speed };
    // Signals first: a Ctrl-C during start-up also stops cleanly.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;

    for sub in ["logs", "rules"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(dir.join("rules/signalbox-defaults.yml"), setup::scaled_default_rules(scale))?;
    let config_path = dir.join("node.toml");
    std::fs::write(&config_path, setup::node_config(&dir, console_port(opts.port), scale))?;

    let (node_stop, node_stopped) = signalbox_core::shutdown::channel();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let serve_opts = ServeOpts { config: Some(config_path), ..ServeOpts::default() };
    let embedded = crate::serve::Embedded { stop: node_stopped, started: started_tx };
    let mut node = tokio::spawn(crate::serve::run_node(serve_opts, Some(embedded)));
    let started = tokio::select! {
        s = started_rx => match s {
            Ok(s) => s,
            Err(_) => {
                node_result(node.await).context("the node did not start")?;
                anyhow::bail!("the node stopped before it started serving");
            }
        },
        _ = tokio::time::sleep(Duration::from_secs(60)) => {
            node_stop.trigger();
            anyhow::bail!("the node did not start within 60 s");
        }
    };
    let console = format!("http://{}", started.console);
    let gateway = format!("http://{}", started.gateway);
    let otlp_grpc = started.otlp_grpc.map(|a| format!("http://{a}")).context("the OTLP/gRPC receiver is off")?;
    let client = signalbox_client::Client::new(&console, None);
    wait_ready(&client).await?;

    let fleet = services::Fleet::start(services::FleetConfig {
        console: console.clone(),
        gateway: gateway.clone(),
        otlp_grpc: otlp_grpc.clone(),
        log_dir: &dir.join("logs"),
        seed: opts.seed,
        check_interval: scale.wall(Duration::from_secs(2)).max(Duration::from_millis(250)),
    })
    .await;
    let fleet = match fleet {
        Ok(f) => Arc::new(f),
        Err(e) => {
            node_stop.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(20), node).await;
            return Err(e);
        }
    };
    let (agent_stop, agent_task) = start_agent(&dir, &console)?;

    print_banner(&opts, &dir, temporary, &started, &fleet, duration);

    let (work_stop, work_stopped) = signalbox_core::shutdown::channel();
    let stats = Arc::new(traffic::TrafficStats::default());
    let traffic_task = tokio::spawn(traffic::run(
        gateway.clone(),
        traffic::rate(scale.speed),
        opts.seed,
        stats.clone(),
        work_stopped.clone(),
    ));
    let faults_task = tokio::spawn({
        let (fleet, client, stop) = (fleet.clone(), client.clone(), work_stopped.clone());
        async move { faults::run(&fleet, &client, scale, stop).await }
    });
    // The node rolls the bad canary back by itself; the task only starts it and narrates.
    tokio::spawn(rollout::run(client.clone(), scale, work_stopped.clone()));
    let narrate_task = tokio::spawn(narrate::run(client.clone(), console.clone(), stats.clone(), scale, work_stopped));

    let why = tokio::select! {
        _ = tokio::time::sleep(duration) => Stop::Duration,
        _ = int.recv() => Stop::Signal("SIGINT"),
        _ = term.recv() => Stop::Signal("SIGTERM"),
        r = &mut node => Stop::NodeExited(node_result(r)),
    };
    match &why {
        Stop::Duration => println!("{} the demo ran for {}; stopping", clock(), opts.duration),
        Stop::Signal(s) => println!("{} {s}: stopping", clock()),
        Stop::NodeExited(r) => println!("{} the node stopped by itself ({r:?}); stopping", clock()),
    }
    let parts = StopParts { work_stop, traffic_task, faults_task, narrate_task, fleet, agent_stop, agent_task };
    tokio::select! {
        _ = stop_all(parts) => {}
        _ = int.recv() => {
            // A second Ctrl-C: no more waiting for the services and the agent.
            println!("{} second SIGINT: stopping the node now", clock());
        }
    }
    let node_result = match why {
        Stop::NodeExited(r) => r,
        _ => {
            node_stop.trigger();
            match tokio::time::timeout(Duration::from_secs(30), &mut node).await {
                Ok(r) => node_result(r),
                Err(_) => {
                    node.abort();
                    Err(anyhow::anyhow!("the node did not stop within 30 s"))
                }
            }
        }
    };
    node_result?;
    println!("{} stopped: traffic, services, agent and node", clock());
    Ok(())
}

/// The console port: the one asked for, or a free one when it is taken.
fn console_port(wanted: u16) -> u16 {
    if wanted != 0 && std::net::TcpListener::bind(("127.0.0.1", wanted)).is_err() {
        eprintln!("port {wanted} is taken; the console takes a free port instead");
        return 0;
    }
    wanted
}

fn node_result(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("the node's task failed: {e}"))?
}

async fn wait_ready(client: &signalbox_client::Client) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client.request(http::Method::GET, "/readyz", None).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the node is not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the log agent (the pipeline `signalbox agent` runs) on the services' log files.
fn start_agent(
    dir: &Path,
    console: &str,
) -> anyhow::Result<(ShutdownTrigger, tokio::task::JoinHandle<Result<(), signalbox_agent::AgentError>>)> {
    let text = setup::agent_config(dir, console);
    let config: signalbox_agent::AgentConfig =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("the generated agent config: {}", e.message()))?;
    if let Err(p) = config.check() {
        let list: Vec<String> = p.list.iter().map(|x| x.to_string()).collect();
        anyhow::bail!("the generated agent config: {}", list.join("; "));
    }
    let agent = signalbox_agent::Agent::new(config).map_err(|e| anyhow::anyhow!("cannot start the agent: {e}"))?;
    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    Ok((trigger, tokio::spawn(agent.run(shutdown))))
}

fn print_banner(
    opts: &DemoOpts,
    dir: &Path,
    temporary: bool,
    started: &crate::serve::Started,
    fleet: &services::Fleet,
    duration: Duration,
) {
    let console = format!("http://{}", started.console);
    println!(
        "signalbox demo: {} services ({} instances), {:.0} requests/s, seed {}, speed {}, for {} ({:?}); Ctrl-C stops it",
        topology::TOPOLOGY.len(),
        fleet.instances.len(),
        traffic::rate(opts.speed),
        opts.seed,
        opts.speed,
        opts.duration,
        duration,
    );
    println!("console: {console}");
    println!("gateway: http://{}", started.gateway);
    if let Some(a) = started.otlp_grpc {
        println!("otlp-grpc: http://{a}");
    }
    if let Some(a) = started.otlp_http {
        println!("otlp-http: http://{a}");
    }
    for i in &fleet.instances {
        println!("service {}: http://127.0.0.1:{}", i.id, i.port());
    }
    let kept = if temporary { "removed at exit" } else { "kept" };
    println!("data: {} ({kept})", dir.display());
    println!("look first at:");
    println!("  {console}/             the overview: every service's rate, errors and p99");
    println!("  {console}/map          the service map: who calls whom through the gateway");
    println!("  {console}/alerts       alerts firing as the faults below hit");
    println!("  {console}/services/payments   one service: instances, circuits, config versions");
}

struct StopParts {
    work_stop: ShutdownTrigger,
    traffic_task: tokio::task::JoinHandle<()>,
    faults_task: tokio::task::JoinHandle<()>,
    narrate_task: tokio::task::JoinHandle<()>,
    fleet: Arc<services::Fleet>,
    agent_stop: ShutdownTrigger,
    agent_task: tokio::task::JoinHandle<Result<(), signalbox_agent::AgentError>>,
}

/// Stops the load, the faults (undoing the one in progress), the services and the agent,
/// each within a bound.
async fn stop_all(p: StopParts) {
    p.work_stop.trigger();
    for (what, mut task) in
        [("traffic", p.traffic_task), ("fault schedule", p.faults_task), ("narration", p.narrate_task)]
    {
        if tokio::time::timeout(Duration::from_secs(15), &mut task).await.is_err() {
            eprintln!("the {what} did not stop within 15 s; cancelled");
            task.abort();
            let _ = task.await;
        }
    }
    p.fleet.shutdown().await;
    p.agent_stop.trigger();
    let mut agent = p.agent_task;
    match tokio::time::timeout(Duration::from_secs(10), &mut agent).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("the agent stopped with an error: {e}"),
        Ok(Err(e)) => eprintln!("the agent's task failed: {e}"),
        Err(_) => {
            eprintln!("the agent did not stop within 10 s; cancelled");
            agent.abort();
        }
    }
}
