//! The sample system: its services, their endpoints, and which calls each endpoint makes.

/// A call to another service: method, service, path (through the gateway).
pub type Call = (&'static str, &'static str, &'static str);

/// One endpoint of a sample service.
pub struct Endpoint {
    pub path: &'static str,
    /// Own work per request, before jitter.
    pub work_ms: u64,
    /// Calls made, in order; the first failure fails the request.
    pub calls: &'static [Call],
    /// The error message logged when this endpoint fails by itself.
    pub failure: &'static str,
}

/// A sample service.
pub struct ServiceSpec {
    pub name: &'static str,
    pub instances: u8,
    pub version: &'static str,
    pub endpoints: &'static [Endpoint],
}

/// web-frontend → orders → payments and inventory; inventory → inventory-db.
pub const TOPOLOGY: &[ServiceSpec] = &[
    ServiceSpec { name: "web-frontend", instances: 1, version: "2.3.0", endpoints: WEB_FRONTEND_ENDPOINTS },
    ServiceSpec {
        name: "orders",
        instances: 2,
        version: "1.8.1",
        endpoints: &[Endpoint {
            path: "/orders",
            work_ms: 12,
            calls: &[("POST", "inventory", "/reserve"), ("POST", "payments", "/charge")],
            failure: "order could not be saved: optimistic lock conflict",
        }],
    },
    ServiceSpec {
        name: "payments",
        instances: 2,
        version: "3.0.4",
        endpoints: &[Endpoint {
            path: "/charge",
            work_ms: 25,
            calls: &[],
            failure: "card network declined the charge: upstream timeout",
        }],
    },
    ServiceSpec {
        name: "inventory",
        instances: 1,
        version: "1.2.0",
        endpoints: &[
            Endpoint {
                path: "/stock",
                work_ms: 4,
                calls: &[("GET", "inventory-db", "/query")],
                failure: "stock lookup failed",
            },
            Endpoint {
                path: "/reserve",
                work_ms: 6,
                calls: &[("GET", "inventory-db", "/query")],
                failure: "reservation failed: item locked",
            },
        ],
    },
    ServiceSpec {
        name: "inventory-db",
        instances: 1,
        version: "14.2",
        endpoints: &[Endpoint { path: "/query", work_ms: 30, calls: &[], failure: "query failed: deadlock detected" }],
    },
];

/// web-frontend's endpoints, served by its stable version and by the canary.
const WEB_FRONTEND_ENDPOINTS: &[Endpoint] = &[
    Endpoint { path: "/", work_ms: 3, calls: &[], failure: "template rendering failed" },
    Endpoint {
        path: "/products",
        work_ms: 5,
        calls: &[("GET", "inventory", "/stock")],
        failure: "product page failed",
    },
    Endpoint {
        path: "/checkout",
        work_ms: 8,
        calls: &[("POST", "orders", "/orders")],
        failure: "checkout page failed",
    },
];

/// A new version of web-frontend that fails [`CANARY_ERROR_PERMILLE`] of its requests by
/// itself: the bad canary the demo rolls out (and the node rolls back). It is registered at
/// start-up with no traffic (the traffic policy sends every request to the stable version).
pub const CANARY: ServiceSpec =
    ServiceSpec { name: "web-frontend", instances: 1, version: "2.4.0", endpoints: WEB_FRONTEND_ENDPOINTS };

/// The canary's own failures: 5 % of its requests.
pub const CANARY_ERROR_PERMILLE: u64 = 50;
