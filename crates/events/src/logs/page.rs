//! One page of a sealed block, decompressed column by column as a filter or an aggregation
//! asks for them: `time` first, then only what the query names (the body for words, `ids`
//! for a trace id, one attribute column for `user_id:`), and a whole record only for a row
//! that is returned. Columns come through the container's decompressed-column cache, so a
//! page a busy query keeps reading is decompressed once.
//!
//! A column that fails to decompress or decode marks the page damaged and reads as empty;
//! the scan checks [`Page::damaged`] after the page and reports the block.

use super::block::{Block, col, unzigzag, value_text};
use super::codec::{Damaged, Reader};
use super::eval::{Fields, attr_lookup};
use crate::container::block::OpenBlock;
use crate::container::dict::Dict;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::{AttrValue, KeyValue};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::sync::Arc;

/// An attribute column: distinct values (and their text) and each row's index, `u32::MAX`
/// for none.
#[derive(Default)]
struct AttrColumn {
    values: Vec<AttrValue>,
    texts: Vec<String>,
    rows: Vec<u32>,
}

/// The bodies of a page, concatenated, and where each ends.
#[derive(Default)]
struct Bodies {
    all: String,
    ends: Vec<usize>,
}

/// The `rest` column and where each row starts in it (after its observed-time delta).
#[derive(Default)]
struct Rest {
    bytes: Arc<Vec<u8>>,
    starts: Vec<usize>,
    observed: Vec<u64>,
}

/// One page of a block, read lazily from the block's file.
pub struct Page<'a> {
    block: &'a Block,
    file: &'a OpenBlock,
    p: usize,
    n: usize,
    bytes_read: Cell<u64>,
    damaged: Cell<bool>,
    times: OnceCell<Vec<u64>>,
    severity: OnceCell<Arc<Vec<u8>>>,
    severity_text: OnceCell<Dict>,
    service: OnceCell<Dict>,
    instance: OnceCell<Dict>,
    ids: OnceCell<Vec<(Option<TraceId>, Option<SpanId>)>>,
    bodies: OnceCell<Bodies>,
    rest: OnceCell<Rest>,
    attrs: Vec<OnceCell<AttrColumn>>,
}

impl<'a> Page<'a> {
    /// Page `p` of `block`, whose file is open as `file` ([`Block::open`]). Nothing is read
    /// yet.
    pub fn new(block: &'a Block, file: &'a OpenBlock, p: usize) -> Self {
        Page {
            block,
            file,
            p,
            n: block.pages.get(p).map_or(0, |m| m.count),
            bytes_read: Cell::new(0),
            damaged: Cell::new(false),
            times: OnceCell::new(),
            severity: OnceCell::new(),
            severity_text: OnceCell::new(),
            service: OnceCell::new(),
            instance: OnceCell::new(),
            ids: OnceCell::new(),
            bodies: OnceCell::new(),
            rest: OnceCell::new(),
            attrs: block.attr_columns.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// Records in the page.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether a column read so far was damaged.
    pub fn damaged(&self) -> bool {
        self.damaged.get()
    }

    /// Compressed bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.get()
    }

    fn column(&self, c: usize) -> Result<Arc<Vec<u8>>, Damaged> {
        self.bytes_read.set(self.bytes_read.get() + self.block.column_bytes(self.p, c));
        self.block.read_column(self.file, self.p, c)
    }

    /// Runs a column decoder once; damage marks the page and leaves the column empty.
    fn load<'s, T: Default>(&'s self, cell: &'s OnceCell<T>, decode: impl FnOnce() -> Result<T, Damaged>) -> &'s T {
        cell.get_or_init(|| {
            decode().unwrap_or_else(|_| {
                self.damaged.set(true);
                T::default()
            })
        })
    }

    /// Timestamps of the page's records, in order.
    pub fn times(&self) -> &[u64] {
        self.load::<Vec<u64>>(&self.times, || {
            let c = self.column(col::TIME)?;
            let mut r = Reader::new(&c);
            let mut t = 0u64;
            (0..self.n)
                .map(|_| {
                    t = t.checked_add(r.varint()?).ok_or(Damaged)?;
                    Ok(t)
                })
                .collect()
        })
    }

    fn severities(&self) -> &[u8] {
        self.load::<Arc<Vec<u8>>>(&self.severity, || {
            let c = self.column(col::SEVERITY)?;
            if c.len() != self.n {
                return Err(Damaged);
            }
            Ok(c)
        })
    }

    fn text_dict(&self, c: usize) -> &Dict {
        let cell = match c {
            col::SEVERITY_TEXT => &self.severity_text,
            col::SERVICE => &self.service,
            _ => &self.instance,
        };
        self.load(cell, || Dict::read(&self.column(c)?, self.n).map_err(|_| Damaged))
    }

    fn text_at(&self, c: usize, i: usize) -> &str {
        let d = self.text_dict(c);
        d.rows.get(i).and_then(|&x| d.values.get(x as usize)).map_or("", String::as_str)
    }

    fn ids(&self) -> &[(Option<TraceId>, Option<SpanId>)] {
        self.load::<Vec<_>>(&self.ids, || {
            let c = self.column(col::IDS)?;
            let mut r = Reader::new(&c);
            (0..self.n)
                .map(|_| {
                    let flags = r.byte()?;
                    let t = if flags & 1 != 0 {
                        Some(TraceId(r.bytes(16)?.try_into().map_err(|_| Damaged)?))
                    } else {
                        None
                    };
                    let s =
                        if flags & 2 != 0 { Some(SpanId(r.bytes(8)?.try_into().map_err(|_| Damaged)?)) } else { None };
                    Ok((t, s))
                })
                .collect()
        })
    }

    /// The body of row `i`.
    pub fn body(&self, i: usize) -> &str {
        let b = self.load(&self.bodies, || {
            let c = self.column(col::BODY)?;
            let mut r = Reader::new(&c);
            let mut all = String::with_capacity(c.len());
            let mut ends = Vec::with_capacity(self.n);
            for _ in 0..self.n {
                all.push_str(r.str_ref()?);
                ends.push(all.len());
            }
            Ok(Bodies { all, ends })
        });
        let Some(&end) = b.ends.get(i) else { return "" };
        let start = if i == 0 { 0 } else { b.ends[i - 1] };
        b.all.get(start..end).unwrap_or("")
    }

    fn rest(&self) -> &Rest {
        self.load(&self.rest, || {
            let bytes = self.column(col::REST)?;
            let mut r = Reader::new(&bytes);
            let mut starts = Vec::with_capacity(self.n);
            let mut observed = Vec::with_capacity(self.n);
            let mut obs = 0u64;
            for _ in 0..self.n {
                obs = obs.wrapping_add(unzigzag(r.varint()?) as u64);
                observed.push(obs);
                starts.push(bytes.len() - r.remaining());
                skip_rest_row(&mut r)?;
            }
            Ok(Rest { starts, observed, bytes })
        })
    }

    fn attr_column(&self, c: usize) -> &AttrColumn {
        let Some(cell) = self.attrs.get(c) else {
            self.damaged.set(true);
            static EMPTY: std::sync::OnceLock<AttrColumn> = std::sync::OnceLock::new();
            return EMPTY.get_or_init(AttrColumn::default);
        };
        self.load(cell, || {
            let bytes = self.column(col::FIXED + c)?;
            let mut r = Reader::new(&bytes);
            let n = r.varint()? as usize;
            if n > bytes.len() {
                return Err(Damaged);
            }
            let values = (0..n).map(|_| r.value()).collect::<Result<Vec<_>, _>>()?;
            let texts = values.iter().map(|v| value_text(v).into_owned()).collect();
            let rows = (0..self.n)
                .map(|_| match r.varint()? as usize {
                    0 => Ok(u32::MAX),
                    i if i <= n => Ok(i as u32 - 1),
                    _ => Err(Damaged),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AttrColumn { values, texts, rows })
        })
    }

    /// Row `i`'s value in attribute column `c`: its index in the column's values.
    fn attr_index(&self, c: usize, i: usize) -> Option<usize> {
        match self.attr_column(c).rows.get(i) {
            Some(&x) if x != u32::MAX => Some(x as usize),
            _ => None,
        }
    }

    /// Row `i`'s resource and attributes, decoded from `rest` and the attribute columns.
    fn attributes(&self, i: usize) -> Result<(Vec<KeyValue>, Vec<KeyValue>), Damaged> {
        let rest = self.rest();
        let start = *rest.starts.get(i).ok_or(Damaged)?;
        let mut r = Reader::new(rest.bytes.get(start..).ok_or(Damaged)?);
        let resource = r.attrs()?;
        let n = r.varint()? as usize;
        if n > r.remaining() {
            return Err(Damaged);
        }
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            match r.varint()? as usize {
                0 => {
                    let key = r.str()?;
                    attributes.push(KeyValue { key: key.into(), value: r.value()? });
                }
                c => {
                    let key = self.block.attr_columns.get(c - 1).ok_or(Damaged)?;
                    let col = self.attr_column(c - 1);
                    let at = self.attr_index(c - 1, i).ok_or(Damaged)?;
                    let value = col.values.get(at).ok_or(Damaged)?.clone();
                    attributes.push(KeyValue { key: key.clone().into(), value });
                }
            }
        }
        Ok((resource, attributes))
    }

    /// Row `i` as a whole record.
    pub fn record(&self, i: usize) -> Result<LogRecord, Damaged> {
        if i >= self.n {
            return Err(Damaged);
        }
        let Ok((resource, attributes)) = self.attributes(i) else {
            self.damaged.set(true);
            return Err(Damaged);
        };
        let (trace_id, span_id) = self.ids().get(i).copied().unwrap_or_default();
        let r = LogRecord {
            unix_nanos: self.times().get(i).copied().unwrap_or_default(),
            observed_unix_nanos: self.rest().observed.get(i).copied().unwrap_or_default(),
            severity: Severity(self.severities().get(i).copied().unwrap_or_default().min(24)),
            severity_text: self.text_at(col::SEVERITY_TEXT, i).to_owned(),
            body: self.body(i).to_owned(),
            service: self.text_at(col::SERVICE, i).to_owned(),
            instance: self.text_at(col::INSTANCE, i).to_owned(),
            resource,
            attributes,
            trace_id,
            span_id,
        };
        if self.damaged() { Err(Damaged) } else { Ok(r) }
    }

    /// A field's values and each row's index into them (`u32::MAX`: not in the column, ask
    /// the row), when the field has a dictionary column: service, instance, or an attribute
    /// key with its own column.
    pub fn codes(&self, name: &str) -> Option<(&[String], &[u32])> {
        match name {
            "service" | "instance" => {
                let d = self.text_dict(if name == "service" { col::SERVICE } else { col::INSTANCE });
                Some((&d.values, &d.rows))
            }
            "body" | "level" | "trace_id" | "span_id" => None,
            _ => {
                let c = self.block.attr_columns.iter().position(|k| k == name)?;
                let a = self.attr_column(c);
                Some((&a.texts, &a.rows))
            }
        }
    }

    /// Row `i` for filters and aggregations.
    pub fn row(&self, i: usize) -> PageRow<'_, 'a> {
        PageRow { page: self, i }
    }
}

/// Skips one row of `rest` after its observed-time delta.
fn skip_rest_row(r: &mut Reader<'_>) -> Result<(), Damaged> {
    let skip_value = |r: &mut Reader<'_>| -> Result<(), Damaged> {
        match r.byte()? {
            0 => r.str_ref().map(|_| ()),
            1 | 2 => r.bytes(8).map(|_| ()),
            3 | 4 => Ok(()),
            _ => Err(Damaged),
        }
    };
    for _ in 0..r.varint()? {
        r.str_ref()?;
        skip_value(r)?;
    }
    for _ in 0..r.varint()? {
        if r.varint()? == 0 {
            r.str_ref()?;
            skip_value(r)?;
        }
    }
    Ok(())
}

/// One row of a page, readable by filters ([`Fields`]) without decoding the record.
pub struct PageRow<'p, 'a> {
    page: &'p Page<'a>,
    i: usize,
}

impl PageRow<'_, '_> {
    pub fn unix_nanos(&self) -> u64 {
        self.page.times().get(self.i).copied().unwrap_or_default()
    }

    pub fn record(&self) -> Result<LogRecord, Damaged> {
        self.page.record(self.i)
    }
}

impl Fields for PageRow<'_, '_> {
    fn body(&self) -> &str {
        self.page.body(self.i)
    }

    fn severity(&self) -> (Severity, &str) {
        let s = Severity(self.page.severities().get(self.i).copied().unwrap_or_default().min(24));
        (s, self.page.text_at(col::SEVERITY_TEXT, self.i))
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let (p, i) = (self.page, self.i);
        match name {
            "body" => Some(Cow::Borrowed(p.body(i))),
            "service" => Some(Cow::Borrowed(p.text_at(col::SERVICE, i))),
            "instance" => Some(Cow::Borrowed(p.text_at(col::INSTANCE, i))),
            "level" => Some(Cow::Borrowed(self.severity().0.name())),
            "trace_id" => p.ids().get(i).and_then(|x| x.0).map(|t| Cow::Owned(t.to_hex())),
            "span_id" => p.ids().get(i).and_then(|x| x.1).map(|s| Cow::Owned(s.to_hex())),
            _ => {
                // A row's first attribute of a key lives in the key's column, and attributes
                // are looked up before the resource: a value there is the answer.
                if let Some(c) = p.block.attr_columns.iter().position(|k| k == name)
                    && let Some(at) = p.attr_index(c, i)
                {
                    return p.attr_column(c).texts.get(at).map(|t| Cow::Borrowed(t.as_str()));
                }
                let Ok((resource, attributes)) = p.attributes(i) else {
                    p.damaged.set(true);
                    return None;
                };
                attr_lookup(&attributes, &resource, name).map(|v| Cow::Owned(v.into_owned()))
            }
        }
    }
}
