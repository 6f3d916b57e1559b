//! Which node runs an instance's health checks: with a replicated backend, each instance
//! belongs to one live member, chosen by rendezvous hashing of the instance id over the
//! member names ([`signalbox_core::ownership`]), so a member joining or leaving moves only
//! its own share of instances. A single node (no name) owns everything.
//!
//! The same view is published as a watch ([`Ownership::subscribe`]) for the other work that
//! must run once in a cluster: scrape targets and rule groups (the metrics side).

use signalbox_core::ownership::Members;
use std::sync::Arc;
use tokio::sync::watch;

/// This node's view of the members, and its publication.
pub(super) struct Ownership {
    view: Members,
    published: watch::Sender<Arc<Members>>,
}

impl Ownership {
    pub(super) fn new(me: Option<String>) -> Self {
        let view = Members { me, live: false, members: Default::default() };
        Ownership { published: watch::Sender::new(Arc::new(view.clone())), view }
    }

    pub(super) fn set_live(&mut self, live: bool) -> bool {
        let changed = std::mem::replace(&mut self.view.live, live) != live;
        self.publish(changed)
    }

    pub(super) fn set_member(&mut self, node: &str, present: bool) -> bool {
        let changed = if present { self.view.members.insert(node.to_owned()) } else { self.view.members.remove(node) };
        self.publish(changed)
    }

    fn publish(&self, changed: bool) -> bool {
        if changed {
            self.published.send_replace(Arc::new(self.view.clone()));
        }
        changed
    }

    pub(super) fn members(&self) -> Vec<String> {
        self.view.members.iter().cloned().collect()
    }

    /// True when this node runs `instance`'s checks.
    pub(super) fn owns(&self, instance: &str) -> bool {
        self.view.owns(instance)
    }

    /// The members as they change.
    pub(super) fn subscribe(&self) -> signalbox_core::ownership::Owners {
        self.published.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_view_follows_lease_and_members() {
        let mut o = Ownership::new(Some("a".into()));
        let rx = o.subscribe();
        o.set_member("a", true);
        assert!(!o.owns("x"), "not live: owns nothing");
        assert!(!rx.borrow().owns("x"));
        o.set_live(true);
        assert!(o.owns("x"), "the only member owns everything");
        assert!(rx.borrow().owns("x"));
        assert!(!o.set_live(true), "no change, nothing published");
        assert!(Ownership::new(None).owns("x"), "a single node owns everything");
    }
}
