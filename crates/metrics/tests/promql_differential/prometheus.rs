//! A real Prometheus holding the dataset: the samples become TSDB blocks through
//! `promtool tsdb create-blocks-from openmetrics`, a `prometheus` server with no scrape jobs
//! serves them on a free loopback port, series with staleness markers arrive by remote write,
//! and a small HTTP/1.0 client over `TcpStream` asks its `/api/v1/query` and
//! `/api/v1/query_range` and parses the answers.

use crate::answer::{Answer, Labels};
use crate::dataset::GenSeries;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Prometheus may take to become ready, and one HTTP exchange to complete.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an executable is on `PATH`, if anywhere.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A running Prometheus, killed when dropped; its data lives in a temporary directory.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Builds blocks from `openmetrics`, starts Prometheus on them, waits until it is ready,
    /// and remote-writes `remote_written` (the first series first: its samples must be the
    /// newest, so the others fit the out-of-order window behind them).
    pub fn start(openmetrics: &str, remote_written: &[GenSeries]) -> Result<Prometheus, String> {
        let prometheus = find_executable("prometheus").ok_or("`prometheus` is not on PATH")?;
        let promtool = find_executable("promtool").ok_or("`promtool` is not on PATH")?;
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
        let input = dir.path().join("dataset.om");
        let data = dir.path().join("data");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&input, openmetrics).map_err(|e| format!("writing {}: {e}", input.display()))?;
        // No scrape jobs; the evaluation interval stays at its default (1m), which is also the
        // step of a subquery that names none (`x[10m:]`). Remote-written samples older than
        // the blocks are out of order for the head: the window admits them.
        std::fs::write(&config, "scrape_configs: []\nstorage:\n  tsdb:\n    out_of_order_time_window: 4h\n")
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&data)
            .output()
            .map_err(|e| format!("running promtool: {e}"))?;
        if !out.status.success() {
            return Err(format!("promtool failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }

        let addr = free_loopback_addr()?;
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("cloning the log file handle: {e}"))?;
        let child = Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", prometheus.display()))?;
        let mut server = Prometheus { child, addr, dir };
        server.wait_ready()?;
        if let Some((first, rest)) = remote_written.split_first() {
            server.remote_write(std::slice::from_ref(first))?;
            server.remote_write(rest)?;
        }
        Ok(server)
    }

    /// Sends `series` in one remote-write request (protobuf `WriteRequest`, snappy block
    /// compression).
    fn remote_write(&self, series: &[GenSeries]) -> Result<(), String> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&encode_write_request(series))
            .map_err(|e| format!("snappy compression: {e}"))?;
        let headers = "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
                       X-Prometheus-Remote-Write-Version: 0.1.0\r\n";
        match http_request(self.addr, "POST", "/api/v1/write", headers, &body)? {
            (200..=299, _) => Ok(()),
            (status, text) => Err(format!("remote write answered {status}: {text}\n{}", self.log())),
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("prometheus exited ({status}) before it was ready:\n{}", self.log()));
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("prometheus was not ready within {READY_TIMEOUT:?}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant query at `t_ms`.
    pub fn instant(&self, query: &str, t_ms: i64) -> Answer {
        let path = format!("/api/v1/query?query={}&time={}", percent_encode(query), seconds(t_ms));
        self.ask(&path)
    }

    /// A range query from `start_ms` to `end_ms` every `step_ms`.
    pub fn range(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Answer {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            percent_encode(query),
            seconds(start_ms),
            seconds(end_ms),
            seconds(step_ms)
        );
        self.ask(&path)
    }

    fn ask(&self, path: &str) -> Answer {
        match http_get(self.addr, path) {
            Ok((_, body)) => {
                parse_answer(&body).unwrap_or_else(|e| panic!("Prometheus's answer to {path}: {e}: {body}"))
            }
            Err(e) => panic!("asking Prometheus {path}: {e}\n{}", self.log()),
        }
    }

    /// The directory holding the input file, the blocks and the server's log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map_err(|e| format!("finding a free port: {e}"))
}

/// Milliseconds as the decimal seconds the API takes.
fn seconds(ms: i64) -> String {
    format!("{}{}.{:03}", if ms < 0 { "-" } else { "" }, ms.abs() / 1000, ms.abs() % 1000)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One GET over HTTP/1.0 (so the body is neither chunked nor kept alive): status and body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, "", &[])
}

/// One HTTP/1.0 request; `headers` are complete `Name: value\r\n` lines.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connecting: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    let head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("reading: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("the response is not UTF-8: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the response has no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", head.lines().next()))?;
    Ok((status, body.to_string()))
}

/// Parses the API's JSON envelope into an [`Answer`].
pub fn parse_answer(body: &str) -> Result<Answer, String> {
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if json["status"] == "error" {
        return Ok(Answer::Error(format!(
            "{}: {}",
            json["errorType"].as_str().unwrap_or("?"),
            json["error"].as_str().unwrap_or("?")
        )));
    }
    let data = &json["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => {
            let (t, v) = parse_point(result)?;
            Ok(Answer::Scalar { t, v })
        }
        Some("string") => {
            let t = parse_time(&result[0])?;
            let v = result[1].as_str().ok_or("a string result without its string")?.to_string();
            Ok(Answer::String { t, v })
        }
        Some("vector") => {
            let mut out = Vec::new();
            for s in result.as_array().ok_or("a vector result that is not an array")? {
                let (t, v) = parse_point(&s["value"])?;
                out.push((parse_labels(&s["metric"])?, t, v));
            }
            Ok(Answer::Vector(out))
        }
        Some("matrix") => {
            let mut out = Vec::new();
            for s in result.as_array().ok_or("a matrix result that is not an array")? {
                let points = s["values"]
                    .as_array()
                    .map(|values| values.iter().map(parse_point).collect::<Result<Vec<_>, _>>())
                    .transpose()?
                    .unwrap_or_default();
                out.push((parse_labels(&s["metric"])?, points));
            }
            Ok(Answer::Matrix(out))
        }
        other => Err(format!("unknown resultType {other:?}")),
    }
}

fn parse_time(v: &serde_json::Value) -> Result<i64, String> {
    let secs = v.as_f64().ok_or_else(|| format!("a time that is not a number: {v}"))?;
    Ok((secs * 1000.0).round() as i64)
}

/// `[time, "value"]`; values are strings so NaN and the infinities survive JSON.
fn parse_point(v: &serde_json::Value) -> Result<(i64, f64), String> {
    let t = parse_time(&v[0])?;
    let text = v[1].as_str().ok_or_else(|| format!("a value that is not a string: {v}"))?;
    let value = match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().map_err(|e| format!("the value {other:?}: {e}"))?,
    };
    Ok((t, value))
}

fn parse_labels(v: &serde_json::Value) -> Result<Labels, String> {
    let map = v.as_object().ok_or_else(|| format!("labels that are not an object: {v}"))?;
    let mut labels: Labels = map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
    labels.sort();
    Ok(labels)
}

/// A remote-write `WriteRequest` in protobuf: `timeseries` (1) of `labels` (1: `name` 1,
/// `value` 2) and `samples` (2: `value` 1 as a double, `timestamp` 2 as a varint).
fn encode_write_request(series: &[GenSeries]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, (number << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut request = Vec::new();
    for s in series {
        let mut ts = Vec::new();
        for (name, value) in &s.labels {
            let mut label = Vec::new();
            field(&mut label, 1, name.as_bytes());
            field(&mut label, 2, value.as_bytes());
            field(&mut ts, 1, &label);
        }
        for &(t, v) in &s.samples {
            let mut sample = vec![0x09];
            sample.extend_from_slice(&v.to_bits().to_le_bytes());
            sample.push(0x10);
            varint(&mut sample, t as u64);
            field(&mut ts, 2, &sample);
        }
        field(&mut request, 1, &ts);
    }
    request
}
