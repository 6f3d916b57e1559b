//! Request smuggling conformance: every ambiguous HTTP/1 framing, sent raw over a socket
//! through the gateway to an upstream that records the exact bytes it receives, and the same
//! matrix through nginx (Debian `nginx`, started as a reverse proxy on loopback) as the
//! reference for what is safe. The gateway must answer an ambiguous request itself and
//! forward nothing, forward a legal one in its normalised form, and never be less strict than
//! nginx. The table it prints is the one in docs/security.md ("Request smuggling").

use crate::*;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a legal case must reach the upstream as.
struct Normalised {
    request_line: &'static str,
    body: &'static [u8],
}

/// What the gateway must do with a case.
enum Expect {
    /// Answered by the gateway with this status and its JSON error; nothing forwarded.
    Reject(u16),
    /// Forwarded once, in this normal form.
    Forward(Normalised),
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, bytes: bytes.into(), expect }
}

fn post(framing: &str, body: &str) -> Vec<u8> {
    format!("POST /s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{framing}\r\n{body}").into_bytes()
}

fn matrix() -> Vec<Case> {
    use Expect::*;
    let fwd = |request_line, body| Forward(Normalised { request_line, body });
    let long_value = "a".repeat(64 * 1024);
    let many_headers: String = (0..400).map(|i| format!("x-h{i}: {}\r\n", "v".repeat(100))).collect();
    vec![
        // Legal framings, the baseline.
        case("GET", "GET /s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", fwd("GET /s HTTP/1.1", b"")),
        case("Content-Length body", post("content-length: 5\r\n", "hello"), fwd("POST /s HTTP/1.1", b"hello")),
        case(
            "chunked body",
            post("transfer-encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            fwd("POST /s HTTP/1.1", b"hello"),
        ),
        case(
            "chunked, mixed case",
            post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            fwd("POST /s HTTP/1.1", b"hello"),
        ),
        case(
            "chunk extension",
            post("transfer-encoding: chunked\r\n", "5;name=value\r\nhello\r\n0\r\n\r\n"),
            fwd("POST /s HTTP/1.1", b"hello"),
        ),
        case("bare LF line ends", "GET /s HTTP/1.1\nhost: x\nconnection: close\n\n", fwd("GET /s HTTP/1.1", b"")),
        // Content-Length and Transfer-Encoding.
        case("CL + TE", post("content-length: 6\r\ntransfer-encoding: chunked\r\n", "0\r\n\r\nG"), Reject(400)),
        case("TE + CL", post("transfer-encoding: chunked\r\ncontent-length: 6\r\n", "0\r\n\r\nG"), Reject(400)),
        case("CL twice, differing", post("content-length: 5\r\ncontent-length: 6\r\n", "hello!"), Reject(400)),
        case("CL twice, equal", post("content-length: 5\r\ncontent-length: 5\r\n", "hello"), Reject(400)),
        case("CL list", post("content-length: 5, 5\r\n", "hello"), Reject(400)),
        case("CL with sign", post("content-length: +5\r\n", "hello"), Reject(400)),
        case("CL not a number", post("content-length: 5x\r\n", "hello"), Reject(400)),
        case("space before colon", post("content-length : 5\r\n", "hello"), Reject(400)),
        // Transfer-Encoding other than a final, lone `chunked`.
        case("TE chunked, gzip", post("transfer-encoding: chunked, gzip\r\n", "5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
        case("TE gzip, chunked", post("transfer-encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
        case("TE identity", post("transfer-encoding: identity\r\n", "hello"), Reject(400)),
        case("TE xchunked", post("transfer-encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
        case(
            "TE twice",
            post("transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        case(
            "TE in HTTP/1.0",
            "POST /s HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Reject(400),
        ),
        // Chunked framing.
        case("chunk size 0x5", post("transfer-encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
        case("chunk size -1", post("transfer-encoding: chunked\r\n", "-1\r\nhello\r\n0\r\n\r\n"), Reject(400)),
        case(
            "chunk size overflows",
            post("transfer-encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        case(
            "chunk extension, bare LF",
            post("transfer-encoding: chunked\r\n", "5;a\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        case(
            "chunk extension, bare CR",
            post("transfer-encoding: chunked\r\n", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        // The head itself.
        case("obs-fold", "GET /s HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n  folded\r\nconnection: close\r\n\r\n", Reject(400)),
        case("bare CR in head", "GET /s HTTP/1.1\rhost: x\r\nconnection: close\r\n\r\n", Reject(400)),
        case("bare CR in a value", "GET /s HTTP/1.1\r\nhost: x\r\nx-a: 1\r2\r\nconnection: close\r\n\r\n", Reject(400)),
        case("NUL in a header", "GET /s HTTP/1.1\r\nhost: x\r\nx-a: 1\x002\r\nconnection: close\r\n\r\n", Reject(400)),
        case(
            "oversized header line",
            format!("GET /s HTTP/1.1\r\nhost: x\r\nx-a: {long_value}\r\nconnection: close\r\n\r\n"),
            Reject(431),
        ),
        case(
            "oversized head",
            format!("GET /s HTTP/1.1\r\nhost: x\r\n{many_headers}connection: close\r\n\r\n"),
            Reject(431),
        ),
        case(
            "oversized request line",
            format!("GET /{long_value} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
            // hyper's head limit is reached before the target's: 431, where nginx says 414.
            Reject(431),
        ),
        // Dot segments: normalised before routing, and forwarded in the normal form.
        case(
            "dot segments",
            "GET /x/../s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            fwd("GET /s HTTP/1.1", b""),
        ),
        case(
            "encoded dot segments",
            "GET /x/%2e%2E/s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            fwd("GET /s HTTP/1.1", b""),
        ),
        case("dot segments above the root", "GET /../s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", Reject(400)),
        case(
            "encoded dot segments above the root",
            "GET /x/%2e%2e/%2E%2E/s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Reject(400),
        ),
    ]
}

/// Every connection's bytes so far, in the order they were accepted.
type Connections = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// An upstream that answers every request `200` with `connection: close` and keeps, per
/// connection, every byte it received.
struct Recorder {
    addr: SocketAddr,
    conns: Connections,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Connections = Arc::default();
        let all = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let bytes = Arc::new(Mutex::new(Vec::new()));
                all.lock().unwrap().push(bytes.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let mut answered = false;
                    loop {
                        let wait = if answered { 300 } else { 1_000 };
                        match tokio::time::timeout(Duration::from_millis(wait), s.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => bytes.lock().unwrap().extend_from_slice(&buf[..n]),
                            Ok(_) => return,
                            Err(_) if answered => return,
                            Err(_) => {}
                        }
                        let complete = complete_message(&bytes.lock().unwrap());
                        if !answered && complete {
                            answered = true;
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                        }
                    }
                });
            }
        });
        Recorder { addr, conns, task }
    }

    /// The connections received since the last call, each with its bytes.
    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.conns.lock().unwrap()).iter().map(|c| c.lock().unwrap().clone()).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `b` holds a whole request (head, and a body by content-length or chunked).
fn complete_message(b: &[u8]) -> bool {
    let Some(end) = find(b, b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let body = &b[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return find(body, b"0\r\n\r\n").is_some();
    }
    let len = head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.trim().parse().ok());
    body.len() >= len.unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A forwarded request in normal form: its request line and decoded body.
#[derive(Debug, PartialEq)]
struct Seen {
    request_line: String,
    framing: String,
    body: Vec<u8>,
}

fn parse_forwarded(b: &[u8]) -> Option<Seen> {
    let end = find(b, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&b[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let framing: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k == "content-length" || k == "transfer-encoding")
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let raw = &b[end + 4..];
    let body = if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = raw;
        loop {
            let line_end = find(rest, b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        out
    } else {
        raw.to_vec()
    };
    Some(Seen { request_line, framing: framing.join(", "), body })
}

/// What one proxy did with one case.
#[derive(Debug)]
struct ProxyOutcome {
    /// The status the client got, if any.
    status: Option<u16>,
    /// The client's whole answer.
    answer: String,
    /// Bytes the upstream received, per connection.
    forwarded: Vec<Vec<u8>>,
}

impl ProxyOutcome {
    fn rejected(&self) -> bool {
        self.forwarded.iter().all(|c| c.is_empty())
    }

    fn summary(&self) -> String {
        let status = self.status.map_or("no answer".to_owned(), |s| s.to_string());
        let sent: Vec<&Vec<u8>> = self.forwarded.iter().filter(|c| !c.is_empty()).collect();
        match sent.as_slice() {
            [] => format!("{status}, nothing forwarded"),
            [one] => match parse_forwarded(one) {
                Some(s) => format!(
                    "{status}, forwarded `{}` [{}] body {:?}",
                    s.request_line,
                    s.framing,
                    String::from_utf8_lossy(&s.body)
                ),
                None => format!("{status}, forwarded {} bytes, incomplete", one.len()),
            },
            more => format!("{status}, forwarded {} requests", more.len()),
        }
    }
}

async fn send(proxy: SocketAddr, recorder: &Recorder, bytes: &[u8]) -> ProxyOutcome {
    recorder.take();
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    // Whatever was forwarded has arrived by the time the answer has; give a forward that
    // was aborted mid-way the time to land too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = String::from_utf8_lossy(&out).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok());
    ProxyOutcome { status, answer, forwarded: recorder.take() }
}

/// nginx as a reverse proxy in front of `upstream`, with its defaults otherwise.
struct Nginx {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is not installed: run scripts/test-deps.sh (apt-get install nginx)");
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n  location / {{\n   proxy_pass http://{upstream};\n\
             proxy_http_version 1.1;\n  }}\n }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        Nginx { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let recorder = Recorder::start().await;
    let gw = start(config(vec![service("s", &[format!("http://{}", recorder.addr)])], vec![route("/", "s")])).await;
    let nginx = Nginx::start(recorder.addr);
    signalbox_testkit::eventually(Duration::from_secs(10), "nginx listening", || async {
        TcpStream::connect(nginx.addr).await.ok().map(|_| ())
    })
    .await;

    let mut table = String::from("| case | gateway | nginx |\n|---|---|---|\n");
    let mut problems = Vec::new();
    for c in matrix() {
        let g = send(gw.addr, &recorder, &c.bytes).await;
        let n = send(nginx.addr, &recorder, &c.bytes).await;
        let _ = writeln!(table, "| {} | {} | {} |", c.name, g.summary(), n.summary());
        match &c.expect {
            Expect::Reject(status) => {
                if !g.rejected() {
                    problems.push(format!("{}: forwarded {:?}", c.name, g.summary()));
                } else if g.status != Some(*status) {
                    problems.push(format!("{}: expected {status}, got {}", c.name, g.answer));
                } else if !g.answer.contains("\"code\"") {
                    problems.push(format!("{}: not the gateway's JSON error: {}", c.name, g.answer));
                }
            }
            Expect::Forward(want) => {
                let sent: Vec<&Vec<u8>> = g.forwarded.iter().filter(|c| !c.is_empty()).collect();
                let seen = match sent.as_slice() {
                    [one] => parse_forwarded(one),
                    _ => None,
                };
                match seen {
                    Some(s) if s.request_line == want.request_line && s.body == want.body && g.status == Some(200) => {}
                    _ => problems.push(format!(
                        "{}: expected `{}` forwarded, got {}",
                        c.name,
                        want.request_line,
                        g.summary()
                    )),
                }
            }
        }
        if n.rejected() && !g.rejected() {
            problems.push(format!("{}: nginx refuses it but the gateway forwarded it", c.name));
        }
    }
    println!("{table}");
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n"));
}

#[tokio::test]
async fn a_smuggled_request_behind_a_good_one_is_refused_on_its_own() {
    let recorder = Recorder::start().await;
    let gw = start(config(vec![service("s", &[format!("http://{}", recorder.addr)])], vec![route("/", "s")])).await;
    let good = "GET /first HTTP/1.1\r\nhost: x\r\n\r\n";
    let smuggled = "POST /second HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /third HTTP/1.1\r\nhost: x\r\n\r\n";
    let result = send(gw.addr, &recorder, format!("{good}{smuggled}").as_bytes()).await;
    assert!(result.answer.starts_with("HTTP/1.1 200 OK\r\n"), "{}", result.answer);
    let second = &result.answer[result.answer.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400 "), "{}", result.answer);
    assert!(second.contains("\"code\":\"bad_framing\""), "{second}");
    let sent: Vec<Seen> =
        result.forwarded.iter().filter(|c| !c.is_empty()).filter_map(|c| parse_forwarded(c)).collect();
    assert_eq!(sent.len(), 1, "{}", result.summary());
    assert_eq!(sent[0].request_line, "GET /first HTTP/1.1");
    assert!(
        result.forwarded.iter().all(|c| find(c, b"/second").is_none() && find(c, b"/third").is_none()),
        "nothing of the smuggled requests reached the upstream"
    );
}
