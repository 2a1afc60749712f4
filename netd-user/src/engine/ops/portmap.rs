//! Published ports: conflict rules (other mappings, internal networks,
//! host addresses, host listeners) and the datapath entries, one per port
//! of a range.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use tracing::info;

use super::lookup::{no_such_container, refuse_internal};
use crate::engine::{
    Engine,
    error::{Error, Remedy, Result},
    events::Event,
    kernel::{PortEntry, Service},
    model::{Container, Endpoint, HostSocket, PortMap, PortMapping, PortRange},
    requests::{PortSelector, Publish},
    store::{Change, State},
};

/// One datapath entry per port of the mapping's range and family: the
/// IPv4 side to the container's IPv4 address, the IPv6 side (if the
/// mapping binds one) to `ip6`, the container's IPv6 address, if it has
/// one.
pub(super) fn entries(
    mapping: &PortMapping,
    ip6: Option<IpAddr>,
) -> impl Iterator<Item = PortEntry> + '_ {
    let (v4, v6) = mapping.host_binds();
    let sides = [v4.map(|host| (host, mapping.container_ip)), v6.zip(ip6)];
    sides
        .into_iter()
        .flatten()
        .flat_map(move |(host_ip, container_ip)| {
            (0..mapping.host_ports.count()).map(move |i| {
                let offset = i as u16;
                PortEntry {
                    host_ip,
                    host_port: mapping.host_ports.start + offset,
                    proto: mapping.proto,
                    container_ip,
                    container_port: mapping.container_ports.start + offset,
                }
            })
        })
}

/// A mapping bound to IPv6 only needs a container with an IPv6 address.
fn check_family(mapping: &PortMapping, ep: &Endpoint) -> Result<()> {
    if mapping.host_binds().0.is_none() && ep.ip6.is_none() {
        return Err(Error::invalid(format!(
            "port mapping {mapping} is on an IPv6 host address, but the container has no IPv6 address on network {}: publish on an IPv4 host address, or use a network created with --ipv6",
            ep.network
        )));
    }
    Ok(())
}

/// The datapath entries of `records`, each with its container's IPv6
/// address if it has one (the endpoint whose IPv4 address it maps to).
fn all_entries(state: &State, records: &[PortMap]) -> Vec<PortEntry> {
    records
        .iter()
        .flat_map(|p| {
            let ip6 = state
                .containers
                .get(&p.container)
                .and_then(|c| c.endpoints.iter().find(|e| e.ip == p.mapping.container_ip))
                .and_then(|e| e.ip6);
            entries(&p.mapping, ip6).collect::<Vec<_>>()
        })
        .collect()
}

/// Refuses mappings that clash with published ports or with each other.
fn check_conflicts(state: &State, mappings: &[PortMapping]) -> Result<()> {
    let mut taken: Vec<&PortMapping> = state.portmaps.values().map(|p| &p.mapping).collect();
    // Open host ports are picked later, among free ones.
    for mapping in mappings.iter().filter(|m| m.host_ports.start != 0) {
        if let Some(other) = taken.iter().find(|t| t.conflicts_with(mapping)) {
            return Err(Error::conflict(format!(
                "port mapping {mapping} conflicts with existing mapping {other}: host port {} is already published; pick another host port or remove the other mapping",
                mapping.host_side()
            )));
        }
        taken.push(mapping);
    }
    Ok(())
}

/// Host ports for mappings that leave theirs open (host port 0, as
/// Docker's `-p 80`): the lowest run of free ports in `range` that no
/// mapping and no host process holds.
pub(super) fn assign_host_ports(
    state: &State,
    records: &mut [PortMap],
    range: PortRange,
    sockets: &[HostSocket],
) -> Result<()> {
    for i in 0..records.len() {
        if records[i].mapping.host_ports.start != 0 {
            continue;
        }
        let len = records[i].mapping.container_ports.count();
        let taken: Vec<&PortMapping> = state
            .portmaps
            .values()
            .map(|p| &p.mapping)
            .chain(records.iter().map(|r| &r.mapping))
            .collect();
        let last_start = u32::from(range.end).saturating_sub(len - 1);
        let found = (u32::from(range.start)..=last_start).find_map(|start| {
            let mut candidate = records[i].mapping.clone();
            candidate.host_ports = PortRange {
                start: start as u16,
                end: (start + len - 1) as u16,
            };
            let free = !taken.iter().any(|t| t.conflicts_with(&candidate))
                && !sockets.iter().any(|s| candidate.takes_from(s));
            free.then_some(candidate.host_ports)
        });
        match found {
            Some(ports) => records[i].mapping.host_ports = ports,
            None => {
                return Err(Error::exhausted(format!(
                    "no free host port in {}-{} for {}: publish on a given host port",
                    range.start, range.end, records[i].mapping.container_ports
                )));
            }
        }
    }
    Ok(())
}

/// `-p` of a container being added, on its endpoint `ep`.
pub(super) fn plan_publish(
    state: &State,
    c: &Container,
    ep: &Endpoint,
    publish: &[Publish],
) -> Result<Vec<PortMap>> {
    let mappings: Vec<PortMapping> = publish
        .iter()
        .map(|p| PortMapping {
            host_ip: p.host_ip,
            host_ports: p.host_ports,
            container_ip: ep.ip,
            container_ports: p.container_ports,
            proto: p.proto,
            ipv4_only: p.ipv4_only,
        })
        .collect();
    for mapping in &mappings {
        check_family(mapping, ep)?;
    }
    check_conflicts(state, &mappings)?;
    Ok(mappings
        .into_iter()
        .map(|mapping| PortMap {
            mapping,
            container: c.id.clone(),
        })
        .collect())
}

/// Mappings to addresses of containers netd manages, checked against the
/// published ports and the containers' networks.
fn plan_mappings(state: &State, mappings: Vec<PortMapping>) -> Result<Vec<PortMap>> {
    check_conflicts(state, &mappings)?;
    mappings
        .into_iter()
        .map(|mapping| {
            let owner = state.containers.values().find_map(|c| {
                c.endpoints
                    .iter()
                    .find(|e| e.ip == mapping.container_ip)
                    .map(|e| (c, e))
            });
            let Some((c, ep)) = owner else {
                return Err(Error::not_found(format!(
                    "no container has address {}: publish ports of a container netd manages",
                    mapping.container_ip
                ))
                .with_remedy(Remedy::ListContainers));
            };
            refuse_internal(state, &ep.network)?;
            check_family(&mapping, ep)?;
            Ok(PortMap {
                mapping,
                container: c.id.clone(),
            })
        })
        .collect()
}

impl Engine {
    pub fn portmaps(&self) -> Vec<PortMap> {
        self.read(|s| s.portmaps.values().cloned().collect())
    }

    /// Publishes `mappings` (all or none). `force`: publish even over a
    /// port a host process listens on.
    pub async fn publish(&self, mappings: Vec<PortMapping>, force: bool) -> Result<Vec<PortMap>> {
        let _guard = self.lock().await;
        let mut records = self.read(|s| plan_mappings(s, mappings))?;
        self.assign_host_ports(&mut records)?;
        self.check_host_side(&records, force).await?;
        self.insert_ports(&records)?;
        let changes = records.iter().cloned().map(Change::PutPortmap).collect();
        if let Err(e) = self.commit(changes) {
            let _ = self.remove_ports(&records);
            return Err(e);
        }
        self.sync_services()?;
        for p in &records {
            info!(mapping = %p.mapping, container = %p.container, "port published");
        }
        self.emit(Event::PortsPublished(records.clone()));
        Ok(records)
    }

    /// Unpublishes the mapping `selector` names.
    pub async fn unpublish(&self, selector: &PortSelector) -> Result<PortMap> {
        let _guard = self.lock().await;
        let found = self.read(|s| {
            s.portmaps
                .values()
                .find(|p| match selector {
                    PortSelector::Exact(m) => p.mapping.named_by(m),
                    PortSelector::HostSide(side) => p.mapping.side_named_by(side),
                })
                .cloned()
        });
        let Some(record) = found else {
            let what = match selector {
                PortSelector::Exact(m) => m.to_string(),
                PortSelector::HostSide(side) => side.clone(),
            };
            return Err(Error::not_found(format!("no port mapping {what} exists"))
                .with_remedy(Remedy::ListPortmaps));
        };
        self.unpublish_records(std::slice::from_ref(&record))?;
        Ok(record)
    }

    /// The published ports of a container, by name.
    pub fn portmaps_of(&self, name: &str) -> Result<Vec<PortMap>> {
        let c = self
            .read(|s| s.container_named(name).cloned())
            .ok_or_else(|| no_such_container(name))?;
        Ok(self.read(|s| {
            s.portmaps
                .values()
                .filter(|p| p.container == c.id)
                .cloned()
                .collect()
        }))
    }

    /// Fills in the host ports that mappings leave open.
    pub(super) fn assign_host_ports(&self, records: &mut [PortMap]) -> Result<()> {
        if records.iter().all(|r| r.mapping.host_ports.start != 0) {
            return Ok(());
        }
        let range = self.kernel().host.ephemeral_ports()?;
        let sockets = self.kernel().host.listening_sockets()?;
        self.read(|s| assign_host_ports(s, records, range, &sockets))
    }

    /// The host side of new mappings: the host address must be one of the
    /// host's (or loopback, or any), and, unless `force`, no process of the
    /// host may be listening on the port (it would silently lose it).
    pub(super) async fn check_host_side(&self, records: &[PortMap], force: bool) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let host_addrs = self.kernel().links.host_addresses().await?;
        for p in records {
            let ip = p.mapping.host_ip;
            if !ip.is_unspecified() && !ip.is_loopback() && !host_addrs.contains(&ip) {
                return Err(Error::invalid(format!(
                    "host address {ip} in {} is not an address of this host: use one of its addresses, a loopback address, or none for all of them",
                    p.mapping
                )));
            }
        }
        if force {
            return Ok(());
        }
        let sockets = self.kernel().host.listening_sockets()?;
        for p in records {
            if let Some(socket) = sockets.iter().find(|s| p.mapping.takes_from(s)) {
                return Err(Error::conflict(format!(
                    "host port {}/{} is in use by a process on the host (listening on {}): publishing it would take it away from that process; stop it, pick another host port, or take the port anyway",
                    socket.port,
                    p.mapping.proto,
                    SocketAddr::new(socket.addr, socket.port)
                ))
                .with_remedy(Remedy::ForcePublish));
            }
        }
        Ok(())
    }

    /// Datapath entries of `records`; all or none.
    pub(super) fn insert_ports(&self, records: &[PortMap]) -> Result<()> {
        let entries: Vec<PortEntry> = self.read(|s| all_entries(s, records));
        if let Err(e) = self.kernel().datapath.insert_ports(&entries) {
            let _ = self.kernel().datapath.remove_ports(&entries);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn remove_ports(&self, records: &[PortMap]) -> Result<()> {
        let entries: Vec<PortEntry> = self.read(|s| all_entries(s, records));
        self.kernel().datapath.remove_ports(&entries)
    }

    /// Removes mappings from the datapath and the records.
    pub(super) fn unpublish_records(&self, records: &[PortMap]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.remove_ports(records)?;
        let changes = records
            .iter()
            .map(|p| Change::DeletePortmap(p.mapping.host_side()))
            .collect();
        self.commit(changes)?;
        self.sync_services()?;
        for p in records {
            info!(mapping = %p.mapping, "port unpublished");
        }
        self.emit(Event::PortsUnpublished(records.to_vec()));
        Ok(())
    }

    /// Makes the datapath's set of published container ports follow the
    /// records (several mappings may point at one port), on both of a
    /// dual-stack container's addresses when the port is published on
    /// IPv6 too.
    pub(super) fn sync_services(&self) -> Result<()> {
        let services: HashSet<Service> = self.read(|s| {
            let records: Vec<PortMap> = s.portmaps.values().cloned().collect();
            all_entries(s, &records)
                .into_iter()
                .map(|e| Service {
                    container_ip: e.container_ip,
                    container_port: e.container_port,
                    proto: e.proto,
                })
                .collect()
        });
        self.kernel().datapath.sync_services(&services)
    }

    /// Makes the kernel's port entries equal to the records (after a
    /// restart, or a map that was recreated).
    pub(super) fn reconcile_ports(&self) -> Result<()> {
        let wanted: Vec<PortEntry> = self.read(|s| {
            let records: Vec<PortMap> = s.portmaps.values().cloned().collect();
            all_entries(s, &records)
        });
        let stale: Vec<PortEntry> = self
            .kernel()
            .datapath
            .port_keys()?
            .into_iter()
            .filter(|(ip, port, proto)| {
                !wanted
                    .iter()
                    .any(|w| w.host_ip == *ip && w.host_port == *port && w.proto == *proto)
            })
            .map(|(host_ip, host_port, proto)| PortEntry {
                host_ip,
                host_port,
                proto,
                container_ip: host_ip,
                container_port: 0,
            })
            .collect();
        self.kernel().datapath.remove_ports(&stale)?;
        self.kernel().datapath.insert_ports(&wanted)?;
        self.sync_services()
    }
}
