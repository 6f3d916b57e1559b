//! Endpoint discovery: the seam between the gateway's data plane and whatever knows where a
//! service's instances are (static config now; the registry, DNS or a remote control plane
//! later). The gateway subscribes once per service and follows the watch channel; it never
//! asks on the request path.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::watch;

/// One reachable instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// `host:port`, the authority the gateway connects to.
    pub address: String,
    /// Instance id when the source has one (the registry does), else the address.
    pub id: String,
    /// Relative weight for balancers that honour weights; 1 by default.
    pub weight: u32,
    /// The version the instance runs (registry metadata `version` or a `version=…` tag),
    /// which traffic policies split on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl EndpointInfo {
    pub fn new(address: impl Into<String>) -> Self {
        let address = address.into();
        EndpointInfo { id: address.clone(), address, weight: 1, version: None }
    }

    /// The same endpoint, running `version`.
    pub fn with_version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }
}

/// The current endpoint set of one service.
pub type EndpointSet = Arc<Vec<EndpointInfo>>;

/// Something that knows the endpoints of services and tells when they change.
pub trait EndpointSource: Send + Sync + 'static {
    /// A channel that always holds the current endpoint set of `service`, or `None` when this
    /// source does not know the service.
    fn subscribe(&self, service: &str) -> Option<watch::Receiver<EndpointSet>>;
}

/// A fixed set of endpoints per service, as written in the config file.
#[derive(Default)]
pub struct StaticEndpoints {
    services: std::collections::HashMap<String, watch::Sender<EndpointSet>>,
}

impl StaticEndpoints {
    /// Sets (or replaces) the endpoints of `service`.
    pub fn set(&mut self, service: &str, endpoints: Vec<EndpointInfo>) {
        let set = Arc::new(endpoints);
        match self.services.get(service) {
            Some(tx) => {
                tx.send_replace(set);
            }
            None => {
                self.services.insert(service.to_owned(), watch::channel(set).0);
            }
        }
    }
}

impl EndpointSource for StaticEndpoints {
    fn subscribe(&self, service: &str) -> Option<watch::Receiver<EndpointSet>> {
        self.services.get(service).map(|tx| tx.subscribe())
    }
}
