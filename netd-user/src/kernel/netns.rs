//! Named network namespaces, the way iproute2 keeps them: a file under the
//! netns dir (default `/run/netns`) bind-mounted from a thread's
//! `/proc/thread-self/ns/net`, so `ip netns exec NAME` works on them.
//!
//! Namespace switches happen on dedicated short-lived threads: `setns` and
//! `unshare` change only the calling thread, and a tokio worker must never be
//! left in a container's namespace.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::{Context, Result, anyhow};
use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
    sys::statfs::{NSFS_MAGIC, statfs},
};

/// Makes `dir` a mount point with shared propagation, so the bind mounts we
/// create under it are visible to every mount namespace (as `ip netns add`
/// does).
pub fn prepare_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {} onto itself", dir.display()))?;
            mount(None::<&str>, dir, Some("none"), shared, None::<&str>)
                .with_context(|| format!("making {} a shared mount", dir.display()))
        }
        Err(e) => Err(e).with_context(|| format!("making {} a shared mount", dir.display())),
    }
}

/// True when `path` is a mounted network namespace (not just a leftover file).
pub fn is_mounted(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates a new network namespace and pins it at `path`. Fails if `path`
/// already exists: it may belong to someone else, and is left untouched.
pub fn create(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .with_context(|| format!("creating namespace file {}", path.display()))?;
    let target = path.to_owned();
    let pinned = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting the new namespace on {}", target.display()))
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?;
    if pinned.is_err() {
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Unmounts and removes a pinned namespace. Missing is not an error.
pub fn delete(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", path.display())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Opens a namespace file for `setns` or for handing its fd to netlink.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening network namespace {}", path.display()))
}

/// Runs `f` on a fresh thread that has joined the namespace at `path`.
pub fn run_in<F, R>(path: &Path, f: F) -> Result<R>
where
    F: FnOnce() -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    let ns = open(path)?;
    std::thread::spawn(move || -> Result<R> {
        setns(&ns, CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?
}

/// Moves the calling thread into the namespace at `path` (used by
/// `netd exec` right before it replaces itself with the command).
pub fn enter(path: &Path) -> Result<()> {
    let ns = open(path)?;
    setns(&ns, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {}", path.display()))
}
