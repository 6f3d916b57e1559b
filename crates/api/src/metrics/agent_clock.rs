//! The clock offset of every `signalbox agent` that pushes host metrics, measured by the
//! node against its own clock on the push itself (NTP's arithmetic, no extra exchange).
//!
//! The agent states when it sent the push by its clock ([`SENT_AT_HEADER`]) and the network
//! round trip of its previous push ([`ROUND_TRIP_HEADER`]: time to the answer less the
//! node's handling time, which the node states in every answer as [`HANDLED_HEADER`]). With
//! `t0` the send time (agent clock), `t1` the arrival (node clock) and `d` the round trip,
//! the agent's clock is ahead of the node's by `t0 + d/2 - t1`, off by at most half the
//! round trip's asymmetry (and by all of the first push's one-way delay, which has no round
//! trip yet). The node stores it as `signalbox_agent_clock_offset_seconds{instance, job}`
//! (the labels of the pushed series) at `t1`, for the default `HostClockSkew` rule.
//!
//! The header names match `crates/agent/src/host/push.rs` (the agent does not depend on
//! this crate).

use axum::http::HeaderMap;
use signalbox_metrics::storage::Labels;

/// The agent's clock when it sent the push, in Unix nanoseconds.
pub const SENT_AT_HEADER: &str = "x-signalbox-sent-at";
/// The network round trip of the agent's previous push, in nanoseconds.
pub const ROUND_TRIP_HEADER: &str = "x-signalbox-round-trip";
/// In the answer: nanoseconds between the request's arrival and the answer.
pub const HANDLED_HEADER: &str = "x-signalbox-handled-ns";
/// The family the offset is stored as.
pub const FAMILY: &str = "signalbox_agent_clock_offset_seconds";
/// What the family measures (its metadata's help).
pub const HELP: &str =
    "How far the pushing agent's clock is ahead of the node's (negative: behind), measured on its host-metrics push.";
/// Round trips longer than this give no measurement (the error bound would be useless).
const MAX_ROUND_TRIP_NS: u64 = 10_000_000_000;

/// The agent's clock offset in seconds from a push's headers, given the node's arrival time
/// (Unix nanoseconds); None when the push carries no (valid) send time.
pub fn offset_seconds(headers: &HeaderMap, arrived_ns: i64) -> Option<f64> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
    let sent = number(SENT_AT_HEADER)?;
    let round_trip = number(ROUND_TRIP_HEADER).filter(|d| (0..=MAX_ROUND_TRIP_NS as i64).contains(d)).unwrap_or(0);
    let offset_ns = sent.checked_add(round_trip / 2)?.checked_sub(arrived_ns)?;
    Some(offset_ns as f64 / 1e9)
}

/// The offset's series for a push whose samples are `samples`: the `instance` and `job` of
/// its first sample that has an `instance` (None when none has).
pub fn series(samples: &[(Labels, i64, f64)], offset: f64, arrived_ns: i64) -> Option<(Labels, i64, f64)> {
    let labels = samples.iter().map(|(l, _, _)| l).find(|l| l.iter().any(|(k, _)| k == "instance"))?;
    let mut out: Labels = labels.iter().filter(|(k, _)| k == "instance" || k == "job").cloned().collect();
    out.push(("__name__".to_owned(), FAMILY.to_owned()));
    out.sort();
    Some((out, arrived_ns / 1_000_000, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_offset_is_send_time_plus_half_the_round_trip_minus_arrival() {
        let arrived = 1_700_000_000_000_000_000;
        // Sent 2 s behind the node's clock, 4 ms round trip: arrival 2 ms after sending.
        let sent = arrived - 2_000_000_000 - 2_000_000;
        let h = headers(&[(SENT_AT_HEADER, &sent.to_string()), (ROUND_TRIP_HEADER, "4000000")]);
        assert!((offset_seconds(&h, arrived).unwrap() + 2.0).abs() < 1e-9);
        // Without a round trip the one-way delay is counted as offset.
        let h = headers(&[(SENT_AT_HEADER, &sent.to_string())]);
        assert!((offset_seconds(&h, arrived).unwrap() + 2.002).abs() < 1e-9);
        // An absurd round trip is ignored, not trusted.
        let h = headers(&[(SENT_AT_HEADER, &sent.to_string()), (ROUND_TRIP_HEADER, "99000000000")]);
        assert!((offset_seconds(&h, arrived).unwrap() + 2.002).abs() < 1e-9);
    }

    #[test]
    fn pushes_without_a_valid_send_time_give_no_offset() {
        assert_eq!(offset_seconds(&HeaderMap::new(), 1), None);
        assert_eq!(offset_seconds(&headers(&[(SENT_AT_HEADER, "soon")]), 1), None);
        assert_eq!(offset_seconds(&headers(&[(SENT_AT_HEADER, &i64::MAX.to_string())]), -1), None);
    }

    #[test]
    fn the_series_takes_instance_and_job_of_the_pushed_series() {
        let l =
            |pairs: &[(&str, &str)]| -> Labels { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let samples = vec![
            (l(&[("__name__", "up")]), 0, 1.0),
            (l(&[("__name__", "node_load1"), ("instance", "web-1"), ("job", "node"), ("x", "y")]), 0, 0.5),
        ];
        let (labels, t, v) = series(&samples, -1.5, 1_700_000_000_123_456_789).unwrap();
        assert_eq!(labels, l(&[("__name__", FAMILY), ("instance", "web-1"), ("job", "node")]));
        assert_eq!((t, v), (1_700_000_000_123, -1.5));
        assert_eq!(series(&samples[..1], 0.0, 0), None);
    }
}
