//! Containers: a sandbox (a namespace netd makes, one a runtime gives, the
//! host's, another container's) and its endpoints. `add` is
//! all-or-nothing: a `Creating` record is committed first, then the kernel
//! objects are made; any failure (or a crash, found at the next start)
//! removes whatever was made, and the record with it.

use std::path::PathBuf;

use tracing::{info, warn};

use super::{
    lookup::{no_such_container, refuse_internal},
    portmap::plan_publish,
};
use crate::engine::{
    Engine, EngineConfig,
    error::{Error, Remedy, Result},
    events::Event,
    ids::random_id,
    model::{Container, ContainerId, Endpoint, NameConfig, Owner, Phase, PortMap, Sandbox},
    requests::{ContainerAdd, ContainerRef, SandboxRequest},
    store::{Change, State},
    validate,
};

/// What `add` will create, all choices made, nothing created.
pub(super) struct ContainerPlan {
    pub container: Container,
    pub ports: Vec<PortMap>,
}

impl Engine {
    pub fn container(&self, name: &str) -> Result<Container> {
        self.read(|s| s.container_named(name).cloned())
            .ok_or_else(|| no_such_container(name))
    }

    pub fn container_by_id(&self, id: &ContainerId) -> Option<Container> {
        self.read(|s| s.containers.get(id).cloned())
    }

    /// A container by name or id.
    pub fn find_container(&self, r: &ContainerRef) -> Result<Container> {
        match r {
            ContainerRef::Name(name) => self.container(name),
            ContainerRef::Id(id) => self
                .container_by_id(&ContainerId(id.clone()))
                .ok_or_else(|| no_such_container(id)),
        }
    }

    /// The container and endpoint with the caller's endpoint id.
    pub fn endpoint_by_id(&self, id: &str) -> Option<(Container, Endpoint)> {
        self.read(|s| {
            s.containers.values().find_map(|c| {
                c.endpoints
                    .iter()
                    .find(|e| e.id.as_deref() == Some(id))
                    .map(|e| (c.clone(), e.clone()))
            })
        })
    }

    /// Every container, by name.
    pub fn containers(&self) -> Vec<Container> {
        let mut all: Vec<Container> = self.read(|s| s.containers.values().cloned().collect());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The namespace a container's processes join: its own, the one it
    /// shares, or the host's (the daemon's). None for a sandbox netd never
    /// sees.
    pub fn netns_of(&self, c: &Container) -> Option<PathBuf> {
        self.read(|s| netns_path(s, c, 0))
    }

    pub async fn add_container(&self, req: ContainerAdd) -> Result<Container> {
        let _guard = self.lock().await;
        let mut plan = self.read(|s| plan_container(s, self.config(), &req))?;
        if let Sandbox::Netns {
            path,
            owner: Owner::Runtime,
        } = &plan.container.sandbox
            && !self.kernel().netns.is_mounted(path)
        {
            return Err(Error::invalid(format!(
                "no network namespace is mounted at {}: give the path of the container's namespace",
                path.display()
            )));
        }
        self.assign_host_ports(&mut plan.ports)?;
        if let Some(path) = plan.container.sandbox.owned_netns()
            && self.kernel().netns.exists(path)
        {
            return Err(Error::conflict(format!(
                "a network namespace named {} already exists at {} and is not netd's: pick another name",
                req.name,
                path.display()
            )));
        }
        self.check_host_side(&plan.ports, req.force_publish).await?;
        let mut container = plan.container;
        self.commit(vec![Change::PutContainer(container.clone())])?;
        match self.build(&mut container, &plan.ports).await {
            Ok(()) => {
                info!(container = %container.name, mode = %container.sandbox.mode_name(), "container added");
                self.emit(Event::ContainerAdded(container.clone()));
                if !plan.ports.is_empty() {
                    self.emit(Event::PortsPublished(plan.ports));
                }
                Ok(container)
            }
            Err(err) => {
                self.rollback(&container).await;
                Err(err)
            }
        }
    }

    /// The kernel half of `add`: namespace, endpoints, ports; then the
    /// `Ready` record and the port records in one commit.
    async fn build(&self, container: &mut Container, ports: &[PortMap]) -> Result<()> {
        if let Some(netns) = container.sandbox.owned_netns() {
            self.kernel().netns.create(netns)?;
            self.kernel().links.loopback_up(netns).await?;
        }
        let netns = container.sandbox.netns().map(|p| p.to_path_buf());
        for i in 0..container.endpoints.len() {
            let ep = container.endpoints[i].clone();
            container.endpoints[i].host_ifindex =
                self.setup_endpoint(netns.as_deref(), &ep, i == 0).await?;
        }
        self.insert_ports(ports)?;
        container.phase = Phase::Ready;
        let mut changes = vec![Change::PutContainer(container.clone())];
        changes.extend(ports.iter().cloned().map(Change::PutPortmap));
        self.commit(changes)?;
        self.sync_services()
    }

    pub async fn remove_container(&self, r: &ContainerRef) -> Result<()> {
        let _guard = self.lock().await;
        let container = self.find_container(r)?;
        let name = container.name.as_str();
        let shares_it = Sandbox::Shared {
            container: name.into(),
        };
        let sharers: Vec<String> = self
            .containers()
            .into_iter()
            .filter(|c| c.sandbox == shares_it)
            .map(|c| c.name)
            .collect();
        if !sharers.is_empty() {
            return Err(Error::in_use(format!(
                "container {name} shares its network namespace with {}: remove {} first",
                sharers.join(", "),
                if sharers.len() == 1 { "it" } else { "them" }
            )));
        }
        self.teardown_container(&container, super::teardown::Teardown::Release)
            .await?;
        info!(container = %container.name, "container removed");
        Ok(())
    }

    /// Where a runtime put a container it wires itself: its namespace
    /// once the runtime moved the interfaces in (Docker's `Join` gives
    /// the path), none again when it took them out (`Leave`). Only
    /// between those two: netd's own namespaces are netd's business.
    pub async fn place_sandbox(
        &self,
        r: &ContainerRef,
        netns: Option<PathBuf>,
    ) -> Result<Container> {
        let _guard = self.lock().await;
        let mut c = self.find_container(r)?;
        let movable = matches!(
            c.sandbox,
            Sandbox::Runtime
                | Sandbox::Netns {
                    owner: Owner::Runtime,
                    ..
                }
        ) && c
            .endpoints
            .iter()
            .all(|e| matches!(e.placement, crate::engine::model::Placement::OnHost { .. }));
        if !movable {
            return Err(Error::invalid(format!(
                "container {}'s namespace is not its runtime's to place",
                c.name
            )));
        }
        c.sandbox = match netns {
            Some(path) => Sandbox::Netns {
                path,
                owner: Owner::Runtime,
            },
            None => Sandbox::Runtime,
        };
        self.commit(vec![Change::PutContainer(c.clone())])?;
        Ok(c)
    }

    /// What is wrong with a container's plumbing, if anything.
    pub async fn container_problem(&self, c: &Container) -> Result<Option<String>> {
        if let Some(path) = self.netns_of(c)
            && c.sandbox != Sandbox::Host
            && !self.kernel().netns.is_mounted(&path)
        {
            return Ok(Some(format!(
                "network namespace {} is missing",
                path.display()
            )));
        }
        for ep in &c.endpoints {
            let net = self.network(&ep.network)?;
            if let Some(problem) = self.driver(&net.driver)?.endpoint_problem(ep).await? {
                return Ok(Some(problem));
            }
        }
        Ok(None)
    }

    /// Removes everything a half-made container left, and its record.
    pub(super) async fn rollback(&self, container: &Container) {
        if let Err(e) = self
            .teardown_container(container, super::teardown::Teardown::Now)
            .await
        {
            warn!(container = %container.name, "rollback incomplete: {e}");
        }
    }
}

/// Follows `container:` chains to the namespace (bounded: a chain cannot
/// loop, since a sharer needs an existing target, but a corrupt state
/// must not hang).
fn netns_path(state: &State, c: &Container, depth: u8) -> Option<PathBuf> {
    match &c.sandbox {
        Sandbox::Netns { path, .. } | Sandbox::Isolated { path } => Some(path.clone()),
        Sandbox::Host => Some(PathBuf::from(format!(
            "/proc/{}/ns/net",
            std::process::id()
        ))),
        Sandbox::Shared { container } if depth < 8 => {
            netns_path(state, state.container_named(container)?, depth + 1)
        }
        Sandbox::Shared { .. } | Sandbox::Runtime => None,
    }
}

pub(super) fn plan_container(
    state: &State,
    config: &EngineConfig,
    req: &ContainerAdd,
) -> Result<ContainerPlan> {
    validate::container_name(&req.name)?;
    if state.container_named(&req.name).is_some() {
        return Err(Error::exists(format!(
            "container {0} already exists: pick another name or remove {0} first",
            req.name
        )));
    }
    let id = match &req.id {
        Some(id) if state.containers.contains_key(&ContainerId(id.clone())) => {
            return Err(Error::exists(format!(
                "a container with id {id} already exists"
            )));
        }
        Some(id) => id.clone(),
        None => random_id()?,
    };
    let sandbox = plan_sandbox(state, config, req)?;
    let endpoints = match (&req.endpoint, sandbox.takes_endpoints()) {
        (Some(ep), true) => vec![super::endpoint::plan_endpoint(state, ep, &[])?],
        (Some(ep), false) if ep.ip.is_some() => {
            return Err(Error::invalid(format!(
                "a fixed address needs a network: containers in mode {} get no address of their own",
                sandbox.mode_name()
            )));
        }
        _ => Vec::new(),
    };
    if let Some(hostname) = &req.hostname {
        validate::hostname(hostname)?;
    }
    for (name, _) in &req.extra_hosts {
        validate::extra_host(name)?;
    }
    let container = Container {
        id: ContainerId(id.clone()),
        name: req.name.clone(),
        sandbox,
        endpoints,
        names: NameConfig {
            hostname: req
                .hostname
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
            dns: req.dns.clone(),
            extra_hosts: req.extra_hosts.clone(),
        },
        phase: Phase::Creating,
    };
    let ports = if req.publish.is_empty() {
        Vec::new()
    } else {
        let ep = publishable_endpoint(&container)?;
        refuse_internal(state, &ep.network)?;
        plan_publish(state, &container, ep, &req.publish)?
    };
    Ok(ContainerPlan { container, ports })
}

fn plan_sandbox(state: &State, config: &EngineConfig, req: &ContainerAdd) -> Result<Sandbox> {
    let own_path = || -> Result<PathBuf> { Ok(config.netns_dir.join(&req.name)) };
    Ok(match &req.sandbox {
        SandboxRequest::Create => Sandbox::Netns {
            path: own_path()?,
            owner: Owner::Netd,
        },
        SandboxRequest::Isolated => Sandbox::Isolated { path: own_path()? },
        SandboxRequest::Given { path } => Sandbox::Netns {
            path: path.clone(),
            owner: Owner::Runtime,
        },
        SandboxRequest::Host => Sandbox::Host,
        SandboxRequest::Runtime => Sandbox::Runtime,
        SandboxRequest::Shared { container } => {
            let Some(target) = state.container_named(container) else {
                return Err(Error::not_found(format!(
                    "no such container: {container} (sharing a namespace needs an existing container)"
                ))
                .with_remedy(Remedy::ListContainers));
            };
            match &target.sandbox {
                // Share with the namespace's owner, not with a sharer.
                Sandbox::Shared { container } => Sandbox::Shared {
                    container: container.clone(),
                },
                Sandbox::Host => {
                    return Err(Error::invalid(format!(
                        "container {container} uses the host's namespace: use the host mode instead of sharing {container}'s"
                    )));
                }
                Sandbox::Runtime => {
                    return Err(Error::invalid(format!(
                        "container {container}'s namespace is its runtime's: netd cannot share it"
                    )));
                }
                _ => Sandbox::Shared {
                    container: target.name.clone(),
                },
            }
        }
    })
}

/// The endpoint `-p` publishes on: the container's first, when it has
/// one of its own.
fn publishable_endpoint(c: &Container) -> Result<&Endpoint> {
    match (&c.sandbox, c.primary()) {
        (Sandbox::Host, _) => Err(Error::invalid(
            "ports cannot be published in the host mode: the container uses the host's own ports; publish nothing",
        )),
        (Sandbox::Shared { container }, _) => Err(Error::invalid(format!(
            "ports cannot be published by a container sharing {container}'s namespace: publish them on {container}"
        ))),
        (_, None) => Err(Error::invalid(
            "ports cannot be published without a network: a container in the none mode has no address to publish",
        )),
        (_, Some(ep)) => Ok(ep),
    }
}
