//! The daemon's start: the state lock, the store, the datapath (loaded,
//! configured, attached to the uplinks and the cgroup root), the engine
//! with its observers; and what the socket server needs of them.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use netd_common::DatapathConfig;
use tracing::{info, warn};

use super::{config::DaemonConfig, down::refuse_lost_state};
use crate::{
    engine::{Engine, events::Observer, kernel::Kernel, store::redb::RedbStore},
    kernel::{self, datapath::BpfDatapath, host, netlink::Netlink, netns},
    services::{dns::DnsServers, flows::FlowSweeper, namefiles::NameFiles},
};

pub struct Daemon {
    pub config: DaemonConfig,
    pub engine: Engine,
    pub names: Arc<NameFiles>,
    /// Conntrack entries counted by the last GC pass (None before it):
    /// IPv4, IPv6.
    ct_entries: Mutex<[Option<usize>; 2]>,
}

impl Daemon {
    /// Opens the state, loads the datapath, and starts the engine (which
    /// reconciles the kernel with the stored state).
    pub async fn start(config: DaemonConfig) -> Result<Self> {
        refuse_lost_state(&config)?;
        let datapath = Arc::new(BpfDatapath::load(
            &config.bpffs,
            config.ct_max_flows,
            config.ct6_max_flows,
        )?);
        host::enable_forwarding()?;
        datapath.set_config(DatapathConfig {
            host_netns_cookie: host::netns_cookie()?,
            nat_port_min: u32::from(config.nat_ports.min),
            nat_port_max: u32::from(config.nat_ports.max),
        })?;
        netns::prepare_dir(&config.engine.netns_dir)?;
        let kernel = kernel::linux(datapath.clone())?;
        attach_host(&config, &datapath).await?;
        let names = Arc::new(NameFiles::new(&config.state_dir));
        let dns = Arc::new(DnsServers::new(config.dns_upstreams.clone()));
        let flows = Arc::new(FlowSweeper::new(config.bpffs.clone()));
        let observers: Vec<Arc<dyn Observer>> = vec![names.clone(), dns, flows];
        let engine = start_engine(&config, kernel, observers).await?;
        info!(
            state_dir = %config.state_dir.display(),
            bpffs = %config.bpffs.display(),
            "datapath loaded, state reconciled"
        );
        Ok(Self {
            config,
            engine,
            names,
            ct_entries: Mutex::new([None; 2]),
        })
    }

    /// The entries of the IPv4 (`v6` false) or IPv6 tables.
    pub fn ct_entries(&self, v6: bool) -> Option<usize> {
        self.ct_entries.lock().ok().and_then(|e| e[usize::from(v6)])
    }

    pub fn set_ct_entries(&self, v6: bool, entries: usize) {
        if let Ok(mut e) = self.ct_entries.lock() {
            e[usize::from(v6)] = Some(entries);
        }
    }

    pub fn names_dir(&self, container: &str) -> PathBuf {
        self.names.dir_of(container)
    }
}

async fn start_engine(
    config: &DaemonConfig,
    kernel: Kernel,
    observers: Vec<Arc<dyn Observer>>,
) -> Result<Engine> {
    let store = RedbStore::open(&config.state_dir).map_err(anyhow::Error::new)?;
    Engine::start(config.engine.clone(), Box::new(store), kernel, observers)
        .await
        .map_err(anyhow::Error::new)
}

/// Attaches the uplink programs and the host-local socket hooks.
async fn attach_host(config: &DaemonConfig, datapath: &BpfDatapath) -> Result<()> {
    let netlink = Netlink::current()?;
    let uplinks = match config.uplinks.clone() {
        given if !given.is_empty() => given,
        _ => match netlink.default_route_ifname().await {
            Ok(name) => vec![name],
            Err(e) => {
                warn!("published ports are unreachable from outside: {e:#}");
                Vec::new()
            }
        },
    };
    for uplink in &uplinks {
        if netlink.link_index(uplink).await?.is_none() {
            bail!("uplink {uplink} does not exist: check --uplink");
        }
        datapath
            .attach_uplink(uplink)
            .with_context(|| format!("attaching uplink {uplink}"))?;
        info!(uplink, "uplink attached");
    }
    match host::cgroup2_root() {
        Ok(root) => datapath.attach_sock_hooks(&root)?,
        Err(e) => warn!("host-local access to published ports is off: {e:#}"),
    }
    Ok(())
}
