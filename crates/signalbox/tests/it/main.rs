//! End-to-end tests of the `signalbox` binary: real processes, real sockets, real signals.

mod cli;
mod cluster;
mod control;
mod demo;
mod host_metrics;
mod host_views;
mod ingest_nats;
mod live;
mod logs;
mod metrics;
mod rollouts;
mod security;
mod serve;
mod storage_cluster;
mod traces;
mod traffic;
mod views;

use signalbox_testkit::client::Http;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_signalbox");

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (up to 30 s) until `url` answers 200; if `child` exits first, its stderr.
async fn wait_ready(child: &mut Child, url: &str) -> Result<(), String> {
    let http = Http::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let mut log = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut log));
            return Err(log);
        }
        let r = http.try_send(http::Method::GET, url, &[], bytes::Bytes::new()).await;
        if r.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        assert!(std::time::Instant::now() < deadline, "{url} not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `signalbox gateway` (standalone): its gateway and admin addresses.
pub struct StandaloneGateway {
    pub child: Child,
    pub gateway: String,
    pub admin: String,
}

impl Drop for StandaloneGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandaloneGateway {
    /// Starts `signalbox gateway ARGS` on free ports and waits for its admin `/readyz`. As
    /// with [`Node::start`], a gateway that exits because another test took a port first is
    /// started again on new ports.
    pub async fn start(args: &[String], env: &[(&str, &str)]) -> StandaloneGateway {
        for _ in 0..4 {
            let (gateway, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
            let mut cmd = Command::new(BIN);
            cmd.arg("gateway")
                .args(args)
                .args(["--listen", &gateway, "--console-listen", &admin])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut g = StandaloneGateway { child: cmd.spawn().expect("start signalbox gateway"), gateway, admin };
            match wait_ready(&mut g.child, &format!("http://{}/readyz", g.admin)).await {
                Ok(()) => return g,
                Err(log) => {
                    assert!(log.contains("cannot bind"), "signalbox gateway exited before it was ready:\n{log}")
                }
            }
        }
        panic!("signalbox gateway could not bind free ports four times");
    }
}

/// A running `signalbox serve`.
pub struct Node {
    pub child: Child,
    pub gateway: String,
    pub console: String,
    pub consul: String,
    pub otlp_grpc: String,
    pub otlp_http: String,
    pub zipkin: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts `signalbox serve` with `args` (plus listen addresses and a data dir) and waits
    /// until `/readyz` answers.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Node {
        Self::start_in(tempfile::tempdir().unwrap(), args, env).await
    }

    /// Like [`Node::start`], on the data already in `dir` (a restart). Free ports are
    /// picked by binding and releasing, so another test can take one first: a node that
    /// exits because it could not bind is started again on new ports.
    pub async fn start_in(mut dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Node {
        for _ in 0..4 {
            match Self::try_start_in(dir, args, env).await {
                Ok(node) => return node,
                Err((d, log)) if log.contains("cannot bind") => dir = d,
                Err((_, log)) => panic!("signalbox serve exited before it was ready:\n{log}"),
            }
        }
        panic!("signalbox serve could not bind free ports four times");
    }

    async fn try_start_in(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, (tempfile::TempDir, String)> {
        let ports = [free_port(), free_port(), free_port(), free_port(), free_port(), free_port()];
        Self::try_start_on(dir, args, env, ports).await
    }

    /// Kills the node with SIGKILL and starts it again on the same data and the same
    /// addresses (so clients configured with them reconnect), after `down` has passed.
    pub async fn restart_kill9(self, args: &[&str], env: &[(&str, &str)], down: Duration) -> Node {
        let ports = [&self.gateway, &self.console, &self.consul, &self.otlp_grpc, &self.otlp_http, &self.zipkin]
            .map(|a| a.rsplit(':').next().unwrap().parse::<u16>().unwrap());
        let mut dir = self.kill9();
        tokio::time::sleep(down).await;
        for _ in 0..10 {
            match Self::try_start_on(dir, args, env, ports).await {
                Ok(node) => return node,
                Err((d, log)) if log.contains("cannot bind") => {
                    dir = d;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err((_, log)) => panic!("signalbox serve exited before it was ready:\n{log}"),
            }
        }
        panic!("signalbox serve could not bind its previous ports again");
    }

    async fn try_start_on(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        [gw, console, consul, otlp_grpc, otlp_http, zipkin]: [u16; 6],
    ) -> Result<Node, (tempfile::TempDir, String)> {
        let gateway = format!("127.0.0.1:{gw}");
        let console_addr = format!("127.0.0.1:{console}");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(args)
            .args([
                "--listen",
                &gateway,
                "--console-listen",
                &console_addr,
                "--consul-listen",
                &format!("127.0.0.1:{consul}"),
                "--otlp-grpc-listen",
                &format!("127.0.0.1:{otlp_grpc}"),
                "--otlp-http-listen",
                &format!("127.0.0.1:{otlp_http}"),
                "--zipkin-listen",
                &format!("127.0.0.1:{zipkin}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("SIGNALBOX_GATEWAY__WORKERS", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start signalbox");
        let node = Node {
            child,
            gateway,
            console: console_addr,
            consul: format!("127.0.0.1:{consul}"),
            otlp_grpc: format!("127.0.0.1:{otlp_grpc}"),
            otlp_http: format!("127.0.0.1:{otlp_http}"),
            zipkin: format!("127.0.0.1:{zipkin}"),
            dir,
        };
        let mut node = node;
        match wait_ready(&mut node.child, &format!("http://{}/readyz", node.console)).await {
            Ok(()) => Ok(node),
            Err(log) => Err((std::mem::replace(&mut node.dir, tempfile::tempdir().unwrap()), log)),
        }
    }

    /// Kills the node with SIGKILL (no chance to flush anything) and hands back its data.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Sends SIGTERM and returns the exit status and everything the node logged.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (status, err);
            }
            assert!(std::time::Instant::now() < deadline, "node did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
