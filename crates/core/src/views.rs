//! Read-only views that components offer to the API layer, so `api` can show a component's
//! state without depending on the component's crate.

use serde_json::Value;

/// What the gateway shows on the admin API.
pub trait GatewayView: Send + Sync + 'static {
    /// Routes with their policies (no secrets).
    fn routes(&self) -> Value;
    /// Services with endpoint health, load, ejections and circuit states.
    fn services(&self) -> Value;
    /// Every circuit breaker and its state.
    fn circuits(&self) -> Value;
    /// The service name on the gateway's own spans, so views can see through its hop
    /// (`caller → gateway → callee` is one call `caller → callee`).
    fn span_service(&self) -> Option<String> {
        None
    }
    /// A service's traffic policy in force and the gateway's endpoints per version.
    fn traffic(&self, _service: &str) -> Value {
        Value::Null
    }
}
