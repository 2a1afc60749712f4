//! The per-test guard: topology, daemon lifecycle, CLI helpers, cleanup.

use std::{
    collections::{BTreeMap, BTreeSet},
    env,
    fs::{self, OpenOptions},
    io::Write as _,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{self, Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    cleanup, expect_error,
    process::{assert_success, in_ns, in_ns_ok, netd_at, netd_bin, run, wait_until},
    topology,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's namespaces, daemon and temp dir; removed on drop.
pub struct Testbed {
    /// Unique prefix of every name this test creates (`t` + 4 hex digits).
    pub p: String,
    tmp: PathBuf,
    daemon: Option<Child>,
    daemon_args: Vec<String>,
    /// Start the daemon with `ip netns exec` (a private mount namespace)
    /// instead of `nsenter --net`.
    ip_netns_exec: bool,
}

/// What must not change when a CLI call fails.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub host_links: BTreeSet<String>,
    pub netns: Vec<String>,
    pub containers: BTreeMap<String, String>,
}

impl Testbed {
    /// Topology plus a ready daemon with the default options.
    pub fn new() -> Self {
        Self::with_daemon_args(&[])
    }

    /// Topology plus a ready daemon started with extra `netd daemon` flags.
    pub fn with_daemon_args(args: &[&str]) -> Self {
        Self::build(args, false)
    }

    /// Topology plus a daemon started the way an operator might by
    /// mistake: `ip netns exec <p>-host netd daemon`, which gives it a
    /// private mount namespace and a fresh /sys.
    pub fn started_by_ip_netns_exec() -> Self {
        Self::build(&[], true)
    }

    fn build(args: &[&str], ip_netns_exec: bool) -> Self {
        assert!(
            is_root(),
            "the integration tests need root (namespaces, eBPF)"
        );
        let bin = netd_bin();
        assert!(
            bin.is_file(),
            "{} missing: run `cargo xtask build` or set NETD_BIN",
            bin.display()
        );
        let (p, tmp) = claim_prefix();
        let mut bed = Testbed {
            p,
            tmp,
            daemon: None,
            daemon_args: args.iter().map(|a| a.to_string()).collect(),
            ip_netns_exec,
        };
        bed.topology();
        bed.start();
        bed
    }

    /// `<p><suffix>`: the name of a container of this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.p)
    }

    /// The namespace the daemon runs in.
    pub fn host(&self) -> String {
        format!("{}-host", self.p)
    }

    /// The "outside world" namespace.
    pub fn ext(&self) -> String {
        format!("{}-ext", self.p)
    }

    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub fn socket(&self) -> PathBuf {
        self.tmp.join("netd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.tmp.join("state")
    }

    pub fn bpffs(&self) -> PathBuf {
        Path::new("/sys/fs/bpf").join(&self.p)
    }

    /// Everything the daemon logged so far (all runs of this test).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.join("daemon.log")
    }

    fn topology(&self) {
        // No ip_forward here: the daemon sets it itself, and the tests
        // rely on that.
        for cmd in topology::ip_commands(&self.host(), &self.ext()) {
            ip(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    /// Adds IPv6 between ext and host (`topology::ip6_commands`).
    pub fn uplink6(&self) {
        for cmd in topology::ip6_commands(&self.host(), &self.ext()) {
            ip(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}

// Daemon lifecycle.
impl Testbed {
    /// Starts the daemon (same dirs every time) and waits until it answers.
    pub fn start(&mut self) {
        assert!(!self.daemon_running(), "daemon already running");
        self.spawn_daemon();
        self.wait_ready();
    }

    /// Starts the daemon expecting it to refuse: waits (bounded) for it to
    /// exit and returns how it exited. Its words are in [`Testbed::log`].
    pub fn start_fails(&mut self) -> ExitStatus {
        assert!(!self.daemon_running(), "daemon already running");
        self.spawn_daemon();
        self.wait_exit(READY_TIMEOUT)
    }

    /// `netd down --state-dir --bpffs` with no daemon running, in the host
    /// namespace (where the daemon ran), as an operator would run it.
    pub fn down_offline(&self) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.host()))
            .arg(netd_bin())
            .arg("--socket")
            .arg(self.socket())
            .arg("down")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--bpffs")
            .arg(self.bpffs());
        run(&mut cmd)
    }

    /// Replaces the extra `netd daemon` flags of the next start.
    pub fn set_daemon_args(&mut self, args: &[&str]) {
        self.daemon_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Alias of [`Testbed::start`] for after `stop`/`kill9`.
    pub fn restart(&mut self) {
        self.start();
    }

    /// SIGTERM, then waits (bounded) for the daemon to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.daemon_pid();
        let out = run(Command::new("kill").args(["-TERM", &pid.to_string()]));
        assert_success("kill -TERM <daemon>", &out);
        self.wait_exit(STOP_TIMEOUT)
    }

    /// SIGKILL, then reaps the daemon.
    pub fn kill9(&mut self) {
        let mut child = self.daemon.take().expect("daemon was not started");
        child.kill().expect("kill -9 daemon");
        child.wait().expect("wait for killed daemon");
    }

    /// Waits up to `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.daemon.as_mut().expect("daemon was not started");
            if let Some(status) = child.try_wait().expect("try_wait daemon") {
                self.daemon = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon still running after {timeout:?}"
            );
            thread::sleep(POLL);
        }
    }

    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon was not started").id()
    }

    fn spawn_daemon(&mut self) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        writeln!(log, "==== test harness: starting netd daemon ====").expect("write log");
        let mut cmd = if self.ip_netns_exec {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &self.host()]);
            cmd
        } else {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/run/netns/{}", self.host()));
            cmd
        };
        cmd.arg(netd_bin())
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--bpffs")
            .arg(self.bpffs())
            .arg("--socket")
            .arg(self.socket())
            // Names the embedded DNS does not know go to the ext namespace
            // (nothing answers there): traffic stays inside the testbed.
            .args(["--dns-upstream", "198.18.0.2"])
            .args(&self.daemon_args)
            .args(self.no_docker_plugin())
            .env("RUST_LOG", "debug")
            .env_remove("NETD_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        self.daemon = Some(cmd.spawn().expect("spawn nsenter netd daemon"));
    }

    /// The Docker plugin is on by default and its socket directory is
    /// global to the machine: off unless a test names its own plugin.
    fn no_docker_plugin(&self) -> Vec<&'static str> {
        if self
            .daemon_args
            .iter()
            .any(|a| a.starts_with("--docker-plugin"))
        {
            Vec::new()
        } else {
            vec!["--docker-plugin", "none"]
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.daemon.as_mut().expect("daemon was not started");
            if let Some(status) = child.try_wait().expect("try_wait daemon") {
                self.daemon = None;
                panic!("daemon exited ({status}) before it was ready (log below)");
            }
            if self.netd(&["status"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready after {READY_TIMEOUT:?}"
            );
            thread::sleep(POLL);
        }
    }
}

// The CLI.
impl Testbed {
    /// `netd --socket S ARGS...`.
    pub fn netd(&self, args: &[&str]) -> Output {
        netd_at(&self.socket(), args)
    }

    /// [`Testbed::netd`], asserting success; returns stdout.
    pub fn netd_ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert_success(&format!("netd {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `netd --output json ARGS...`, parsed.
    pub fn netd_json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
        let stdout = self.netd_ok(&args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`netd {}`: invalid JSON ({e}):\n{stdout}", args.join(" ")))
    }

    /// Asserts that the call fails with one `error: ` line; returns it.
    pub fn netd_err(&self, args: &[&str]) -> String {
        expect_error(&format!("netd {}", args.join(" ")), &self.netd(args))
    }

    /// `netd container add <p><suffix> EXTRA...`; returns the name.
    pub fn add_with(&self, suffix: &str, extra: &[&str]) -> String {
        let name = self.name(suffix);
        let args: Vec<&str> = ["container", "add", &name]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let stdout = self.netd_ok(&args);
        assert_eq!(stdout.trim(), name, "container add prints the name");
        name
    }

    /// `netd container add <p><suffix>`; returns the name.
    pub fn add(&self, suffix: &str) -> String {
        self.add_with(suffix, &[])
    }

    pub fn inspect(&self, name: &str) -> Value {
        self.netd_json(&["container", "inspect", name])
    }

    /// `netd container rm NAME`, then a bounded wait for its host veths to
    /// go: netd deletes them in the background (each deletion waits for RCU
    /// grace periods), and tests that compare the host's links afterwards
    /// must not race with that.
    pub fn rm(&self, name: &str) {
        let info = self.inspect(name);
        let veths: Vec<String> = info["interfaces"]
            .as_array()
            .map(|ifs| {
                ifs.iter()
                    .filter_map(|i| i["host_veth"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.netd_ok(&["container", "rm", name]);
        wait_until(&format!("the veths of {name} to go"), READY_TIMEOUT, || {
            veths.iter().all(|v| self.host_link(v).is_none())
        });
    }

    /// A string field of `container inspect NAME`.
    pub fn field(&self, name: &str, key: &str) -> String {
        let info = self.inspect(name);
        match info.get(key).and_then(Value::as_str) {
            Some(value) => value.to_owned(),
            None => panic!("inspect {name}: no string field `{key}` in {info}"),
        }
    }

    pub fn ip_of(&self, name: &str) -> String {
        self.field(name, "ip")
    }

    /// `container ls` as name -> ip.
    pub fn ls(&self) -> BTreeMap<String, String> {
        let list = self.netd_json(&["container", "ls"]);
        let items = list
            .as_array()
            .unwrap_or_else(|| panic!("container ls: not an array: {list}"));
        items
            .iter()
            .map(|c| {
                // Containers in host/none/container: mode have no address.
                let ip = c["ip"].as_str().unwrap_or_default().to_owned();
                (str_field(c, "name"), ip)
            })
            .collect()
    }
}

// Observing the network.
impl Testbed {
    /// Asserts that `ping -c1 -W2 ip` from namespace `ns` gets a reply.
    pub fn ping(&self, ns: &str, ip: &str) {
        in_ns_ok(ns, &["ping", "-c1", "-W2", ip]);
    }

    /// `ip -n <p>-host -o link show DEV`, or None if it does not exist.
    pub fn host_link(&self, dev: &str) -> Option<String> {
        let out = in_ns(&self.host(), &["ip", "-o", "link", "show", "dev", dev]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Names of all interfaces in the host namespace.
    pub fn host_links(&self) -> BTreeSet<String> {
        let links = in_ns_ok(&self.host(), &["ip", "-o", "link", "show"]);
        links
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .collect()
    }

    /// Names of the `veth*` interfaces in the host namespace.
    pub fn host_veths(&self) -> BTreeSet<String> {
        let mut links = self.host_links();
        links.retain(|name| name.starts_with("veth"));
        links
    }

    /// Container namespaces of this test (`/run/netns/<p>*`, minus host/ext).
    pub fn container_netns(&self) -> Vec<String> {
        let (host, ext) = (self.host(), self.ext());
        cleanup::netns_entries(&self.p)
            .into_iter()
            .filter(|n| *n != host && *n != ext)
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            host_links: self.host_links(),
            netns: self.container_netns(),
            containers: self.ls(),
        }
    }
}

impl Default for Testbed {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- netd daemon log ({}) ----\n{}---- end of log ----",
                self.p,
                self.log()
            );
        }
        self.shut_down_daemon();
        cleanup::remove_namespaces(&self.p);
        cleanup::remove_bpffs_dir(&self.bpffs());
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

impl Testbed {
    /// `netd down` while the daemon lives, then kill it by PID.
    fn shut_down_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = self.netd(&["down"]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn str_field(item: &Value, key: &str) -> String {
    match item.get(key).and_then(Value::as_str) {
        Some(value) => value.to_owned(),
        None => panic!("no string field `{key}` in {item}"),
    }
}

/// `ip ARGS...` in the root namespace (only ever with `netns` or `-n`).
fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args));
    assert_success(&format!("ip {}", args.join(" ")), &out);
}

/// A fresh prefix `t` + 4 hex digits, claimed by creating `/tmp/netd-<p>`.
fn claim_prefix() -> (String, PathBuf) {
    let pid = process::id();
    for _ in 0..256 {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = format!("t{:04x}", pid.wrapping_mul(0x9e37).wrapping_add(n) & 0xffff);
        let tmp = env::temp_dir().join(format!("netd-{p}"));
        if in_use(&p) || fs::create_dir(&tmp).is_err() {
            continue;
        }
        // Readable by uid 65534 too (the permission test runs the CLI as it).
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod tmp dir");
        return (p, tmp);
    }
    panic!("no free test prefix: leftovers in /run/netns, /sys/fs/bpf or /tmp?");
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn in_use(p: &str) -> bool {
    !cleanup::netns_entries(p).is_empty() || Path::new("/sys/fs/bpf").join(p).exists()
}
