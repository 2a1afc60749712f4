//! Best-effort removal of everything a testbed may leave behind.

use std::{fs, path::Path, process::Command};

/// Names under /run/netns starting with `prefix`.
pub fn netns_entries(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// `ip netns del` for every namespace starting with `prefix`.
pub fn remove_namespaces(prefix: &str) {
    for name in netns_entries(prefix) {
        let deleted = Command::new("ip")
            .args(["netns", "del", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !deleted {
            eprintln!("warning: could not delete netns {name}");
        }
    }
}

/// Removes a bpffs dir, unmounting it first if a bpffs is mounted there.
pub fn remove_bpffs_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::remove_dir_all(dir);
    if is_mountpoint(dir) {
        let _ = Command::new("umount").arg(dir).status();
        let _ = fs::remove_dir_all(dir);
    }
    if dir.exists() {
        eprintln!("warning: could not remove {}", dir.display());
    }
}

/// Lazily unmounts every mount at or below `dir` (what a dockerd, its
/// containerd or podman stopped halfway leaves), deepest first, each
/// `umount -l` bounded.
pub fn unmount_below(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = Command::new("timeout")
            .args(["10", "umount", "-l", m])
            .status();
    }
}

fn is_mountpoint(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(&*dir))
}
