//! Helpers: an agent config tuned for tests, the agent in-process or as a child process,
//! a log writer that rotates, and the no-loss check.

use crate::receiver::Receiver;
use signalbox_agent::config::{AgentConfig, SourceConfig};
use signalbox_agent::{Agent, AgentError, ProgressHandle};
use signalbox_core::config::{ByteSize, Dur};
use signalbox_core::shutdown::{self, ShutdownTrigger};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config with short intervals, one source following `include`.
pub fn config(data_dir: &Path, endpoint: &str, include: &[String]) -> AgentConfig {
    let mut c = AgentConfig {
        data_dir: data_dir.display().to_string(),
        host: "test-host".into(),
        scan_interval: Dur::millis(50),
        poll_interval: Dur::millis(20),
        progress_interval: Dur::secs(0),
        drain_timeout: Dur::secs(2),
        ..AgentConfig::default()
    };
    c.output.endpoint = endpoint.to_owned();
    c.output.timeout = Dur::secs(3);
    c.output.connect_timeout = Dur::secs(1);
    c.batch.timeout = Dur::millis(50);
    c.batch.max_records = 200;
    c.retry.initial_backoff = Dur::millis(50);
    c.retry.max_backoff = Dur::millis(400);
    c.retry.max_retry_after = Dur::secs(2);
    c.sources.push(SourceConfig {
        include: include.to_vec(),
        service: "orders".into(),
        instance: "orders-1".into(),
        labels: BTreeMap::from([("team".to_owned(), "checkout".to_owned())]),
        close_inactive: Dur::secs(1),
        ..SourceConfig::default()
    });
    c
}

/// Sets the disk buffer's and the batch's byte limits.
pub fn small_buffer(c: &mut AgentConfig, batch: u64, buffer: u64) {
    c.batch.max_bytes = ByteSize(batch);
    c.buffer.max_bytes = ByteSize(buffer);
}

/// The agent running in this process.
pub struct TestAgent {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
    pub progress: ProgressHandle,
}

pub fn start(cfg: AgentConfig) -> TestAgent {
    let agent = Agent::new(cfg).expect("agent starts");
    let progress = agent.progress();
    let (trigger, shutdown) = shutdown::channel();
    TestAgent { trigger, task: tokio::spawn(agent.run(shutdown)), progress }
}

impl TestAgent {
    /// Stops it gracefully and checks it ended without error.
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(8), self.task)
            .await
            .expect("agent stops in time")
            .expect("agent task")
            .expect("agent ends cleanly");
    }
}

/// The agent as a child process (the crate's `agent` example), killed on drop.
pub struct ChildAgent(std::process::Child);

impl ChildAgent {
    pub fn spawn(cfg: &AgentConfig, dir: &Path) -> ChildAgent {
        let path = dir.join("agent.toml");
        std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
        let bin = example_bin();
        let child = std::process::Command::new(&bin)
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (cargo builds examples with the tests)", bin.display()));
        ChildAgent(child)
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_bin() -> PathBuf {
    // The test binary is target/<profile>/deps/it-HASH; examples are in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("examples").join("agent")
}

/// The text of line `seq`: unique, with some payload.
pub fn line(seq: u64) -> String {
    format!("seq={seq:06} level=info msg=\"order {seq} processed\" pad={}", "x".repeat((seq % 37) as usize))
}

/// How the writer rotates its file.
#[derive(Clone, Copy)]
pub enum Rotation {
    None,
    /// `app.log` renamed to `app.log.1` (older ones shifted) and created again.
    Rename {
        every: u64,
    },
    /// `app.log` copied to `app.log.1` (older ones shifted) and truncated in place.
    CopyTruncate {
        every: u64,
    },
}

/// Writes lines `0..count` to `path`, one every `pause`, rotating as asked.
pub fn spawn_writer(path: PathBuf, count: u64, pause: Duration, rotation: Rotation) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap();
        let mut f = open(&path);
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        let shift = || {
            for n in (1..10).rev() {
                let _ = std::fs::rename(rotated(n), rotated(n + 1));
            }
        };
        // Lines still written to the old file after a rename, as by a writer that reopens
        // its file a moment later (after a SIGHUP).
        let mut late = 0;
        for seq in 0..count {
            f.write_all(format!("{}\n", line(seq)).as_bytes()).unwrap();
            if late > 0 {
                late -= 1;
                if late == 0 {
                    f = open(&path);
                }
            }
            match rotation {
                Rotation::Rename { every } if (seq + 1) % every == 0 => {
                    shift();
                    std::fs::rename(&path, rotated(1)).unwrap();
                    late = 3;
                }
                Rotation::CopyTruncate { every } if (seq + 1) % every == 0 => {
                    shift();
                    std::fs::copy(&path, rotated(1)).unwrap();
                    f.set_len(0).unwrap();
                }
                _ => {}
            }
            if !pause.is_zero() && seq % 4 == 0 {
                std::thread::sleep(pause * 4);
            }
        }
    })
}

/// Sequence numbers of the received lines: (distinct, total).
pub fn seqs(r: &Receiver) -> (std::collections::BTreeSet<u64>, usize) {
    let lines = r.lines();
    let set = lines.iter().filter_map(|v| v["body"].as_str()).filter_map(seq_of).collect();
    (set, lines.len())
}

fn seq_of(body: &str) -> Option<u64> {
    body.strip_prefix("seq=")?.get(..6)?.parse().ok()
}

/// Waits until every line `0..count` arrived (at least once) and checks their contents: the
/// CRC of each distinct body must be that of the line written. Returns the total received.
pub async fn assert_all_arrive(r: &Receiver, count: u64, within: Duration) -> usize {
    signalbox_testkit::eventually(within, "every line to arrive", || async {
        let (set, _) = seqs(r);
        (set.len() as u64 == count).then_some(())
    })
    .await;
    let lines = r.lines();
    let mut got = std::collections::BTreeMap::new();
    for v in &lines {
        let body = v["body"].as_str().unwrap();
        let seq = seq_of(body).unwrap();
        let prev = got.insert(seq, crc32fast::hash(body.as_bytes()));
        if let Some(p) = prev {
            assert_eq!(p, crc32fast::hash(body.as_bytes()), "line {seq} arrived twice with different contents");
        }
    }
    let expected: u64 = (0..count).map(|s| u64::from(crc32fast::hash(line(s).as_bytes()))).sum();
    let actual: u64 = got.values().map(|c| u64::from(*c)).sum();
    assert_eq!(got.len() as u64, count);
    assert_eq!(actual, expected, "checksum of line contents");
    lines.len()
}

/// Runs a test body with a 20-second limit: a hung test fails instead of waiting.
pub async fn bounded<T>(body: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), body).await.expect("the test took longer than 20 s")
}
