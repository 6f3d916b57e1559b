//! The Signalbox control plane: where services are and whether they are healthy, what
//! configuration they run with, and who may change either.
//!
//! [`ControlPlane`] opens the store and loads every part: the embedded store in the data
//! directory (the default), or an etcd cluster that several nodes share
//! ([`ControlPlane::open_etcd`]; see [`backend`] for how changes reach every node).
//! All parts share one change [`index::Index`], so one number orders every change, as
//! Consul's index does, and blocking queries can wait on it.
//!
//! # Layout
//! - [`backend`]: the storage trait, the embedded (redb) and etcd backends, `[control]`.
//! - [`store`]: the handle the parts hold; a write is acknowledged only once durable.
//! - [`replica`]: applies the changes an etcd watch delivers to every part.
//! - [`index`]: the global change index, monotonic across restarts; each change is one
//!   ordered step (allocate, commit, apply, publish).
//! - [`registry`]: instances and the health control loop ([`registry::health`]), validation
//!   of registrations ([`registry::model`]); it is also the gateway's endpoint source.
//! - [`config`]: versioned central configuration with history, diff, rollback and CAS.
//! - [`spring`]: stored documents (properties, JSON, YAML) as Spring Cloud Config properties.
//! - [`kv`]: Consul-style key/value entries and their atomic transactions ([`kv::txn`]).
//! - [`traffic`]: blue-green switches of a service's traffic policy, with one-step rollback.
//! - [`access`]: API tokens with roles and console sessions.
//! - [`partitions`]: which storage node owns which partition of telemetry (etcd only).
//! - [`error`]: the crate's error type.

pub mod access;
pub mod backend;
pub mod config;
pub mod error;
pub mod index;
pub mod kv;
pub mod partitions;
pub mod registry;
pub mod replica;
pub mod spring;
pub mod store;
pub mod traffic;

use std::path::Path;
use std::sync::Arc;

/// Settings of the control plane.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub registry: registry::Limits,
    pub config: config::Limits,
    /// Tokens from the config file.
    pub file_tokens: Vec<access::Token>,
    pub session_ttl: Option<std::time::Duration>,
}

/// Every control-plane component, sharing one store and one index.
pub struct ControlPlane {
    pub store: store::Store,
    pub index: Arc<index::Index>,
    pub registry: Arc<registry::Registry>,
    pub config: Arc<config::ConfigStore>,
    pub kv: Arc<kv::KvStore>,
    pub access: Arc<access::Access>,
    /// The etcd backend and the receiver of its changes, when the state lives there.
    etcd: Option<(Arc<backend::etcd::Etcd>, Arc<replica::Replica>)>,
}

impl ControlPlane {
    /// Opens `data_dir/control` and loads everything. Must run inside a tokio runtime (the
    /// registry starts its health checks).
    pub fn open(data_dir: &Path, s: Settings) -> error::Result<Self> {
        let store = store::Store::open(&data_dir.join("control"))?;
        let index = Arc::new(index::Index::load(store.clone())?);
        let registry = registry::Registry::load(store.clone(), index.clone(), s.registry)?;
        let config = Arc::new(config::ConfigStore::load(store.clone(), index.clone(), s.config)?);
        let kv = Arc::new(kv::KvStore::load(store.clone(), index.clone())?);
        let ttl = s.session_ttl.unwrap_or(std::time::Duration::from_secs(12 * 3600));
        let access = Arc::new(access::Access::load(store.clone(), s.file_tokens, ttl)?);
        Ok(ControlPlane { store, index, registry, config, kv, access, etcd: None })
    }

    /// Opens the backend `[control]` names: the embedded store in `data_dir`, or etcd.
    pub async fn open_configured(
        data_dir: &Path,
        s: Settings,
        cfg: &backend::config::ControlConfig,
    ) -> error::Result<Self> {
        match cfg.backend {
            backend::config::BackendKind::Embedded => Self::open(data_dir, s),
            backend::config::BackendKind::Etcd => Self::open_etcd(&cfg.etcd, s).await,
        }
    }

    /// Connects to etcd, loads every part from the keys under the prefix, and starts the
    /// watch that keeps them current and the lease that makes this node a member. Fails
    /// (naming the endpoints) when etcd does not answer within the request timeout.
    pub async fn open_etcd(cfg: &backend::config::EtcdConfig, s: Settings) -> error::Result<Self> {
        let mut problems = signalbox_core::config::Problems::default();
        cfg.check("control.etcd", &mut problems);
        if let Some(p) = problems.list.first() {
            return Err(error::ControlError::invalid(p.path.clone(), p.message.clone()));
        }
        let etcd = backend::etcd::Etcd::connect(cfg).await?;
        let store = store::Store::with_backend(etcd.clone());
        let index = Arc::new(index::Index::replicated(store.clone(), etcd.revision()));
        let registry =
            registry::Registry::load_as(store.clone(), index.clone(), s.registry, Some(etcd.node().to_owned()))?;
        for (node, _) in store.scan::<serde_json::Value>(store::MEMBERS, "")? {
            registry.set_member(&node, true);
        }
        let config = Arc::new(config::ConfigStore::load(store.clone(), index.clone(), s.config)?);
        let kv = Arc::new(kv::KvStore::load(store.clone(), index.clone())?);
        let ttl = s.session_ttl.unwrap_or(std::time::Duration::from_secs(12 * 3600));
        let access = Arc::new(access::Access::load(store.clone(), s.file_tokens, ttl)?);
        let replica = Arc::new(replica::Replica::new(&registry, &config, &kv, &access, &index));
        let sink: Arc<dyn backend::Apply> = replica.clone();
        etcd.start(Arc::downgrade(&sink));
        Ok(ControlPlane { store, index, registry, config, kv, access, etcd: Some((etcd, replica)) })
    }

    /// This node's name among the members, with etcd.
    pub fn node_name(&self) -> Option<&str> {
        self.etcd.as_ref().map(|(e, _)| e.node())
    }

    /// Starts sharing out the `count` partitions of stored telemetry among the live
    /// members and records this node as a storage node reachable at `address` (etcd
    /// only; `None` on a single node, which owns every partition).
    pub async fn start_partitions(
        &self,
        count: u32,
        address: String,
    ) -> error::Result<Option<Arc<partitions::Partitions>>> {
        let Some((etcd, replica)) = &self.etcd else { return Ok(None) };
        let p = partitions::Partitions::start(etcd.clone(), self.store.clone(), count, address, false);
        let follower: Arc<dyn backend::Apply> = p.clone();
        if replica.follow(Arc::downgrade(&follower)) {
            follower.live(true);
        }
        p.register().await?;
        Ok(Some(p))
    }

    /// Leaves the cluster (etcd): stops following changes and gives up the lease, so the
    /// other nodes take over this node's health checks at once. A no-op on one node.
    pub async fn leave(&self) {
        if let Some((e, _)) = &self.etcd {
            e.leave().await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some((e, _)) = &self.etcd {
            e.stop();
        }
    }
}
