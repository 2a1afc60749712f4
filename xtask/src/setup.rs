//! `cargo xtask setup`: the toolchain recipe of docs/toolchain.md, made
//! idempotent. Each piece is checked first and installed only if missing.

use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::cmd::{self, BPF_TOOLCHAIN};

/// Debian packages: the eBPF toolchain plus what the tests use.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "iproute2",
    "iputils-ping",
    "bpftool",
    "iperf3",
    "socat",
    "curl",
    "tcpdump",
    "nftables",
    "iptables",
    "util-linux",
    "procps",
    "python3",
    // The CNI plugin's tests (tests/tests/cni.rs): podman 4.3 with its CNI
    // backend and containerd's `ctr run --cni`, the reference plugins to
    // chain after netd, runc, and a static busybox for the rootfs.
    "podman",
    "containerd",
    "containernetworking-plugins",
    "runc",
    // The Docker plugin's tests: a real dockerd (Debian's docker.io 20.10;
    // no service starts without systemd) and a busybox for the image.
    "docker.io",
    "busybox-static",
];

/// What only `cargo xtask bench` needs: its HTTP client and server. Kept
/// out of `setup` because installing nginx starts a web server on port 80
/// on systemd hosts; the benchmark runs its own nginx inside a namespace.
const BENCH_PACKAGES: &[&str] = &["wrk", "nginx", "docker.io", "busybox-static"];

const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn setup() -> Result<()> {
    debian_packages(PACKAGES)?;
    toolchain_link()?;
    bpf_linker()
}

/// The benchmark's extra packages.
pub fn setup_bench() -> Result<()> {
    debian_packages(BENCH_PACKAGES)
}

fn debian_packages(packages: &[&'static str]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        println!("ok: {} Debian packages already installed", packages.len());
        return Ok(());
    }
    let list = missing.join(" ");
    cmd::ensure_root(&format!("Debian packages missing: {list}"))?;
    println!("installing: Debian packages {list}");
    cmd::run(apt().arg("update"))?;
    cmd::run(
        apt()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still = missing_packages(packages);
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(())
}

fn missing_packages(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|pkg| !package_installed(pkg))
        .collect()
}

fn package_installed(pkg: &str) -> bool {
    let mut query = Command::new("dpkg-query");
    query.args(["-W", "-f=${Status}", pkg]);
    cmd::stdout_if_ok(&mut query).is_some_and(|s| s == "install ok installed")
}

fn apt() -> Command {
    let mut apt = Command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive");
    apt
}

fn toolchain_link() -> Result<()> {
    if !toolchain_linked()? {
        println!("installing: rustup toolchain {BPF_TOOLCHAIN} -> /usr");
        cmd::run(
            cmd::tool("rustup")
                .args(["toolchain", "link", BPF_TOOLCHAIN])
                .arg("/usr"),
        )?;
    }
    let mut version = cmd::tool("rustup");
    version.args(["run", BPF_TOOLCHAIN, "rustc", "--version"]);
    match cmd::stdout_if_ok(&mut version) {
        Some(v) => println!("ok: rustup toolchain {BPF_TOOLCHAIN} ({v})"),
        None => bail!("rustup toolchain {BPF_TOOLCHAIN} is linked but `rustc --version` fails"),
    }
    Ok(())
}

fn toolchain_linked() -> Result<bool> {
    let out = cmd::capture(cmd::tool("rustup").args(["toolchain", "list"]))?;
    if !out.status.success() {
        bail!(
            "`rustup toolchain list` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = String::from_utf8_lossy(&out.stdout);
    Ok(list
        .lines()
        .any(|line| line.split_whitespace().next() == Some(BPF_TOOLCHAIN)))
}

fn bpf_linker() -> Result<()> {
    if let Some(version) = bpf_linker_version() {
        println!("ok: {version} already installed");
        return Ok(());
    }
    println!("installing: bpf-linker (cargo install with LLVM 22, takes a few minutes)");
    // Not `cmd::cargo()`: RUSTC_BOOTSTRAP is for the netd build only, and
    // `cargo install` uses its own target dir, so fingerprints don't matter.
    // Run outside the workspace so its .cargo/config.toml does not apply.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let path = cmd::path_with(&[PathBuf::from(LLVM_BIN), cmd::cargo_bin_dir()]);
    cmd::run(
        Command::new(cargo)
            .args(["install", "bpf-linker", "--no-default-features"])
            .args(["--features", "llvm-22"])
            .env("PATH", path)
            .current_dir(std::env::temp_dir()),
    )?;
    match bpf_linker_version() {
        Some(version) => println!("ok: {version} installed"),
        None => bail!("bpf-linker was installed but `bpf-linker --version` fails"),
    }
    Ok(())
}

/// `bpf-linker --version`, looked up on PATH and in `$CARGO_HOME/bin`.
fn bpf_linker_version() -> Option<String> {
    let mut version = cmd::tool("bpf-linker");
    version.arg("--version");
    cmd::stdout_if_ok(&mut version)
}
