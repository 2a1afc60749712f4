//! The daemon: owns the state store, the netlink socket and the datapath,
//! and serves CLI requests one at a time (requests mutate shared kernel
//! state; serialising them keeps every operation all-or-nothing).

mod server;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnetwork::Ipv4Network;
use serde_json::{Value, json};
use tracing::info;

pub use server::run;

use std::time::Duration;

use netd_common::{DatapathConfig, StatIndex};
use tracing::warn;

use crate::{
    address_pool::AddressPool,
    api::Request,
    conntrack::Timeouts,
    datapath::Datapath,
    dns::DnsServers,
    host,
    netlink::Netlink,
    netns,
    portmap::{self, PortMapping},
    state::{DbFile, Store},
};

/// `--ct-max`: flows in the conntrack table (two entries each). The
/// default is the table size before the flag existed; the bounds keep a
/// typo from making a useless table or one of gigabytes.
pub const CT_MAX_DEFAULT: u32 = 131_072;
pub const CT_MAX_MIN: u32 = 1024;
pub const CT_MAX_LIMIT: u32 = 16 << 20;

/// `--nat-ports MIN-MAX`: MASQUERADE source ports, used when a flow's own
/// port is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPorts {
    pub min: u16,
    pub max: u16,
}

impl std::str::FromStr for NatPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid port range {s:?}: expected MIN-MAX with 1 <= MIN <= MAX <= 65535, e.g. 1024-65535"
            )
        };
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        let min: u16 = min.trim().parse().map_err(|_| bad())?;
        let max: u16 = max.trim().parse().map_err(|_| bad())?;
        if min == 0 || min > max {
            return Err(bad());
        }
        Ok(Self { min, max })
    }
}

/// Every path and name the daemon touches; tests override them all to run
/// isolated daemons side by side.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub netns_dir: PathBuf,
    pub bridge: String,
    pub default_subnet: Ipv4Network,
    /// Where networks created without `--subnet` get theirs, in order.
    pub address_pools: Vec<AddressPool>,
    /// Interfaces where published ports are reachable from outside; empty:
    /// the interface of the default route.
    pub uplinks: Vec<String>,
    pub ct_timeouts: Timeouts,
    pub ct_gc_interval: Duration,
    /// `--ct-max`: flows; the map holds twice as many entries.
    pub ct_max_flows: u32,
    pub nat_ports: NatPorts,
    /// Where the embedded DNS forwards names it does not know (empty: the
    /// host's resolvers).
    pub dns_upstreams: Vec<std::net::Ipv4Addr>,
}

pub struct Daemon {
    pub config: DaemonConfig,
    pub store: Store,
    pub netlink: Netlink,
    pub datapath: Datapath,
    pub dns: DnsServers,
    /// Conntrack entries counted by the last GC pass (None before it).
    pub ct_entries: Option<usize>,
}

impl Daemon {
    /// Opens the state, loads the datapath, and reconciles the kernel with
    /// the stored state.
    pub async fn start(config: DaemonConfig) -> Result<Self> {
        refuse_lost_state(&config)?;
        let store = Store::open(&config.state_dir)?;
        let netlink = Netlink::current()?;
        let mut datapath = Datapath::load(&config.bpffs, config.ct_max_flows)?;
        host::enable_forwarding()?;
        datapath.set_config(DatapathConfig {
            host_netns_cookie: host::netns_cookie()?,
            nat_port_min: u32::from(config.nat_ports.min),
            nat_port_max: u32::from(config.nat_ports.max),
        })?;
        netns::prepare_dir(&config.netns_dir)?;
        let mut daemon = Self {
            config,
            store,
            netlink,
            datapath,
            dns: DnsServers::default(),
            ct_entries: None,
        };
        daemon.ensure_networks().await?;
        for net in daemon.store.networks()? {
            daemon.start_dns(&net)?;
        }
        daemon.attach_host().await?;
        daemon.refresh_host_addrs().await?;
        daemon.reconcile_containers().await?;
        daemon.sweep_orphans().await?;
        daemon.reconcile_portmaps()?;
        daemon.refresh_dns()?;
        info!(
            state_dir = %daemon.config.state_dir.display(),
            bpffs = %daemon.config.bpffs.display(),
            "datapath loaded, state reconciled"
        );
        Ok(daemon)
    }

    /// Attaches the uplink programs and the host-local socket hooks.
    async fn attach_host(&mut self) -> Result<()> {
        let uplinks = match self.config.uplinks.clone() {
            given if !given.is_empty() => given,
            _ => match self.netlink.default_route_ifname().await {
                Ok(name) => vec![name],
                Err(e) => {
                    warn!("published ports are unreachable from outside: {e:#}");
                    Vec::new()
                }
            },
        };
        for uplink in &uplinks {
            if self.netlink.link_index(uplink).await?.is_none() {
                anyhow::bail!("uplink {uplink} does not exist: check --uplink");
            }
            self.datapath.attach_uplink(uplink)?;
            info!(uplink, "uplink attached");
        }
        match host::cgroup2_root() {
            Ok(root) => self.datapath.attach_sock_hooks(&root)?,
            Err(e) => warn!("host-local access to published ports is off: {e:#}"),
        }
        Ok(())
    }

    /// Keeps the datapath's list of host addresses current.
    pub async fn refresh_host_addrs(&mut self) -> Result<()> {
        let addrs = self.netlink.host_ipv4_addrs().await?;
        self.datapath.sync_host_addrs(&addrs)
    }

    /// Executes one request; the error string is what the CLI prints.
    pub async fn handle(&mut self, request: Request) -> Result<Value> {
        let result = self.execute(request).await;
        if let Err(e) = self.refresh_dns() {
            warn!("refreshing DNS names: {e:#}");
        }
        result
    }

    async fn execute(&mut self, request: Request) -> Result<Value> {
        match request {
            Request::Status => self.status_json(),
            Request::ContainerAdd(spec) => {
                let rec = self.container_add(&spec).await?;
                self.container_json(&rec).await
            }
            Request::NetworkCreate(spec) => {
                let net = self.network_create(&spec).await?;
                // The new gateway is a host address from now on.
                self.refresh_host_addrs().await?;
                self.network_inspect(&net.name)
            }
            Request::NetworkLs => self.network_list(),
            Request::NetworkInspect { name } => self.network_inspect(&name),
            Request::NetworkRm { name } => {
                self.network_rm(&name).await?;
                Ok(json!({ "removed": name }))
            }
            Request::NetworkConnect {
                network,
                container,
                ip,
            } => {
                self.network_connect(&network, &container, ip).await?;
                let rec = self.container(&container)?;
                self.container_json(&rec).await
            }
            Request::NetworkDisconnect { network, container } => {
                self.network_disconnect(&network, &container).await?;
                let rec = self.container(&container)?;
                self.container_json(&rec).await
            }
            Request::ContainerLs => self.container_list().await,
            Request::ContainerInspect { name } => {
                let rec = self.container(&name)?;
                self.container_json(&rec).await
            }
            Request::ContainerRm { name } => {
                self.container_rm(&name).await?;
                Ok(json!({ "removed": name }))
            }
            Request::PortmapAdd { spec, force } => {
                let mapping = PortMapping::parse_full(&spec)?;
                let records = self.portmap_add(vec![mapping], force).await?;
                Ok(portmap::records_json(&records))
            }
            Request::PortmapLs => Ok(portmap::records_json(&self.store.portmaps()?)),
            Request::PortmapRm { spec } => {
                let record = self.portmap_rm(&spec)?;
                Ok(portmap::records_json(&[record]))
            }
            // Streamed by the server, outside the daemon lock.
            Request::ConntrackLs { .. } => {
                anyhow::bail!("conntrack ls is served by the socket server")
            }
            Request::Stats => self.stats_json(),
            Request::Down => self.down().await.map(|()| json!({ "down": true })),
        }
    }

    async fn container_list(&self) -> Result<Value> {
        let mut out = Vec::new();
        for rec in self.store.containers()? {
            out.push(self.container_json(&rec).await?);
        }
        Ok(Value::Array(out))
    }

    fn status_json(&self) -> Result<Value> {
        let stats = self.datapath.stats()?;
        let counter = |index: StatIndex| {
            stats
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(0, |(_, c)| c.packets)
        };
        // Two entries per flow, in two tables (new and assured flows).
        let max_entries = u64::from(self.config.ct_max_flows) * 2 * 2;
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "state_dir": self.config.state_dir,
            "bpffs": self.config.bpffs,
            "containers": self.store.containers()?.len(),
            "conntrack": {
                "entries": self.ct_entries,
                "max_entries": max_entries,
                "max_flows": self.config.ct_max_flows,
                "drop_ct_full": counter(StatIndex::DropCtFull),
                "drop_no_port": counter(StatIndex::DropNoPort),
            },
        }))
    }

    /// The endpoint addresses (network order) of a container, for
    /// `conntrack ls --container`.
    pub fn container_addrs(&self, name: &str) -> Result<Vec<u32>> {
        let rec = self.container(name)?;
        if rec.endpoints.is_empty() {
            anyhow::bail!(
                "container {name} has no address of its own (network mode host, none or container:): its flows cannot be told apart; use --port or list all flows"
            );
        }
        Ok(rec
            .endpoints
            .iter()
            .map(|ep| u32::from(ep.ip).to_be())
            .collect())
    }

    fn stats_json(&self) -> Result<Value> {
        let mut out = serde_json::Map::new();
        for (index, counter) in self.datapath.stats()? {
            out.insert(
                index.name().into(),
                json!({ "packets": counter.packets, "bytes": counter.bytes }),
            );
        }
        Ok(Value::Object(out))
    }

    /// Removes everything netd created: containers, bridges, pinned BPF
    /// objects and the state database. The daemon exits afterwards.
    async fn down(&mut self) -> Result<()> {
        self.unplumb_all_containers().await?;
        self.unplumb_networks().await?;
        remove_leftovers(&self.config.state_dir, &self.config.bpffs)
    }
}

/// A missing or empty database next to pinned maps is lost state, not a
/// fresh install: starting fresh would sweep the running containers' veths
/// as orphans and leave their namespaces and map entries behind.
fn refuse_lost_state(config: &DaemonConfig) -> Result<()> {
    let db = DbFile::of(&config.state_dir);
    if db != DbFile::Present && crate::datapath::has_pins(&config.bpffs) {
        anyhow::bail!(
            "state database {} is {} but netd's pinned maps in {} show a deployment: refusing to start fresh over it; restore the database, or remove everything with `netd down --state-dir {} --bpffs {}` and start again",
            crate::state::db_path(&config.state_dir).display(),
            if db == DbFile::Empty {
                "empty"
            } else {
                "missing"
            },
            config.bpffs.display(),
            config.state_dir.display(),
            config.bpffs.display(),
        );
    }
    Ok(())
}

/// `netd down` without a daemon (it crashed, or cannot start): the same
/// removal, driven by the state database, or, when that is unreadable,
/// empty or gone, by the kernel objects netd owns (`leftovers`). No
/// datapath is loaded. Runs in the caller's network namespace, which must
/// be the daemon's.
pub async fn down_offline(state_dir: &Path, bpffs: &Path, netns_dir: &Path) -> Result<()> {
    let store = match DbFile::of(state_dir) {
        DbFile::Present => Store::open(state_dir)
            .map_err(|e| {
                warn!("the state database is unreadable ({e:#}); using the kernel objects")
            })
            .ok(),
        DbFile::Missing | DbFile::Empty => None,
    };
    match store {
        Some(store) => down_from_store(store).await?,
        None => crate::leftovers::down_from_kernel(state_dir, bpffs, netns_dir).await?,
    }
    remove_leftovers(state_dir, bpffs)
}

async fn down_from_store(store: Store) -> Result<()> {
    let netlink = Netlink::current()?;
    for c in store.containers()? {
        for ep in &c.endpoints {
            netlink.delete_link(&ep.host_veth).await?;
        }
        if c.owns_netns() {
            netns::delete(&c.netns)?;
        }
    }
    for net in store.networks()? {
        crate::network::unplumb_bridge(&netlink, &net).await?;
    }
    Ok(())
}

/// Pinned objects (which detaches every program) and the state files.
fn remove_leftovers(state_dir: &Path, bpffs: &Path) -> Result<()> {
    crate::datapath::unpin_all(bpffs)?;
    for file in ["netd.redb", "lock"] {
        let path = state_dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    crate::names::remove(&state_dir.join("containers"))?;
    // Only if empty: the dir may hold files that are not netd's.
    let _ = std::fs::remove_dir(state_dir);
    info!("everything netd created is removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::NatPorts;

    #[test]
    fn nat_ports_parse() {
        assert_eq!(
            "40000-40003".parse::<NatPorts>(),
            Ok(NatPorts {
                min: 40000,
                max: 40003
            })
        );
        for bad in ["", "1024", "0-10", "10-9", "1-65536", "a-b"] {
            assert!(bad.parse::<NatPorts>().is_err(), "{bad}");
        }
    }
}
