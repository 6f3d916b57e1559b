//! Test helpers shared by Signalbox's integration tests: real servers on loopback and the
//! clients that talk to them. Nothing here mocks the network.
//!
//! # Layout
//! - [`upstream`]: HTTP/1.1 + h2c upstream servers built from a closure, with hit counters.
//! - [`client`]: a small HTTP client returning status, headers and the whole body.
//! - [`etcd`]: a real etcd on loopback for the control plane's etcd backend.
//! - [`nats`]: real NATS servers with JetStream (one, or a three-server cluster).
//! - [`grpc`]: a tonic gRPC echo service (unary and bidirectional streaming) and its client.
//! - [`ws`]: a WebSocket echo server.
//! - [`sse`]: a server-sent-events client.
//! - [`python`]: real Python clients from PyPI (installed by `scripts/test-deps.sh`).

pub mod client;
pub mod etcd;
pub mod grpc;
pub mod nats;
pub mod python;
pub mod sse;
pub mod upstream;
pub mod ws;

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Path of a file in `crates/testkit/fixtures`.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback address whose listener never accepts and whose queue is full, so a connect to
/// it hangs until the caller's timeout. Keep the returned value alive while it is used.
pub struct Blackhole {
    pub addr: std::net::SocketAddr,
    _listener: tokio::net::TcpListener,
    _filler: Vec<std::net::TcpStream>,
}

pub async fn blackhole() -> Blackhole {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = sock.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut filler = Vec::new();
    // One or two connections fill a backlog of 0; later SYNs are dropped.
    for _ in 0..3 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            filler.push(s);
        }
    }
    Blackhole { addr, _listener: listener, _filler: filler }
}

/// A real DNS server (Debian's `dnsmasq`) on a loopback port, answering only the given
/// records with a 1-second TTL. Killed on drop.
pub struct Dnsmasq {
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts dnsmasq with `--host-record` and `--srv-host` style arguments (without the
/// leading `--`), e.g. `["host-record=orders.test,127.0.0.1", "srv-host=_http._tcp.orders.test,orders.test,8080,0,10"]`.
/// Panics with an install hint when dnsmasq is missing (`.ci/run` installs it).
pub async fn dnsmasq(records: &[String], port: u16) -> Dnsmasq {
    let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("dnsmasq is not installed: apt-get install -y dnsmasq-base");
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--local-ttl=1",
        "--conf-file=/dev/null",
        "--pid-file",
        "--user=root",
        "--log-facility=-",
    ])
    .arg(format!("--port={port}"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    for r in records {
        cmd.arg(format!("--{r}"));
    }
    let child = cmd.spawn().expect("start dnsmasq");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // Ready when it answers TCP.
    eventually(std::time::Duration::from_secs(5), "dnsmasq listening", || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
    Dnsmasq { addr, child }
}
