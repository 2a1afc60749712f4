//! A real dockerd (Debian's docker.io) in a testbed's host namespace, on
//! netd's plugin (../shared/docs/engines.md): its own data root, exec
//! root, pid file, socket and config; the plugin under a name of its own
//! (`/run/docker/plugins` is global to the machine); an image imported
//! from a busybox rootfs. Drop removes the containers, stops dockerd (and
//! its containerd), unmounts what it left under its dirs, then the
//! testbed goes.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Testbed,
    process::{assert_success, run, wait_until},
};

/// The image every test runs: busybox, imported from a rootfs.
pub const IMAGE: &str = "bb:latest";
const DOCKER_TIMEOUT: &str = "60";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `docker run` options that give a container the host's /usr (python3).
pub const USR: [&str; 2] = ["-v", "/usr:/usr:ro"];

/// `/usr/bin/python3 /udp-echo.py PORT...`: echoes every datagram.
const UDP_ECHO: &str = r#"import socket, sys, threading
def serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
serve(int(sys.argv[1]))
"#;

/// Applets linked in the image.
const APPLETS: [&str; 14] = [
    "sh", "ip", "ping", "wget", "nc", "httpd", "sleep", "cat", "nslookup", "echo", "hostname",
    "ls", "grep", "true",
];

fn first_existing(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or(&candidates[candidates.len() - 1])
        .to_string()
}

pub fn dockerd_bin() -> String {
    first_existing(&["/usr/sbin/dockerd", "/usr/bin/dockerd", "dockerd"])
}

/// Debian's CLI (the same release as the daemon), not a newer one earlier
/// on PATH.
pub fn docker_bin() -> String {
    first_existing(&["/usr/bin/docker", "docker"])
}

/// `dockerd` in the network namespace `host_ns`, everything of its own
/// under `dir` (data root, exec root, pid file, its `daemon.json`), its
/// API on `socket`, stdin closed: what the tests and the benchmark start,
/// before their own flags and output.
pub fn dockerd_command(host_ns: &str, dir: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{host_ns}"))
        .arg(dockerd_bin())
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .arg("--shutdown-timeout=2")
        .stdin(Stdio::null());
    cmd
}

/// A testbed whose netd serves the Docker plugin, plus a dockerd using it.
pub struct DockerBed {
    pub bed: Testbed,
    /// The plugin's name: `docker network create -d <plugin>`.
    pub plugin: String,
    dir: PathBuf,
    dockerd: Option<Child>,
}

impl DockerBed {
    pub fn new() -> Self {
        let plugin = format!(
            "netdtest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let bed = Testbed::with_daemon_args(&["--docker-plugin", &plugin]);
        let dir = bed.tmp().join("docker");
        fs::create_dir_all(&dir).expect("create docker dir");
        fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
        let mut me = DockerBed {
            bed,
            plugin,
            dir,
            dockerd: None,
        };
        me.start_dockerd();
        me.import_image();
        me
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The plugin's socket file.
    pub fn plugin_socket(&self) -> PathBuf {
        Path::new("/run/docker/plugins").join(format!("{}.sock", self.plugin))
    }

    pub fn dockerd_log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Starts dockerd in the host namespace and waits until it answers.
    pub fn start_dockerd(&mut self) {
        assert!(self.dockerd.is_none(), "dockerd already running");
        let d = &self.dir;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("open dockerd log");
        let mut cmd = dockerd_command(&self.bed.host(), d, &self.socket());
        cmd.args([
            "--iptables=false",
            "--ip6tables=false",
            "--userland-proxy=false",
            "--bridge=none",
            "--log-level=debug",
        ])
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
        self.dockerd = Some(cmd.spawn().expect("spawn dockerd"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .dockerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.dockerd = None;
                panic!("dockerd exited ({status}):\n{}", self.dockerd_log());
            }
            if self.docker(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready:\n{}",
                self.dockerd_log()
            );
            thread::sleep(POLL);
        }
    }

    /// SIGTERM to dockerd, then a bounded wait for it (and so its
    /// containerd) to exit; SIGKILL after that.
    pub fn stop_dockerd(&mut self) {
        let Some(mut child) = self.dockerd.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
        // Its containerd (a child that outlives a killed dockerd).
        let pid_file = self.dir.join("exec/containerd/containerd.pid");
        if let Ok(pid) = fs::read_to_string(&pid_file) {
            let pid = pid.trim().to_string();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if Path::new(&format!("/proc/{pid}")).exists() && is_containerd(&pid) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }

    fn import_image(&self) {
        let rootfs = self.dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs/bin");
        fs::create_dir_all(rootfs.join("www")).expect("mkdir rootfs/www");
        fs::create_dir_all(rootfs.join("tmp")).expect("mkdir rootfs/tmp");
        fs::write(rootfs.join("www/index.html"), "hello from busybox\n").expect("index");
        fs::copy(
            first_existing(&["/bin/busybox", "/usr/bin/busybox"]),
            rootfs.join("bin/busybox"),
        )
        .expect("copy busybox (apt-get install busybox-static)");
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("link applet");
        }
        // Busybox here has no UDP server: a container that mounts the
        // host's /usr read-only (`USR`) runs Debian's python3 with this.
        fs::create_dir_all(rootfs.join("usr")).expect("mkdir rootfs/usr");
        symlink("usr/lib", rootfs.join("lib")).expect("link lib");
        symlink("usr/lib64", rootfs.join("lib64")).expect("link lib64");
        fs::write(rootfs.join("udp-echo.py"), UDP_ECHO).expect("udp-echo.py");
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar rootfs");
        let mut import = Command::new("timeout");
        import
            .args([DOCKER_TIMEOUT, &docker_bin(), "-H"])
            .arg(format!("unix://{}", self.socket().display()))
            .args(["import", "-", IMAGE])
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .stdin(tar.stdout.take().expect("tar stdout"));
        let out = run(&mut import);
        let tarred = tar.wait().expect("wait for tar");
        assert!(tarred.success(), "tar of the rootfs failed");
        assert_success("docker import", &out);
    }

    /// `docker -H <socket> ARGS...`, bounded in time.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.args([DOCKER_TIMEOUT, &docker_bin(), "-H"])
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("cli"));
        run(&mut cmd)
    }

    /// [`DockerBed::docker`], asserting success; returns stdout trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        if !out.status.success() {
            panic!(
                "`docker {}` failed ({}):\nstdout: {}\nstderr: {}\n---- dockerd log (tail) ----\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.dockerd_log(), 40),
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker network create -d <plugin> --ipam-driver <plugin> EXTRA... NAME`.
    pub fn network(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "network",
            "create",
            "-d",
            &self.plugin,
            "--ipam-driver",
            &self.plugin,
        ];
        args.extend_from_slice(extra);
        args.push(name);
        self.docker_ok(&args)
    }

    /// `docker run -d --name NAME EXTRA... bb CMD...`; returns the id.
    pub fn run_d(&self, name: &str, extra: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker_ok(&args)
    }

    /// `docker exec NAME CMD...`.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    pub fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.docker_ok(&args)
    }

    /// `docker inspect NAME`, the one object.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.docker_ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&out).expect("docker inspect JSON");
        v[0].clone()
    }

    /// The container's address on `network`.
    pub fn ip_on(&self, name: &str, network: &str) -> String {
        let v = self.inspect(name);
        v["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The container's endpoint id on `network`.
    pub fn endpoint_on(&self, name: &str, network: &str) -> String {
        let v = self.inspect(name);
        v["NetworkSettings"]["Networks"][network]["EndpointID"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `netd docker ports NAME` with this dockerd.
    pub fn netd_ports(&self, name: &str) -> String {
        let mut cmd = Command::new("timeout");
        cmd.arg("30")
            .arg(crate::netd_bin())
            .arg("--socket")
            .arg(self.bed.socket())
            .args(["docker", "ports", name])
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .env("PATH", docker_path());
        let out = run(&mut cmd);
        assert_success(&format!("netd docker ports {name}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until `docker ps` shows NAME running.
    pub fn wait_running(&self, name: &str) {
        wait_until(&format!("{name} running"), READY_TIMEOUT, || {
            self.docker(&["inspect", "-f", "{{.State.Running}}", name])
                .stdout
                .starts_with(b"true")
        });
    }

    /// Removes every container (fast: SIGKILL).
    pub fn rm_all(&self) {
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
    }
}

impl Default for DockerBed {
    fn default() -> Self {
        Self::new()
    }
}

/// PATH with Debian's docker CLI first.
fn docker_path() -> String {
    format!(
        "/usr/bin:{}",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/bin".into())
    )
}

fn is_containerd(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "containerd")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for DockerBed {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- dockerd log ({}, tail) ----\n{}\n---- end ----",
                self.bed.p,
                tail(&self.dockerd_log(), 80)
            );
        }
        if self.dockerd.is_some() {
            self.rm_all();
        }
        self.stop_dockerd();
        // What a dockerd killed halfway may leave mounted under its dirs.
        crate::cleanup::unmount_below(&self.dir);
        let _ = fs::remove_file(self.plugin_socket());
        let _ = fs::remove_dir_all(&self.dir);
    }
}
