//! The Signalbox control plane: where services are and whether they are healthy, what
//! configuration they run with, and who may change either.
//!
//! [`ControlPlane`] opens the embedded store in the data directory and loads every part.
//! All parts share one change [`index::Index`], so one number orders every change, as
//! Consul's index does, and blocking queries can wait on it.
//!
//! # Layout
//! - [`store`]: the redb store; a write is acknowledged only once durable.
//! - [`index`]: the global change index, monotonic across restarts; each change is one
//!   ordered step (allocate, commit, apply, publish).
//! - [`registry`]: instances and the health control loop ([`registry::health`]), validation
//!   of registrations ([`registry::model`]); it is also the gateway's endpoint source.
//! - [`config`]: versioned central configuration with history, diff, rollback and CAS.
//! - [`spring`]: stored documents (properties, JSON, YAML) as Spring Cloud Config properties.
//! - [`kv`]: Consul-style key/value entries and their atomic transactions ([`kv::txn`]).
//! - [`traffic`]: blue-green switches of a service's traffic policy, with one-step rollback.
//! - [`access`]: API tokens with roles and console sessions.
//! - [`error`]: the crate's error type.

pub mod access;
pub mod config;
pub mod error;
pub mod index;
pub mod kv;
pub mod registry;
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
        Ok(ControlPlane { store, index, registry, config, kv, access })
    }
}
