//! A real dockerd (Debian's docker.io) in a testbed's host namespace, as
//! the Docker section runs it (../shared/docs/engines.md): Docker with its
//! own iptables rules and docker-proxy, or Docker on netd's network and
//! IPAM plugin. Everything private to the testbed: data root, exec root,
//! pid file, socket, config, the plugin's name (`/run/docker/plugins` is
//! global to the machine). `Drop` removes the containers, stops dockerd
//! (its containerd and any docker-proxy it leaves), unmounts what is left
//! under its dir, then the netd daemon and the namespaces go.

use std::{
    fmt, fs,
    os::unix::{fs::symlink, process::CommandExt},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use netd_tests::{
    cleanup::unmount_below,
    docker::{docker_bin, dockerd_command},
};
use serde::Serialize;

use super::{
    procs::{self, Background},
    testbed::{Daemon, Topology},
};

/// The image every container runs: busybox, imported from a rootfs.
pub const IMAGE: &str = "bb:latest";
/// The netd network of `Engine::Netd`.
pub const NETWORK: &str = "n1";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const CMD_LIMIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(100);
const STOP_GRACE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// dockerd with `--iptables=true --userland-proxy=true`, default bridge.
    Iptables,
    /// dockerd with `--iptables=false --userland-proxy=false
    /// --bridge=none`, containers on a netd network.
    Netd,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Iptables, Engine::Netd];

    pub fn title(self) -> &'static str {
        match self {
            Engine::Iptables => "Docker + iptables + docker-proxy",
            Engine::Netd => "Docker on netd",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Engine::Iptables => &[
                "--iptables=true",
                "--ip6tables=false",
                "--userland-proxy=true",
            ],
            Engine::Netd => &[
                "--iptables=false",
                "--ip6tables=false",
                "--userland-proxy=false",
                "--bridge=none",
            ],
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// One engine's testbed. Fields drop in order: dockerd, then the netd
/// daemon (`netd down`), then the namespaces and the scratch dir.
pub struct DockerBed {
    pub engine: Engine,
    dockerd: Dockerd,
    daemon: Option<Daemon>,
    topo: Topology,
    sources: u8,
}

impl DockerBed {
    pub fn up(engine: Engine, netd_bin: &Path) -> Result<Self> {
        let topo = Topology::new()?;
        let plugin = format!("netdbench-{}", topo.prefix());
        let daemon = match engine {
            Engine::Netd => Some(Daemon::start_with(
                &topo,
                netd_bin,
                &["--docker-plugin", &plugin],
            )?),
            Engine::Iptables => None,
        };
        let dockerd = Dockerd::start(&topo, engine, daemon.is_some().then_some(plugin))?;
        dockerd.import_image()?;
        if engine == Engine::Netd {
            let p = dockerd.plugin.clone().unwrap_or_default();
            dockerd.docker(&["network", "create", "-d", &p, "--ipam-driver", &p, NETWORK])?;
        }
        Ok(DockerBed {
            engine,
            dockerd,
            daemon,
            topo,
            sources: 0,
        })
    }

    pub fn topo(&self) -> &Topology {
        &self.topo
    }

    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }

    pub fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.process.pid()
    }

    /// `docker -H <socket> ARGS...`; returns stdout.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        self.dockerd.docker(args)
    }

    /// `docker run -d --name NAME [--network n1] PUBLISH... bb sleep`.
    pub fn run_args(&self, name: &str, publish: &[String]) -> Vec<String> {
        let mut args: Vec<String> = ["run", "-d", "--name", name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.engine == Engine::Netd {
            args.extend(["--network".into(), NETWORK.into()]);
        }
        for p in publish {
            args.extend(["-p".into(), p.clone()]);
        }
        args.extend([IMAGE.into(), "sleep".into(), "1000000".into()]);
        args
    }

    /// Makes ext's clients use a new source address (`Bed::fresh_source`).
    pub fn fresh_source(&mut self) -> Result<()> {
        self.topo.client_source(self.sources)?;
        self.sources += 1;
        Ok(())
    }

    /// Names a container's network namespace `<p>d<name>` (removed with
    /// the testbed) and returns the name, for `ip netns exec`.
    pub fn attach_netns(&self, container: &str) -> Result<String> {
        let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", container])?;
        let ns = format!("{}d{container}", self.topo.prefix());
        let mut c = procs::command("ip");
        c.args(["netns", "attach", &ns, pid.trim()]);
        procs::run_within(&mut c, Duration::from_secs(30))?;
        Ok(ns)
    }
}

struct Dockerd {
    dir: PathBuf,
    plugin: Option<String>,
    process: Background,
}

impl Dockerd {
    fn start(topo: &Topology, engine: Engine, plugin: Option<String>) -> Result<Self> {
        let dir = topo.tmp().join("docker");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::write(dir.join("daemon.json"), "{}").context("cannot write daemon.json")?;
        let log = fs::File::create(dir.join("dockerd.log")).context("cannot create dockerd.log")?;
        let mut c = dockerd_command(&topo.host(), &dir, &dir.join("docker.sock"));
        // Its own process group, as every process the benchmark starts.
        c.process_group(0)
            .args(engine.flags())
            // docker-proxy is in /usr/sbin.
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = Background::spawn("dockerd", &mut c)?;
        let mut d = Dockerd {
            dir,
            plugin,
            process,
        };
        d.wait_ready()?;
        Ok(d)
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Err(e) = self.process.check_alive() {
                bail!("{e} before it was ready; log:\n{}", self.log_tail());
            }
            let out = procs::output_within(&mut self.cli(&["version"]), CMD_LIMIT)?;
            if out.status.success() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        bail!("dockerd not ready; log:\n{}", self.log_tail())
    }

    fn cli(&self, args: &[&str]) -> std::process::Command {
        let mut c = procs::command(&docker_bin());
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("cli"));
        c
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        procs::run_within(&mut self.cli(args), CMD_LIMIT).with_context(|| {
            format!(
                "docker {}; dockerd log (tail):\n{}",
                args.first().unwrap_or(&""),
                self.log_tail()
            )
        })
    }

    /// busybox in a rootfs, `docker import`ed as `IMAGE`.
    fn import_image(&self) -> Result<()> {
        let rootfs = self.dir.join("rootfs");
        for d in ["bin", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).context("cannot create the rootfs")?;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .context("no busybox (apt-get install busybox-static)")?;
        fs::copy(busybox, rootfs.join("bin/busybox")).context("cannot copy busybox")?;
        for applet in ["sh", "sleep"] {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        let tar = rootfs.with_extension("tar");
        let mut c = procs::command("tar");
        c.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
        procs::run_within(&mut c, CMD_LIMIT)?;
        let tar = tar.to_string_lossy().into_owned();
        self.docker(&["import", &tar, IMAGE])?;
        Ok(())
    }

    /// docker-proxy processes whose parent is this dockerd.
    fn proxies(&self) -> Vec<u32> {
        self.process
            .pid()
            .map_or_else(Vec::new, children_named_proxy)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.process.check_alive().is_ok()
            && let Ok(ids) = self.docker(&["ps", "-aq"])
        {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        let proxies = self.proxies();
        let containerd = fs::read_to_string(self.dir.join("exec/containerd/containerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        self.process.stop_with_grace(STOP_GRACE);
        // What a dockerd killed halfway leaves: its containerd and
        // docker-proxies (PIDs it started; checked by name before a kill).
        if let Some(pid) = containerd {
            wait_gone_or_kill(pid, "containerd", Duration::from_secs(10));
        }
        for pid in proxies {
            wait_gone_or_kill(pid, "docker-proxy", Duration::ZERO);
        }
        unmount_below(&self.dir);
        if let Some(p) = &self.plugin {
            let _ = fs::remove_file(Path::new("/run/docker/plugins").join(format!("{p}.sock")));
        }
    }
}

/// Waits up to `limit` for `pid` to exit; SIGKILL if it still runs `comm`.
fn wait_gone_or_kill(pid: u32, comm: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while comm_of(pid).as_deref() == Some(comm) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    if comm_of(pid).as_deref() == Some(comm)
        && let Ok(pid) = libc::pid_t::try_from(pid)
    {
        // SAFETY: kill(2) on a PID that our dockerd started, checked by name.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn comm_of(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// PIDs of the `docker-proxy` processes whose parent is `parent`.
fn children_named_proxy(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
            else {
                return false;
            };
            comm == "docker-proxy"
                && rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(parent)
        })
        .collect()
}

/// Memory of a set of processes, KiB: sums of VmRSS and of Pss.
#[derive(Clone, Copy, Default, Debug, Serialize)]
pub struct ProcMem {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

pub fn proc_mem(pids: &[u32]) -> ProcMem {
    let mut m = ProcMem::default();
    for &pid in pids {
        let rss = kib_field(&format!("/proc/{pid}/status"), "VmRSS:");
        let pss = kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        if let (Some(rss), Some(pss)) = (rss, pss) {
            m.processes += 1;
            m.rss_kib += rss;
            m.pss_kib += pss;
        }
    }
    m
}

fn kib_field(path: &str, field: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl DockerBed {
    /// Memory of this bed's docker-proxy processes.
    pub fn proxy_mem(&self) -> ProcMem {
        proc_mem(&self.dockerd.proxies())
    }
}
