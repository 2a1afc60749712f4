//! What Docker could not tell netd while it was down: `DeleteEndpoint`
//! and `ReleaseAddress` fail while the plugin is away, and Docker only
//! logs a warning. At start, an endpoint of Docker's that no container
//! holds is removed, with its ports and flows: its host veth is gone, or
//! the namespace Docker joined it to is (Docker destroyed the container).
//! An endpoint not joined to any namespace (created, or left, when netd
//! went away) may still be joined: Docker retries a failed `Join` for
//! about 15 s. It is given `JOIN_GRACE`, then removed if still unjoined.
//! Addresses of a netd network's pool that no endpoint holds go back to
//! the pool.

use std::{collections::BTreeSet, time::Duration};

use tracing::{info, warn};

use crate::engine::{
    Engine,
    model::{Container, Sandbox},
    requests::ContainerRef,
};

/// How long an unjoined endpoint found at start may wait for its `Join`.
pub const JOIN_GRACE: Duration = Duration::from_secs(60);

/// A Docker endpoint: a runtime sandbox whose endpoints all carry
/// Docker's ids.
fn is_docker(c: &Container) -> bool {
    let runtime = matches!(c.sandbox, Sandbox::Runtime | Sandbox::Netns { .. })
        && c.endpoints.iter().all(|e| {
            e.id.is_some() && matches!(e.placement, crate::engine::model::Placement::OnHost { .. })
        });
    runtime && !c.endpoints.is_empty()
}

async fn remove(engine: &Engine, c: &Container, why: &str) {
    warn!(container = %c.name, "Docker endpoint left behind ({why}): Docker removed its container while netd was away; removing it");
    if let Err(e) = engine
        .remove_container(&ContainerRef::Id(c.id.0.clone()))
        .await
    {
        warn!(container = %c.name, "removing a leftover Docker endpoint: {e}");
    }
}

/// Removes the endpoints no container holds; returns the unjoined ones,
/// for [`sweep_unjoined`] after the grace period.
pub async fn reconcile(engine: &Engine) -> Vec<ContainerRef> {
    let mut unjoined = Vec::new();
    for c in engine.containers().into_iter().filter(is_docker) {
        match engine.container_problem(&c).await {
            Ok(Some(problem)) => remove(engine, &c, &problem).await,
            Ok(None) if c.sandbox == Sandbox::Runtime => {
                unjoined.push(ContainerRef::Id(c.id.0.clone()));
            }
            Ok(None) => {}
            Err(e) => warn!(container = %c.name, "checking a Docker endpoint: {e}"),
        }
    }
    let networks = engine.networks();
    let containers = engine.containers();
    for pool in engine.pools() {
        // A pool is a network's IPv4 subnet or its IPv6 one.
        let Some(net) = networks
            .iter()
            .find(|n| n.subnet == pool.subnet || n.subnet6 == Some(pool.subnet))
        else {
            continue;
        };
        let held: BTreeSet<_> = containers
            .iter()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == net.name)
            .flat_map(|e| std::iter::once(e.ip).chain(e.ip6))
            .collect();
        for ip in &pool.addresses {
            if Some(*ip) == pool.gateway
                || *ip == net.gateway
                || Some(*ip) == net.gateway6
                || held.contains(ip)
            {
                continue;
            }
            info!(pool = %pool.id, %ip, "releasing an address no endpoint holds");
            if let Err(e) = engine.release_address(&pool.id, *ip).await {
                warn!(pool = %pool.id, %ip, "releasing a leftover address: {e}");
            }
        }
    }
    unjoined
}

/// The endpoints found unjoined at start that are still unjoined: Docker
/// gave up on them.
pub async fn sweep_unjoined(engine: &Engine, found: &[ContainerRef]) {
    for r in found {
        if let Ok(c) = engine.find_container(r)
            && c.sandbox == Sandbox::Runtime
        {
            remove(engine, &c, "never joined to a container").await;
        }
    }
}
