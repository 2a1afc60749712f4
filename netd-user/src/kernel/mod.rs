//! The kernel side on Linux: the engine's interfaces (`engine::kernel`)
//! implemented with aya (the datapath), rtnetlink (links, addresses,
//! routes) and nsfs bind mounts (namespaces), plus what only the daemon
//! needs (host facts, conntrack GC, cleanup without state).

mod bpflink;
pub mod conntrack;
pub mod datapath;
pub mod host;
pub mod hostports;
pub mod leftovers;
mod links;
mod migrate;
pub mod netlink;
pub mod netns;

use std::{path::Path, sync::Arc};

use crate::engine::{
    error::{KernelContext, Result},
    kernel::{Host, Kernel, Namespaces},
    model::{HostSocket, PortRange},
};

/// Namespaces as iproute2 keeps them (`/run/netns/NAME` bind mounts).
pub struct NsFs;

impl Namespaces for NsFs {
    fn create(&self, path: &Path) -> Result<()> {
        netns::create(path).kernel()
    }

    fn delete(&self, path: &Path) -> Result<()> {
        netns::delete(path).kernel()
    }

    fn is_mounted(&self, path: &Path) -> bool {
        netns::is_mounted(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// The host's sockets, from `/proc/self/net`.
pub struct ProcNet;

impl Host for ProcNet {
    fn listening_sockets(&self) -> Result<Vec<HostSocket>> {
        hostports::listening().kernel()
    }

    fn ephemeral_ports(&self) -> Result<PortRange> {
        hostports::ephemeral_range().kernel()
    }
}

/// The Linux kernel side around a loaded datapath.
pub fn linux(datapath: Arc<datapath::BpfDatapath>) -> anyhow::Result<Kernel> {
    Ok(Kernel {
        datapath,
        links: Arc::new(netlink::Netlink::current()?),
        netns: Arc::new(NsFs),
        host: Arc::new(ProcNet),
    })
}
