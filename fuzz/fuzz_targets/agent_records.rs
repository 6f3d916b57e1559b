//! The agent's decoders of untrusted bytes: log lines through every parser and timestamp
//! format, buffered batch files read back from disk, and the node's 400 answers never panic.
#![no_main]
use signalbox_agent::compile::{Compiled, compile};
use signalbox_agent::config::{AgentConfig, ParserConfig, SourceConfig};
use std::sync::OnceLock;

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
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
        .map(|parser| SourceConfig { include: vec!["/x/*.log".into()], service: "f".into(), parser, ..SourceConfig::default() })
        .collect();
        compile(&AgentConfig { sources, ..AgentConfig::default() }, "").expect("fuzz config is valid")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for s in &compiled().sources {
        let _ = s.parser.parse(&text);
    }
    let _ = signalbox_agent::spool::Entry::decode(1, data);
    let _ = signalbox_agent::ship::invalid_lines(data, 100);
});
