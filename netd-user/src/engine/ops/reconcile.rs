//! Bringing the kernel in line with the records after a (re)start: every
//! network's bridge, containers rolled back (an interrupted add), repaired
//! (a missing veth or namespace) or re-attached (possibly upgraded
//! programs), orphans swept, published ports rewritten.

use tracing::{info, warn};

use super::teardown::Teardown;
use crate::engine::{
    Engine,
    error::Result,
    events::Event,
    model::{Container, Owner, Phase, Sandbox},
    store::Change,
};

/// What to do with a container found at start.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// An add interrupted by a crash: take it all back.
    RollBack,
    /// Healthy: re-attach the datapath to its endpoints.
    Reattach,
    /// Plumbing missing and netd made it: make it again.
    Repair(String),
    /// Plumbing missing and someone else's to repair (a runtime's
    /// namespace, or the namespace of the container it shares).
    Report(String),
}

pub(super) fn verdict(c: &Container, problem: Option<String>) -> Verdict {
    if c.phase == Phase::Creating {
        return Verdict::RollBack;
    }
    match problem {
        None => Verdict::Reattach,
        Some(problem) => match &c.sandbox {
            Sandbox::Netns {
                owner: Owner::Netd, ..
            }
            | Sandbox::Isolated { .. } => Verdict::Repair(problem),
            _ => Verdict::Report(problem),
        },
    }
}

impl Engine {
    pub(in crate::engine) async fn reconcile(&self) -> Result<()> {
        let _guard = self.lock().await;
        self.ensure_default_network().await?;
        for net in self.networks() {
            self.driver(&net.driver)?.setup(&net).await?;
        }
        self.emit(Event::Resync);
        self.sync_host_addrs().await?;
        let mut containers = self.containers();
        // Namespace owners first: sharers depend on them.
        containers.sort_by_key(|c| matches!(c.sandbox, Sandbox::Shared { .. }));
        for c in containers {
            if let Err(e) = self.reconcile_container(c.clone()).await {
                warn!(container = %c.name, "reconcile failed: {e}");
            }
        }
        let owned: Vec<String> = self.read(|s| {
            s.containers
                .values()
                .flat_map(|c| c.endpoints.iter().map(|e| e.host_veth.clone()))
                .collect()
        });
        let networks = self.networks();
        self.inner.bridge.sweep(&networks, &owned).await?;
        self.reconcile_ports()?;
        self.emit(Event::Resync);
        Ok(())
    }

    async fn reconcile_container(&self, mut c: Container) -> Result<()> {
        let problem = match c.phase {
            Phase::Creating => None,
            Phase::Ready => self.container_problem(&c).await?,
        };
        match verdict(&c, problem) {
            Verdict::RollBack => {
                warn!(container = %c.name, "rolling back a container add interrupted by a crash");
                self.teardown_container(&c, Teardown::Now).await
            }
            Verdict::Reattach => {
                for ep in &c.endpoints {
                    let net = self.network(&ep.network)?;
                    self.driver(&net.driver)?.attach_endpoint(&net, ep).await?;
                }
                Ok(())
            }
            Verdict::Repair(problem) => {
                warn!(container = %c.name, "{problem}; repairing the container's plumbing");
                for ep in &c.endpoints {
                    self.teardown_endpoint(ep).await?;
                }
                if let Some(netns) = c.sandbox.owned_netns()
                    && !self.kernel().netns.is_mounted(netns)
                {
                    self.kernel().netns.delete(netns)?;
                    self.kernel().netns.create(netns)?;
                    self.kernel().links.loopback_up(netns).await?;
                }
                let netns = c.sandbox.netns().map(|p| p.to_path_buf());
                for i in 0..c.endpoints.len() {
                    let ep = c.endpoints[i].clone();
                    c.endpoints[i].host_ifindex =
                        self.setup_endpoint(netns.as_deref(), &ep, i == 0).await?;
                }
                self.commit(vec![Change::PutContainer(c.clone())])?;
                info!(container = %c.name, "repaired");
                Ok(())
            }
            Verdict::Report(problem) => {
                warn!(container = %c.name, "{problem}; netd did not make that namespace and cannot repair it");
                Ok(())
            }
        }
    }

    /// Keeps the datapath's list of host addresses current.
    pub async fn sync_host_addrs(&self) -> Result<()> {
        let addrs = self.kernel().links.host_addresses().await?;
        self.kernel().datapath.sync_host_addrs(&addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::sample_container;

    #[test]
    fn verdicts_follow_phase_problem_and_owner() {
        let mut c = sample_container();
        assert_eq!(verdict(&c, None), Verdict::Reattach);
        assert_eq!(
            verdict(&c, Some("gone".into())),
            Verdict::Repair("gone".into())
        );
        c.sandbox = Sandbox::Netns {
            path: "/run/netns/cni-1".into(),
            owner: Owner::Runtime,
        };
        assert_eq!(
            verdict(&c, Some("gone".into())),
            Verdict::Report("gone".into())
        );
        c.phase = Phase::Creating;
        assert_eq!(verdict(&c, None), Verdict::RollBack);
    }
}
