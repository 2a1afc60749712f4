//! The standard testbed (docs/testbed.md): namespaces `<p>-ext`
//! (198.18.0.2) and `<p>-host` (198.18.0.1) joined by a veth, the host's
//! default route via ext; optionally a netd daemon inside `<p>-host` with
//! its own state dir, bpffs dir and socket. Guards remove everything on drop.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

use super::procs::{self, Background};

pub use netd_tests::topology::{EXT_IP, EXT_IP6, HOST_IP, HOST_IP6};
use netd_tests::{
    cleanup::{netns_entries, remove_bpffs_dir, remove_namespaces},
    topology,
};
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const CMD_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// The two namespaces; `Drop` deletes every namespace named `<p>...`
/// (containers included) and the scratch dir.
pub struct Topology {
    prefix: String,
    tmp: PathBuf,
}

impl Topology {
    pub fn new() -> Result<Self> {
        let prefix = free_prefix()?;
        let topo = Topology {
            tmp: env::temp_dir().join(format!("netd-bench-{prefix}")),
            prefix,
        };
        fs::create_dir_all(&topo.tmp)
            .with_context(|| format!("cannot create {}", topo.tmp.display()))?;
        topo.build()?;
        Ok(topo)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub fn host(&self) -> String {
        format!("{}-host", self.prefix)
    }

    pub fn ext(&self) -> String {
        format!("{}-ext", self.prefix)
    }

    /// Container `n` (netd names its netns after the container).
    pub fn container(&self, n: usize) -> String {
        format!("{}c{n}", self.prefix)
    }

    /// Makes ext's clients use source address 198.18.0.(10 + n): see
    /// `Bed::fresh_source`.
    pub fn client_source(&self, n: u8) -> Result<String> {
        if n >= 200 {
            bail!("out of client source addresses");
        }
        let addr = format!("198.18.0.{}", 10 + n);
        let ext = self.ext();
        ip(&[
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "ext0",
        ])?;
        let link = [
            "dev", "ext0", "proto", "kernel", "scope", "link", "src", &addr,
        ];
        ip(&[
            &["-n", &ext, "route", "replace", "198.18.0.0/24"][..],
            &link,
        ]
        .concat())?;
        Ok(addr)
    }

    /// Makes ext's IPv6 clients use source address 2001:2::(10 + n), as
    /// `client_source` does for IPv4.
    pub fn client_source6(&self, n: u8) -> Result<String> {
        if n >= 200 {
            bail!("out of client source addresses");
        }
        let addr = format!("2001:2::{:x}", 0x10 + u32::from(n));
        let ext = self.ext();
        let cidr = format!("{addr}/64");
        ip(&["-n", &ext, "addr", "add", &cidr, "dev", "ext0", "nodad"])?;
        // Metric 256 is the kernel's own prefix route's: without it the
        // replace adds a second route (metric 1024) that never wins, and
        // every connect runs IPv6 source selection over all of ext0's
        // addresses instead of taking this one.
        let link = [
            "dev", "ext0", "proto", "kernel", "metric", "256", "src", &addr,
        ];
        ip(&[
            &["-n", &ext, "-6", "route", "replace", "2001:2::/64"][..],
            &link,
        ]
        .concat())?;
        Ok(addr)
    }

    /// IPv6 on the uplink (`topology::ip6_commands`).
    pub fn add_ipv6(&self) -> Result<()> {
        for cmd in topology::ip6_commands(&self.host(), &self.ext()) {
            ip(&cmd.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn build(&self) -> Result<()> {
        let (host, ext) = (self.host(), self.ext());
        for cmd in topology::ip_commands(&host, &ext) {
            ip(&cmd.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        sysctl(&host, "net.ipv4.ip_forward=1")?;
        // The load generators live in ext: reuse TIME_WAIT ports and use a
        // wide port range, so the connection-rate test never runs out.
        sysctl(&ext, "net.ipv4.tcp_tw_reuse=1")?;
        sysctl(&ext, "net.ipv4.ip_local_port_range=1024 65535")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        remove_namespaces(&self.prefix);
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// `sysctl -qw SETTING` inside namespace `ns`.
pub fn sysctl(ns: &str, setting: &str) -> Result<()> {
    procs::run_within(procs::in_ns(ns, "sysctl").args(["-qw", setting]), CMD_LIMIT)?;
    Ok(())
}

/// A netd daemon in `<p>-host`. `Drop`: `netd down`, stop by PID, remove
/// the bpffs dir.
pub struct Daemon {
    bin: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    bpffs: PathBuf,
    process: Background,
}

impl Daemon {
    pub fn start(topo: &Topology, bin: &Path) -> Result<Self> {
        Self::start_with(topo, bin, &[])
    }

    /// Like `start`, with more `netd daemon` arguments.
    pub fn start_with(topo: &Topology, bin: &Path, extra: &[&str]) -> Result<Self> {
        let log = topo.tmp().join("daemon.log");
        let file = fs::File::create(&log).context("cannot create the daemon log")?;
        let bpffs = PathBuf::from("/sys/fs/bpf").join(topo.prefix());
        let socket = topo.tmp().join("netd.sock");
        let mut c = procs::command("nsenter");
        c.arg(format!("--net=/run/netns/{}", topo.host()))
            .arg(bin)
            .arg("daemon")
            .arg("--state-dir")
            .arg(topo.tmp().join("state"))
            .arg("--bpffs")
            .arg(&bpffs)
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let process = Background::spawn("netd daemon", &mut c)?;
        let mut daemon = Daemon {
            bin: bin.to_path_buf(),
            socket,
            log,
            bpffs,
            process,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// `netd --socket S` (the CLI), in its own process group.
    pub fn netd(&self) -> Command {
        let mut c = procs::command(&self.bin.to_string_lossy());
        c.arg("--socket").arg(&self.socket);
        c
    }

    /// Runs `netd ARGS`; fails with its stderr and the daemon log.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        procs::run_within(self.netd().args(args), CMD_LIMIT)
            .with_context(|| format!("daemon log:\n{}", self.log()))
    }

    /// The daemon's PID (nsenter execs netd, so it is the child's).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Err(e) = self.process.check_alive() {
                bail!("{e} before it was ready; log:\n{}", self.log());
            }
            let status = procs::output_within(self.netd().arg("status"), CMD_LIMIT)?;
            if status.status.success() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        bail!(
            "daemon not ready after {READY_TIMEOUT:?}; log:\n{}",
            self.log()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.process.check_alive().is_ok() {
            let _ = procs::output_within(self.netd().arg("down"), Duration::from_secs(30));
        }
        self.process.stop_within(Duration::from_secs(10));
        remove_bpffs_dir(&self.bpffs);
    }
}

/// `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    procs::run_within(procs::command("ip").args(args), CMD_LIMIT)?;
    Ok(())
}

/// A prefix `b` + 4 hex digits whose namespaces and bpffs dir do not exist.
fn free_prefix() -> Result<String> {
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for n in 0..256u32 {
        let seed = pid.wrapping_mul(0x9e37).wrapping_add(n).wrapping_add(nanos);
        let prefix = format!("b{:04x}", seed & 0xffff);
        if netns_entries(&prefix).is_empty() && !Path::new("/sys/fs/bpf").join(&prefix).exists() {
            return Ok(prefix);
        }
    }
    bail!("no free testbed prefix (leftover namespaces in /run/netns?)")
}
