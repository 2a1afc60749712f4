//! `build`, `run` and `test`.

use std::{ffi::OsString, os::unix::process::CommandExt, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{cmd, setup};

/// Crates that are built for `bpfel-unknown-none` only (by netd-user's
/// build.rs); `--workspace` would otherwise build them for the host.
const BPF_ONLY: &[&str] = &["netd-ebpf"];

/// Path of the `netd` binary of a profile.
pub fn netd_bin(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    cmd::target_dir().join(profile).join("netd")
}

/// Setup, then `cargo build -p netd-user`; returns the binary path.
pub fn build(release: bool) -> Result<PathBuf> {
    setup::setup()?;
    cargo_build(release)
}

fn cargo_build(release: bool) -> Result<PathBuf> {
    let mut build = cmd::cargo();
    build.args(["build", "-p", "netd-user"]);
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    let bin = netd_bin(release);
    if !bin.is_file() {
        bail!("cargo build succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// Build (release), then replace this process with `netd daemon ARGS...`.
pub fn run_daemon(args: &[OsString]) -> Result<()> {
    let bin = build(true)?;
    let mut daemon = Command::new(&bin);
    daemon.arg("daemon").args(args);
    // exec only returns on failure; SIGINT goes straight to the daemon.
    let err = daemon.exec();
    Err(err).with_context(|| format!("cannot exec `{}`", cmd::describe(&daemon)))
}

/// fmt check, clippy, build, then every test of the workspace.
pub fn test() -> Result<()> {
    cmd::ensure_root("the integration tests create network namespaces and load eBPF")?;
    setup::setup()?;
    step(
        "cargo fmt --check",
        cmd::cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step("cargo clippy", &mut clippy())?;
    let bin = cargo_build(false)?;
    step("cargo test", &mut cargo_test(&bin))
}

fn clippy() -> Command {
    let mut clippy = workspace_cmd("clippy");
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    clippy
}

fn cargo_test(bin: &std::path::Path) -> Command {
    let mut test = workspace_cmd("test");
    test.arg("--no-fail-fast")
        .args(["--", "--test-threads=2"])
        .env("NETD_BIN", bin);
    test
}

/// `cargo SUB --workspace --exclude <bpf-only crates>`.
fn workspace_cmd(sub: &str) -> Command {
    let mut c = cmd::cargo();
    c.args([sub, "--workspace"]);
    for krate in BPF_ONLY {
        c.args(["--exclude", krate]);
    }
    c
}

fn step(name: &str, command: &mut Command) -> Result<()> {
    println!("==> {name}");
    cmd::run(command).with_context(|| format!("step `{name}` failed"))
}
