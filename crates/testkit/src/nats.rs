//! Real NATS servers with JetStream (Debian's `nats-server`, installed by
//! `scripts/test-deps.sh`) on free loopback ports with temporary storage, for the ingest
//! buffer's tests: one server, or a three-server cluster whose members can be killed with
//! SIGKILL and started again on the same ports and storage. Killed when dropped.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to answer its health endpoint.
const STARTUP: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The nats-server binary: `$NATS_SERVER`, else `/usr/sbin/nats-server` (Debian's path).
pub fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "/usr/bin/nats-server".into()
        }
    })
}

/// One nats-server process (a single server, or one member of a [`Cluster`]).
pub struct Server {
    child: Option<Child>,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    name: String,
    port: u16,
    monitor: u16,
    cluster: Option<(u16, Vec<u16>)>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts one server with JetStream and waits until it is healthy (panics with its log
    /// after 30 s).
    pub async fn start() -> Server {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let dir = tmp.path().to_owned();
        let mut s = Server {
            child: None,
            url: String::new(),
            name: "n0".into(),
            port: free_port(),
            monitor: free_port(),
            cluster: None,
            dir,
            _tmp: Some(tmp),
        };
        s.url = format!("nats://127.0.0.1:{}", s.port);
        s.spawn();
        s.wait_healthy(false).await;
        s
    }

    fn spawn(&mut self) {
        let log = self.dir.join(format!("{}.log", self.name));
        let mut cmd = Command::new(binary());
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor.to_string()])
            .args(["-js", "-sd"])
            .arg(self.dir.join(format!("{}-js", self.name)))
            .args(["-n", &self.name, "-l"])
            .arg(&log);
        if let Some((cport, peers)) = &self.cluster {
            let routes: Vec<String> = peers.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            cmd.args(["--cluster_name", "sbtest", "--cluster", &format!("nats://127.0.0.1:{cport}")])
                .args(["--routes", &routes.join(",")]);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
                panic!("cannot start {} (scripts/test-deps.sh installs nats-server): {e}", binary())
            });
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Waits until `/healthz` answers ok (with `js` also JetStream's meta group).
    async fn wait_healthy(&mut self, js: bool) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if self.healthy(js) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                panic!("nats-server not healthy after {STARTUP:?}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn healthy(&self, js: bool) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor)),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
        let path = if js { "/healthz" } else { "/healthz?js-enabled-only=true" };
        if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200")
    }

    /// Kills the server with SIGKILL (its storage stays for [`Server::restart`]).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and storage and waits until it is healthy.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_healthy(self.cluster.is_some()).await;
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three clustered servers with JetStream (a stream with 3 replicas survives one loss).
pub struct Cluster {
    pub servers: Vec<Server>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts three servers routed to each other and waits until JetStream's meta group
    /// has a leader (every server's `/healthz` is ok).
    pub async fn start() -> Cluster {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let cports = [free_port(), free_port(), free_port()];
        let mut servers: Vec<Server> = (0..3)
            .map(|i| {
                let port = free_port();
                Server {
                    child: None,
                    url: format!("nats://127.0.0.1:{port}"),
                    name: format!("n{i}"),
                    port,
                    monitor: free_port(),
                    cluster: Some((
                        cports[i],
                        cports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect(),
                    )),
                    dir: tmp.path().to_owned(),
                    _tmp: None,
                }
            })
            .collect();
        for s in &mut servers {
            s.spawn();
        }
        for s in &mut servers {
            s.wait_healthy(true).await;
        }
        Cluster { servers, _tmp: tmp }
    }

    /// Every server's URL, comma-separated (the form of `[ingest] buffer`).
    pub fn urls(&self) -> String {
        self.servers.iter().map(|s| s.url.as_str()).collect::<Vec<_>>().join(",")
    }
}
