//! Central configuration: versioned text values keyed by application, profile and key.
//!
//! Every write makes a new version (with time, author and comment) and keeps the old ones;
//! a delete writes a tombstone version, so history survives it; a rollback writes a new
//! version equal to an old one. Writes can be compare-and-set on the current version.
//! Values are kept exactly as written (a property value, or a whole properties, YAML or
//! JSON document). Every change bumps the global index and enters a bounded change log
//! that long-poll and SSE watchers read.

use crate::error::{ControlError, Result};
use crate::index::Index;
use crate::store::{CONFIG, Op, Store};
use serde::{Deserialize, Serialize};
use signalbox_core::traffic;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

const SEP: char = '\u{1f}';
const CHANGE_LOG: usize = 10_000;

/// Limits on what is stored.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_value_bytes: 1024 * 1024, max_keys: 10_000 }
    }
}

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub application: String,
    pub profile: String,
    pub key: String,
    pub version: u64,
    pub value: String,
    pub author: String,
    pub comment: String,
    pub time_unix_ms: u64,
    pub deleted: bool,
    /// The global index of this change.
    pub index: u64,
}

/// One change, as watchers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub index: u64,
    pub application: String,
    pub profile: String,
    pub key: String,
    pub version: u64,
    pub deleted: bool,
}

/// A write request.
#[derive(Clone, Debug, Default)]
pub struct Write {
    pub value: String,
    pub author: String,
    pub comment: String,
    /// Compare-and-set: the version the writer saw (0: the key must not exist).
    pub expected_version: Option<u64>,
}

/// A line-level difference between two versions.
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub from: u64,
    pub to: u64,
    /// A unified diff, as `diff -u` prints it.
    pub unified: String,
    /// The same, line by line, for side-by-side display.
    pub lines: Vec<DiffLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiffLine {
    /// `equal`, `delete` or `insert`.
    pub op: &'static str,
    pub old_line: Option<usize>,
    pub new_line: Option<usize>,
    pub text: String,
}

type Key = (String, String, String);

struct State {
    heads: BTreeMap<Key, Entry>,
    live: usize,
    changes: VecDeque<Change>,
}

/// The configuration store.
pub struct ConfigStore {
    store: Store,
    index: Arc<Index>,
    state: Mutex<State>,
    writes: tokio::sync::Mutex<()>,
    limits: Limits,
}

fn storage_key(app: &str, profile: &str, key: &str, version: u64) -> String {
    format!("{app}{SEP}{profile}{SEP}{key}{SEP}{version:020}")
}

fn prefix(app: &str, profile: &str, key: &str) -> String {
    format!("{app}{SEP}{profile}{SEP}{key}{SEP}")
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn key_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
        && !s.starts_with('/')
        && !s.contains("..")
}

/// Checks application, profile and key names; the error names the field.
pub fn check_names(app: &str, profile: &str, key: &str) -> Result<()> {
    if !name_ok(app) {
        return Err(ControlError::invalid("application", "must be 1-128 letters, digits, `-`, `_` or `.`"));
    }
    if !name_ok(profile) {
        return Err(ControlError::invalid("profile", "must be 1-128 letters, digits, `-`, `_` or `.`"));
    }
    if !key_ok(key) {
        return Err(ControlError::invalid(
            "key",
            "must be 1-256 letters, digits, `-`, `_`, `.`, `/` or `:`, not starting with `/`",
        ));
    }
    Ok(())
}

impl ConfigStore {
    /// Loads the latest version of every key.
    pub fn load(store: Store, index: Arc<Index>, limits: Limits) -> Result<Self> {
        let mut heads: BTreeMap<Key, Entry> = BTreeMap::new();
        for (_, e) in store.load_all::<Entry>(CONFIG)? {
            let k = (e.application.clone(), e.profile.clone(), e.key.clone());
            if heads.get(&k).is_none_or(|h| h.version < e.version) {
                heads.insert(k, e);
            }
        }
        let live = heads.values().filter(|e| !e.deleted).count();
        Ok(ConfigStore {
            store,
            index,
            state: Mutex::new(State { heads, live, changes: VecDeque::new() }),
            writes: tokio::sync::Mutex::new(()),
            limits,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The latest version (or `version`) of a key. A deleted key is not found unless a
    /// version is asked for.
    pub fn get(&self, app: &str, profile: &str, key: &str, version: Option<u64>) -> Result<Entry> {
        check_names(app, profile, key)?;
        let what = || ControlError::NotFound(format!("config `{app}/{profile}/{key}`"));
        match version {
            None => self
                .lock()
                .heads
                .get(&(app.into(), profile.into(), key.into()))
                .filter(|e| !e.deleted)
                .cloned()
                .ok_or_else(what),
            Some(v) => self
                .store
                .get::<Entry>(CONFIG, &storage_key(app, profile, key, v))?
                .ok_or_else(|| ControlError::NotFound(format!("version {v} of `{app}/{profile}/{key}`"))),
        }
    }

    /// Latest live entries, filtered by application and profile.
    pub fn list(&self, app: Option<&str>, profile: Option<&str>) -> Vec<Entry> {
        self.lock()
            .heads
            .values()
            .filter(|e| !e.deleted && app.is_none_or(|a| a == e.application) && profile.is_none_or(|p| p == e.profile))
            .cloned()
            .collect()
    }

    /// Every version of a key, oldest first.
    pub fn history(&self, app: &str, profile: &str, key: &str) -> Result<Vec<Entry>> {
        check_names(app, profile, key)?;
        let h: Vec<Entry> =
            self.store.scan::<Entry>(CONFIG, &prefix(app, profile, key))?.into_iter().map(|(_, e)| e).collect();
        if h.is_empty() {
            return Err(ControlError::NotFound(format!("config `{app}/{profile}/{key}`")));
        }
        Ok(h)
    }

    /// Writes a new version.
    pub async fn put(&self, app: &str, profile: &str, key: &str, w: Write) -> Result<Entry> {
        self.write(app, profile, key, w, false).await
    }

    /// Deletes (a tombstone version; history stays).
    pub async fn delete(
        &self,
        app: &str,
        profile: &str,
        key: &str,
        author: &str,
        expected_version: Option<u64>,
    ) -> Result<Entry> {
        let w = Write { value: String::new(), author: author.into(), comment: "deleted".into(), expected_version };
        self.write(app, profile, key, w, true).await
    }

    /// Writes a new version equal to version `to`; `w.value` is ignored.
    pub async fn rollback(&self, app: &str, profile: &str, key: &str, to: u64, w: Write) -> Result<Entry> {
        let old = self.get(app, profile, key, Some(to))?;
        let comment = if w.comment.is_empty() { format!("rollback to version {to}") } else { w.comment };
        let w = Write { value: old.value, author: w.author, comment, expected_version: w.expected_version };
        self.write(app, profile, key, w, old.deleted).await
    }

    async fn write(&self, app: &str, profile: &str, key: &str, w: Write, delete: bool) -> Result<Entry> {
        check_names(app, profile, key)?;
        if w.value.len() > self.limits.max_value_bytes {
            return Err(ControlError::limit(
                "value",
                format!("is {} bytes; the limit is {}", w.value.len(), self.limits.max_value_bytes),
            ));
        }
        if w.author.len() > 128 {
            return Err(ControlError::invalid("author", "at most 128 characters"));
        }
        if w.comment.len() > 1024 {
            return Err(ControlError::invalid("comment", "at most 1024 characters"));
        }
        if !delete && let Err(problem) = crate::spring::check_document(key, &w.value) {
            return Err(ControlError::invalid("value", problem));
        }
        if !delete && app == traffic::GATEWAY_APP && profile == traffic::TRAFFIC_PROFILE {
            // A traffic policy the gateway could not apply is refused here, naming its field.
            traffic::TrafficPolicy::parse(&w.value).map_err(|e| {
                let field = if e.field.is_empty() { "value".to_owned() } else { format!("value.{}", e.field) };
                ControlError::invalid(field, e.message)
            })?;
        }
        let _guard = self.writes.lock().await;
        let k: Key = (app.into(), profile.into(), key.into());
        let (head_version, head_deleted) =
            self.lock().heads.get(&k).map(|h| (h.version, h.deleted)).unwrap_or((0, true));
        let current = if head_deleted { 0 } else { head_version };
        if let Some(expected) = w.expected_version
            && expected != current
        {
            return Err(ControlError::Conflict { current });
        }
        if delete && head_deleted {
            return Err(ControlError::NotFound(format!("config `{app}/{profile}/{key}`")));
        }
        if !delete && head_deleted && self.lock().live >= self.limits.max_keys {
            return Err(ControlError::limit(
                "key",
                format!("the store holds its maximum of {} keys", self.limits.max_keys),
            ));
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        let entry = Entry {
            application: app.into(),
            profile: profile.into(),
            key: key.into(),
            version: head_version + 1,
            value: if delete { String::new() } else { w.value },
            author: w.author,
            comment: w.comment,
            time_unix_ms: signalbox_core::time::unix_nanos() / 1_000_000,
            deleted: delete,
            index: idx,
        };
        let mut ops = vec![Op::put(CONFIG, storage_key(app, profile, key, entry.version), &entry)?];
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        {
            let mut st = self.lock();
            match (head_deleted, delete) {
                (true, false) => st.live += 1,
                (false, true) => st.live -= 1,
                _ => {}
            }
            st.heads.insert(k, entry.clone());
            st.changes.push_back(Change {
                index: idx,
                application: app.into(),
                profile: profile.into(),
                key: key.into(),
                version: entry.version,
                deleted: delete,
            });
            while st.changes.len() > CHANGE_LOG {
                st.changes.pop_front();
            }
        }
        step.publish();
        Ok(entry)
    }

    /// Changes after `index` matching the filter. `None` when `index` is older than the
    /// change log remembers (the caller should re-read everything).
    pub fn changes_since(&self, index: u64, app: Option<&str>, profile: Option<&str>) -> Option<Vec<Change>> {
        let st = self.lock();
        if let Some(first) = st.changes.front()
            && index + 1 < first.index
            && index != 0
        {
            return None;
        }
        Some(
            st.changes
                .iter()
                .filter(|c| {
                    c.index > index && app.is_none_or(|a| a == c.application) && profile.is_none_or(|p| p == c.profile)
                })
                .cloned()
                .collect(),
        )
    }

    /// The difference between two versions of a key.
    pub fn diff(&self, app: &str, profile: &str, key: &str, from: u64, to: u64) -> Result<Diff> {
        let a = self.get(app, profile, key, Some(from))?;
        let b = self.get(app, profile, key, Some(to))?;
        let d = similar::TextDiff::from_lines(&a.value, &b.value);
        let unified =
            d.unified_diff().context_radius(3).header(&format!("{key}@{from}"), &format!("{key}@{to}")).to_string();
        let mut lines = Vec::new();
        for change in d.iter_all_changes() {
            let op = match change.tag() {
                similar::ChangeTag::Equal => "equal",
                similar::ChangeTag::Delete => "delete",
                similar::ChangeTag::Insert => "insert",
            };
            lines.push(DiffLine {
                op,
                old_line: change.old_index().map(|i| i + 1),
                new_line: change.new_index().map(|i| i + 1),
                text: change.value().trim_end_matches('\n').to_owned(),
            });
        }
        Ok(Diff { from, to, unified, lines })
    }

    /// Where Spring looks, most specific first: (`app`, last profile) … (`app`, `default`),
    /// then the same for `application`.
    fn spring_order<'a>(app: &'a str, profiles: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        let mut order: Vec<&str> = profiles.iter().rev().copied().filter(|p| *p != "default").collect();
        order.push("default");
        let mut apps = vec![app];
        if app != "application" {
            apps.push("application");
        }
        apps.iter().flat_map(|a| order.iter().map(move |p| (*a, *p))).collect()
    }

    /// A stored file for the Config Server's plain-text form (`/{app}/{profile}/{label}/{path}`):
    /// the key `path` in the most specific place that has it.
    pub fn file(&self, app: &str, profiles: &[&str], path: &str) -> Option<Entry> {
        Self::spring_order(app, profiles).into_iter().find_map(|(a, p)| self.get(a, p, path, None).ok())
    }

    /// Spring Cloud Config's view: property sources for `app` and `profiles`, most specific
    /// first (`app-<last profile>` … `app-default`, then the same for `application`).
    pub fn property_sources(&self, app: &str, profiles: &[&str]) -> Vec<(String, BTreeMap<String, serde_json::Value>)> {
        let mut out = Vec::new();
        for (a, p) in Self::spring_order(app, profiles) {
            let entries = self.list(Some(a), Some(p));
            if entries.is_empty() {
                continue;
            }
            let mut source = BTreeMap::new();
            for e in entries {
                crate::spring::flatten_entry(&e.key, &e.value, profiles, &mut source);
            }
            out.push((format!("signalbox:{a}-{p}"), source));
        }
        out
    }
}
