//! Grouping lines into records: a stack trace is one record.

use regex::Regex;
use std::time::{Duration, Instant};

/// Java and Spring: indented frames (`at ...`, `... 12 more`), `Caused by:`, `Suppressed:`
/// and the exception line itself (`java.lang.IllegalStateException: boom`).
pub const JAVA_CONTINUATION: &str = r"^(\s|Caused by:|Suppressed:|[A-Za-z_$][\w$.]*(Exception|Error|Throwable)(:.*)?$)";
/// Python: `Traceback (most recent call last):`, indented frames and source lines, the
/// exception line (`ValueError: bad`), chained-exception notes and the blank lines around them.
pub const PYTHON_CONTINUATION: &str = r"^(\s|$|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt|Iteration)(:.*)?$)";

/// How a line is told to start a record.
#[derive(Debug)]
pub enum Rule {
    /// Lines matching start a record; others continue it.
    Start(Regex),
    /// Lines matching continue the current record; others start one.
    Continue(Regex),
}

/// A source's compiled multi-line settings.
#[derive(Debug)]
pub struct Multiline {
    pub rule: Rule,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A record being grouped.
#[derive(Debug)]
struct Pending {
    text: String,
    lines: usize,
    /// File offset of its first line: nothing from here on is committed yet.
    start: u64,
    last_line: Instant,
}

/// The grouping state of one file.
#[derive(Debug, Default)]
pub struct Grouper {
    pending: Option<Pending>,
}

impl Grouper {
    /// Adds a line that starts at file offset `start`; returns the record it completes.
    pub fn push(&mut self, m: &Multiline, line: &str, start: u64, now: Instant) -> Option<String> {
        let continues = match &m.rule {
            Rule::Start(re) => !re.is_match(line),
            Rule::Continue(re) => re.is_match(line),
        };
        if let Some(p) = &mut self.pending
            && continues
            && p.lines < m.max_lines
            && p.text.len() + 1 + line.len() <= m.max_bytes
        {
            p.text.push('\n');
            p.text.push_str(line);
            p.lines += 1;
            p.last_line = now;
            return None;
        }
        let done = self.pending.take().map(|p| p.text);
        self.pending = Some(Pending { text: line.to_owned(), lines: 1, start, last_line: now });
        done
    }

    /// The pending record, if its last line came longer than the timeout ago.
    pub fn flush_stale(&mut self, m: &Multiline, now: Instant) -> Option<String> {
        match &self.pending {
            Some(p) if now.duration_since(p.last_line) >= m.timeout => self.flush(),
            _ => None,
        }
    }

    /// The pending record, whatever its age (end of file, shutdown, truncation).
    pub fn flush(&mut self) -> Option<String> {
        self.pending.take().map(|p| p.text)
    }

    /// Offset of the first line not yet part of an emitted record.
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.start)
    }
}

#[cfg(test)]
mod tests;
