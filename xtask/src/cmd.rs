//! Process helpers shared by all tasks.

use std::{
    env,
    ffi::OsString,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

/// Name of the rustup toolchain linked to Debian's rustc (see docs/toolchain).
pub const BPF_TOOLCHAIN: &str = "netd-bpf";

/// The workspace root (the parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.to_path_buf(), Path::to_path_buf)
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`), where `cargo install` puts tools.
pub fn cargo_bin_dir() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cargo")
        });
    home.join("bin")
}

/// `PATH` with `dirs` in front (each only if not already present).
pub fn path_with(dirs: &[PathBuf]) -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut entries: Vec<PathBuf> = env::split_paths(&current).collect();
    for dir in dirs.iter().rev() {
        if !entries.contains(dir) {
            entries.insert(0, dir.clone());
        }
    }
    env::join_paths(entries).unwrap_or(current)
}

/// A command whose `PATH` also contains `$CARGO_HOME/bin`.
pub fn tool(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", path_with(&[cargo_bin_dir()]));
    cmd
}

/// The cargo that runs xtask, in the workspace root, with the build env.
pub fn cargo() -> Command {
    let mut cmd = tool(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root())
        .env("RUSTC_BOOTSTRAP", "1")
        .env("NETD_BPF_TOOLCHAIN", BPF_TOOLCHAIN);
    cmd
}

/// A printable form of `cmd`.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` with captured output; fails only if it cannot be started.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))
}

/// Stdout of `cmd` if it started and exited 0.
pub fn stdout_if_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Fails with a clear message unless running as root.
pub fn ensure_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("must run as root: {why} (try `sudo -E cargo xtask ...`)");
    }
    Ok(())
}
