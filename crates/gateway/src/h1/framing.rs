//! Follows an HTTP/1 connection's incoming bytes message by message: each head is checked by
//! [`head::parse`], each body skipped by its length or checked by
//! [`Chunked`], so a refusal is known before the bytes reach hyper.
//!
//! A head split across reads is copied into a buffer the tracker reuses for the connection's
//! life; a head that arrives in one read (the usual case) is parsed in place.

use super::Refusal;
use super::chunked::Chunked;
use super::head::{self, BodyFraming, Parsed};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

#[derive(Debug)]
enum State {
    /// Expecting a request head (possibly partly buffered).
    Head,
    Length(u64),
    Chunked(Chunked),
    /// Not followed any more: HTTP/2, an upgraded connection, or a head past the limits
    /// (which hyper refuses itself).
    Off,
}

/// What [`Tracker::feed`] found in a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything read so far is acceptable.
    Pass,
    /// The message starting at `at` (an offset into this read; 0 when it started in an
    /// earlier read) is refused. `head_passed`: its whole head was in earlier reads, so only
    /// its body can still be stopped.
    Refuse { at: usize, head_passed: bool, why: Refusal },
}

/// The framing state of one connection. A request that asks to upgrade is followed like any
/// other: the server stops the tracker once it answers `101` (hyper may instead go on reading
/// requests, which must be checked too).
#[derive(Debug)]
pub struct Tracker {
    state: State,
    /// A partial head carried over from earlier reads.
    pending: Vec<u8>,
    max_head: usize,
    first: bool,
}

impl Tracker {
    /// `max_head`: the longest head followed; longer ones are left to hyper's own limit.
    pub fn new(max_head: usize) -> Self {
        Tracker { state: State::Head, pending: Vec::new(), max_head, first: true }
    }

    /// Stops following the connection (it switched protocols).
    pub fn stop(&mut self) {
        self.state = State::Off;
        self.pending = Vec::new();
    }

    pub fn is_off(&self) -> bool {
        matches!(self.state, State::Off)
    }

    /// Follows the bytes of one read.
    pub fn feed(&mut self, buf: &[u8]) -> Verdict {
        let mut i = 0;
        // Whether hyper already has the whole head of the message being read.
        let mut head_passed = !matches!(self.state, State::Head);
        // Where the message being read started: in this read, or earlier.
        let mut msg_start: Option<usize> =
            if matches!(self.state, State::Head) && self.pending.is_empty() { Some(0) } else { None };
        while i < buf.len() {
            match &mut self.state {
                State::Off => return Verdict::Pass,
                State::Length(n) => {
                    let take = (buf.len() - i).min(usize::try_from(*n).unwrap_or(usize::MAX));
                    i += take;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Head;
                        msg_start = Some(i);
                        head_passed = false;
                    }
                }
                State::Chunked(c) => match c.feed(&buf[i..]) {
                    Ok((used, done)) => {
                        i += used;
                        if done {
                            self.state = State::Head;
                            msg_start = Some(i);
                            head_passed = false;
                        }
                    }
                    Err(why) => return Verdict::Refuse { at: msg_start.unwrap_or(0), head_passed, why },
                },
                State::Head => {
                    let parsed = if self.pending.is_empty() {
                        head::parse(&buf[i..])
                    } else {
                        let had = self.pending.len();
                        let add = (buf.len() - i).min(self.max_head + 1 - had.min(self.max_head));
                        self.pending.extend_from_slice(&buf[i..i + add]);
                        head::parse(&self.pending).map(|p| match p {
                            // Only the bytes of this read count as consumed here.
                            Parsed::Head(mut h) => {
                                h.len -= had;
                                Parsed::Head(h)
                            }
                            other => other,
                        })
                    };
                    if self.first {
                        // HTTP/2 with prior knowledge starts with its preface, which is no
                        // HTTP/1 request; judged once all of it is there.
                        let d = if self.pending.is_empty() { &buf[i..] } else { &self.pending[..] };
                        if H2_PREFACE.starts_with(&d[..d.len().min(H2_PREFACE.len())]) {
                            if d.len() >= H2_PREFACE.len() {
                                self.stop();
                            } else if self.pending.is_empty() {
                                self.pending = buf[i..].to_vec();
                            }
                            return Verdict::Pass;
                        }
                        self.first = false;
                    }
                    match parsed {
                        Err(why) => return Verdict::Refuse { at: msg_start.unwrap_or(0), head_passed: false, why },
                        Ok(Parsed::TooManyHeaders) => {
                            self.stop();
                            return Verdict::Pass;
                        }
                        Ok(Parsed::Partial) => {
                            if self.pending.is_empty() {
                                self.pending.extend_from_slice(&buf[i..]);
                            }
                            if self.pending.len() > self.max_head {
                                self.stop();
                            }
                            return Verdict::Pass;
                        }
                        Ok(Parsed::Head(h)) => {
                            self.pending.clear();
                            i += h.len;
                            self.state = match h.framing {
                                BodyFraming::None | BodyFraming::Length(0) => State::Head,
                                BodyFraming::Length(n) => State::Length(n),
                                BodyFraming::Chunked => State::Chunked(Chunked::default()),
                            };
                            if matches!(self.state, State::Head) {
                                msg_start = Some(i);
                            }
                        }
                    }
                }
            }
        }
        Verdict::Pass
    }
}
