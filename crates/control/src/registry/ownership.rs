//! Which node runs an instance's health checks: with a replicated backend, each instance
//! belongs to one live member, chosen by rendezvous hashing of the instance id over the
//! member names, so a member joining or leaving moves only its own share of instances.
//! A single node (no name) owns everything.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// This node's view of the members.
pub(super) struct Ownership {
    /// This node's name; `None` on a single node.
    me: Option<String>,
    /// Whether this node holds its lease.
    live: bool,
    /// Members with a live lease, as the watch reports them.
    members: BTreeSet<String>,
}

impl Ownership {
    pub(super) fn new(me: Option<String>) -> Self {
        Ownership { me, live: false, members: BTreeSet::new() }
    }

    pub(super) fn set_live(&mut self, live: bool) -> bool {
        std::mem::replace(&mut self.live, live) != live
    }

    pub(super) fn set_member(&mut self, node: &str, present: bool) -> bool {
        if present { self.members.insert(node.to_owned()) } else { self.members.remove(node) }
    }

    pub(super) fn members(&self) -> Vec<String> {
        self.members.iter().cloned().collect()
    }

    /// True when this node runs `instance`'s checks.
    pub(super) fn owns(&self, instance: &str) -> bool {
        let Some(me) = &self.me else { return true };
        self.live && self.members.contains(me) && owner(&self.members, instance) == Some(me.as_str())
    }
}

/// The member with the highest score for `instance`.
pub(crate) fn owner<'a>(members: &'a BTreeSet<String>, instance: &str) -> Option<&'a str> {
    members.iter().max_by_key(|m| score(m, instance)).map(|m| m.as_str())
}

fn score(member: &str, instance: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update([0]);
    h.update(instance.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_has_one_owner_and_a_leaving_member_moves_only_its_share() {
        let three: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut per_member = std::collections::HashMap::new();
        for i in 0..3000 {
            let id = format!("instance-{i}");
            let before = owner(&three, &id).unwrap();
            *per_member.entry(before).or_insert(0) += 1;
            let after = owner(&two, &id).unwrap();
            if before != "c" {
                assert_eq!(before, after, "{id} moved although its owner stayed");
            }
        }
        for m in ["a", "b", "c"] {
            let n = per_member[m];
            assert!((800..1200).contains(&n), "{m} owns {n} of 3000");
        }
        let mut o = Ownership::new(Some("a".into()));
        o.set_member("a", true);
        assert!(!o.owns("x"), "not live: owns nothing");
        o.set_live(true);
        assert!(o.owns("x"), "the only member owns everything");
        assert!(Ownership::new(None).owns("x"), "a single node owns everything");
    }
}
