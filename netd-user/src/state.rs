//! The daemon's persistent state: networks and containers, stored as JSON
//! records in a redb database (`<state-dir>/netd.redb`). redb commits are
//! atomic and crash-safe, so a `kill -9` at any point leaves either the old
//! or the new record, never a torn one.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context, Result};
use ipnetwork::Ipv4Network;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tracing::warn;

use crate::portmap::PortMapping;

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const PORTMAPS: TableDefinition<&str, &[u8]> = TableDefinition::new("portmaps");

/// A published port (range), keyed by its host side, and the container it
/// belongs to (removed with it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortMapRecord {
    pub mapping: PortMapping,
    pub container: String,
}

/// A network: a Linux bridge with a subnet and a gateway address on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    /// Small integer used by the datapath to tell networks apart.
    pub net_id: u32,
    pub bridge: String,
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    /// How hosts outside reach the containers (records from before this
    /// field are NAT networks).
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    /// The bridge existed before and was adopted (`--adopt-bridge`): netd
    /// never deletes it, only the gateway address it added.
    #[serde(default)]
    pub adopted_bridge: bool,
}

/// Docker's `com.docker.network.bridge.gateway_mode_ipv4`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// MASQUERADE outbound; from outside only published ports and replies
    /// reach the containers.
    #[default]
    Nat,
    /// No NAT: the containers' addresses are reachable directly by hosts
    /// that route the subnet via this host, and they leave with them.
    Routed,
}

impl GatewayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::Routed => "routed",
        }
    }
}

impl NetworkRecord {
    /// The `netd_common::net_flags` bits the datapath enforces.
    pub fn datapath_flags(&self) -> u32 {
        let mut flags = 0;
        if self.internal {
            flags |= netd_common::net_flags::INTERNAL;
        }
        if self.gateway_mode == GatewayMode::Routed {
            flags |= netd_common::net_flags::ROUTED;
        }
        flags
    }
}

/// Where a container is in its life cycle. A record is written as
/// `Creating` before any kernel object exists, so that a crash halfway
/// through `container add` is found and rolled back at the next start.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Ready,
}

/// How a container gets its network (Docker's `--network` modes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// Its own namespace, attached to one or more networks.
    Bridge,
    /// No namespace of its own: the host's (the daemon's).
    Host,
    /// Its own namespace with only `lo`.
    None,
    /// The namespace of another container.
    Container(String),
}

/// One interface of a container on one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub network: String,
    /// Name inside the container: eth0, eth1, ...
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub host_veth: String,
    pub host_ifindex: u32,
}

/// `--hostname`, `--dns`, `--add-host`: what goes into the generated
/// `hosts` and `resolv.conf`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NameConfig {
    pub hostname: String,
    pub dns: Vec<Ipv4Addr>,
    pub extra_hosts: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub mode: NetMode,
    /// The namespace the container's processes join.
    pub netns: PathBuf,
    pub endpoints: Vec<EndpointRecord>,
    pub names: NameConfig,
    pub phase: Phase,
}

impl ContainerRecord {
    /// The first interface (eth0), which carries the default route.
    pub fn primary(&self) -> Option<&EndpointRecord> {
        self.endpoints.first()
    }

    /// Whether netd created (and so deletes) the namespace.
    pub fn owns_netns(&self) -> bool {
        matches!(self.mode, NetMode::Bridge | NetMode::None)
    }

    pub fn endpoint_on(&self, network: &str) -> Option<&EndpointRecord> {
        self.endpoints.iter().find(|e| e.network == network)
    }
}

/// The redb database. After an I/O error (a full disk, say) redb refuses
/// every later transaction ("Previous I/O error occurred") until the
/// database is opened again; so a storage failure drops the handle, and the
/// next operation reopens the file, which succeeds once the cause is gone.
pub struct Store {
    path: PathBuf,
    db: Mutex<Option<Database>>,
}

/// The state database file as found, before anything opens (and so
/// creates) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    Missing,
    /// 0 bytes: truncated, or created and never written.
    Empty,
    Present,
}

impl DbFile {
    pub fn of(state_dir: &Path) -> DbFile {
        match fs::metadata(db_path(state_dir)) {
            Err(_) => DbFile::Missing,
            Ok(m) if m.len() == 0 => DbFile::Empty,
            Ok(_) => DbFile::Present,
        }
    }
}

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("netd.redb")
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self> {
        fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state dir {}", state_dir.display()))?;
        let path = db_path(state_dir);
        let db = open_db(&path)?;
        let store = Self {
            path,
            db: Mutex::new(Some(db)),
        };
        store.init_tables()?;
        Ok(store)
    }

    fn init_tables(&self) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(NETWORKS)?;
            txn.open_table(CONTAINERS)?;
            txn.open_table(PORTMAPS)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Runs `op` on the database, reopening it first if an earlier storage
    /// failure dropped it, and dropping it if `op` fails in storage.
    fn with_db<T>(&self, op: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let mut guard = match self.db.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let db = match guard.take() {
            Some(db) => db,
            None => {
                warn!(path = %self.path.display(), "reopening the state database after a storage error");
                open_db(&self.path)?
            }
        };
        let result = op(&db);
        match &result {
            Err(e) if is_storage_failure(e) => drop(db),
            _ => *guard = Some(db),
        }
        result
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        self.all(NETWORKS)
    }

    pub fn put_network(&self, net: &NetworkRecord) -> Result<()> {
        self.put(NETWORKS, &net.name, net)
    }

    pub fn delete_network(&self, name: &str) -> Result<()> {
        self.delete(NETWORKS, name)
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.all(CONTAINERS)
    }

    pub fn container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        self.get(CONTAINERS, name)
    }

    pub fn put_container(&self, c: &ContainerRecord) -> Result<()> {
        self.put(CONTAINERS, &c.name, c)
    }

    pub fn delete_container(&self, name: &str) -> Result<()> {
        self.delete(CONTAINERS, name)
    }

    pub fn portmaps(&self) -> Result<Vec<PortMapRecord>> {
        self.all(PORTMAPS)
    }

    pub fn put_portmaps(&self, records: &[PortMapRecord]) -> Result<()> {
        let rows = records
            .iter()
            .map(|rec| Ok((rec.mapping.host_side(), serde_json::to_vec(rec)?)))
            .collect::<Result<Vec<_>>>()?;
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(PORTMAPS)?;
                for (key, bytes) in &rows {
                    table.insert(key.as_str(), bytes.as_slice())?;
                }
            }
            txn.commit().context("saving port mappings")?;
            Ok(())
        })
    }

    pub fn delete_portmaps(&self, records: &[PortMapRecord]) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(PORTMAPS)?;
                for rec in records {
                    table.remove(rec.mapping.host_side().as_str())?;
                }
            }
            txn.commit().context("deleting port mappings")?;
            Ok(())
        })
    }

    fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(table)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                let record = serde_json::from_slice(value.value())
                    .with_context(|| format!("decoding state record {}", key.value()))?;
                out.push(record);
            }
            Ok(out)
        })
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(table)?;
            let Some(value) = table.get(key)? else {
                return Ok(None);
            };
            let record = serde_json::from_slice(value.value())
                .with_context(|| format!("decoding state record {key}"))?;
            Ok(Some(record))
        })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(table)?.insert(key, bytes.as_slice())?;
            txn.commit()
                .with_context(|| format!("saving state record {key}"))?;
            Ok(())
        })
    }

    fn delete(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(table)?.remove(key)?;
            txn.commit()
                .with_context(|| format!("deleting state record {key}"))?;
            Ok(())
        })
    }
}

fn open_db(path: &Path) -> Result<Database> {
    Database::create(path).with_context(|| {
        format!(
            "opening state database {} (if it cannot be restored, `netd down` removes everything netd created, found from its kernel objects)",
            path.display()
        )
    })
}

/// An error of redb's storage layer (I/O, or the refusal that follows
/// one), as opposed to a record that does not decode.
fn is_storage_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<redb::StorageError>()
            || cause.is::<redb::CommitError>()
            || cause.is::<redb::TransactionError>()
            || cause.is::<redb::TableError>()
            || cause.is::<redb::Error>()
    })
}

/// A container record for unit tests: c1 on `bridge` at 172.17.0.2.
#[cfg(test)]
pub fn sample_container() -> ContainerRecord {
    ContainerRecord {
        id: "abc".into(),
        name: "c1".into(),
        mode: NetMode::Bridge,
        netns: "/run/netns/c1".into(),
        endpoints: vec![EndpointRecord {
            network: "bridge".into(),
            ifname: "eth0".into(),
            ip: Ipv4Addr::new(172, 17, 0, 2),
            mac: "02:42:ac:11:00:02".into(),
            host_veth: "vethabc".into(),
            host_ifindex: 7,
        }],
        names: NameConfig::default(),
        phase: Phase::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("netd-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rec = sample_container();
        {
            let store = Store::open(&dir).unwrap();
            store.put_container(&rec).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.container("c1").unwrap(), Some(rec));
        store.delete_container("c1").unwrap();
        assert!(store.containers().unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
