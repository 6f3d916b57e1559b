//! The alert state file: active alerts (with when they became active) and a bounded history
//! of state changes, written atomically (a temporary file renamed over the old one) whenever
//! an alert changes state, and read back at start so `for` clocks and history survive a
//! restart.

use super::alert::{Alert, Transition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// State changes kept in the history.
pub const HISTORY_CAPACITY: usize = 1000;

/// The file's name in the state directory.
pub const STATE_FILE: &str = "alerts.json";

/// One rule's alerts, named by file, group and rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRule {
    pub file: String,
    pub group: String,
    pub rule: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub rules: Vec<SavedRule>,
    pub history: Vec<Transition>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Reads the state file; a missing file is an empty state, a damaged one an error.
pub fn load(dir: &Path) -> Result<SavedState, String> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Writes the state file atomically.
pub fn save(dir: &Path, state: &SavedState) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let p = path(dir);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    };
    write().map_err(|e| format!("{}: {e}", p.display()))
}
