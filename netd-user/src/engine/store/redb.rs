//! The daemon's store: a redb database (`<state-dir>/netd.redb`) with one
//! table per record type, JSON values, and a schema version. redb commits
//! are atomic and crash-safe, so a `kill -9` at any point leaves either the
//! old or the new state of an operation, never part of it.
//!
//! Schema 2 (this one): `networks` by name, `containers` by id, `portmaps`
//! by host side (naming their container by id), `pools` (address pools a
//! runtime's IPAM holds) by id, `meta` holding `schema = 2`. `pools` came
//! later within schema 2: it is created on open and an older netd ignores
//! it. Schema 1 (no `meta`) had containers keyed by name and
//! port mappings naming their container; it is converted on open.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context, anyhow};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, warn};

use super::{Change, State, Store, legacy::ContainerV1};
use crate::engine::{
    error::{Error, Result},
    model::{Container, ContainerId, PortMap},
};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const PORTMAPS: TableDefinition<&str, &[u8]> = TableDefinition::new("portmaps");
const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const SCHEMA: u64 = 2;

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

/// After an I/O error (a full disk, say) redb refuses every later
/// transaction ("Previous I/O error occurred") until the database is opened
/// again; so a storage failure drops the handle, and the next operation
/// reopens the file, which succeeds once the cause is gone.
pub struct RedbStore {
    path: PathBuf,
    db: Mutex<Option<Database>>,
}

impl RedbStore {
    pub fn open(state_dir: &Path) -> Result<Self> {
        fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state dir {}", state_dir.display()))
            .map_err(Error::store)?;
        let path = db_path(state_dir);
        let db = open_db(&path).map_err(Error::store)?;
        let store = Self {
            path,
            db: Mutex::new(Some(db)),
        };
        store.with_db(prepare).map_err(Error::store)?;
        Ok(store)
    }

    /// Runs `op` on the database, reopening it first if an earlier storage
    /// failure dropped it, and dropping it if `op` fails in storage.
    fn with_db<T>(&self, op: impl FnOnce(&Database) -> anyhow::Result<T>) -> anyhow::Result<T> {
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
}

impl Store for RedbStore {
    fn load(&self) -> Result<State> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let mut state = State::default();
            for (name, net) in rows(&txn.open_table(NETWORKS)?)? {
                state.networks.insert(name, net);
            }
            for (_, c) in rows::<Container>(&txn.open_table(CONTAINERS)?)? {
                state.containers.insert(c.id.clone(), c);
            }
            for (key, p) in rows(&txn.open_table(PORTMAPS)?)? {
                state.portmaps.insert(key, p);
            }
            for (key, p) in rows(&txn.open_table(POOLS)?)? {
                state.pools.insert(key, p);
            }
            Ok(state)
        })
        .map_err(Error::store)
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut networks = txn.open_table(NETWORKS)?;
                let mut containers = txn.open_table(CONTAINERS)?;
                let mut portmaps = txn.open_table(PORTMAPS)?;
                let mut pools = txn.open_table(POOLS)?;
                for change in changes {
                    match change {
                        Change::PutNetwork(n) => {
                            networks.insert(n.name.as_str(), json(n)?.as_slice())?;
                        }
                        Change::DeleteNetwork(name) => {
                            networks.remove(name.as_str())?;
                        }
                        Change::PutContainer(c) => {
                            containers.insert(c.id.0.as_str(), json(c)?.as_slice())?;
                        }
                        Change::DeleteContainer(id) => {
                            containers.remove(id.0.as_str())?;
                        }
                        Change::PutPortmap(p) => {
                            portmaps.insert(p.mapping.host_side().as_str(), json(p)?.as_slice())?;
                        }
                        Change::DeletePortmap(key) => {
                            portmaps.remove(key.as_str())?;
                        }
                        Change::PutPool(p) => {
                            pools.insert(p.id.as_str(), json(p)?.as_slice())?;
                        }
                        Change::DeletePool(id) => {
                            pools.remove(id.as_str())?;
                        }
                    }
                }
            }
            txn.commit().context("saving the state")?;
            Ok(())
        })
        .map_err(Error::store)
    }
}

fn json<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn rows<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> anyhow::Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (key, value) = row?;
        let record = serde_json::from_slice(value.value())
            .with_context(|| format!("decoding state record {}", key.value()))?;
        out.push((key.value().to_string(), record));
    }
    Ok(out)
}

/// Creates the tables, checks the schema version, and converts a schema-1
/// database.
fn prepare(db: &Database) -> anyhow::Result<()> {
    let txn = db.begin_write()?;
    let had_meta = txn.list_tables()?.any(|t| t.name() == "meta");
    let had_records = txn.list_tables()?.any(|t| t.name() == "containers");
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get("schema")?.map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA => {
                return Err(anyhow!(
                    "the state database was written by a newer netd (schema {v}; this netd knows up to {SCHEMA}): run that netd, or restore a database it did not touch"
                ));
            }
            Some(_) => {}
            None => {
                meta.insert("schema", SCHEMA)?;
            }
        }
    }
    txn.open_table(NETWORKS)?;
    txn.open_table(CONTAINERS)?;
    txn.open_table(PORTMAPS)?;
    txn.open_table(POOLS)?;
    if !had_meta && had_records {
        convert_schema_1(&txn)?;
        info!("state database converted from schema 1 to {SCHEMA}");
    }
    txn.commit().context("preparing the state database")?;
    Ok(())
}

/// Containers re-keyed by id; port mappings name their container by id.
fn convert_schema_1(txn: &redb::WriteTransaction) -> anyhow::Result<()> {
    let mut containers = txn.open_table(CONTAINERS)?;
    let old: Vec<(String, ContainerV1)> = rows(&containers)?;
    let mut ids = HashMap::new();
    for (key, record) in old {
        let c: Container = record.into();
        containers.remove(key.as_str())?;
        containers.insert(c.id.0.as_str(), json(&c)?.as_slice())?;
        ids.insert(c.name.clone(), c.id.clone());
    }
    let mut portmaps = txn.open_table(PORTMAPS)?;
    let maps: Vec<(String, PortMap)> = rows(&portmaps)?;
    for (key, mut p) in maps {
        // Schema 1 stored the container's name where the id goes now.
        let id = ids
            .get(&p.container.0)
            .cloned()
            .unwrap_or(ContainerId(p.container.0.clone()));
        p.container = id;
        portmaps.insert(key.as_str(), json(&p)?.as_slice())?;
    }
    Ok(())
}

fn open_db(path: &Path) -> anyhow::Result<Database> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::sample_container;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netd-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopen() {
        let dir = temp_dir("reopen");
        let rec = sample_container();
        {
            let store = RedbStore::open(&dir).unwrap();
            store.commit(&[Change::PutContainer(rec.clone())]).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap().containers.get(&rec.id), Some(&rec));
        store
            .commit(&[Change::DeleteContainer(rec.id.clone())])
            .unwrap();
        assert!(store.load().unwrap().containers.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn schema_1_databases_are_converted() {
        let dir = temp_dir("v1");
        fs::create_dir_all(&dir).unwrap();
        {
            let db = Database::create(db_path(&dir)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut c = txn.open_table(CONTAINERS).unwrap();
                c.insert("web", br#"{"id":"abc","name":"web","mode":"bridge","netns":"/run/netns/web","endpoints":[],"names":{"hostname":"web","dns":[],"extra_hosts":[]},"phase":"ready"}"#.as_slice()).unwrap();
                let mut p = txn.open_table(PORTMAPS).unwrap();
                p.insert("8080/tcp", br#"{"mapping":{"host_ip":"0.0.0.0","host_ports":{"start":8080,"end":8080},"container_ip":"172.17.0.2","container_ports":{"start":80,"end":80},"proto":"tcp"},"container":"web"}"#.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let state = RedbStore::open(&dir).unwrap().load().unwrap();
        let id = ContainerId("abc".into());
        assert_eq!(state.containers[&id].name, "web");
        assert_eq!(state.portmaps["8080/tcp"].container, id);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn newer_schemas_are_refused() {
        let dir = temp_dir("newer");
        fs::create_dir_all(&dir).unwrap();
        {
            let db = Database::create(db_path(&dir)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", 99).unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(&dir).err().unwrap();
        assert!(err.message.contains("newer netd"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
