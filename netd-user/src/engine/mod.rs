//! The engine: netd's one centre. It owns the state (in memory, committed
//! to the store one transaction per operation), the kernel side (behind
//! the interfaces of `kernel`), the network drivers and the event stream,
//! and offers typed operations: networks, containers (sandboxes) and their
//! endpoints, published ports. Front doors (the socket API and so the CLI,
//! later a Docker plugin and a CNI plugin) are thin adapters over it.
//!
//! Mutations are serialised (one at a time, each all-or-nothing); reads
//! take a snapshot of the in-memory state and never wait for a mutation.

pub mod address_pool;
pub mod driver;
pub mod error;
pub mod events;
#[cfg(test)]
mod fake;
pub mod ids;
pub mod ipam;
pub mod kernel;
pub mod model;
mod ops;
pub mod requests;
pub mod store;
pub mod subnets;
#[cfg(test)]
mod tests;
pub mod validate;

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use ipnetwork::IpNetwork;
use tokio::sync::{Mutex, MutexGuard, broadcast};

pub use self::ids::random_id;

use self::{
    address_pool::AddressPool,
    driver::{NetworkDriver, bridge::BridgeDriver},
    error::{Error, Result},
    events::{Event, Events, Observer},
    kernel::Kernel,
    store::{Change, State, Store},
};

/// What the engine is configured with (the daemon's flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where namespaces netd creates are pinned.
    pub netns_dir: PathBuf,
    /// The default network's bridge and subnet.
    pub default_bridge: String,
    pub default_subnet: IpNetwork,
    /// The default network's IPv6 subnet (Docker's `fixed-cidr-v6`);
    /// none: the default network is IPv4 only.
    pub default_subnet6: Option<IpNetwork>,
    /// Where networks created without a subnet get theirs, in order.
    pub address_pools: Vec<AddressPool>,
}

/// A cloneable handle on the engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    store: Box<dyn Store>,
    state: RwLock<State>,
    kernel: Kernel,
    bridge: Arc<dyn NetworkDriver>,
    events: Events,
    mutation: Mutex<()>,
}

impl Engine {
    /// Loads the state and brings the kernel in line with it: the default
    /// network, every network's bridge, containers (rolled back, repaired
    /// or re-attached), orphans, published ports.
    pub async fn start(
        config: EngineConfig,
        store: Box<dyn Store>,
        kernel: Kernel,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Self> {
        let state = store.load()?;
        let engine = Self {
            inner: Arc::new(Inner {
                config,
                store,
                state: RwLock::new(state),
                bridge: Arc::new(BridgeDriver::new(kernel.clone())),
                kernel,
                events: Events::new(observers),
                mutation: Mutex::new(()),
            }),
        };
        engine.reconcile().await?;
        Ok(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Reads the state as it is now (no waiting for mutations).
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.inner.state.read() {
            Ok(state) => f(&state),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// The driver of a network (`bridge` is the only one so far).
    fn driver(&self, driver: &str) -> Result<Arc<dyn NetworkDriver>> {
        match driver {
            "bridge" => Ok(self.inner.bridge.clone()),
            other => Err(Error::invalid(format!(
                "network driver {other:?} is not known: netd has the bridge driver"
            ))),
        }
    }

    /// One mutation at a time.
    async fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner.mutation.lock().await
    }

    /// Writes `changes` in one transaction, then to the in-memory state.
    fn commit(&self, changes: Vec<Change>) -> Result<()> {
        self.inner.store.commit(&changes)?;
        match self.inner.state.write() {
            Ok(mut state) => state.apply(&changes),
            Err(poisoned) => poisoned.into_inner().apply(&changes),
        }
        Ok(())
    }

    fn emit(&self, event: Event) {
        self.read(|state| self.inner.events.emit(event, state));
    }
}
