//! What Docker could not tell netd while it was down: `DeleteEndpoint`
//! and `ReleaseAddress` fail while the plugin is away, and Docker only
//! logs a warning. At start, an endpoint of Docker's that no container
//! holds is removed, with its ports and flows: its host veth is gone, or
//! its container end is back on the host (Docker moves it out of a
//! sandbox it destroys) instead of inside a container. Addresses of a
//! netd network's pool that no endpoint holds go back to the pool.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::{
    engine::{
        Engine,
        model::{Container, Placement, Sandbox},
        requests::ContainerRef,
    },
    kernel::netlink::Netlink,
};

/// Why a Docker endpoint is no container's any more, if it is not.
async fn abandoned(engine: &Engine, netlink: Option<&Netlink>, c: &Container) -> Option<String> {
    match engine.container_problem(c).await {
        Ok(Some(problem)) => return Some(problem),
        Ok(None) => {}
        Err(e) => {
            warn!(container = %c.name, "checking a Docker endpoint: {e}");
            return None;
        }
    }
    let netlink = netlink?;
    for ep in &c.endpoints {
        if let Placement::OnHost { peer } = &ep.placement
            && let Ok(Some(_)) = netlink.link_index(peer).await
        {
            return Some(format!(
                "its container end {peer} is on the host, in no container"
            ));
        }
    }
    None
}

pub async fn reconcile(engine: &Engine) {
    let netlink = Netlink::current()
        .map_err(|e| warn!("cannot look for leftover Docker endpoints: {e:#}"))
        .ok();
    for c in engine.containers() {
        let docker = c.sandbox == Sandbox::Runtime && c.endpoints.iter().all(|e| e.id.is_some());
        if !docker {
            continue;
        }
        if let Some(why) = abandoned(engine, netlink.as_ref(), &c).await {
            warn!(container = %c.name, "Docker endpoint left behind ({why}): Docker removed its container while netd was away; removing it");
            if let Err(e) = engine
                .remove_container(&ContainerRef::Id(c.id.0.clone()))
                .await
            {
                warn!(container = %c.name, "removing a leftover Docker endpoint: {e}");
            }
        }
    }
    let networks = engine.networks();
    let containers = engine.containers();
    for pool in engine.pools() {
        let Some(net) = networks.iter().find(|n| n.subnet == pool.subnet) else {
            continue;
        };
        let held: BTreeSet<_> = containers
            .iter()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == net.name)
            .map(|e| e.ip)
            .collect();
        for ip in &pool.addresses {
            if Some(*ip) == pool.gateway || *ip == net.gateway || held.contains(ip) {
                continue;
            }
            info!(pool = %pool.id, %ip, "releasing an address no endpoint holds");
            if let Err(e) = engine.release_address(&pool.id, *ip).await {
                warn!(pool = %pool.id, %ip, "releasing a leftover address: {e}");
            }
        }
    }
}
