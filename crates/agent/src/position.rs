//! Where the agent is in each file, and how a file is recognised: its (device, inode) plus a
//! CRC of its first bytes (the head) and of the bytes just before the position (the tail).
//!
//! The head tells inode reuse and copytruncate apart from the same content growing; the tail
//! recognises a rotated copy (`app.log.1` made by copytruncate) as the content already read up
//! to the position, so the copy is read from there and no line is read twice or skipped.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes of a file's start covered by its head fingerprint.
pub const HEAD_BYTES: usize = 256;
/// Bytes before a position covered by its tail fingerprint.
pub const TAIL_BYTES: usize = 64;

/// A CRC-32 of `len` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub crc: u32,
}

impl Fingerprint {
    /// The fingerprint of up to `max` bytes of `file` at `offset` (fewer at end of file).
    pub fn read(file: &File, offset: u64, max: usize) -> std::io::Result<Fingerprint> {
        let mut buf = [0u8; HEAD_BYTES];
        let want = max.min(HEAD_BYTES);
        let n = read_full_at(file, &mut buf[..want], offset)?;
        Ok(Fingerprint { len: n as u32, crc: crc32fast::hash(&buf[..n]) })
    }

    /// Whether `file` has exactly these bytes at `offset`.
    pub fn matches(&self, file: &File, offset: u64) -> bool {
        match Fingerprint::read(file, offset, self.len as usize) {
            Ok(fp) => fp == *self,
            Err(_) => false,
        }
    }

    /// The tail fingerprint for `offset`: the bytes just before it.
    pub fn tail(file: &File, offset: u64) -> std::io::Result<Fingerprint> {
        let len = offset.min(TAIL_BYTES as u64);
        Fingerprint::read(file, offset - len, len as usize)
    }
}

/// Reads until `buf` is full or end of file; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A file's (device, inode).
pub type FileKey = (u64, u64);

/// A durable position in one file: everything before `offset` is shipped (or, in a buffered
/// batch, on its way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub dev: u64,
    pub ino: u64,
    pub head: Fingerprint,
    pub offset: u64,
    pub tail: Fingerprint,
    /// The path it was last seen at (informative).
    pub path: String,
}

impl FilePosition {
    pub fn key(&self) -> FileKey {
        (self.dev, self.ino)
    }
}

/// A change a batch makes to the checkpoint once acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PositionUpdate {
    Set(FilePosition),
    /// The file is gone; forget it.
    Forget {
        dev: u64,
        ino: u64,
    },
}

impl PositionUpdate {
    pub fn key(&self) -> FileKey {
        match self {
            PositionUpdate::Set(p) => p.key(),
            PositionUpdate::Forget { dev, ino } => (*dev, *ino),
        }
    }
}

/// Applies updates to a position table.
pub fn apply(table: &mut std::collections::HashMap<FileKey, FilePosition>, updates: &[PositionUpdate]) {
    for u in updates {
        match u {
            PositionUpdate::Set(p) => {
                table.insert(p.key(), p.clone());
            }
            PositionUpdate::Forget { dev, ino } => {
                table.remove(&(*dev, *ino));
            }
        }
    }
}
