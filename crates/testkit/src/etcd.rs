//! A real single-member etcd (Debian's `etcd-server`, installed by `scripts/test-deps.sh`)
//! on free loopback ports with a temporary data directory, for the control plane's tests
//! against the etcd backend. Killed when dropped.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd gets to answer its health endpoint.
const STARTUP: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The etcd binary: `$ETCD`, else `/usr/bin/etcd`.
pub fn binary() -> String {
    std::env::var("ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into())
}

impl Etcd {
    /// Starts etcd and waits until it reports healthy; panics (with its log) if it does not
    /// within 20 s.
    pub async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (client, peer) = (free_port(), free_port());
        let log = dir.path().join("etcd.log");
        let log_file = std::fs::File::create(&log).expect("the etcd log file");
        let child = Command::new(binary())
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (scripts/test-deps.sh installs etcd-server): {e}", binary()));
        let mut etcd = Etcd { child, endpoint: format!("http://127.0.0.1:{client}"), port: client, _dir: dir };
        let deadline = Instant::now() + STARTUP;
        loop {
            if etcd.healthy() {
                return etcd;
            }
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if Instant::now() > deadline {
                panic!("etcd not healthy after {STARTUP:?}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The etcd process's id (to freeze it with SIGSTOP, as a partition would look).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /health` answers `"health":"true"`.
    fn healthy(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
