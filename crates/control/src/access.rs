//! Access control: API tokens with roles, stored as SHA-256 only, and console sessions.
//!
//! Roles: `read` (every read API), `ingest` (telemetry ingest endpoints only), `edit` (read,
//! ingest, and writes to the registry and configuration), `admin` (everything, including
//! tokens). Tokens come from the config file (bootstrap) or are created through the API;
//! either kind may expire. When no token exists at all, access control is off: the node
//! then refuses to listen beyond loopback unless told `--insecure`.

use crate::error::{ControlError, Result};
use crate::store::{Op, SESSIONS, Store, TOKENS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Ingest,
    Edit,
    Admin,
}

impl Role {
    /// Whether this role grants `need`.
    pub fn allows(self, need: Role) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (Role::Edit, Role::Read | Role::Ingest | Role::Edit)
                | (Role::Read, Role::Read)
                | (Role::Ingest, Role::Ingest)
        )
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "ingest" => Some(Role::Ingest),
            "edit" => Some(Role::Edit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A token as stored (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    pub description: String,
    pub created_unix_ms: u64,
    pub expires_unix_ms: Option<u64>,
    /// `file` (bootstrap, from the config) or `api`.
    pub source: String,
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
}

/// Why a login did not start a session.
#[derive(Debug)]
pub enum LoginError {
    Denied(Denied),
    /// Too many failed logins from this address: try again after the wait.
    Throttled(Duration),
    Store(ControlError),
}

/// Why a credential was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Invalid,
    Expired,
}

impl Denied {
    pub fn message(self) -> &'static str {
        match self {
            Denied::Missing => "a token is required: send `Authorization: Bearer TOKEN` or log in to the console",
            Denied::Invalid => "the token is not valid",
            Denied::Expired => "the token has expired",
        }
    }
}

/// A console session as stored: keyed by the SHA-256 of its id, so the store never holds
/// a usable session id, and surviving restarts (a restart does not log the console out).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    token_id: String,
    role: Role,
    expires_unix_ms: u64,
}

/// Tokens and sessions.
pub struct Access {
    tokens: RwLock<HashMap<[u8; 32], Token>>,
    /// Set once any token has existed since start: access control then stays on even if
    /// every token is removed, until an explicit restart.
    locked_on: std::sync::atomic::AtomicBool,
    logins: LoginThrottle,
    /// By hex SHA-256 of the session id.
    sessions: Mutex<HashMap<String, Session>>,
    store: Store,
    session_ttl: Duration,
}

/// Failed console logins per client address, with exponential backoff: the first few
/// failures are free, then each one doubles the wait (capped), so guessing tokens from one
/// address runs at a handful of tries a minute instead of tens of thousands a second.
#[derive(Default)]
struct LoginThrottle {
    by_ip: Mutex<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
    failures: std::sync::atomic::AtomicU64,
}

/// Failures allowed before backing off.
const FREE_FAILURES: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most addresses tracked; past it the oldest entries are dropped (a flood of addresses
/// cannot grow the map without bound).
const MAX_TRACKED: usize = 100_000;

impl LoginThrottle {
    fn check(&self, ip: std::net::IpAddr) -> std::result::Result<(), Duration> {
        let m = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&ip) {
            Some((_, until)) => {
                let now = std::time::Instant::now();
                if *until > now { Err(*until - now) } else { Ok(()) }
            }
            None => Ok(()),
        }
    }

    fn failed(&self, ip: std::net::IpAddr) {
        self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_TRACKED && !m.contains_key(&ip) {
            let now = std::time::Instant::now();
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= MAX_TRACKED {
                m.clear();
            }
        }
        let e = m.entry(ip).or_insert((0, std::time::Instant::now()));
        e.0 += 1;
        let wait = if e.0 <= FREE_FAILURES {
            Duration::ZERO
        } else {
            Duration::from_millis(500u64.saturating_mul(1 << (e.0 - FREE_FAILURES).min(16))).min(MAX_BACKOFF)
        };
        e.1 = std::time::Instant::now() + wait;
    }

    fn succeeded(&self, ip: std::net::IpAddr) {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn now_ms() -> u64 {
    signalbox_core::time::unix_nanos() / 1_000_000
}

impl Access {
    /// Loads API-created tokens from the store and adds `file_tokens` from the config.
    pub fn load(store: Store, file_tokens: Vec<Token>, session_ttl: Duration) -> Result<Self> {
        let mut map = HashMap::new();
        for t in store.load_all::<Token>(TOKENS)?.into_iter().map(|(_, t)| t).chain(file_tokens) {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut h).map_err(|_| {
                ControlError::invalid(format!("access.tokens.{}.sha256", t.id), "must be 64 hex digits")
            })?;
            map.insert(h, t);
        }
        let now = now_ms();
        let mut sessions = HashMap::new();
        for (key, session) in store.load_all::<Session>(SESSIONS)? {
            if session.expires_unix_ms > now {
                sessions.insert(key, session);
            }
        }
        let locked_on = std::sync::atomic::AtomicBool::new(!map.is_empty());
        Ok(Access {
            tokens: RwLock::new(map),
            locked_on,
            logins: LoginThrottle::default(),
            sessions: Mutex::new(sessions),
            store,
            session_ttl,
        })
    }

    /// Whether access control is on: some token exists, or did since start. Once on, it
    /// stays on: removing every token locks the node rather than opening it.
    pub fn enabled(&self) -> bool {
        self.locked_on.load(std::sync::atomic::Ordering::Acquire)
            || !self.tokens.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Replaces the tokens that come from the config file (on reload) and ends the sessions
    /// of the ones removed. Sessions read their token's current role, so a demoted token's
    /// sessions are demoted at once.
    pub async fn reload_file_tokens(&self, file_tokens: Vec<Token>) -> Result<()> {
        let mut fresh = Vec::with_capacity(file_tokens.len());
        for t in file_tokens {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut h).map_err(|_| {
                ControlError::invalid(format!("access.tokens.{}.sha256", t.id), "must be 64 hex digits")
            })?;
            fresh.push((h, t));
        }
        let kept: std::collections::HashSet<String> = fresh.iter().map(|(_, t)| t.id.clone()).collect();
        let removed: std::collections::HashSet<String> =
            self.list().into_iter().filter(|t| t.source == "file" && !kept.contains(&t.id)).map(|t| t.id).collect();
        let ended: Vec<String> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().filter(|(_, v)| removed.contains(&v.token_id)).map(|(k, _)| k.clone()).collect()
        };
        if !ended.is_empty() {
            self.store.commit(ended.iter().map(|k| Op::Delete(SESSIONS, k.clone())).collect()).await?;
        }
        {
            let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
            tokens.retain(|_, t| t.source != "file");
            for (h, t) in fresh {
                tokens.insert(h, t);
            }
            if !tokens.is_empty() {
                self.locked_on.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !ended.contains(k));
        Ok(())
    }

    /// Whether `client` may try to log in now; failed logins back off exponentially.
    pub fn login_allowed(&self, client: std::net::IpAddr) -> std::result::Result<(), Duration> {
        self.logins.check(client)
    }

    /// Failed logins since start (for the node's metrics).
    pub fn failed_logins(&self) -> u64 {
        self.logins.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks a bearer secret.
    pub fn authenticate(&self, secret: &str) -> std::result::Result<Principal, Denied> {
        let digest: [u8; 32] = Sha256::digest(secret.trim().as_bytes()).into();
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let t = tokens.get(&digest).ok_or(Denied::Invalid)?;
        if t.expires_unix_ms.is_some_and(|e| e <= now_ms()) {
            return Err(Denied::Expired);
        }
        Ok(Principal { token_id: t.id.clone(), role: t.role })
    }

    /// Starts a console session for a valid secret; returns the session id once the session
    /// is stored.
    pub async fn login(
        &self,
        secret: &str,
        client: Option<std::net::IpAddr>,
    ) -> std::result::Result<(String, Principal), LoginError> {
        if let Some(ip) = client
            && let Err(wait) = self.logins.check(ip)
        {
            return Err(LoginError::Throttled(wait));
        }
        let p = match self.authenticate(secret) {
            Ok(p) => p,
            Err(d) => {
                if let Some(ip) = client {
                    self.logins.failed(ip);
                }
                return Err(LoginError::Denied(d));
            }
        };
        if let Some(ip) = client {
            self.logins.succeeded(ip);
        }
        let mut raw = [0u8; 32];
        for b in raw.iter_mut() {
            *b = fastrand::u8(..);
        }
        // fastrand is not a CSPRNG; mix in the OS's randomness through the std hasher seed
        // and the clock so a session id cannot be predicted from earlier ones.
        let os: u64 = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), now_ms());
        let id = hex::encode(Sha256::digest([raw.as_slice(), &os.to_le_bytes()].concat()));
        let key = hash_secret(&id);
        let now = now_ms();
        let session = Session {
            token_id: p.token_id.clone(),
            role: p.role,
            expires_unix_ms: now + self.session_ttl.as_millis() as u64,
        };
        let expired: Vec<String> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().filter(|(_, v)| v.expires_unix_ms <= now).map(|(k, _)| k.clone()).collect()
        };
        let mut ops = vec![Op::put(SESSIONS, key.clone(), &session).map_err(LoginError::Store)?];
        ops.extend(expired.iter().map(|k| Op::Delete(SESSIONS, k.clone())));
        self.store.commit(ops).await.map_err(LoginError::Store)?;
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for k in &expired {
            s.remove(k);
        }
        s.insert(key, session);
        Ok((id, p))
    }

    /// The principal of a session, if it is live and its token still valid.
    pub fn session(&self, id: &str) -> std::result::Result<Principal, Denied> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let sess = s.get(&hash_secret(id)).ok_or(Denied::Invalid)?;
        if sess.expires_unix_ms <= now_ms() {
            return Err(Denied::Expired);
        }
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let t = tokens.values().find(|t| t.id == sess.token_id).ok_or(Denied::Invalid)?;
        if t.expires_unix_ms.is_some_and(|e| e <= now_ms()) {
            return Err(Denied::Expired);
        }
        // The token's role now, not the one at login: a demoted token's sessions follow.
        Ok(Principal { token_id: sess.token_id.clone(), role: t.role })
    }

    /// Ends a session (a no-op for an unknown one).
    pub async fn logout(&self, id: &str) -> Result<()> {
        let key = hash_secret(id);
        if self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&key).is_some() {
            self.store.commit(vec![Op::Delete(SESSIONS, key)]).await?;
        }
        Ok(())
    }

    /// Creates a token; returns it and its secret (shown once).
    pub async fn create(
        &self,
        id: &str,
        role: Role,
        description: &str,
        ttl: Option<Duration>,
    ) -> Result<(Token, String)> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(ControlError::invalid("id", "must be 1-64 letters, digits, `-`, `_` or `.`"));
        }
        if self.list().iter().any(|t| t.id == id) {
            return Err(ControlError::invalid("id", format!("token `{id}` already exists")));
        }
        let mut raw = [0u8; 24];
        for b in raw.iter_mut() {
            *b = fastrand::u8(..);
        }
        let os: u64 = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), (id, now_ms()));
        let secret =
            format!("sbx_{}", hex::encode(&Sha256::digest([raw.as_slice(), &os.to_le_bytes()].concat())[..24]));
        let token = Token {
            id: id.to_owned(),
            role,
            sha256: hash_secret(&secret),
            description: description.chars().take(256).collect(),
            created_unix_ms: now_ms(),
            expires_unix_ms: ttl.map(|d| now_ms() + d.as_millis() as u64),
            source: "api".into(),
        };
        self.store.commit(vec![Op::put(TOKENS, id, &token)?]).await?;
        let mut h = [0u8; 32];
        hex::decode_to_slice(&token.sha256, &mut h).map_err(|_| ControlError::Storage("bad digest".into()))?;
        self.tokens.write().unwrap_or_else(|e| e.into_inner()).insert(h, token.clone());
        Ok((token, secret))
    }

    /// Deletes an API-created token (file tokens live in the config file).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let t = self
            .list()
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ControlError::NotFound(format!("token `{id}`")))?;
        if t.source != "api" {
            return Err(ControlError::invalid("id", "tokens from the config file are removed by editing the file"));
        }
        let now = now_ms();
        let other_admins = self
            .list()
            .iter()
            .filter(|o| o.id != id && o.role == Role::Admin && o.expires_unix_ms.is_none_or(|e| e > now))
            .count();
        if t.role == Role::Admin && other_admins == 0 {
            return Err(ControlError::invalid(
                "id",
                "this is the last admin token: create another admin token before deleting it",
            ));
        }
        let ended: Vec<String> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().filter(|(_, v)| v.token_id == id).map(|(k, _)| k.clone()).collect()
        };
        let mut ops = vec![Op::Delete(TOKENS, id.to_owned())];
        ops.extend(ended.iter().map(|k| Op::Delete(SESSIONS, k.clone())));
        self.store.commit(ops).await?;
        self.tokens.write().unwrap_or_else(|e| e.into_inner()).retain(|_, t| t.id != id);
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, s| s.token_id != id);
        Ok(())
    }

    /// A token written or deleted by any node (replicated backend). Applying what this
    /// node already holds changes nothing.
    pub(crate) fn apply_token(&self, id: &str, value: Option<&[u8]>) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<Token>) {
            Some(Ok(t)) => {
                let mut h = [0u8; 32];
                if hex::decode_to_slice(&t.sha256, &mut h).is_ok() {
                    tokens.insert(h, t);
                    self.locked_on.store(true, std::sync::atomic::Ordering::Release);
                }
            }
            Some(Err(e)) => tracing::error!(token = id, error = %e, "unreadable token in the store"),
            None => tokens.retain(|_, t| !(t.id == id && t.source == "api")),
        }
    }

    /// A session written or deleted by any node (replicated backend).
    pub(crate) fn apply_session(&self, key: &str, value: Option<&[u8]>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<Session>) {
            Some(Ok(s)) => {
                sessions.insert(key.to_owned(), s);
            }
            Some(Err(e)) => tracing::error!(error = %e, "unreadable session in the store"),
            None => {
                sessions.remove(key);
            }
        }
    }

    /// Every token (without secrets).
    pub fn list(&self) -> Vec<Token> {
        let mut v: Vec<Token> = self.tokens.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::Role::*;
    use super::*;

    fn file_token(id: &str, role: Role, secret: &str) -> Token {
        Token {
            id: id.into(),
            role,
            sha256: hash_secret(secret),
            description: String::new(),
            created_unix_ms: 0,
            expires_unix_ms: None,
            source: "file".into(),
        }
    }

    #[tokio::test]
    async fn sessions_survive_a_restart_until_logout_or_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = Store::open(dir.path()).unwrap();
            Access::load(store, vec![file_token("f", Edit, "file-secret")], Duration::from_secs(3600)).unwrap()
        };
        let a = open();
        let (kept, p) = a.login("file-secret", None).await.unwrap();
        assert_eq!(p.role, Edit);
        let (ended, _) = a.login("file-secret", None).await.unwrap();
        let (made, secret) = a.create("api", Read, "", None).await.unwrap();
        let (revoked, _) = a.login(&secret, None).await.unwrap();
        assert!(matches!(a.login("wrong", None).await, Err(LoginError::Denied(Denied::Invalid))));
        drop(a);

        let a = open();
        assert_eq!(a.session(&kept).unwrap().token_id, "f", "a restart keeps the session");
        assert_eq!(a.session(&revoked).unwrap().role, Read);
        a.logout(&ended).await.unwrap();
        a.delete(&made.id).await.unwrap();
        assert_eq!(a.session(&revoked), Err(Denied::Invalid), "revoking a token ends its sessions");
        drop(a);

        let a = open();
        assert!(a.session(&kept).is_ok());
        assert_eq!(a.session(&ended), Err(Denied::Invalid), "a logout is durable");
        assert_eq!(a.session(&revoked), Err(Denied::Invalid));
        let stored = std::fs::read(dir.path().join("control.redb")).unwrap();
        assert!(!stored.windows(kept.len()).any(|w| w == kept.as_bytes()), "the store holds no session id");
    }

    #[tokio::test]
    async fn expired_sessions_are_refused_and_not_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let open = |ttl| {
            let store = Store::open(dir.path()).unwrap();
            Access::load(store, vec![file_token("f", Read, "s")], ttl).unwrap()
        };
        let a = open(Duration::from_millis(1));
        let (id, _) = a.login("s", None).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(a.session(&id), Err(Denied::Expired));
        drop(a);
        assert_eq!(open(Duration::from_secs(60)).session(&id), Err(Denied::Invalid));
    }

    #[tokio::test]
    async fn file_tokens_reload_and_access_control_stays_on() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::load(
            Store::open(dir.path()).unwrap(),
            vec![file_token("root", Admin, "root-secret"), file_token("ops", Edit, "ops-secret")],
            Duration::from_secs(3600),
        )
        .unwrap();
        let (ops_session, _) = a.login("ops-secret", None).await.unwrap();
        let (root_session, _) = a.login("root-secret", None).await.unwrap();
        // `ops` removed from the file, `root` demoted to read.
        a.reload_file_tokens(vec![file_token("root", Read, "root-secret")]).await.unwrap();
        assert_eq!(a.authenticate("ops-secret"), Err(Denied::Invalid), "a removed token no longer reads");
        assert_eq!(a.session(&ops_session), Err(Denied::Invalid), "its sessions ended");
        assert_eq!(a.authenticate("root-secret").unwrap().role, Read, "a demoted token no longer writes");
        assert_eq!(a.session(&root_session).unwrap().role, Read, "nor do its sessions");
        // Every token gone: access control stays on (nobody gets in), never off.
        a.reload_file_tokens(Vec::new()).await.unwrap();
        assert!(a.enabled());
        assert_eq!(a.authenticate("root-secret"), Err(Denied::Invalid));
    }

    #[tokio::test]
    async fn the_last_admin_token_cannot_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::load(Store::open(dir.path()).unwrap(), Vec::new(), Duration::from_secs(3600)).unwrap();
        let (first, _) = a.create("first", Admin, "", None).await.unwrap();
        let (reader, _) = a.create("reader", Read, "", None).await.unwrap();
        assert!(matches!(a.delete(&first.id).await, Err(ControlError::Invalid { .. })), "the only admin");
        let (second, _) = a.create("second", Admin, "", None).await.unwrap();
        a.delete(&first.id).await.unwrap();
        a.delete(&reader.id).await.unwrap();
        assert!(a.delete(&second.id).await.is_err(), "now the last one");
        assert!(a.enabled());
    }

    #[tokio::test]
    async fn failed_logins_back_off_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::load(
            Store::open(dir.path()).unwrap(),
            vec![file_token("f", Read, "good")],
            Duration::from_secs(3600),
        )
        .unwrap();
        let bad: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let mut throttled = 0;
        for _ in 0..50 {
            match a.login("wrong", Some(bad)).await {
                Err(LoginError::Throttled(w)) => {
                    throttled += 1;
                    assert!(w <= MAX_BACKOFF);
                }
                Err(LoginError::Denied(_)) => {}
                _ => panic!("a wrong token never logs in"),
            }
        }
        assert_eq!(throttled, 50 - FREE_FAILURES as usize - 1, "after the free tries every attempt waits");
        assert!(
            matches!(a.login("good", Some(bad)).await, Err(LoginError::Throttled(_))),
            "even the right token waits"
        );
        assert!(a.login("good", Some(other)).await.is_ok(), "other addresses are not affected");
        assert_eq!(a.failed_logins(), FREE_FAILURES as u64 + 1);
    }

    #[test]
    fn role_matrix() {
        assert!(Admin.allows(Admin) && Admin.allows(Ingest));
        assert!(Edit.allows(Read) && Edit.allows(Edit) && Edit.allows(Ingest) && !Edit.allows(Admin));
        assert!(Read.allows(Read) && !Read.allows(Edit) && !Read.allows(Ingest));
        assert!(Ingest.allows(Ingest) && !Ingest.allows(Read));
    }
}
