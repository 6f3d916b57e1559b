//! A chunked body (RFC 9112 §7.1) checked byte by byte as it streams past, to find where it
//! ends and to refuse invalid framing: a size that is not 1 to 16 hex digits, an extension
//! with a control character or a bare CR or LF, data not followed by CRLF, a bad trailer line.

use super::Refusal;

/// Longest chunk-extension or trailer section accepted, in bytes.
const MAX_EXTENSION: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the chunk size; `digits` so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CRLF.
    SizeSpace,
    /// In a chunk extension, `len` bytes so far.
    Extension {
        len: usize,
    },
    /// After the CR that ends the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After the CR of a trailer line; `empty` when the line was empty (the end).
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Follows one chunked body.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: State,
    size: u64,
    trailer_bytes: usize,
    data: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size { digits: 0 }, size: 0, trailer_bytes: 0, data: 0 }
    }
}

impl Chunked {
    /// Reads `buf`; returns how many bytes belong to the body and whether it ended there.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), Refusal> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Done {
                return Ok((i, true));
            }
            if self.state == State::Data {
                let take = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                i += take;
                self.size -= take as u64;
                self.data += take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok((i, self.state == State::Done))
    }

    /// Like [`Chunked::feed`], appending the body to `out` in normal form as it goes: chunk
    /// extensions and the whitespace before them left out, everything else as it came. What
    /// an upstream then reads is unambiguous even if it parses extensions differently.
    pub fn feed_normalised(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), Refusal> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Done {
                return Ok((i, true));
            }
            if self.state == State::Data {
                let take = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                out.extend_from_slice(&buf[i..i + take]);
                i += take;
                self.size -= take as u64;
                self.data += take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(buf[i])?;
            if !matches!(self.state, State::SizeSpace | State::Extension { .. }) {
                out.push(buf[i]);
            }
            i += 1;
        }
        Ok((i, self.state == State::Done))
    }

    /// Bytes of chunk data seen so far (framing not counted).
    pub fn data_len(&self) -> u64 {
        self.data
    }

    fn step(&mut self, b: u8) -> Result<(), Refusal> {
        self.state = match self.state {
            State::Size { digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == 16 {
                        return Err(Refusal::InvalidChunkSize);
                    }
                    self.size = self.size << 4 | u64::from(hex(b));
                    State::Size { digits: digits + 1 }
                }
                _ if digits == 0 => return Err(Refusal::InvalidChunkSize),
                b'\r' => State::SizeLf,
                b';' => State::Extension { len: 0 },
                b' ' | b'\t' => State::SizeSpace,
                _ => return Err(Refusal::InvalidChunkSize),
            },
            State::SizeSpace => match b {
                b' ' | b'\t' => State::SizeSpace,
                b';' => State::Extension { len: 0 },
                b'\r' => State::SizeLf,
                _ => return Err(Refusal::InvalidChunkSize),
            },
            State::Extension { len } => match b {
                b'\r' => State::SizeLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff if len < MAX_EXTENSION => State::Extension { len: len + 1 },
                _ => return Err(Refusal::InvalidChunkExtension),
            },
            State::SizeLf => match b {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => State::Data,
                _ => return Err(Refusal::InvalidChunkExtension),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { digits: 0 },
            State::DataCr | State::DataLf => return Err(Refusal::InvalidChunkFraming),
            State::TrailerStart | State::Trailer => {
                let start = self.state == State::TrailerStart;
                self.trailer_bytes += 1;
                match b {
                    _ if self.trailer_bytes > MAX_TRAILERS => return Err(Refusal::InvalidChunkFraming),
                    b'\r' => State::TrailerLf { empty: start },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => State::Trailer,
                    _ => return Err(Refusal::InvalidChunkFraming),
                }
            }
            State::TrailerLf { empty } => match b {
                b'\n' if empty => State::Done,
                b'\n' => State::TrailerStart,
                _ => return Err(Refusal::InvalidChunkFraming),
            },
            State::Data | State::Done => self.state,
        };
        Ok(())
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}
