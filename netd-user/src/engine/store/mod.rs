//! Persistent state. The engine keeps the whole state in memory (`State`)
//! and writes each operation's changes to the store in one transaction
//! (`Store::commit`), so an operation is either fully recorded or not at
//! all. The redb store is the daemon's; the memory store is for tests.

mod legacy;
pub mod memory;
pub mod redb;

use std::collections::BTreeMap;

use super::{
    error::Result,
    model::{AddressPoolLease, Container, ContainerId, Network, PortMap},
};

/// Everything netd records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// By name.
    pub networks: BTreeMap<String, Network>,
    /// By id.
    pub containers: BTreeMap<ContainerId, Container>,
    /// By host side (`PortMapping::host_side`).
    pub portmaps: BTreeMap<String, PortMap>,
    /// Address pools a runtime's IPAM holds, by id.
    pub pools: BTreeMap<String, AddressPoolLease>,
}

impl State {
    pub fn container_named(&self, name: &str) -> Option<&Container> {
        self.containers.values().find(|c| c.name == name)
    }

    /// Applies committed changes to the in-memory copy.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::PutNetwork(n) => {
                    self.networks.insert(n.name.clone(), n.clone());
                }
                Change::DeleteNetwork(name) => {
                    self.networks.remove(name);
                }
                Change::PutContainer(c) => {
                    self.containers.insert(c.id.clone(), c.clone());
                }
                Change::DeleteContainer(id) => {
                    self.containers.remove(id);
                }
                Change::PutPortmap(p) => {
                    self.portmaps.insert(p.mapping.host_side(), p.clone());
                }
                Change::DeletePortmap(key) => {
                    self.portmaps.remove(key);
                }
                Change::PutPool(p) => {
                    self.pools.insert(p.id.clone(), p.clone());
                }
                Change::DeletePool(id) => {
                    self.pools.remove(id);
                }
            }
        }
    }
}

/// One record written or removed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    PutNetwork(Network),
    DeleteNetwork(String),
    PutContainer(Container),
    DeleteContainer(ContainerId),
    PutPortmap(PortMap),
    /// By host side.
    DeletePortmap(String),
    PutPool(AddressPoolLease),
    /// By id.
    DeletePool(String),
}

pub trait Store: Send + Sync {
    /// Everything, as last committed.
    fn load(&self) -> Result<State>;
    /// Writes `changes` in one transaction: all of them or none.
    fn commit(&self, changes: &[Change]) -> Result<()>;
}
