//! The daemon: owns the state store, the netlink socket and the datapath,
//! and serves CLI requests one at a time (requests mutate shared kernel
//! state; serialising them keeps every operation all-or-nothing).

mod server;

use std::path::PathBuf;

use anyhow::{Context, Result};
use ipnetwork::Ipv4Network;
use serde_json::{Value, json};
use tracing::info;

pub use server::run;

use crate::{api::Request, datapath::Datapath, netlink::Netlink, netns, state::Store};

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
}

pub struct Daemon {
    pub config: DaemonConfig,
    pub store: Store,
    pub netlink: Netlink,
    pub datapath: Datapath,
}

impl Daemon {
    /// Opens the state, loads the datapath, and reconciles the kernel with
    /// the stored state.
    pub async fn start(config: DaemonConfig) -> Result<Self> {
        let store = Store::open(&config.state_dir)?;
        let netlink = Netlink::current()?;
        let datapath = Datapath::load(&config.bpffs)?;
        netns::prepare_dir(&config.netns_dir)?;
        let mut daemon = Self {
            config,
            store,
            netlink,
            datapath,
        };
        daemon.ensure_default_network().await?;
        daemon.reconcile_containers().await?;
        info!(
            state_dir = %daemon.config.state_dir.display(),
            bpffs = %daemon.config.bpffs.display(),
            "datapath loaded, state reconciled"
        );
        Ok(daemon)
    }

    /// Executes one request; the error string is what the CLI prints.
    pub async fn handle(&mut self, request: Request) -> Result<Value> {
        match request {
            Request::Status => Ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "state_dir": self.config.state_dir,
                "bpffs": self.config.bpffs,
                "containers": self.store.containers()?.len(),
            })),
            Request::ContainerAdd { name, network, ip } => {
                let rec = self.container_add(&name, &network, ip).await?;
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
        crate::datapath::unpin_all(&self.config.bpffs)?;
        for file in ["netd.redb", "lock"] {
            let path = self.config.state_dir.join(file);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        // Only if empty: the dir may hold files that are not netd's.
        let _ = std::fs::remove_dir(&self.config.state_dir);
        info!("everything netd created is removed");
        Ok(())
    }
}
