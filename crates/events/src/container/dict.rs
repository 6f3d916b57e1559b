//! Dictionary columns, the same in every schema: the distinct values of a string field in
//! first-seen order, then a varint index per row, so a repeated service or operation name
//! costs a byte or two and a filter compares integers.
//!
//! ```text
//! varint      distinct values, then each as a length-prefixed string
//! varint...   per row, the index of its value
//! ```

use super::encoding::{Corrupt, Reader, put_str, put_varint};
use super::hash::FastMap;

/// A dictionary column being written.
pub struct Encoded<'a> {
    pub bytes: Vec<u8>,
    /// Where every `stride`th row's index starts in the column (for a row index).
    pub marks: Vec<u32>,
    /// The distinct values, in first-seen order.
    pub distinct: Vec<&'a str>,
}

/// The dictionary column of `values` (one per row), with a mark every `stride` rows.
pub fn encode<'a>(values: impl Iterator<Item = &'a str>, stride: usize) -> Encoded<'a> {
    let stride = stride.max(1);
    let mut dict: FastMap<&str, u64> = FastMap::default();
    let mut distinct: Vec<&str> = Vec::new();
    let mut idx = Vec::new();
    let mut marks = Vec::new();
    for (row, v) in values.enumerate() {
        if row % stride == 0 {
            marks.push(idx.len() as u32);
        }
        let next = dict.len() as u64;
        let i = *dict.entry(v).or_insert_with(|| {
            distinct.push(v);
            next
        });
        put_varint(&mut idx, i);
    }
    let mut bytes = Vec::with_capacity(idx.len() + distinct.iter().map(|s| s.len() + 2).sum::<usize>() + 8);
    put_varint(&mut bytes, distinct.len() as u64);
    for s in &distinct {
        put_str(&mut bytes, s);
    }
    let prefix = bytes.len() as u32;
    bytes.extend_from_slice(&idx);
    Encoded { bytes, marks: marks.into_iter().map(|m| m + prefix).collect(), distinct }
}

/// A dictionary column read back: the dictionary and each row's index into it.
#[derive(Debug, Default)]
pub struct Dict {
    pub values: Vec<String>,
    pub rows: Vec<u32>,
}

impl Dict {
    /// Reads a column of `n` rows; an index outside the dictionary is an error.
    pub fn read(bytes: &[u8], n: usize) -> Result<Dict, Corrupt> {
        let (values, start) = prefix(bytes)?;
        let mut r = Reader::new(bytes);
        r.pos = start;
        // Every row takes at least a byte: bounds the allocation on a damaged column.
        if n > bytes.len() - start {
            return Err(Corrupt);
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let i = r.varint()?;
            if i >= values.len() as u64 {
                return Err(Corrupt);
            }
            rows.push(i as u32);
        }
        Ok(Dict { values, rows })
    }

    /// The index of `v`, if any row has it.
    pub fn find(&self, v: &str) -> Option<u32> {
        self.values.iter().position(|x| x == v).map(|i| i as u32)
    }

    /// Row `row`'s value (`row` below the column's row count).
    pub fn get(&self, row: usize) -> &str {
        &self.values[self.rows[row] as usize]
    }
}

/// A dictionary column's dictionary, and where its per-row indexes begin.
pub fn prefix(bytes: &[u8]) -> Result<(Vec<String>, usize), Corrupt> {
    let mut r = Reader::new(bytes);
    let d = r.length()?;
    let mut values = Vec::with_capacity(d.min(1 << 20));
    for _ in 0..d {
        values.push(r.str()?);
    }
    Ok((values, r.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_marks_and_bad_indexes_are_refused() {
        let rows = ["a", "b", "a", "c", "a", "b", "b"];
        let e = encode(rows.iter().copied(), 3);
        assert_eq!(e.distinct, vec!["a", "b", "c"]);
        let d = Dict::read(&e.bytes, rows.len()).unwrap();
        assert_eq!((0..rows.len()).map(|i| d.get(i)).collect::<Vec<_>>(), rows);
        assert_eq!((d.find("c"), d.find("zz")), (Some(2), None));
        // A mark is where that row's index starts: reading from it gives the row's value.
        let mut r = Reader::new(&e.bytes);
        r.pos = e.marks[2] as usize;
        assert_eq!(d.values[r.varint().unwrap() as usize], rows[6]);
        assert!(Dict::read(&e.bytes, rows.len() + 1).is_err(), "more rows than the column holds");
        let mut bad = e.bytes.clone();
        *bad.last_mut().unwrap() = 9;
        assert!(Dict::read(&bad, rows.len()).is_err(), "an index outside the dictionary");
        assert!(Dict::read(&[0xff; 3], 1).is_err());
    }
}
