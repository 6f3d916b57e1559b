//! The decoders of `fuzz/fuzz_targets/agent_records.rs`, run on stable with deterministic
//! mutations of valid inputs: log lines, buffered batch files and 400 answers never panic.

use signalbox_agent::compile::{Compiled, compile};
use signalbox_agent::config::{AgentConfig, ParserConfig, SourceConfig};

fn compiled() -> Compiled {
    let parser = |format: &str, pattern: &str, ts: &str| ParserConfig {
        format: format.into(),
        pattern: pattern.into(),
        timestamp_format: ts.into(),
        ..ParserConfig::default()
    };
    let sources = [
        parser("json", "", "rfc3339"),
        parser("logfmt", "", "unix_ms"),
        parser("regex", r"^(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<message>.*)$", "%Y-%m-%d %H:%M:%S%.f"),
        parser("regex", r"^\[(?P<time>[^\]]+)\] (?P<msg>.*)", "%d/%b/%Y:%H:%M:%S %z"),
    ]
    .into_iter()
    .map(|parser| SourceConfig {
        include: vec!["/x/*.log".into()],
        service: "f".into(),
        parser,
        ..SourceConfig::default()
    })
    .collect();
    compile(&AgentConfig { sources, ..AgentConfig::default() }, "").expect("valid")
}

/// Byte flips, truncations, duplications and insertions of `seed`.
fn mutations(seed: &[u8], rng: &mut fastrand::Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut b = seed.to_vec();
            for _ in 0..rng.usize(1..6) {
                if b.is_empty() {
                    b.push(rng.u8(..));
                    continue;
                }
                let i = rng.usize(..b.len());
                match rng.u8(..4) {
                    0 => b[i] = rng.u8(..),
                    1 => b.truncate(i),
                    2 => {
                        let tail = b[i..].to_vec();
                        b.extend_from_slice(&tail);
                    }
                    _ => {
                        b.insert(i, *[b'"', b'\\', b'=', b'{', b'%', 0xff, b'\n'].get(rng.usize(..7)).unwrap_or(&b'x'))
                    }
                }
            }
            b
        })
        .collect()
}

#[test]
fn mutated_lines_batches_and_answers_never_panic() {
    let c = compiled();
    let seeds: [&[u8]; 6] = [
        br#"{"timestamp":"2024-02-29T12:34:56.5Z","level":"error","message":"m","a":{"b":[1,{"c":null}]},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
        br#"ts=1700000000123 level=warn msg="quoted \"value\"" k=v flag"#,
        b"2024-02-29 12:34:56.123456 ERROR failed\n\tat x.Y(Y.java:1)",
        b"[29/Feb/2024:13:34:56 +0100] GET /",
        br#"{"error":"e","code":"c","field":"lines[2].body","invalid_lines":[0,1,2]}"#,
        b"",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for seed in seeds {
        for m in mutations(seed, &mut rng, 2000) {
            let text = String::from_utf8_lossy(&m);
            for s in &c.sources {
                let p = s.parser.parse(&text);
                if p.format_error {
                    assert_eq!(p.body, text, "text that does not parse is kept whole");
                }
            }
            let _ = signalbox_agent::ship::invalid_lines(&m, 100);
            let _ = signalbox_agent::spool::Entry::decode(1, &m);
        }
    }
}

#[test]
fn mutated_batch_files_are_refused_not_misread() {
    // A real batch file, written by the buffer and read back with corruption.
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = signalbox_agent::spool::open(dir.path(), 1 << 20).unwrap();
    let header = signalbox_agent::spool::Header { records: 1, sealed_ns: 1, positions: Vec::new() };
    let stop = signalbox_agent::stop::StopSignal::new();
    assert!(spool.push(&header, b"payload", || stop.is_set(), &Default::default()).unwrap());
    let path = std::fs::read_dir(dir.path().join("buffer")).unwrap().next().unwrap().unwrap().path();
    let good = std::fs::read(&path).unwrap();
    assert!(signalbox_agent::spool::Entry::decode(1, &good).is_some());
    let mut rng = fastrand::Rng::with_seed(11);
    for m in mutations(&good, &mut rng, 3000) {
        if m != good {
            // The CRC catches every mutation of these sizes.
            assert!(signalbox_agent::spool::Entry::decode(1, &m).is_none());
        }
    }
}
