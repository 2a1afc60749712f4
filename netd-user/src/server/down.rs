//! `netd down`'s ends: what a down leaves to remove after the engine took
//! containers and networks apart (pins, state files), the refusal to start
//! fresh over a lost database, and the removal without a daemon.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::config::DaemonConfig;
use crate::{
    engine::store::{
        Store,
        redb::{DbFile, RedbStore, db_path},
    },
    kernel::{datapath, leftovers, netlink::Netlink, netns},
    services::namefiles,
};

/// A missing or empty database next to pinned maps is lost state, not a
/// fresh install: starting fresh would sweep the running containers' veths
/// as orphans and leave their namespaces and map entries behind.
pub fn refuse_lost_state(config: &DaemonConfig) -> Result<()> {
    let db = DbFile::of(&config.state_dir);
    if db != DbFile::Present && datapath::has_pins(&config.bpffs) {
        anyhow::bail!(
            "state database {} is {} but netd's pinned maps in {} show a deployment: refusing to start fresh over it; restore the database, or remove everything with `netd down --state-dir {} --bpffs {}` and start again",
            db_path(&config.state_dir).display(),
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
        DbFile::Present => RedbStore::open(state_dir)
            .map_err(|e| warn!("the state database is unreadable ({e}); using the kernel objects"))
            .ok(),
        DbFile::Missing | DbFile::Empty => None,
    };
    match store {
        Some(store) => down_from_store(store).await?,
        None => leftovers::down_from_kernel(state_dir, bpffs, netns_dir).await?,
    }
    remove_leftovers(state_dir, bpffs)
}

async fn down_from_store(store: RedbStore) -> Result<()> {
    let state = store.load().map_err(anyhow::Error::new)?;
    let netlink = Netlink::current()?;
    for c in state.containers.values() {
        for ep in &c.endpoints {
            netlink.delete_link(&ep.host_veth).await?;
        }
        if let Some(path) = c.sandbox.owned_netns() {
            netns::delete(path)?;
        }
    }
    for net in state.networks.values() {
        if net.adopted_bridge {
            netlink.delete_address(&net.bridge, net.gateway).await?;
        } else {
            netlink.delete_link(&net.bridge).await?;
        }
    }
    Ok(())
}

/// Pinned objects (which detaches every program) and the state files.
pub fn remove_leftovers(state_dir: &Path, bpffs: &Path) -> Result<()> {
    datapath::unpin_all(bpffs)?;
    for file in ["netd.redb", "lock"] {
        let path = state_dir.join(file);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    namefiles::remove(&namefiles::dir_under(state_dir))?;
    // Only if empty: the dir may hold files that are not netd's.
    let _ = fs::remove_dir(state_dir);
    info!("everything netd created is removed");
    Ok(())
}
