//! Resolving label matchers to series ids through an inverted index, shared by the head
//! and persisted blocks: each matcher becomes a union of the postings lists of the label
//! values it accepts, intersected across matchers. A matcher that accepts the empty string
//! also selects series without the label (Prometheus's rule), so it instead subtracts the
//! series whose value it rejects.

use crate::storage::Matcher;

/// An inverted index: sorted series ids per `name=value` pair.
pub trait PostingsIndex {
    /// Every series id, ascending.
    fn all_ids(&self) -> Vec<u32>;
    /// The ids of the series with `name=value`.
    fn postings(&self, name: &str, value: &str) -> Option<&[u32]>;
    /// Calls `f` with every value of label `name` and its postings.
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32]));
}

/// The ids of the series passing every matcher, ascending.
pub fn select_ids(ix: &impl PostingsIndex, matchers: &[Matcher]) -> Vec<u32> {
    let mut result: Option<Vec<u32>> = None;
    let mut subtract: Vec<Vec<u32>> = Vec::new();
    for m in matchers {
        if result.as_ref().is_some_and(|r| r.is_empty()) {
            return Vec::new();
        }
        let selected = if let Matcher::Equal(n, v) = m
            && !v.is_empty()
        {
            ix.postings(n, v).map(<[u32]>::to_vec).unwrap_or_default()
        } else {
            let accepts_empty = m.matches("");
            let mut lists: Vec<&[u32]> = Vec::new();
            let mut owned: Vec<Vec<u32>> = Vec::new();
            ix.for_each_value(m.name(), &mut |v, ids| {
                if m.matches(v) != accepts_empty {
                    owned.push(ids.to_vec());
                }
            });
            lists.extend(owned.iter().map(Vec::as_slice));
            let u = union(&lists);
            if accepts_empty {
                subtract.push(u);
                continue;
            }
            u
        };
        result = Some(match result {
            None => selected,
            Some(r) => intersect(&r, &selected),
        });
    }
    let mut ids = result.unwrap_or_else(|| ix.all_ids());
    for s in subtract {
        ids = difference(&ids, &s);
    }
    ids
}

fn union(lists: &[&[u32]]) -> Vec<u32> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut all: Vec<u32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// Intersection of two ascending lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            !(j < b.len() && b[j] == *x)
        })
        .collect()
}
