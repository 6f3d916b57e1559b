//! Keep and drop rules per source.

use crate::record::Record;
use regex::Regex;

/// One compiled rule; it matches when every condition it sets holds.
#[derive(Debug)]
pub struct Filter {
    pub keep: bool,
    /// Normalised severities.
    pub levels: Vec<String>,
    pub field: Option<String>,
    pub equals: Option<String>,
    pub regex: Option<Regex>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        if !self.levels.is_empty() && !self.levels.contains(&r.severity) {
            return false;
        }
        let value = match &self.field {
            Some(f) => match r.attributes.iter().find(|(k, _)| k == f) {
                Some((_, v)) => Some(v.as_str()),
                None => return false,
            },
            None => None,
        };
        if let Some(eq) = &self.equals
            && value != Some(eq.as_str())
        {
            return false;
        }
        if let Some(re) = &self.regex
            && !re.is_match(value.unwrap_or(&r.body))
        {
            return false;
        }
        true
    }
}

/// Whether a record passes: no `drop` rule matches and, if there are `keep` rules, one does.
pub fn passes(filters: &[Filter], r: &Record) -> bool {
    let mut has_keep = false;
    let mut kept = false;
    for f in filters {
        if f.keep {
            has_keep = true;
            kept = kept || f.matches(r);
        } else if f.matches(r) {
            return false;
        }
    }
    !has_keep || kept
}
