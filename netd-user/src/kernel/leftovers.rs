//! `netd down` when the state database cannot tell what netd created (it is
//! corrupt, empty or gone): the kernel objects netd owns tell instead.
//!
//! - veths: the program links pinned as `<bpffs>/links/vethXXXXXXX-ingress`,
//!   and the ifindexes in `NETD_VETHS`;
//! - bridges: the ifindexes in `NETD_BRIDGES`; an adopted one (flag
//!   `ADOPTED`) only loses the gateway address netd put on it;
//! - container namespaces: `<netns-dir>/NAME` for each container whose name
//!   files netd wrote (`<state-dir>/containers/NAME`), once nothing but `lo`
//!   is left in it (its veth is gone with the host side), so a namespace
//!   that happens to share a name and is in use is never touched.
//!
//! Then every pin and the state files go, as in a normal `netd down`.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Pod,
    maps::{HashMap, Map, MapData},
};
use netd_common::{BridgeValue, VethValue, map_names, net_flags};
use rtnetlink::packet_route::link::InfoKind;
use tracing::{info, warn};

use super::{netlink::Netlink, netns};

/// Removes everything netd created, found from the kernel objects alone.
pub async fn down_from_kernel(state_dir: &Path, bpffs: &Path, netns_dir: &Path) -> Result<()> {
    let netlink = Netlink::current()?;
    for veth in netd_veths(&netlink, bpffs).await? {
        if netlink.is_kind(&veth, InfoKind::Veth).await? == Some(true) {
            info!(veth, "deleting a netd veth");
            netlink.delete_link(&veth).await?;
        }
    }
    for (name, bridge) in netd_bridges(&netlink, bpffs).await? {
        if bridge.flags & net_flags::ADOPTED != 0 {
            let gateway = Ipv4Addr::from(u32::from_be(bridge.gateway));
            netlink.delete_address(&name, gateway.into()).await?;
        } else if netlink.is_bridge(&name).await? == Some(true) {
            info!(bridge = name, "deleting a netd bridge");
            netlink.delete_link(&name).await?;
        }
    }
    for ns in container_netns(state_dir, netns_dir) {
        if only_loopback(&ns).await {
            info!(netns = %ns.display(), "deleting a netd container namespace");
            netns::delete(&ns)?;
        } else {
            warn!(netns = %ns.display(), "left in place: it has interfaces netd did not make");
        }
    }
    Ok(())
}

/// Names of the container veths netd attached programs to.
async fn netd_veths(netlink: &Netlink, bpffs: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match fs::read_dir(bpffs.join("links")) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                file.strip_suffix("-ingress")
                    .filter(|v| v.starts_with("veth"))
                    .map(str::to_owned)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    for (ifindex, _) in pinned_entries::<VethValue>(bpffs, map_names::VETHS) {
        if let Some(name) = netlink.link_name_of(ifindex).await? {
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The bridges netd knows, by name.
async fn netd_bridges(netlink: &Netlink, bpffs: &Path) -> Result<Vec<(String, BridgeValue)>> {
    let mut out = Vec::new();
    for (ifindex, bridge) in pinned_entries::<BridgeValue>(bpffs, map_names::BRIDGES) {
        if let Some(name) = netlink.link_name_of(ifindex).await? {
            out.push((name, bridge));
        }
    }
    Ok(out)
}

/// Every entry of a pinned `u32 -> V` hash map; none if it is not pinned.
fn pinned_entries<V: Pod>(bpffs: &Path, name: &str) -> Vec<(u32, V)> {
    let path = bpffs.join(name);
    let map = MapData::from_pin(&path)
        .map_err(anyhow::Error::from)
        .and_then(|data| Ok(Map::from_map_data(data)?))
        .and_then(|map| Ok(HashMap::<MapData, u32, V>::try_from(map)?));
    match map {
        Ok(map) => map.iter().filter_map(Result::ok).collect(),
        Err(e) => {
            warn!(map = %path.display(), "cannot read: {e:#}");
            Vec::new()
        }
    }
}

/// `<netns-dir>/NAME` for each container netd wrote name files for.
fn container_netns(state_dir: &Path, netns_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(state_dir.join("containers")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| netns_dir.join(e.file_name()))
        .filter(|ns| netns::is_mounted(ns))
        .collect()
}

async fn only_loopback(ns: &Path) -> bool {
    let links = match Netlink::in_netns(ns) {
        Ok(netlink) => netlink.link_names().await,
        Err(e) => Err(e),
    };
    links
        .context("listing links")
        .is_ok_and(|names| names.iter().all(|n| n == "lo"))
}
