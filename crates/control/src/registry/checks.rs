//! Checks added to and removed from a registered instance one at a time (Consul's
//! `agent/check/register` and `agent/check/deregister`).

use super::model::{self, CheckSpec, Registration};
use super::{CheckState, CheckView, Registry};
use crate::error::{ControlError, Result};
use crate::store::{INSTANCES, Op};

impl Registry {
    /// Adds a check to a registered instance (Consul's `agent/check/register` with a
    /// `ServiceID`), replacing the instance's check with the same id; its other checks keep
    /// their state. `default_id` names the check when the request does not.
    pub async fn add_check(&self, instance: &str, req: model::CheckRequest, default_id: String) -> Result<CheckView> {
        let _w = self.writes.lock().await;
        let reg = self.registration(instance)?;
        let spec = req.validate("check", default_id, &reg.address, reg.port)?;
        if self.lock().checks.get(&spec.id).is_some_and(|owner| owner != instance) {
            return Err(ControlError::invalid(
                "check.id",
                format!("check id `{}` is used by another instance", spec.id),
            ));
        }
        let id = spec.id.clone();
        let mut checks: Vec<CheckSpec> = reg.checks.iter().filter(|c| c.id != id).cloned().collect();
        checks.push(spec);
        if checks.len() > model::MAX_CHECKS {
            return Err(ControlError::limit("checks", format!("an instance has at most {} checks", model::MAX_CHECKS)));
        }
        self.set_checks(reg, checks).await?;
        self.instance(instance)
            .and_then(|i| i.checks.into_iter().find(|c| c.id == id))
            .ok_or_else(|| ControlError::NotFound(format!("check `{id}`")))
    }

    /// Removes one check (Consul's `agent/check/deregister`); false if no instance has it.
    pub async fn remove_check(&self, check: &str) -> Result<bool> {
        let _w = self.writes.lock().await;
        let Some(instance) = self.lock().checks.get(check).cloned() else { return Ok(false) };
        let reg = self.registration(&instance)?;
        let checks = reg.checks.iter().filter(|c| c.id != check).cloned().collect();
        self.set_checks(reg, checks).await?;
        Ok(true)
    }

    fn registration(&self, instance: &str) -> Result<Registration> {
        let st = self.lock();
        st.by_id
            .get(instance)
            .and_then(|svc| st.services.get(svc))
            .and_then(|s| s.get(instance))
            .map(|i| i.reg.clone())
            .ok_or_else(|| ControlError::NotFound(format!("instance `{instance}`")))
    }

    /// Stores `reg` with `checks` and restarts its check tasks; checks whose definition did
    /// not change keep their status. Call with the writes lock held.
    async fn set_checks(&self, mut reg: Registration, checks: Vec<CheckSpec>) -> Result<()> {
        reg.checks = checks;
        if self.store.replicated() {
            self.store.commit(vec![Op::put(INSTANCES, reg.id.clone(), &reg)?]).await?;
            return Ok(());
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        let mut ops = vec![Op::put(INSTANCES, reg.id.clone(), &reg)?];
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        let mut st = self.lock();
        let id = reg.id.clone();
        let service = reg.service.clone();
        let Some(inst) = st.services.get_mut(&service).and_then(|s| s.get_mut(&id)) else {
            // Invariant: the writes lock kept the instance registered since `registration`.
            drop(st);
            step.publish();
            return Ok(());
        };
        let removed = self.replace_checks(inst, reg, idx);
        for c in removed {
            st.checks.remove(&c);
        }
        let ids: Vec<String> = st.services[&service][&id].reg.checks.iter().map(|c| c.id.clone()).collect();
        for c in ids {
            st.checks.insert(c, id.clone());
        }
        st.log(idx, &service, &id, "registered");
        st.service_index.insert(service.clone(), idx);
        self.refresh_endpoints(&st, &service);
        drop(st);
        step.publish();
        Ok(())
    }

    /// Gives `inst` the registration `reg`, restarting its check tasks; checks whose
    /// definition did not change keep their state. Returns the ids of the old checks.
    pub(super) fn replace_checks(&self, inst: &mut super::Instance, reg: Registration, idx: u64) -> Vec<String> {
        for t in inst.tasks.drain(..) {
            t.abort();
        }
        let mut old: Vec<CheckState> = std::mem::take(&mut inst.checks);
        let removed: Vec<String> = old.iter().map(|c| c.spec.id.clone()).collect();
        inst.checks = reg
            .checks
            .iter()
            .map(|spec| match old.iter().position(|c| c.spec == *spec) {
                Some(p) => old.swap_remove(p),
                None => CheckState::new(spec.clone()),
            })
            .collect();
        inst.tasks = self.spawn_checks(&reg);
        inst.modify_index = idx;
        inst.reg = reg;
        removed
    }
}
