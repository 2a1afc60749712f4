//! A throw-away network testbed for benchmarks (same topology as the
//! integration tests, docs/testbed.md): namespaces `<p>-ext` and `<p>-host`
//! joined by a veth, and a netd daemon running in `<p>-host` with its own
//! state dir, bpffs dir and socket. Everything is removed on drop.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::cmd;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Testbed {
    prefix: String,
    tmp: PathBuf,
    bin: PathBuf,
    daemon: Option<Child>,
}

impl Testbed {
    /// Creates the namespaces and starts the daemon; ready when this returns.
    pub fn start(bin: &Path) -> Result<Self> {
        let prefix = free_prefix()?;
        let mut bed = Testbed {
            tmp: env::temp_dir().join(format!("netd-{prefix}")),
            prefix,
            bin: bin.to_path_buf(),
            daemon: None,
        };
        fs::create_dir_all(&bed.tmp)
            .with_context(|| format!("cannot create {}", bed.tmp.display()))?;
        bed.topology()?;
        bed.spawn_daemon()?;
        bed.wait_ready()?;
        Ok(bed)
    }

    /// Container names carry the prefix so leftovers can be found.
    pub fn container(&self, n: usize) -> String {
        format!("{}c{n}", self.prefix)
    }

    /// `netd --socket S` (the CLI, run from the root namespace).
    pub fn netd(&self) -> Command {
        let mut netd = Command::new(&self.bin);
        netd.arg("--socket").arg(self.socket());
        netd
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.tmp.join("netd.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.join("daemon.log")
    }

    fn bpffs(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.prefix)
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn topology(&self) -> Result<()> {
        let (host, ext) = (self.ns("host"), self.ns("ext"));
        ip(&["netns", "add", &host])?;
        ip(&["netns", "add", &ext])?;
        let peer = ["peer", "name", "ext0", "netns", &ext];
        ip(&[
            &["-n", &host, "link", "add", "uplink0", "type", "veth"][..],
            &peer,
        ]
        .concat())?;
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            "198.18.0.1/24",
            "dev",
            "uplink0",
        ])?;
        ip(&["-n", &ext, "addr", "add", "198.18.0.2/24", "dev", "ext0"])?;
        for (ns, dev) in [
            (&host, "lo"),
            (&host, "uplink0"),
            (&ext, "lo"),
            (&ext, "ext0"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &host, "route", "add", "default", "via", "198.18.0.2"])?;
        let sysctl = ["sysctl", "-qw", "net.ipv4.ip_forward=1"];
        ip(&[&["netns", "exec", &host][..], &sysctl].concat())
    }

    fn spawn_daemon(&mut self) -> Result<()> {
        let log = fs::File::create(self.log_path()).context("cannot create daemon log")?;
        let mut daemon = Command::new("nsenter");
        daemon
            .arg(format!("--net=/run/netns/{}", self.ns("host")))
            .arg(&self.bin)
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.tmp.join("state"))
            .arg("--bpffs")
            .arg(self.bpffs())
            .arg("--socket")
            .arg(self.socket())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = daemon
            .spawn()
            .with_context(|| format!("cannot start `{}`", cmd::describe(&daemon)))?;
        self.daemon = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.daemon_exit()? {
                bail!(
                    "daemon exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            let ready = self.netd().arg("status").output()?;
            if ready.status.success() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        bail!(
            "daemon not ready after {READY_TIMEOUT:?}; log:\n{}",
            self.log()
        )
    }

    fn daemon_exit(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.daemon.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("daemon was not started"),
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop_daemon();
        remove_namespaces(&self.prefix);
        remove_bpffs_dir(&self.bpffs());
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

impl Testbed {
    /// `netd down` while the daemon lives, then kill it by PID.
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let mut down = Command::new("timeout");
            down.args(["30"])
                .arg(&self.bin)
                .arg("--socket")
                .arg(self.socket());
            let _ = down
                .arg("down")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `ip ARGS...`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = cmd::capture(Command::new("ip").args(args))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`ip {}` failed: {}", args.join(" "), stderr.trim());
    }
    Ok(())
}

/// A prefix `b` + 4 hex digits whose namespaces do not exist yet.
fn free_prefix() -> Result<String> {
    let pid = std::process::id();
    for n in 0..64u32 {
        let prefix = format!("b{:04x}", pid.wrapping_mul(0x9e37).wrapping_add(n) & 0xffff);
        if netns_entries(&prefix).is_empty() && !Path::new("/sys/fs/bpf").join(&prefix).exists() {
            return Ok(prefix);
        }
    }
    bail!("no free testbed prefix (leftover namespaces in /run/netns?)")
}

/// Names under /run/netns starting with `prefix`.
fn netns_entries(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Deletes every namespace of the testbed, containers included.
fn remove_namespaces(prefix: &str) {
    for name in netns_entries(prefix) {
        if ip(&["netns", "del", &name]).is_err() {
            eprintln!("warning: could not delete netns {name}");
        }
    }
}

/// Removes the bpffs dir (unmounting it first if a bpffs was mounted there).
fn remove_bpffs_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::remove_dir_all(dir);
    if is_mountpoint(dir) {
        let _ = Command::new("umount").arg(dir).status();
        let _ = fs::remove_dir_all(dir);
    }
}

fn is_mountpoint(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(&*dir))
}
