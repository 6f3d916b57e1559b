//! Reading sealed blocks: [`Loaded`], an open block whose columns the container reads
//! (`pread`, checksum, zstd, the shared column cache) and this module parses into rows
//! (every row, or one trace's run from the row index's checkpoint before it).

use super::*;
use crate::container::block::OpenBlock;

/// An open block whose columns are read and decompressed on demand.
pub struct Loaded {
    open: OpenBlock,
    pub n: usize,
    pub min_start: u64,
}

impl Block {
    pub fn load(&self) -> Result<Loaded, Corrupt> {
        if self.meta.spans as usize > MAX_SPANS {
            return Err(Corrupt);
        }
        Ok(Loaded { open: self.framed.reader()?, n: self.meta.spans as usize, min_start: self.meta.min_start })
    }
}

impl Loaded {
    /// (compressed, raw) bytes of each column.
    pub fn sizes(&self) -> Vec<(usize, usize)> {
        self.open.sizes()
    }

    /// Column `c`, decompressed.
    pub fn column(&self, c: u8) -> Result<Arc<Vec<u8>>, Corrupt> {
        self.open.column(c as usize)
    }

    /// The runs of traces: (trace id, first row, span count), ascending by trace id.
    pub fn runs(&self) -> Result<Vec<(TraceId, usize, usize)>, Corrupt> {
        let c = self.column(col::TRACE)?;
        let mut r = Reader::new(&c);
        let k = r.length()?;
        let mut out = Vec::with_capacity(k);
        let mut row = 0usize;
        for _ in 0..k {
            let id = TraceId(r.bytes(16)?.try_into().map_err(|_| Corrupt)?);
            let len = usize::try_from(r.varint()?).map_err(|_| Corrupt)?;
            if len == 0 || len > self.n - row {
                return Err(Corrupt);
            }
            out.push((id, row, len));
            row += len;
        }
        if row != self.n { Err(Corrupt) } else { Ok(out) }
    }

    /// The trace id of every row.
    pub fn trace_ids(&self) -> Result<Vec<TraceId>, Corrupt> {
        let mut out = Vec::with_capacity(self.n);
        for (id, _, len) in self.runs()? {
            out.extend(std::iter::repeat_n(id, len));
        }
        Ok(out)
    }

    /// The rows of trace `id` (empty when it is not here).
    pub fn rows_of(&self, id: &TraceId) -> Result<std::ops::Range<usize>, Corrupt> {
        let runs = self.runs()?;
        Ok(match runs.binary_search_by(|r| r.0.cmp(id)) {
            Ok(i) => runs[i].1..runs[i].1 + runs[i].2,
            Err(_) => 0..0,
        })
    }

    pub fn services(&self) -> Result<Dict, Corrupt> {
        Dict::read(&self.column(col::SERVICE)?, self.n)
    }

    pub fn names(&self) -> Result<Dict, Corrupt> {
        Dict::read(&self.column(col::NAME)?, self.n)
    }

    pub fn starts(&self) -> Result<Vec<u64>, Corrupt> {
        let c = self.column(col::START)?;
        let mut r = Reader::new(&c);
        let mut out = Vec::with_capacity(self.n);
        for (_, first, len) in self.runs()? {
            for i in first..first + len {
                let from = if i == first || i % STRIDE == 0 { self.min_start } else { out[i - 1] };
                out.push(from.checked_add(r.varint()?).ok_or(Corrupt)?);
            }
        }
        Ok(out)
    }

    pub fn durations(&self) -> Result<Vec<u64>, Corrupt> {
        let c = self.column(col::DURATION)?;
        let mut r = Reader::new(&c);
        (0..self.n).map(|_| r.varint()).collect()
    }

    pub fn flags(&self) -> Result<Arc<Vec<u8>>, Corrupt> {
        let c = self.column(col::FLAGS)?;
        if c.len() != self.n { Err(Corrupt) } else { Ok(c) }
    }

    pub fn attributes(&self) -> Result<AttrTable, Corrupt> {
        AttrTable::read(&self.column(col::ATTRS)?, self.n)
    }

    /// The span id of every row.
    pub fn span_ids(&self) -> Result<Vec<SpanId>, Corrupt> {
        let c = self.column(col::SPAN)?;
        if c.len() != self.n * 8 {
            return Err(Corrupt);
        }
        Ok(c.chunks_exact(8).map(|b| SpanId(b.try_into().unwrap_or([0; 8]))).collect())
    }

    /// The parent of every row.
    fn parents(&self, spans: &[SpanId]) -> Result<Vec<Option<SpanId>>, Corrupt> {
        let c = self.column(col::PARENT)?;
        let ext = self.column(col::PARENT_EXT)?;
        let (mut r, mut e) = (Reader::new(&c), Reader::new(&ext));
        let mut out = Vec::with_capacity(self.n);
        for i in 0..self.n {
            out.push(match r.varint()? {
                0 => None,
                1 => Some(SpanId(e.bytes(8)?.try_into().map_err(|_| Corrupt)?)),
                v => {
                    let p = i as i64 + unzigzag(v - 2);
                    Some(*spans.get(usize::try_from(p).map_err(|_| Corrupt)?).ok_or(Corrupt)?)
                }
            });
        }
        Ok(out)
    }

    /// The origin (resource and scope) of every row.
    pub fn origins(&self) -> Result<OriginTable, Corrupt> {
        OriginTable::read(&self.column(col::ORIGIN)?, self.n, |_| true)
    }

    /// The origin column's dictionaries, with its rows only when `rows_wanted` accepts the
    /// block's resources (a search skips the per-row part when no resource can match).
    pub fn origins_if(&self, rows_wanted: impl FnOnce(&[Arc<Resource>]) -> bool) -> Result<OriginTable, Corrupt> {
        OriginTable::read(&self.column(col::ORIGIN)?, self.n, rows_wanted)
    }

    /// Where checkpoint `k` (row `k * STRIDE`) starts in each column of [`col::INDEXED`].
    fn checkpoint(&self, k: usize) -> Result<[usize; col::INDEXED.len()], Corrupt> {
        let c = self.column(col::ROWS)?;
        let w = col::INDEXED.len() * 4;
        let entry = c.get(k * w..(k + 1) * w).ok_or(Corrupt)?;
        let mut out = [0usize; col::INDEXED.len()];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u32::from_le_bytes(entry[i * 4..i * 4 + 4].try_into().map_err(|_| Corrupt)?) as usize;
        }
        Ok(out)
    }

    /// The spans of the contiguous rows `range` (a trace's run), reading each column from
    /// the row-index checkpoint before it instead of from the top.
    pub fn spans_range(&self, range: std::ops::Range<usize>) -> Result<Vec<Span>, Corrupt> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        if range.end > self.n {
            return Err(Corrupt);
        }
        let runs = self.runs()?;
        let base = range.start / STRIDE * STRIDE;
        let marks = self.checkpoint(range.start / STRIDE)?;
        let spans = self.column(col::SPAN)?;
        let span_at = |row: usize| -> Result<SpanId, Corrupt> {
            Ok(SpanId(spans.get(row * 8..row * 8 + 8).ok_or(Corrupt)?.try_into().map_err(|_| Corrupt)?))
        };
        let flags = self.flags()?;
        let (service_col, name_col, attrs_col) =
            (self.column(col::SERVICE)?, self.column(col::NAME)?, self.column(col::ATTRS)?);
        let (services, _) = dict::prefix(&service_col)?;
        let (names, _) = dict::prefix(&name_col)?;
        let (keys, values, apos) = attr_prefix(&attrs_col)?;
        let origin_col = self.column(col::ORIGIN)?;
        let (resources, scopes) = if origin_col.is_empty() {
            Default::default()
        } else {
            codec::Origins::get(&mut Reader::new(&origin_col))?
        };
        // (column, where its per-row part begins), in the order of `col::INDEXED`.
        let parts: Vec<(Arc<Vec<u8>>, usize)> = vec![
            (self.column(col::PARENT)?, 0),
            (self.column(col::PARENT_EXT)?, 0),
            (self.column(col::START)?, 0),
            (self.column(col::DURATION)?, 0),
            // The dictionary columns' marks count from the column's start.
            (service_col.clone(), 0),
            (name_col.clone(), 0),
            (self.column(col::TEXT)?, 0),
            (attrs_col.clone(), apos),
            (self.column(col::EVENTS)?, 0),
            (origin_col.clone(), 0),
            (self.column(col::LINKS)?, 0),
        ];
        let mut r = Vec::with_capacity(parts.len());
        for ((c, prefix), mark) in parts.iter().zip(marks) {
            r.push(Reader::new(c.get(prefix + mark..).ok_or(Corrupt)?));
        }
        let mut run = runs.partition_point(|(_, first, _)| *first <= base).saturating_sub(1);
        let mut prev_start = self.min_start;
        let mut out = Vec::with_capacity(range.len());
        for i in base..range.end {
            while runs.get(run).is_some_and(|(_, first, len)| i >= first + len) {
                run += 1;
            }
            let (trace, first, _) = *runs.get(run).ok_or(Corrupt)?;
            let parent = match r[0].varint()? {
                0 => None,
                1 => Some(SpanId(r[1].bytes(8)?.try_into().map_err(|_| Corrupt)?)),
                v => Some(span_at(usize::try_from(i as i64 + unzigzag(v - 2)).map_err(|_| Corrupt)?)?),
            };
            let delta = r[2].varint()?;
            let from = if i == first || i % STRIDE == 0 { self.min_start } else { prev_start };
            let start = from.checked_add(delta).ok_or(Corrupt)?;
            prev_start = start;
            let duration = r[3].varint()?;
            let (svc, name) = (r[4].varint()? as usize, r[5].varint()? as usize);
            let wanted = i >= range.start;
            if !wanted {
                codec::skip_str(&mut r[6])?;
                codec::skip_str(&mut r[6])?;
                for _ in 0..r[7].length()? {
                    r[7].varint()?;
                    r[7].varint()?;
                }
                codec::skip_events(&mut r[8])?;
                if !r[9].done() {
                    origin_indexes(&mut r[9], &resources, &scopes)?;
                }
                if !r[10].done() {
                    codec::skip_links(&mut r[10])?;
                }
                continue;
            }
            let (msg, state) = (r[6].str()?, r[6].str()?);
            let count = r[7].length()?;
            let mut attributes = Vec::with_capacity(count);
            for _ in 0..count {
                let (k, v) = (r[7].varint()? as usize, r[7].varint()? as usize);
                attributes.push(KeyValue {
                    key: keys.get(k).ok_or(Corrupt)?.clone().into(),
                    value: values.get(v).ok_or(Corrupt)?.clone(),
                });
            }
            let (kind, status, span_flags) = parse_flags(*flags.get(i).ok_or(Corrupt)?);
            let (resource, scope) = if r[9].done() {
                (Resource::none(), Scope::none())
            } else {
                let (a, b) = origin_indexes(&mut r[9], &resources, &scopes)?;
                (resources[a as usize].clone(), scopes[b as usize].clone())
            };
            out.push(Span {
                trace_id: trace,
                span_id: span_at(i)?,
                parent_span_id: parent,
                trace_state: state,
                service: services.get(svc).ok_or(Corrupt)?.clone(),
                name: names.get(name).ok_or(Corrupt)?.clone(),
                kind,
                start_unix_nanos: start,
                end_unix_nanos: start.saturating_add(duration),
                status,
                status_message: msg,
                attributes,
                events: codec::get_events(&mut r[8])?,
                links: if r[10].done() { Vec::new() } else { codec::get_links(&mut r[10])? },
                resource,
                scope,
                flags: span_flags,
            });
        }
        Ok(out)
    }

    /// The spans of rows `rows` (any order, no duplicates).
    pub fn spans(&self, rows: &[usize]) -> Result<Vec<Span>, Corrupt> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let runs = self.runs()?;
        let ids = self.span_ids()?;
        let parents = self.parents(&ids)?;
        let (starts, durations, flags) = (self.starts()?, self.durations()?, self.flags()?);
        let (services, names, attrs) = (self.services()?, self.names()?, self.attributes()?);
        let text = self.column(col::TEXT)?;
        let events = self.column(col::EVENTS)?;
        let links = self.column(col::LINKS)?;
        let origins = self.origins()?;
        let (mut rt, mut re, mut rl) = (Reader::new(&text), Reader::new(&events), Reader::new(&links));
        let mut wanted = vec![false; self.n];
        for r in rows {
            *wanted.get_mut(*r).ok_or(Corrupt)? = true;
        }
        let mut out = Vec::with_capacity(rows.len());
        for (trace, first, len) in runs {
            for i in first..first + len {
                if !wanted[i] {
                    codec::skip_str(&mut rt)?;
                    codec::skip_str(&mut rt)?;
                    codec::skip_events(&mut re)?;
                    if !rl.done() {
                        codec::skip_links(&mut rl)?;
                    }
                    continue;
                }
                let (msg, state) = (rt.str()?, rt.str()?);
                let (kind, status, span_flags) = parse_flags(flags[i]);
                out.push(Span {
                    trace_id: trace,
                    span_id: ids[i],
                    parent_span_id: parents[i],
                    trace_state: state,
                    service: services.get(i).to_owned(),
                    name: names.get(i).to_owned(),
                    kind,
                    start_unix_nanos: starts[i],
                    end_unix_nanos: starts[i].saturating_add(durations[i]),
                    status,
                    status_message: msg,
                    attributes: attrs.attributes(i),
                    events: codec::get_events(&mut re)?,
                    links: if rl.done() { Vec::new() } else { codec::get_links(&mut rl)? },
                    resource: origins.resource(i),
                    scope: origins.scope(i),
                    flags: span_flags,
                });
            }
        }
        Ok(out)
    }
}
