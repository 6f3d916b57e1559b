//! Work that must run once in a cluster (an instance's health checks, a scrape target, a
//! rule group) belongs to one live member: the member with the highest rendezvous hash of
//! (member name, work key). Every node computes the same owner from the same member list,
//! and a member joining or leaving moves only its own share.
//!
//! The control plane knows the members (from etcd leases) and publishes them as an
//! [`Owners`] watch; a component that runs such work checks [`Members::owns`] before it
//! runs a piece and re-checks whenever the watch changes. A single node (no name) owns
//! everything, so components behave as before when there is no cluster.
//!
//! A node that loses its lease publishes `live = false` before another node can see its
//! member key go: it then owns nothing, so its work stops before another node starts it.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// This node's view of the cluster's members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// This node's name; `None` on a single node.
    pub me: Option<String>,
    /// Whether this node holds its lease.
    pub live: bool,
    /// Members with a live lease.
    pub members: BTreeSet<String>,
}

/// A live view of the members; it changes when a member joins or leaves or this node's
/// lease is granted or lost.
pub type Owners = tokio::sync::watch::Receiver<Arc<Members>>;

impl Members {
    /// A single node: it owns everything.
    pub fn single() -> Members {
        Members::default()
    }

    /// Whether this is a node of a cluster (work is shared out).
    pub fn clustered(&self) -> bool {
        self.me.is_some()
    }

    /// True when this node runs `key`.
    pub fn owns(&self, key: &str) -> bool {
        let Some(me) = &self.me else { return true };
        self.live && self.members.contains(me) && owner(&self.members, key) == Some(me.as_str())
    }

    /// The member that runs `key` (`None` on a single node, or with no live member).
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.me.as_ref()?;
        owner(&self.members, key)
    }
}

/// A watch that always says "single node".
pub fn single_node() -> Owners {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Members::single()));
    // The receiver keeps the last value after the sender is gone.
    drop(tx);
    rx
}

/// The member with the highest score for `key`.
pub fn owner<'a>(members: &'a BTreeSet<String>, key: &str) -> Option<&'a str> {
    members.iter().max_by_key(|m| score(m, key)).map(|m| m.as_str())
}

/// SHA-256 of `member \0 key`, first 8 bytes: stable across builds and platforms, so nodes
/// of different versions agree on owners.
fn score(member: &str, key: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_key_has_one_owner_and_a_leaving_member_moves_only_its_share() {
        let (three, two) = (set(&["a", "b", "c"]), set(&["a", "b"]));
        let mut per_member = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("key-{i}");
            let before = owner(&three, &key).unwrap();
            *per_member.entry(before).or_insert(0) += 1;
            let after = owner(&two, &key).unwrap();
            if before != "c" {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
        }
        for m in ["a", "b", "c"] {
            let n = per_member[m];
            assert!((800..1200).contains(&n), "{m} owns {n} of 3000");
        }
    }

    #[test]
    fn exactly_one_live_member_owns_each_key() {
        let members = set(&["a", "b", "c"]);
        let views: Vec<Members> = ["a", "b", "c"]
            .iter()
            .map(|me| Members { me: Some(me.to_string()), live: true, members: members.clone() })
            .collect();
        for i in 0..200 {
            let key = format!("scrape\x1fjob\x1fhttp://10.0.0.{i}:9100/metrics");
            let owners: Vec<&Members> = views.iter().filter(|v| v.owns(&key)).collect();
            assert_eq!(owners.len(), 1, "{key}");
            assert_eq!(owners[0].me.as_deref(), views[0].owner(&key), "every node names the same owner");
        }
        let mut lost = views[0].clone();
        lost.live = false;
        assert!((0..200).all(|i| !lost.owns(&format!("k{i}"))), "a node without its lease owns nothing");
        assert!(Members::single().owns("x"), "a single node owns everything");
        assert_eq!(Members::single().owner("x"), None);
        assert!(single_node().borrow().owns("x"));
    }
}
