//! Real traffic: background servers in namespaces (killed by PID on drop),
//! clients, and views of the daemon's conntrack, port mappings and counters.

use std::{
    fs::{self, File},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Testbed,
    process::{assert_success, in_ns, in_ns_ok, run, wait_until},
};

/// How long a server may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A process started in a namespace, in its own process group, with stdout
/// and stderr in a log file. Drop kills the whole group (its PID) and reaps it.
pub struct Bg {
    child: Option<Child>,
    what: String,
    log: PathBuf,
}

impl Bg {
    /// `ip netns exec NS CMD...` in the background, output to `log`.
    pub fn spawn(ns: &str, cmd: &[&str], log: &Path) -> Bg {
        let what = format!("ip netns exec {ns} {}", cmd.join(" "));
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).args(cmd);
        Bg::command(&what, command, log)
    }

    /// Any command in the background, in its own process group, output to
    /// `log` (`/dev/null` when nobody reads it).
    pub fn command(what: &str, mut command: Command, log: &Path) -> Bg {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        Bg {
            child: Some(child),
            what: what.to_owned(),
            log: log.to_owned(),
        }
    }

    /// [`Bg::spawn`], then [`Bg::wait_listening`].
    pub fn server(ns: &str, cmd: &[&str], log: &Path, proto: &str, port: u16) -> Bg {
        let mut bg = Bg::spawn(ns, cmd, log);
        bg.wait_listening(ns, proto, port);
        bg
    }

    /// Waits (bounded) until `proto` ("tcp" or "udp") `port` is bound in
    /// `ns`; panics with the log if the process died first.
    pub fn wait_listening(&mut self, ns: &str, proto: &str, port: u16) {
        let flags = match proto {
            "tcp" => "-Hltn",
            "udp" => "-Hlun",
            other => panic!("unknown protocol {other}"),
        };
        let filter = format!("sport = :{port}");
        let what = format!("`{}` to listen on {port}/{proto}", self.what);
        wait_until(&what, LISTEN_TIMEOUT, || {
            if let Some(status) = self.try_wait() {
                panic!("`{}` exited ({status}): {}", self.what, self.log());
            }
            let out = in_ns(ns, &["ss", flags, &filter]);
            out.status.success() && !out.stdout.is_empty()
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process already reaped").id()
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("process already reaped");
        child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit; panics with its log
    /// if it does not.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` still running after {timeout:?}; output:\n{}",
                self.what,
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// [`Bg::wait`], asserting exit status 0; returns the output.
    pub fn wait_ok(&mut self, timeout: Duration) -> String {
        let status = self.wait(timeout);
        let log = self.log();
        assert!(
            status.success(),
            "`{}` failed ({status}):\n{log}",
            self.what
        );
        log
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // The group of our child: the server and whatever it forked.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A `python3 -m http.server` in a namespace serving one file, `/id.txt`,
/// whose content names the server. Its log names every client.
pub struct HttpServer {
    pub body: String,
    bg: Bg,
}

impl HttpServer {
    /// Serves `/id.txt` (content `body`) on 0.0.0.0:`port` in `ns`; files
    /// and log live in `dir` (created).
    pub fn start(ns: &str, port: u16, dir: &Path, body: &str) -> HttpServer {
        Self::start_on(ns, "0.0.0.0", port, dir, body)
    }

    /// `start`, listening on `bind` (`::`: both families).
    pub fn start_on(ns: &str, bind: &str, port: u16, dir: &Path, body: &str) -> HttpServer {
        let root = dir.join("www");
        fs::create_dir_all(&root).expect("create www dir");
        fs::write(root.join("id.txt"), body).expect("write id.txt");
        let (port_s, root_s) = (port.to_string(), root.to_string_lossy().into_owned());
        let cmd = [
            "python3",
            "-u",
            "-m",
            "http.server",
            &port_s,
            "--bind",
            bind,
            "--directory",
            &root_s,
        ];
        let bg = Bg::server(ns, &cmd, &dir.join("http.log"), "tcp", port);
        HttpServer {
            body: body.to_owned(),
            bg,
        }
    }

    /// The client address of every request logged so far.
    pub fn clients(&self) -> Vec<String> {
        self.bg
            .log()
            .lines()
            .filter(|line| line.contains("\"GET "))
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until a request from `client` was logged.
    pub fn wait_client(&self, client: &str) {
        wait_until(
            &format!("a request from {client} in the server log"),
            Duration::from_secs(5),
            || self.clients().iter().any(|c| c == client),
        );
    }

    pub fn log(&self) -> String {
        self.bg.log()
    }
}

/// `curl -sS -m5 URL` in `ns`.
pub fn curl(ns: &str, url: &str) -> Output {
    in_ns(ns, &["curl", "-sS", "-m5", "-f", url])
}

/// [`curl`], asserting success; returns the body.
pub fn curl_ok(ns: &str, url: &str) -> String {
    let out = curl(ns, url);
    assert_success(&format!("curl {url} in {ns}"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `payload` in a UDP datagram from `ns` to `ip:port` (IPv4 or
/// IPv6) and returns the first datagram that comes back. UDP may lose a
/// datagram, or reach a server that forks per datagram before it answers
/// in time: the same socket sends again every 2 s, 5 times at most.
pub fn udp_exchange(ns: &str, ip: &str, port: u16, payload: &str) -> String {
    const CLIENT: &str = "import socket, sys\n\
        fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n\
        s = socket.socket(fam, socket.SOCK_DGRAM)\n\
        s.settimeout(2)\n\
        for _ in range(5):\n\
        \x20   s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))\n\
        \x20   try:\n\
        \x20       print(s.recv(65535).decode(), end='')\n\
        \x20       sys.exit(0)\n\
        \x20   except socket.timeout:\n\
        \x20       pass\n\
        sys.exit('no answer after 5 tries')\n";
    let port = port.to_string();
    let out = in_ns_for(15, ns, &["python3", "-c", CLIENT, ip, &port, payload]);
    assert_success(&format!("UDP {payload:?} from {ns} to {ip}:{port}"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `timeout SECS ip netns exec NS CMD...` for commands that may take longer
/// than [`in_ns`] allows.
pub fn in_ns_for(secs: u32, ns: &str, cmd: &[&str]) -> Output {
    let mut c = Command::new("timeout");
    c.arg(secs.to_string())
        .args(["ip", "netns", "exec", ns])
        .args(cmd);
    run(&mut c)
}

/// `bpftool map dump pinned PATH` (from the root namespace: `ip netns exec`
/// remounts /sys and hides bpffs), asserting success.
pub fn bpftool_dump(path: &Path) -> String {
    bpftool(&["map", "dump", "pinned", &path.to_string_lossy()])
}

/// `bpftool ARGS` (bounded), which must succeed; its output.
pub fn bpftool(args: &[&str]) -> String {
    let out = run(Command::new("timeout").arg("20").arg("bpftool").args(args));
    assert_success(&format!("bpftool {}", args.join(" ")), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP client (either family, by HOST) from BIND:SPORT to HOST:PORT: it
/// says `one`, prints the echo and "ready", then waits for the file GO to
/// appear (bounded), says `two` and prints the echo and "done". With
/// `rst`, it then closes with an RST (SO_LINGER 0).
const TCP_CLIENT: &str = r#"
import os, socket, struct, sys, time
host, port, sport, go, how, bind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind, sport))
s.settimeout(10)
s.connect((host, port))
s.sendall(b'one\n'); print(s.recv(100).decode().strip(), 'ready', flush=True)
deadline = time.time() + 30
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
s.sendall(b'two\n'); print(s.recv(100).decode().strip(), 'done', flush=True)
if how == 'rst':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
s.close()
"#;

/// A started TCP client ([`TCP_CLIENT`]) to an echo server, held between
/// its two exchanges: a connection kept established while a test looks at
/// its flow.
pub struct TcpClient {
    bg: Bg,
    go: PathBuf,
}

impl TcpClient {
    /// Started in `ns`, from `bind`:`sport` to `host`:`port`; returns once
    /// its first exchange is done. `how`: `fin` or `rst`, how it closes.
    pub fn start(
        tb: &Testbed,
        ns: &str,
        (host, port): (&str, u16),
        (bind, sport): (&str, u16),
        how: &str,
    ) -> TcpClient {
        // Unique per client: a test may start two from one port.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let go = tb.tmp().join(format!("go-{sport}-{n}"));
        let log = tb.tmp().join(format!("client-{sport}-{n}.log"));
        let (port, sport) = (port.to_string(), sport.to_string());
        let go_arg = go.to_string_lossy().into_owned();
        let bg = Bg::spawn(
            ns,
            &[
                "python3", "-c", TCP_CLIENT, host, &port, &sport, &go_arg, how, bind,
            ],
            &log,
        );
        wait_until("the client's first exchange", CLIENT_WAIT, || {
            bg.log().contains("one ready")
        });
        TcpClient { bg, go }
    }

    /// Lets the client send its second line; asserts the echo came back.
    pub fn finish(mut self) {
        fs::write(&self.go, b"go").expect("write trigger");
        let out = self.bg.wait_ok(CLIENT_WAIT);
        assert!(out.contains("two done"), "second exchange failed: {out}");
    }
}

/// How long a [`TcpClient`] exchange may take.
const CLIENT_WAIT: Duration = Duration::from_secs(10);

// The daemon's view of the datapath.
impl Testbed {
    /// `conntrack ls`, as a list of flows.
    pub fn conntrack(&self) -> Vec<Value> {
        json_array(self.netd_json(&["conntrack", "ls"]), "conntrack ls")
    }

    /// `portmap ls`, as a list of mappings.
    pub fn portmaps(&self) -> Vec<Value> {
        json_array(self.netd_json(&["portmap", "ls"]), "portmap ls")
    }

    /// The `spec` of every mapping, sorted.
    pub fn portmap_specs(&self) -> Vec<String> {
        let mut specs: Vec<String> = self
            .portmaps()
            .iter()
            .map(|m| match m["spec"].as_str() {
                Some(spec) => spec.to_owned(),
                None => panic!("portmap ls: no `spec` in {m}"),
            })
            .collect();
        specs.sort();
        specs
    }

    /// `stats`, as counter -> packets.
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        let stats = self.netd_json(&["stats"]);
        let Some(map) = stats.as_object() else {
            panic!("stats: not an object: {stats}");
        };
        map.iter()
            .map(|(name, c)| match c["packets"].as_u64() {
                Some(n) => (name.clone(), n),
                None => panic!("stats.{name}.packets missing in {stats}"),
            })
            .collect()
    }

    /// The packets of one counter.
    pub fn counter(&self, name: &str) -> u64 {
        match self.counters().get(name) {
            Some(&n) => n,
            None => panic!("stats has no counter `{name}`"),
        }
    }
}

fn json_array(value: Value, what: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("{what}: not an array: {other}"),
    }
}

/// A counter of `/proc/net/snmp` in `ns`, e.g. ("Ip", "InReceives"): every
/// IPv4 packet the namespace's stack received, whatever became of it.
pub fn snmp(ns: &str, group: &str, field: &str) -> u64 {
    let text = in_ns_ok(ns, &["cat", "/proc/net/snmp"]);
    let prefix = format!("{group}:");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    let (Some(names), Some(values)) = (rows.first(), rows.get(1)) else {
        panic!("no {group} rows in /proc/net/snmp of {ns}:\n{text}");
    };
    let index = names
        .split_whitespace()
        .position(|n| n == field)
        .unwrap_or_else(|| panic!("no {group} {field} in {ns}"));
    values
        .split_whitespace()
        .nth(index)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {group} {field} in {ns}:\n{text}"))
}

/// The MAC of `dev` in namespace `ns`.
pub fn mac_of(ns: &str, dev: &str) -> String {
    let out = in_ns_ok(ns, &["cat", &format!("/sys/class/net/{dev}/address")]);
    out.trim().to_owned()
}
