//! `netd cni install`: puts the plugin binary into a runtime's CNI bin dir
//! under the name a conflist's `"type": "netd"` looks for.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

/// Where runtimes look for plugins by default (containerd, CRI-O,
/// Kubernetes; podman also looks in /usr/lib/cni).
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// The plugin's name in the bin dir: the conflist's `"type"`.
pub const PLUGIN_NAME: &str = "netd";

/// The `netd-cni` built next to the running `netd`.
pub fn default_source() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the netd binary")?;
    Ok(exe.with_file_name("netd-cni"))
}

/// Copies `source` to `dir/netd` (through a temporary file and a rename,
/// so a runtime never runs a half-written plugin); returns the path.
pub fn install(source: &Path, dir: &Path) -> Result<PathBuf> {
    if !source.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` (it is built next to netd), or pass --from PATH",
            source.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(PLUGIN_NAME);
    let partial = dir.join(format!(".{PLUGIN_NAME}.partial-{}", std::process::id()));
    let copied = fs::copy(source, &partial)
        .with_context(|| format!("copying {} to {}", source.display(), partial.display()))
        .and_then(|_| {
            fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", partial.display()))
        })
        .and_then(|()| {
            fs::rename(&partial, &target)
                .with_context(|| format!("moving the plugin to {}", target.display()))
        });
    if copied.is_err() {
        let _ = fs::remove_file(&partial);
    }
    copied?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_as_netd_and_refuses_a_missing_source() {
        let dir = std::env::temp_dir().join(format!("netd-cni-install-{}", std::process::id()));
        let source = dir.join("src-bin");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&source, b"#!/bin/sh\n").unwrap();
        let bin = dir.join("bin");
        let target = install(&source, &bin).unwrap();
        assert_eq!(target, bin.join("netd"));
        let mode = fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_dir(&bin).unwrap().count(),
            1,
            "no partial file left"
        );
        assert!(install(&dir.join("missing"), &bin).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
