//! The etcd v3 backend: every node of a cluster keeps its control state in one etcd
//! cluster, one key per record (`<prefix><table>/<key>`, JSON values).
//!
//! - **Reads** come from a local mirror of every key under the prefix, loaded with one
//!   range read at start and kept current by one watch stream (no polling).
//! - **Writes** are etcd transactions: the ops of one commit in one txn, their conditions
//!   ([`Op::Absent`], [`Op::ModifiedAt`]) as the txn's compares. The commit returns once
//!   the watch has brought the change back and every part applied it, so a writer reads
//!   its own write and a blocking query woken by the new index sees it.
//! - **The change index** is etcd's revision: every node applies the same changes at the
//!   same revisions, so an index a client saw on one node means the same on another.
//! - **Membership**: each node holds a lease (TTL `lease_ttl`) and keeps `members/<node>`
//!   under it. The parts learn who is alive from the watch; see [`Apply::live`] for how a
//!   node that loses its lease steps back before another node can take its work.
//!
//! A watch that breaks is reopened from the last applied revision. If etcd compacted past
//! it, the backend reads the whole prefix again and applies the difference to the mirror
//! as changes, so the parts converge without a restart.

pub mod rpc;

use super::config::EtcdConfig;
use super::{Apply, Backend, BoxFuture, Change, Record};
use crate::error::{ControlError, Result};
use crate::store::{MEMBERS, Op, Table};
use rpc::{Client, Compare, RequestOp, TxnRequest, compare, request_op};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// Keys read per range request while loading.
const PAGE: i64 = 5_000;

type Mirror = BTreeMap<(Table, String), Record>;

/// A connection to the etcd cluster and the mirror of the prefix.
pub struct Etcd {
    client: Arc<Client>,
    prefix: String,
    endpoints: String,
    mirror: RwLock<Mirror>,
    /// The last revision whose changes every part has applied.
    applied: watch::Sender<u64>,
    /// Where to send a progress request on the open watch stream.
    watch_requests: Mutex<Option<mpsc::Sender<rpc::WatchRequest>>>,
    node: String,
    lease_ttl: Duration,
    /// The lease of this node's member key while it holds one.
    lease: Mutex<Option<i64>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What a member key holds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub node: String,
    pub started_unix_ms: u64,
}

impl Etcd {
    /// Connects and loads the prefix. Fails, naming the endpoints, if etcd does not answer
    /// within `request_timeout`.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Arc<Etcd>> {
        let endpoints = cfg.endpoints.join(", ");
        let fail = |what: String| ControlError::Storage(format!("etcd at {endpoints}: {what}"));
        let channel = channel(cfg).map_err(fail)?;
        let credentials = cfg.username.clone().zip(cfg.password.clone());
        let client = Arc::new(Client::new(channel, credentials, cfg.request_timeout.0));
        let node = cfg.node_name.clone().unwrap_or_else(default_node_name);
        let etcd = Arc::new(Etcd {
            client,
            prefix: cfg.prefix.clone(),
            endpoints: endpoints.clone(),
            mirror: RwLock::new(BTreeMap::new()),
            applied: watch::channel(0).0,
            watch_requests: Mutex::new(None),
            node,
            lease_ttl: cfg.lease_ttl.0,
            lease: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let (mirror, revision) =
            etcd.read_prefix().await.map_err(|e| fail(format!("cannot read the control state: {e}")))?;
        *etcd.mirror.write().unwrap_or_else(|e| e.into_inner()) = mirror;
        etcd.applied.send_replace(revision);
        tracing::info!(endpoints = %etcd.endpoints, prefix = %etcd.prefix, revision, node = %etcd.node, "control state on etcd");
        Ok(etcd)
    }

    /// This node's name among the members.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The revision the mirror was loaded at or has since applied.
    pub fn revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Starts the watch stream (changes go to `apply`, from the revision after the one
    /// loaded) and the membership lease.
    pub fn start(self: &Arc<Self>, apply: Weak<dyn Apply>) {
        let watch = tokio::spawn(watch_loop(Arc::downgrade(self), apply.clone())).abort_handle();
        let member = tokio::spawn(member_loop(Arc::downgrade(self), apply)).abort_handle();
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend([watch, member]);
    }

    /// Stops the watch and the keep-alives and revokes the lease, so the other nodes take
    /// this node's work at once instead of after the lease's TTL.
    pub async fn leave(&self) {
        self.stop();
        let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(id) = lease
            && let Err(e) = self.client.lease_revoke(id).await
        {
            tracing::warn!(error = %e, "cannot revoke this node's etcd lease; it expires on its own");
        }
    }

    /// Stops the background tasks without telling etcd (as a crash would).
    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            t.abort();
        }
    }

    /// The lease this node's member key is held under, while it holds one.
    pub fn lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `key` under this node's lease if no one holds it (the key vanishes with the
    /// lease). Returns false when another holder has it or this node holds no lease.
    pub async fn claim(&self, table: Table, key: &str, value: Vec<u8>) -> Result<bool> {
        let Some(lease) = self.lease() else { return Ok(false) };
        let k = self.etcd_key(table, key);
        let txn = TxnRequest {
            compare: vec![Compare {
                result: 0,
                target: rpc::TARGET_CREATE,
                key: k.clone(),
                target_union: Some(compare::Target::CreateRevision(0)),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::Put(rpc::PutRequest { key: k, value, lease })),
            }],
            failure: vec![],
        };
        let resp = self
            .client
            .txn(txn)
            .await
            .map_err(|e| ControlError::Storage(format!("etcd at {}: a claim failed: {e}", self.endpoints)))?;
        let revision = resp.header.map(|h| h.revision.max(0) as u64).unwrap_or(0);
        self.wait_applied(revision).await?;
        Ok(resp.succeeded)
    }

    /// Deletes `key` if it is still at `mod_revision` (a claim this node made and no one
    /// replaced).
    pub async fn release(&self, table: Table, key: &str, mod_revision: u64) -> Result<bool> {
        match self
            .commit(vec![Op::ModifiedAt(table, key.to_owned(), mod_revision), Op::Delete(table, key.to_owned())])
            .await
        {
            Ok(_) => Ok(true),
            Err(ControlError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn etcd_key(&self, table: Table, key: &str) -> Vec<u8> {
        format!("{}{}/{}", self.prefix, table.0, key).into_bytes()
    }

    fn split_key(&self, raw: &[u8]) -> Option<(Table, String)> {
        let s = std::str::from_utf8(raw).ok()?.strip_prefix(&self.prefix)?;
        let (table, key) = s.split_once('/')?;
        Some((Table::by_name(table)?, key.to_owned()))
    }

    /// Every record under the prefix at one revision, read in pages.
    async fn read_prefix(&self) -> std::result::Result<(Mirror, u64), String> {
        let start = self.prefix.as_bytes().to_vec();
        let end = rpc::prefix_end(&start);
        let mut key = start;
        let mut revision = 0i64;
        let mut out = BTreeMap::new();
        loop {
            let r = self.client.range(key.clone(), end.clone(), PAGE, revision).await?;
            if revision == 0 {
                revision = r.header.map(|h| h.revision).unwrap_or(0);
            }
            for kv in &r.kvs {
                if let Some(k) = self.split_key(&kv.key) {
                    out.insert(k, record(kv));
                }
            }
            match (r.more, r.kvs.last()) {
                (true, Some(last)) => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => break,
            }
        }
        Ok((out, revision.max(0) as u64))
    }

    /// Waits until the parts have applied `revision`. Asks the watch for progress while it
    /// waits: a revision with no event under the prefix (a txn whose deletes found nothing)
    /// is then passed too.
    async fn wait_applied(&self, revision: u64) -> Result<()> {
        let mut rx = self.applied.subscribe();
        let deadline = Instant::now() + self.client.timeout * 2;
        loop {
            if *rx.borrow_and_update() >= revision {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ControlError::Unavailable(format!(
                    "etcd committed the change at revision {revision}, but this node's watch has not delivered it within {:?}",
                    self.client.timeout * 2
                )));
            }
            if tokio::time::timeout(left.min(Duration::from_millis(100)), rx.changed()).await.is_err() {
                let tx = self.watch_requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(tx) = tx {
                    let _ = tx.try_send(rpc::WatchRequest {
                        create_request: None,
                        progress_request: Some(rpc::WatchProgressRequest {}),
                    });
                }
            }
        }
    }

    /// Applies one batch of changes to the mirror, then to the parts, then publishes the
    /// revision.
    fn deliver(&self, apply: &Weak<dyn Apply>, changes: Vec<Change>, revision: u64) {
        {
            let mut m = self.mirror.write().unwrap_or_else(|e| e.into_inner());
            for c in &changes {
                match &c.record {
                    Some(r) => m.insert((c.table, c.key.clone()), r.clone()),
                    None => m.remove(&(c.table, c.key.clone())),
                };
            }
        }
        if let Some(a) = apply.upgrade() {
            a.apply(&changes, revision);
        }
        self.applied.send_if_modified(|cur| {
            if revision > *cur {
                *cur = revision;
                true
            } else {
                false
            }
        });
    }

    /// After a compaction: reads the prefix again and delivers the difference.
    async fn resync(&self, apply: &Weak<dyn Apply>) -> std::result::Result<(), String> {
        let (fresh, revision) = self.read_prefix().await?;
        let changes = {
            let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
            let mut changes = Vec::new();
            for ((t, k), r) in &fresh {
                if m.get(&(*t, k.clone())) != Some(r) {
                    changes.push(Change {
                        table: *t,
                        key: k.clone(),
                        record: Some(r.clone()),
                        revision: r.mod_revision,
                    });
                }
            }
            for (t, k) in m.keys() {
                if !fresh.contains_key(&(*t, k.clone())) {
                    changes.push(Change { table: *t, key: k.clone(), record: None, revision });
                }
            }
            changes
        };
        tracing::warn!(
            changes = changes.len(),
            revision,
            "etcd compacted past this node's watch: re-read the control state"
        );
        self.deliver(apply, changes, revision);
        Ok(())
    }

    fn txn(&self, ops: Vec<Op>) -> TxnRequest {
        let mut txn = TxnRequest::default();
        for op in ops {
            match op {
                Op::Put(t, k, value) => txn.success.push(RequestOp {
                    request: Some(request_op::Request::Put(rpc::PutRequest {
                        key: self.etcd_key(t, &k),
                        value,
                        lease: 0,
                    })),
                }),
                Op::Delete(t, k) => txn.success.push(RequestOp {
                    request: Some(request_op::Request::DeleteRange(rpc::DeleteRangeRequest {
                        key: self.etcd_key(t, &k),
                        range_end: Vec::new(),
                    })),
                }),
                Op::Meta(..) => {}
                Op::Absent(t, k) => txn.compare.push(Compare {
                    result: 0,
                    target: rpc::TARGET_CREATE,
                    key: self.etcd_key(t, &k),
                    target_union: Some(compare::Target::CreateRevision(0)),
                }),
                Op::ModifiedAt(t, k, at) => txn.compare.push(Compare {
                    result: 0,
                    target: rpc::TARGET_MOD,
                    key: self.etcd_key(t, &k),
                    target_union: Some(compare::Target::ModRevision(at as i64)),
                }),
            }
        }
        txn
    }
}

fn record(kv: &rpc::KeyValue) -> Record {
    Record {
        value: kv.value.clone(),
        create_revision: kv.create_revision.max(0) as u64,
        mod_revision: kv.mod_revision.max(0) as u64,
    }
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:08x}", fastrand::u32(..))
}

/// A tonic channel over every endpoint (requests go to any that answers).
fn channel(cfg: &EtcdConfig) -> std::result::Result<tonic::transport::Channel, String> {
    let tls = match &cfg.ca {
        Some(ca) => {
            let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read `{p}`: {e}"));
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
            }
            Some(tls)
        }
        None => None,
    };
    let mut endpoints = Vec::new();
    for e in &cfg.endpoints {
        let mut ep = tonic::transport::Endpoint::from_shared(e.clone())
            .map_err(|err| format!("`{e}` is not a valid endpoint: {err}"))?
            .connect_timeout(cfg.request_timeout.0)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(cfg.request_timeout.0)
            .keep_alive_while_idle(true);
        if let Some(tls) = &tls {
            ep = ep.tls_config(tls.clone()).map_err(|err| format!("TLS for `{e}`: {err}"))?;
        }
        endpoints.push(ep);
    }
    Ok(match endpoints.len() {
        1 => endpoints.remove(0).connect_lazy(),
        _ => tonic::transport::Channel::balance_list(endpoints.into_iter()),
    })
}

/// Follows the prefix from the last applied revision, reopening the stream when it breaks.
async fn watch_loop(etcd: Weak<Etcd>, apply: Weak<dyn Apply>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(e) = etcd.upgrade() else { return };
        match watch_once(&e, &apply).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(error = %err, endpoints = %e.endpoints, "etcd watch broke; reopening");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        *e.watch_requests.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(e);
        tokio::time::sleep(backoff).await;
    }
}

/// One watch stream, until it ends.
async fn watch_once(etcd: &Etcd, apply: &Weak<dyn Apply>) -> std::result::Result<(), String> {
    let (tx, rx) = mpsc::channel(16);
    let start = etcd.revision() + 1;
    let key = etcd.prefix.as_bytes().to_vec();
    let create = rpc::WatchCreateRequest {
        range_end: rpc::prefix_end(&key),
        key,
        start_revision: start as i64,
        progress_notify: true,
    };
    tx.send(rpc::WatchRequest { create_request: Some(create), progress_request: None })
        .await
        .map_err(|_| "the watch request channel closed".to_owned())?;
    let mut stream = etcd.client.stream::<_, rpc::WatchResponse>("/etcdserverpb.Watch/Watch", rx).await?;
    *etcd.watch_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err("etcd ended the watch stream".into()),
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        if resp.compact_revision > 0 {
            etcd.resync(apply).await?;
            return Ok(());
        }
        if resp.canceled {
            return Err(format!("etcd cancelled the watch: {}", resp.cancel_reason));
        }
        let header = resp.header.as_ref().map(|h| h.revision.max(0) as u64).unwrap_or(0);
        if resp.events.is_empty() {
            // A progress notification: every event up to `header` was sent. (The reply to
            // the create request says nothing about the events still to come.)
            if !resp.created && header > 0 {
                etcd.applied.send_if_modified(|cur| {
                    if header > *cur {
                        *cur = header;
                        true
                    } else {
                        false
                    }
                });
            }
            continue;
        }
        let mut revision = 0;
        let mut changes = Vec::with_capacity(resp.events.len());
        for ev in &resp.events {
            let Some(kv) = &ev.kv else { continue };
            let rev = kv.mod_revision.max(0) as u64;
            revision = revision.max(rev);
            let Some((table, key)) = etcd.split_key(&kv.key) else { continue };
            let record = (ev.r#type == 0).then(|| record(kv));
            changes.push(Change { table, key, record, revision: rev });
        }
        etcd.deliver(apply, changes, revision);
    }
}

/// Holds this node's lease and member key; tells the parts whether the node is live.
async fn member_loop(etcd: Weak<Etcd>, apply: Weak<dyn Apply>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(e) = etcd.upgrade() else { return };
        let err = hold_membership(&e, &apply).await;
        if let Some(a) = apply.upgrade() {
            a.live(false);
        }
        *e.lease.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::warn!(error = %err, node = %e.node, "this node lost its etcd lease; it stopped its health checks and tries again");
        drop(e);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Grants a lease, writes the member key under it and keeps it alive. Returns why it
/// stopped. The node counts as live until `last acknowledged keep-alive sent + TTL - TTL/4`:
/// etcd cannot expire the lease before `that send + TTL`, so the node stops its work
/// before any other node can see the member key go and take it.
async fn hold_membership(etcd: &Etcd, apply: &Weak<dyn Apply>) -> String {
    let ttl_secs = etcd.lease_ttl.as_secs().max(2) as i64;
    let granted_at = Instant::now();
    let lease = match etcd.client.lease_grant(ttl_secs).await {
        Ok(l) => l,
        Err(e) => return format!("cannot grant a lease: {e}"),
    };
    let ttl = Duration::from_secs(lease.ttl.max(1) as u64);
    let member = Member { node: etcd.node.clone(), started_unix_ms: signalbox_core::time::unix_nanos() / 1_000_000 };
    let value = serde_json::to_vec(&member).unwrap_or_default();
    if let Err(e) = etcd.client.put(etcd.etcd_key(MEMBERS, &etcd.node), value, lease.id).await {
        return format!("cannot write the member key: {e}");
    }
    *etcd.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease.id);
    let (tx, rx) = mpsc::channel(4);
    // etcd answers the stream's headers with its first message: send one up front.
    let mut sent = Instant::now();
    if tx.send(rpc::LeaseKeepAliveRequest { id: lease.id }).await.is_err() {
        return "the keep-alive stream closed".into();
    }
    let mut stream =
        match etcd.client.stream::<_, rpc::LeaseKeepAliveResponse>("/etcdserverpb.Lease/LeaseKeepAlive", rx).await {
            Ok(s) => s,
            Err(e) => return format!("cannot open the keep-alive stream: {e}"),
        };
    let margin = ttl / 4;
    let mut live_until = granted_at + ttl - margin;
    if let Some(a) = apply.upgrade() {
        a.live(true);
    }
    let period = ttl / 3;
    loop {
        let wait = live_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl > 0 => {
                live_until = sent + Duration::from_secs(r.ttl as u64) - margin;
            }
            Ok(Ok(Some(_))) => return "etcd says the lease expired".into(),
            Ok(Ok(None)) => return "etcd ended the keep-alive stream".into(),
            Ok(Err(s)) => return format!("keep-alive failed: {:?}: {}", s.code(), s.message()),
            Err(_) => return format!("no keep-alive answer before the lease's safe end ({ttl:?} TTL)"),
        }
        let next = sent + period;
        if next > live_until {
            return "keep-alives fall behind the lease".into();
        }
        tokio::time::sleep_until(next.into()).await;
        sent = Instant::now();
        if tx.send(rpc::LeaseKeepAliveRequest { id: lease.id }).await.is_err() {
            return "the keep-alive stream closed".into();
        }
    }
}

impl Backend for Etcd {
    fn commit(&self, ops: Vec<Op>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let txn = self.txn(ops);
            if txn.success.is_empty() {
                return Ok(self.revision());
            }
            let resp =
                self.client.txn(txn).await.map_err(|e| {
                    ControlError::Unavailable(format!("etcd at {}: the write failed: {e}", self.endpoints))
                })?;
            let revision = resp.header.map(|h| h.revision.max(0) as u64).unwrap_or(0);
            // Either way, wait for the state that decided it: a writer that lost a condition
            // re-checks against the change that beat it.
            self.wait_applied(revision).await?;
            if !resp.succeeded {
                return Err(ControlError::Conflict { current: 0 });
            }
            Ok(revision)
        })
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Record>> {
        Ok(self.mirror.read().unwrap_or_else(|e| e.into_inner()).get(&(table, key.to_owned())).cloned())
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Record)>> {
        let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.range((table, prefix.to_owned())..)
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), r)| (k.clone(), r.clone()))
            .collect())
    }

    fn meta(&self, _key: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    fn replicated(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("etcd at {} (prefix {})", self.endpoints, self.prefix)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
