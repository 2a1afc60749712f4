//! Containers: a named network namespace, a veth pair whose host side joins
//! the network's bridge and whose peer is the container's `eth0`, an address
//! from IPAM, and the datapath programs on the host-side veth.
//!
//! Every `add` is all-or-nothing: a `Creating` record is saved first, then
//! the kernel objects are made; any failure (or a crash, found at the next
//! start) removes whatever was made and the record with it.

use std::{collections::HashSet, fs::File, io::Read, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result, bail};
use netd_common::EndpointValue;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{
    daemon::Daemon,
    ipam,
    netlink::Netlink,
    netns,
    portmap::PortMapping,
    state::{ContainerRecord, NetworkRecord, Phase},
};

const CONTAINER_IFNAME: &str = "eth0";

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most 64
/// characters (the name is also the namespace file name).
pub fn validate_name(name: &str) -> Result<()> {
    let valid_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > 64 || !valid_start || !valid_rest {
        bail!(
            "invalid container name {name:?}: use 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit"
        );
    }
    Ok(())
}

/// A 64-hex-digit id, like Docker's.
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Daemon {
    pub async fn container_add(
        &mut self,
        name: &str,
        network: &str,
        requested_ip: Option<Ipv4Addr>,
        publish: &[String],
    ) -> Result<ContainerRecord> {
        validate_name(name)?;
        if self.store.container(name)?.is_some() {
            bail!(
                "container {name} already exists: pick another name or `netd container rm {name}` first"
            );
        }
        let net = self.network(network)?;
        let netns_path = self.config.netns_dir.join(name);
        if netns_path.exists() {
            bail!(
                "a network namespace named {name} already exists at {} and is not netd's: pick another name",
                netns_path.display()
            );
        }
        let ip = ipam::allocate(
            net.subnet,
            net.gateway,
            &self.used_ips(&net.name)?,
            requested_ip,
        )?;
        let mappings = publish
            .iter()
            .map(|spec| PortMapping::parse_publish(spec, ip))
            .collect::<Result<Vec<_>>>()?;
        self.check_port_conflicts(&mappings)?;
        let id = random_id()?;
        let mut record = ContainerRecord {
            host_veth: format!("veth{}", &id[..7]),
            id,
            name: name.into(),
            network: net.name.clone(),
            ip,
            mac: ipam::format_mac(ipam::mac_for(ip)),
            netns: netns_path,
            host_ifindex: 0,
            phase: Phase::Creating,
        };
        self.store.put_container(&record)?;
        match self.finish_add(&net, &mut record, mappings).await {
            Ok(()) => {
                info!(container = name, %ip, veth = %record.host_veth, "container added");
                Ok(record)
            }
            Err(err) => {
                self.rollback(&record).await;
                Err(err)
            }
        }
    }

    /// The kernel half of `add`: plumbing, published ports, then `Ready`.
    async fn finish_add(
        &mut self,
        net: &NetworkRecord,
        record: &mut ContainerRecord,
        mappings: Vec<PortMapping>,
    ) -> Result<()> {
        record.host_ifindex = self.plumb_container(net, record).await?;
        self.store.put_container(record)?;
        if !mappings.is_empty() {
            self.portmap_add(mappings)?;
        }
        record.phase = Phase::Ready;
        self.store.put_container(record)
    }

    /// Removes everything a half-made container left, and its record.
    async fn rollback(&mut self, record: &ContainerRecord) {
        if let Err(e) = self
            .portmaps_of(&record.name)
            .and_then(|r| self.unpublish(&r))
        {
            warn!(container = %record.name, "rollback could not unpublish ports: {e:#}");
        }
        if let Err(e) = self.unplumb_container(record).await {
            warn!(container = %record.name, "rollback incomplete: {e:#}");
        }
        if let Err(e) = self.store.delete_container(&record.name) {
            warn!(container = %record.name, "rollback could not delete the record: {e:#}");
        }
    }

    fn used_ips(&self, network: &str) -> Result<HashSet<Ipv4Addr>> {
        Ok(self
            .store
            .containers()?
            .into_iter()
            .filter(|c| c.network == network)
            .map(|c| c.ip)
            .collect())
    }

    /// Creates the namespace, the veth pair and the addressing; attaches the
    /// datapath. Returns the host veth's ifindex.
    async fn plumb_container(&mut self, net: &NetworkRecord, rec: &ContainerRecord) -> Result<u32> {
        if !netns::is_mounted(&rec.netns) {
            netns::create(&rec.netns)?;
        }
        let bridge = self
            .netlink
            .link_index(&net.bridge)
            .await?
            .with_context(|| format!("bridge {} of network {} is missing", net.bridge, net.name))?;
        let mac = ipam::mac_for(rec.ip);
        let ifindex = self
            .netlink
            .add_veth_into_netns(&rec.host_veth, bridge, CONTAINER_IFNAME, mac, &rec.netns)
            .await?;
        configure_inside(&rec.netns, rec.ip, net).await?;
        self.attach_datapath(net, rec, ifindex, mac).await?;
        Ok(ifindex)
    }

    async fn attach_datapath(
        &mut self,
        net: &NetworkRecord,
        rec: &ContainerRecord,
        ifindex: u32,
        mac: [u8; 6],
    ) -> Result<()> {
        let bridge = self.netlink.link_index(&net.bridge).await?.unwrap_or(0);
        let gw_mac = self.netlink.link_mac(bridge).await.unwrap_or_default();
        self.datapath.attach_veth(&rec.host_veth)?;
        let endpoint = EndpointValue {
            ifindex,
            network_id: net.net_id,
            mac,
            gw_mac,
            gateway: u32::from(net.gateway).to_be(),
        };
        self.datapath.set_endpoint(rec.ip, endpoint)
    }

    /// Deletes the veth (its peer goes with it), the namespace and the
    /// datapath entries. Tolerates pieces that are already gone.
    async fn unplumb_container(&mut self, rec: &ContainerRecord) -> Result<()> {
        let mut first_error = None;
        let steps = [
            self.datapath.detach_veth(&rec.host_veth),
            self.datapath.remove_endpoint(rec.ip),
            self.netlink.delete_link(&rec.host_veth).await,
            netns::delete(&rec.netns),
        ];
        for step in steps {
            if let Err(e) = step {
                warn!(container = %rec.name, "cleanup step failed: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub async fn container_rm(&mut self, name: &str) -> Result<()> {
        let rec = self.container(name)?;
        let published = self.portmaps_of(name)?;
        self.unpublish(&published)?;
        self.unplumb_container(&rec).await?;
        self.store.delete_container(name)?;
        info!(container = name, "container removed");
        Ok(())
    }

    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        self.store
            .container(name)?
            .with_context(|| format!("no such container: {name} (see `netd container ls`)"))
    }

    /// What is wrong with a container's plumbing, if anything.
    pub async fn container_problem(&self, rec: &ContainerRecord) -> Result<Option<String>> {
        if !netns::is_mounted(&rec.netns) {
            return Ok(Some(format!(
                "network namespace {} is missing",
                rec.netns.display()
            )));
        }
        if self.netlink.link_index(&rec.host_veth).await?.is_none() {
            return Ok(Some(format!("host veth {} is missing", rec.host_veth)));
        }
        Ok(None)
    }

    /// Brings the kernel in line with the records after a (re)start: rolls
    /// back half-created containers, repairs missing veths or namespaces,
    /// and re-attaches the (possibly upgraded) programs.
    pub async fn reconcile_containers(&mut self) -> Result<()> {
        for rec in self.store.containers()? {
            if let Err(e) = self.reconcile_container(rec.clone()).await {
                warn!(container = %rec.name, "reconcile failed: {e:#}");
            }
        }
        Ok(())
    }

    async fn reconcile_container(&mut self, mut rec: ContainerRecord) -> Result<()> {
        if rec.phase == Phase::Creating {
            warn!(container = %rec.name, "rolling back a container add interrupted by a crash");
            self.rollback(&rec).await;
            return Ok(());
        }
        let net = self.network(&rec.network)?;
        match self.container_problem(&rec).await? {
            None => {
                let mac = ipam::mac_for(rec.ip);
                self.attach_datapath(&net, &rec, rec.host_ifindex, mac)
                    .await
            }
            Some(problem) => {
                warn!(container = %rec.name, "{problem}; repairing the container's plumbing");
                self.netlink.delete_link(&rec.host_veth).await?;
                rec.host_ifindex = self.plumb_container(&net, &rec).await?;
                self.store.put_container(&rec)?;
                info!(container = %rec.name, "repaired");
                Ok(())
            }
        }
    }

    /// The JSON `container inspect` prints.
    pub async fn container_json(&self, rec: &ContainerRecord) -> Result<Value> {
        let net = self.network(&rec.network)?;
        let status = match self.container_problem(rec).await? {
            None => "running".to_string(),
            Some(problem) => problem,
        };
        Ok(json!({
            "id": rec.id,
            "name": rec.name,
            "status": status,
            "netns": rec.netns,
            "network": rec.network,
            "ip": rec.ip,
            "prefix_len": net.subnet.prefix(),
            "mac": rec.mac,
            "gateway": net.gateway,
            "host_veth": rec.host_veth,
            "host_ifindex": rec.host_ifindex,
            "interfaces": [{
                "name": CONTAINER_IFNAME,
                "network": rec.network,
                "ip": rec.ip,
                "prefix_len": net.subnet.prefix(),
                "mac": rec.mac,
                "host_veth": rec.host_veth,
                "host_ifindex": rec.host_ifindex,
            }],
        }))
    }

    /// Removes every container's plumbing (used by `netd down`).
    pub async fn unplumb_all_containers(&mut self) -> Result<()> {
        let published = self.store.portmaps()?;
        self.unpublish(&published)?;
        for rec in self.store.containers()? {
            self.unplumb_container(&rec).await?;
            self.store.delete_container(&rec.name)?;
        }
        Ok(())
    }
}

/// Inside the container: `lo` and `eth0` up, the address, the default route.
async fn configure_inside(netns_path: &Path, ip: Ipv4Addr, net: &NetworkRecord) -> Result<()> {
    let inner = Netlink::in_netns(netns_path)?;
    let lo = inner
        .link_index("lo")
        .await?
        .context("no lo in the new namespace")?;
    inner.set_up(lo).await?;
    let eth0 = inner
        .link_index(CONTAINER_IFNAME)
        .await?
        .context("eth0 did not arrive in the container namespace")?;
    inner.add_address(eth0, ip, net.subnet.prefix()).await?;
    inner.set_up(eth0).await?;
    if !net.internal {
        inner.add_default_route(net.gateway).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        for ok in ["c1", "web.1", "a_b-c", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bad/name",
            "-lead",
            ".hidden",
            "sp ace",
            &"x".repeat(65),
            "ümlaut",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_64_hex() {
        let id = random_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
