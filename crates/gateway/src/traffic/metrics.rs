//! Per-version RED series: a route's requests and latency by the version of the endpoint
//! that served them, and the mirror's series. Series are created on a version's first
//! request (a route with unversioned endpoints keeps only its unlabelled series, so existing
//! queries stay as they were); lookups after that read an atomic list without locking.

use crate::telemetry::{CLASSES, class_index};
use arc_swap::ArcSwap;
use signalbox_core::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};
use std::sync::{Arc, Mutex};

/// One version's series of one route (or of one route's mirror).
pub struct VersionSeries {
    requests: [Counter; 6],
    duration: Histogram,
}

impl VersionSeries {
    pub fn record(&self, status: Option<u16>, seconds: f64) {
        self.requests[class_index(status)].inc();
        self.duration.observe(seconds);
    }
}

/// Which families a [`ByVersion`] fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `signalbox_gateway_requests_total` / `_request_duration_seconds` with `version`.
    Requests,
    /// `signalbox_gateway_mirror_requests_total` / `_mirror_request_duration_seconds`.
    Mirror,
}

/// The per-version series of one route, created lazily.
pub struct ByVersion {
    reg: Registry,
    route: Arc<str>,
    service: Arc<str>,
    kind: Kind,
    list: ArcSwap<Vec<(Arc<str>, Arc<VersionSeries>)>>,
    add: Mutex<()>,
}

impl ByVersion {
    pub fn new(reg: &Registry, route: &str, service: &str, kind: Kind) -> Self {
        ByVersion {
            reg: reg.clone(),
            route: route.into(),
            service: service.into(),
            kind,
            list: ArcSwap::from_pointee(Vec::new()),
            add: Mutex::new(()),
        }
    }

    /// Records a request served by `version`.
    pub fn record(&self, version: &Arc<str>, status: Option<u16>, seconds: f64) {
        self.series(version).record(status, seconds);
    }

    fn find(&self, version: &Arc<str>) -> Option<Arc<VersionSeries>> {
        self.list.load().iter().find(|(v, _)| Arc::ptr_eq(v, version) || **v == **version).map(|(_, s)| s.clone())
    }

    fn series(&self, version: &Arc<str>) -> Arc<VersionSeries> {
        if let Some(s) = self.find(version) {
            return s;
        }
        let _g = self.add.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.find(version) {
            return s;
        }
        let s = Arc::new(self.make(version));
        let mut next = Vec::clone(&self.list.load());
        next.push((version.clone(), s.clone()));
        self.list.store(Arc::new(next));
        s
    }

    fn make(&self, version: &str) -> VersionSeries {
        let (route, service) = (&*self.route, &*self.service);
        match self.kind {
            Kind::Requests => VersionSeries {
                requests: CLASSES.map(|class| {
                    self.reg.counter(
                        "signalbox_gateway_requests_total",
                        "Requests handled by the gateway, by route, upstream service and status class.",
                        &[("route", route), ("service", service), ("version", version), ("class", class)],
                    )
                }),
                duration: self.reg.histogram(
                    "signalbox_gateway_request_duration_seconds",
                    "Time from request received to response body finished, by route and service.",
                    &[("route", route), ("service", service), ("version", version)],
                    LATENCY_BUCKETS,
                ),
            },
            Kind::Mirror => VersionSeries {
                requests: CLASSES.map(|class| {
                    self.reg.counter(
                        "signalbox_gateway_mirror_requests_total",
                        "Mirrored copies of requests, by route, service, mirror version and status class (`error`: no response); their answers are discarded.",
                        &[("route", route), ("service", service), ("version", version), ("class", class)],
                    )
                }),
                duration: self.reg.histogram(
                    "signalbox_gateway_mirror_request_duration_seconds",
                    "Time from mirror sent to its response body drained.",
                    &[("route", route), ("service", service), ("version", version)],
                    LATENCY_BUCKETS,
                ),
            },
        }
    }
}
