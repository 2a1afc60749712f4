//! Driving netd's CNI plugin as a runtime does (environment + stdin JSON,
//! from the testbed's host namespace), and podman 4.3 with its CNI backend
//! in the testbed (docs: ../shared/docs/engines.md), everything private
//! to the test.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    Testbed,
    process::{assert_success, netd_bin, run, wait_until},
};

/// The plugin: `NETD_CNI_BIN`, else `netd-cni` next to the netd binary.
pub fn cni_bin() -> PathBuf {
    match std::env::var_os("NETD_CNI_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => netd_bin().with_file_name("netd-cni"),
    }
}

/// The reference plugins of Debian's containernetworking-plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// What one plugin invocation gave back.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    /// stdout as JSON (Null when empty).
    pub out: Value,
    pub stderr: String,
}

impl Outcome {
    /// The spec's error code, asserting a failure with an error object.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a CNI error, got success: {}", self.out);
        self.out["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {} (stderr: {})", self.out, self.stderr))
    }

    pub fn msg(&self) -> String {
        self.out["msg"].as_str().unwrap_or_default().to_owned()
    }

    /// stdout, asserting success.
    pub fn ok(self) -> Value {
        assert!(
            self.ok,
            "plugin failed: {} (stderr: {})",
            self.out, self.stderr
        );
        self.out
    }
}

/// One invocation's environment: verb, container id, netns, ifname, args.
#[derive(Debug, Clone, Default)]
pub struct Call<'a> {
    pub verb: &'a str,
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a str>,
    pub ifname: Option<&'a str>,
    pub args: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// ADD/DEL/CHECK of `id`'s `ifname` in `netns`.
    pub fn new(verb: &'a str, id: &'a str, netns: &'a str, ifname: &'a str) -> Self {
        Call {
            verb,
            container_id: Some(id),
            netns: Some(netns),
            ifname: Some(ifname),
            args: Some("IgnoreUnknown=1"),
        }
    }

    pub fn verb(verb: &'a str) -> Self {
        Call {
            verb,
            ..Default::default()
        }
    }
}

/// Runs `plugin` in the testbed's host namespace with `call`'s
/// environment and `stdin` (bounded in time).
pub fn invoke(tb: &Testbed, plugin: &Path, call: &Call, stdin: &[u8]) -> Outcome {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg("nsenter")
        .arg(format!("--net=/run/netns/{}", tb.host()))
        .arg(plugin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_PATH", REFERENCE_PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !call.verb.is_empty() {
        cmd.env("CNI_COMMAND", call.verb);
    }
    for (key, value) in [
        ("CNI_CONTAINERID", call.container_id),
        ("CNI_NETNS", call.netns),
        ("CNI_IFNAME", call.ifname),
        ("CNI_ARGS", call.args),
    ] {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let mut child = cmd.spawn().expect("start the CNI plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write the plugin's stdin");
    let out: Output = child.wait_with_output().expect("wait for the plugin");
    assert_ne!(out.status.code(), Some(124), "the plugin timed out");
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {text}"))
    };
    Outcome {
        ok: out.status.success(),
        out: parsed,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`invoke`] of netd's plugin with `conf` on stdin.
pub fn netd_cni(tb: &Testbed, call: &Call, conf: &Value) -> Outcome {
    invoke(tb, &cni_bin(), call, conf.to_string().as_bytes())
}

/// A netd plugin configuration for `network`, at this testbed's socket.
pub fn conf(tb: &Testbed, version: &str, name: &str, network: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "netd",
        "network": network,
        "socket": tb.socket(),
        "capabilities": {"portMappings": true},
    })
}

/// A runtime's namespace for a container: `/run/netns/<p>-<suffix>`
/// (removed with the testbed's namespaces).
pub fn runtime_netns(tb: &Testbed, suffix: &str) -> String {
    let name = format!("{}-{suffix}", tb.p);
    let out = run(Command::new("ip").args(["netns", "add", &name]));
    assert_success(&format!("ip netns add {name}"), &out);
    format!("/run/netns/{name}")
}

/// The namespace name of a `/run/netns/NAME` path.
pub fn ns_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---------------------------------------------------------------------------
// podman

/// `podman` (4.3, CNI backend) in the testbed's host namespace, with a
/// private root, runroot, tmpdir, containers.conf, CNI config dir and
/// plugin dir (netd's plugin installed there by `netd cni install`).
/// Drop removes its containers, then its files.
pub struct Podman {
    dir: PathBuf,
    host: String,
    pub rootfs: PathBuf,
    pub conf_dir: PathBuf,
}

/// What the busybox rootfs has, as links to busybox.
const APPLETS: [&str; 12] = [
    "sh", "ip", "ping", "wget", "nc", "httpd", "sleep", "cat", "nslookup", "echo", "ls", "env",
];

/// The body of `/index.html` in the rootfs.
pub const INDEX: &str = "netd-cni-podman-index";

impl Podman {
    pub fn new(tb: &Testbed) -> Podman {
        let dir = tb.tmp().join("podman");
        let (bin, conf_dir, rootfs) = (dir.join("cni-bin"), dir.join("net.d"), dir.join("rootfs"));
        for d in [
            &bin,
            &conf_dir,
            &rootfs.join("bin"),
            &rootfs.join("www/cgi-bin"),
        ] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        // The documented install command.
        let installed = tb.netd_ok(&[
            "cni",
            "install",
            "--dir",
            &bin.to_string_lossy(),
            "--from",
            &cni_bin().to_string_lossy(),
        ]);
        assert_eq!(installed.trim(), bin.join("netd").to_string_lossy());
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("copy busybox (busybox-static)");
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("link an applet");
        }
        fs::write(rootfs.join("www/index.html"), INDEX).expect("write index.html");
        // The client's address, as the container sees it.
        let cgi = rootfs.join("www/cgi-bin/ip");
        fs::write(
            &cgi,
            "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n",
        )
        .expect("write cgi");
        fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755)).expect("chmod cgi");
        let nofile = ulimit_hard_nofile();
        let config = format!(
            r#"[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
[network]
network_backend = "cni"
network_config_dir = "{conf}"
cni_plugin_dirs = ["{bin}", "{reference}"]
"#,
            events = dir.join("events.log").display(),
            conf = conf_dir.display(),
            bin = bin.display(),
            reference = REFERENCE_PLUGINS,
        );
        fs::write(dir.join("containers.conf"), config).expect("write containers.conf");
        Podman {
            dir,
            host: tb.host(),
            rootfs,
            conf_dir,
        }
    }

    /// Writes `<conf_dir>/<name>.conflist` with `plugins`.
    pub fn conflist(&self, name: &str, plugins: Value) {
        let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        fs::write(
            self.conf_dir.join(format!("{name}.conflist")),
            list.to_string(),
        )
        .expect("write conflist");
    }

    /// `podman ARGS...` (bounded in time).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.arg("120")
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", self.host))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        run(&mut cmd)
    }

    /// [`Podman::run`], asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&format!("podman {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `podman run -d --name NAME --network NET EXTRA... --rootfs R CMD...`
    /// (every option before `--rootfs`); returns the container id.
    pub fn run_detached(&self, name: &str, network: &str, extra: &[&str], cmd: &[&str]) -> String {
        let nofile = ulimit_hard_nofile();
        let (nofile, nproc) = (
            format!("nofile={nofile}:{nofile}"),
            "nproc=32768:32768".to_owned(),
        );
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--ulimit",
            &nofile,
            "--ulimit",
            &nproc,
        ];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs]);
        args.extend(cmd);
        self.ok(&args)
    }

    /// The container's network namespace path (podman's).
    pub fn netns(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name])
    }

    /// Waits (bounded) until `cmd` succeeds inside container `name`.
    pub fn wait_exec(&self, name: &str, cmd: &[&str]) -> String {
        let mut last = String::new();
        let mut args = vec!["exec", name];
        args.extend(cmd);
        wait_until(
            &format!("`{}` in {name}", cmd.join(" ")),
            Duration::from_secs(20),
            || {
                let out = self.run(&args);
                last = String::from_utf8_lossy(&out.stdout).into_owned();
                out.status.success()
            },
        );
        last
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
        // Whatever podman left mounted below its dirs.
        crate::cleanup::unmount_below(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// This process's hard limit of open files (podman's `--ulimit nofile`
/// may not exceed it without CAP_SYS_RESOURCE).
fn ulimit_hard_nofile() -> u64 {
    let out = run(Command::new("sh").args(["-c", "ulimit -Hn"]));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .unwrap_or(20000)
        .min(20000)
}

// ---------------------------------------------------------------------------
// containerd (Debian's 1.6) and `ctr run --cni`

/// A containerd in the testbed's host namespace with a private root,
/// state, socket and config (the CRI plugin off). `ctr run --cni` reads
/// its CNI config from /etc/cni/net.d and its plugins from /opt/cni/bin or
/// /usr/lib/cni, fixed paths: [`Containerd::run_cni`] runs ctr in a private
/// mount namespace with the test's dirs mounted over those, so nothing of
/// the machine's changes. Drop kills the tasks, then containerd (by PID).
pub struct Containerd {
    dir: PathBuf,
    host: String,
    daemon: Option<std::process::Child>,
    pub rootfs: PathBuf,
    pub conf_dir: PathBuf,
    bin: PathBuf,
}

impl Containerd {
    pub fn start(tb: &Testbed) -> Containerd {
        let dir = tb.tmp().join("containerd");
        let (bin, conf_dir, rootfs) = (dir.join("cni-bin"), dir.join("net.d"), dir.join("rootfs"));
        for d in [&bin, &conf_dir, &rootfs.join("bin"), &rootfs.join("www")] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        tb.netd_ok(&[
            "cni",
            "install",
            "--dir",
            &bin.to_string_lossy(),
            "--from",
            &cni_bin().to_string_lossy(),
        ]);
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("link an applet");
        }
        fs::write(rootfs.join("www/index.html"), INDEX).expect("write index.html");
        let address = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{address}\"\n[ttrpc]\n  address = \"{address}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            address = address.display(),
        );
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let log = fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", tb.host()))
            .arg("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let ctrd = Containerd {
            dir,
            host: tb.host(),
            daemon: Some(daemon),
            rootfs,
            conf_dir,
            bin,
        };
        wait_until("containerd to answer", Duration::from_secs(30), || {
            ctrd.ctr(&["version"]).status.success()
        });
        ctrd
    }

    /// `ctr -a SOCKET ARGS...` in the host namespace (bounded in time).
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", self.host))
            .arg("ctr")
            .arg("-a")
            .arg(self.dir.join("containerd.sock"))
            .args(args);
        run(&mut cmd)
    }

    /// Writes the one conflist `ctr --cni` loads.
    pub fn conflist(&self, name: &str, plugins: Value) {
        let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        fs::write(self.conf_dir.join("10-netd.conflist"), list.to_string())
            .expect("write conflist");
    }

    /// `ctr run --rm --cni --rootfs R ID CMD...` in the foreground of a
    /// background process (ctr calls the plugins itself: ADD before the
    /// task starts, DEL when it ends), in a private mount namespace whose
    /// CNI dirs are the test's.
    pub fn run_cni(&self, id: &str, cmd: &[&str]) -> crate::Bg {
        let script = format!(
            "set -e; mount --bind {conf} /etc/cni/net.d; mount --bind {bin} /usr/lib/cni; \
             mount -t tmpfs tmpfs /opt; mkdir -p /opt/cni/bin; mount --bind {bin} /opt/cni/bin; \
             exec nsenter --net=/run/netns/{host} ctr -a {sock} run --rm --cni --rootfs {rootfs} {id} \"$@\"",
            conf = self.conf_dir.display(),
            bin = self.bin.display(),
            host = self.host,
            sock = self.dir.join("containerd.sock").display(),
            rootfs = self.rootfs.display(),
        );
        // The reference plugins stay reachable through the test's bin dir.
        for plugin in ["loopback", "tuning", "bandwidth"] {
            let target = self.bin.join(plugin);
            if !target.exists() {
                let _ = fs::copy(Path::new(REFERENCE_PLUGINS).join(plugin), target);
            }
        }
        let mut command = Command::new("unshare");
        command
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .args(cmd);
        crate::Bg::command(
            &format!("ctr run --cni {id}"),
            command,
            &self.dir.join(format!("ctr-{id}.log")),
        )
    }

    /// The task's PID (0 while there is none).
    pub fn task_pid(&self, id: &str) -> u32 {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let out = self.ctr(&["task", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
        }
        let out = self.ctr(&["container", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctr(&["container", "rm", id]);
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &daemon.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(daemon.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let dir = self.dir.to_string_lossy().into_owned();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
