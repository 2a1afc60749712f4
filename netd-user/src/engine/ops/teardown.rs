//! The one way things are taken apart: `container rm`, a rolled-back
//! `add`, `network rm`, `netd down` and the reconcile at start all come
//! here.

use tracing::warn;

use crate::engine::{
    Engine,
    error::Result,
    events::Event,
    model::{Container, Network},
    store::Change,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Teardown {
    /// `container rm`: stop at the first failure, keeping the record so
    /// that the removal can be retried; the container is gone for every
    /// observer at once (datapath entries, namespace); the interfaces in a
    /// namespace netd deletes go in the background (they wait for RCU
    /// grace periods).
    Release,
    /// Rollback, repair and `down`: every step runs whatever the one
    /// before did, interfaces are deleted before returning, and the record
    /// goes in any case; the first failure is returned.
    Now,
}

impl Engine {
    pub(super) async fn teardown_container(&self, c: &Container, how: Teardown) -> Result<()> {
        let mut first_error = None;
        let mut step = |result: Result<()>| -> Result<()> {
            match (result, how) {
                (Ok(()), _) => Ok(()),
                (Err(e), Teardown::Release) => Err(e),
                (Err(e), Teardown::Now) => {
                    warn!(container = %c.name, "cleanup step failed: {e}");
                    first_error.get_or_insert(e);
                    Ok(())
                }
            }
        };
        let ports = self.read(|s| {
            s.portmaps
                .values()
                .filter(|p| p.container == c.id)
                .cloned()
                .collect::<Vec<_>>()
        });
        step(self.remove_ports(&ports))?;
        // Interfaces go in the background only when their namespace goes
        // too: in a runtime's namespace, the runtime may reuse the name at
        // once (a CNI DEL followed by an ADD).
        let background = how == Teardown::Release && c.sandbox.owned_netns().is_some();
        for ep in &c.endpoints {
            let result = if background {
                self.release_endpoint(ep)
            } else {
                self.teardown_endpoint(ep).await
            };
            step(result)?;
        }
        if let Some(netns) = c.sandbox.owned_netns() {
            step(self.kernel().netns.delete(netns))?;
        }
        // One commit: the container's record and its ports' records.
        let mut changes: Vec<Change> = ports
            .iter()
            .map(|p| Change::DeletePortmap(p.mapping.host_side()))
            .collect();
        changes.push(Change::DeleteContainer(c.id.clone()));
        step(self.commit(changes))?;
        step(self.sync_services())?;
        if !ports.is_empty() {
            self.emit(Event::PortsUnpublished(ports));
        }
        self.emit(Event::ContainerRemoved(c.clone()));
        first_error.map_or(Ok(()), Err)
    }

    fn release_endpoint(&self, ep: &crate::engine::model::Endpoint) -> Result<()> {
        let driver = match self.network(&ep.network) {
            Ok(net) => self.driver(&net.driver)?,
            Err(_) => self.inner.bridge.clone(),
        };
        driver.release_endpoint(ep)
    }

    pub(super) async fn teardown_network(&self, net: &Network) -> Result<()> {
        self.driver(&net.driver)?.teardown(net).await?;
        self.commit(vec![Change::DeleteNetwork(net.name.clone())])?;
        self.emit(Event::NetworkRemoved(net.clone()));
        Ok(())
    }

    /// Removes every container and network (`netd down`); the caller
    /// removes the datapath's pins and the state files.
    pub async fn down(&self) -> Result<()> {
        let _guard = self.lock().await;
        // Sharers first: their namespaces are others'.
        let mut containers = self.containers();
        containers
            .sort_by_key(|c| !matches!(c.sandbox, crate::engine::model::Sandbox::Shared { .. }));
        for c in containers {
            self.teardown_container(&c, Teardown::Now).await?;
        }
        for net in self.networks() {
            self.teardown_network(&net).await?;
        }
        Ok(())
    }
}
