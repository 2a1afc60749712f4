//! Conntrack at scale: the table size and NAT port range flags, table-full
//! and port-exhaustion visibility (status, log), and a `conntrack ls` that
//! streams and filters instead of building every flow in the daemon.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use netd_tests::{Bg, Testbed, bpftool, in_ns_for, in_ns_ok, udp_exchange, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const EXT_PEER: &str = "198.18.0.2";

/// A socat UDP echo server on `port` in the ext namespace.
fn udp_echo(tb: &Testbed, port: u16) -> Bg {
    let listen = format!("UDP-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("udp-echo-{port}.log"));
    Bg::server(
        &tb.ext(),
        &["socat", &listen, "EXEC:cat"],
        &log,
        "udp",
        port,
    )
}

/// One datagram from `ns`, source port `sport`, to `ip:port` (no answer
/// awaited).
fn udp_from_port(ns: &str, sport: u16, ip: &str, port: u16) {
    const SEND: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('0.0.0.0', int(sys.argv[1])))\n\
        s.sendto(b'x', (sys.argv[2], int(sys.argv[3])))\n";
    let (sport, port) = (sport.to_string(), port.to_string());
    in_ns_ok(ns, &["python3", "-c", SEND, &sport, ip, &port]);
}

fn status(tb: &Testbed) -> Value {
    tb.netd_json(&["status"])
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

#[test]
fn port_exhaustion_shows_in_status_and_log() {
    let tb = Testbed::with_daemon_args(&[
        "--ct-max",
        "1024",
        "--nat-ports",
        "40000-40003",
        "--ct-gc-interval",
        "1",
    ]);
    let _echo = udp_echo(&tb, 7000);
    // Every container sends from the same source port to the same server
    // port: the first keeps its port, the next four take the range's four
    // ports, and the rest find none.
    let containers: Vec<String> = (0..7).map(|i| tb.add(&format!("c{i}"))).collect();
    for c in &containers {
        udp_from_port(c, 5000, EXT_PEER, 7000);
    }
    wait_until("status to show drop_no_port", WAIT, || {
        status(&tb)["conntrack"]["drop_no_port"].as_u64() > Some(0)
    });
    wait_until("the daemon to warn about dropped flows", WAIT, || {
        tb.log().contains("for want of a free MASQUERADE port")
    });
    let ct = status(&tb)["conntrack"].clone();
    // Two tables (new and assured flows) of 2 × 1024 entries.
    assert_eq!(ct["max_entries"], 4096, "--ct-max 1024 flows: {ct}");
    wait_until("status to count the conntrack entries", WAIT, || {
        status(&tb)["conntrack"]["entries"].as_u64() >= Some(10)
    });
    let text = tb.netd_ok(&["status"]);
    assert!(
        text.contains("/4096 entries") && text.contains("drop_no_port"),
        "status text must show the fill level and drops:\n{text}"
    );
}

#[test]
fn ct_max_sizes_the_map_and_a_resize_is_refused() {
    let mut tb = Testbed::with_daemon_args(&["--ct-max", "1024"]);
    for table in ["NETD_CONNTRACK", "NETD_CT_ASSURED"] {
        let shown = bpftool(&[
            "map",
            "show",
            "pinned",
            &tb.bpffs().join(table).to_string_lossy(),
        ]);
        assert!(shown.contains("max_entries 2048"), "{table}: {shown}");
    }
    tb.stop();
    tb.set_daemon_args(&["--ct-max", "4096"]);
    assert!(!tb.start_fails().success());
    let log = tb.log();
    assert!(
        log.contains("holds 1024 flows but --ct-max asks for 4096") && log.contains("netd down"),
        "the refusal must say what to do:\n{log}"
    );
    tb.set_daemon_args(&["--ct-max", "1024"]);
    tb.start();
    // Without the flag, a restart keeps the pinned size.
    tb.stop();
    tb.set_daemon_args(&[]);
    tb.start();
    assert_eq!(status(&tb)["conntrack"]["max_flows"], 1024);
    assert!(
        tb.netd_err(&["daemon", "--ct-max", "10"])
            .contains("ct-max")
    );
    assert!(
        tb.netd_err(&["daemon", "--nat-ports", "9-8"])
            .contains("port range")
    );
}

#[test]
fn conntrack_ls_filters_by_container_and_port() {
    let tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    let (ip1, ip2) = (tb.ip_of(&c1), tb.ip_of(&c2));
    let _e1 = udp_echo(&tb, 7000);
    let _e2 = udp_echo(&tb, 7001);
    assert_eq!(udp_exchange(&c1, EXT_PEER, 7000, "a"), "a");
    assert_eq!(udp_exchange(&c1, EXT_PEER, 7001, "b"), "b");
    assert_eq!(udp_exchange(&c2, EXT_PEER, 7000, "c"), "c");
    let ls = |extra: &[&str]| -> Vec<Value> {
        let args: Vec<&str> = ["conntrack", "ls"].iter().chain(extra).copied().collect();
        match tb.netd_json(&args) {
            Value::Array(flows) => flows,
            other => panic!("conntrack ls: not an array: {other}"),
        }
    };
    let text = |f: &Value| f.to_string();
    let mine = ls(&["--container", &c1]);
    assert_eq!(mine.len(), 2, "c1 has two flows: {mine:?}");
    assert!(mine.iter().all(|f| text(f).contains(&format!("\"{ip1}:"))));
    assert!(mine.iter().all(|f| !text(f).contains(&format!("\"{ip2}:"))));
    let theirs = ls(&["--container", &c2]);
    assert_eq!(theirs.len(), 1, "c2 has one flow: {theirs:?}");
    let by_port = ls(&["--port", "7001"]);
    assert_eq!(by_port.len(), 1, "one flow to 7001: {by_port:?}");
    assert_eq!(by_port[0]["original"]["dst"], "198.18.0.2:7001");
    assert_eq!(ls(&["--container", &c2, "--port", "7001"]).len(), 0);
    assert!(ls(&[]).len() >= 3);
    let err = tb.netd_err(&["conntrack", "ls", "--container", "nosuch"]);
    assert!(err.contains("no such container"), "{err}");
    let table = tb.netd_ok(&["conntrack", "ls", "--port", "7001"]);
    assert!(table.contains("198.18.0.2:7001"), "{table}");
}

/// Sends one datagram to each of `count` ports of the ext peer from one
/// socket: `count` MASQUERADE flows. Paced so the veth backlog keeps up.
fn open_udp_flows(ns: &str, count: u32) {
    const FLOOD: &str = "import socket, sys, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for i in range(int(sys.argv[2])):\n\
        \x20   s.sendto(b'x', (sys.argv[1], 10000 + i))\n\
        \x20   if i % 200 == 0: time.sleep(0.002)\n";
    let out = in_ns_for(
        120,
        ns,
        &["python3", "-c", FLOOD, EXT_PEER, &count.to_string()],
    );
    assert!(out.status.success(), "flood: {out:?}");
}

#[test]
fn conntrack_ls_of_50k_flows_streams_in_bounded_memory() {
    let tb = Testbed::with_daemon_args(&["--ct-udp-unreplied-timeout", "600"]);
    let c1 = tb.add("c1");
    open_udp_flows(&c1, 50_000);
    // Streamed: the first line is one flow, while the daemon is still
    // walking the table; a request served meanwhile is not held up.
    let mut stream = UnixStream::connect(tb.socket()).expect("connect to the daemon");
    stream
        .write_all(b"{\"op\":\"conntrack_ls\"}\n")
        .expect("send conntrack_ls");
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).expect("read the first line");
    assert!(first.starts_with("{\"item\":"), "first line: {first:.300}");
    let answered = std::time::Instant::now();
    assert!(status(&tb)["containers"] == 1);
    assert!(answered.elapsed() < Duration::from_secs(5));
    let rest = reader.lines().count();
    assert!(rest >= 45_000, "only {rest} lines streamed");
    let listed = match tb.netd_json(&["conntrack", "ls"]) {
        Value::Array(flows) => flows.len(),
        other => panic!("not an array: {other:.200}"),
    };
    assert!(listed >= 45_000, "only {listed} flows listed");
    let hwm = vm_hwm_kib(tb.daemon_pid());
    eprintln!("daemon VmHWM {hwm} KiB after listing {listed} flows");

    assert!(
        hwm < 100 * 1024,
        "the daemon's peak RSS is {hwm} KiB after listing {listed} flows"
    );
}

/// Measurement for docs/BENCHMARKS.md ("Conntrack GC"), run by hand with
/// `--ignored --nocapture`: the GC pass time at 200,000 flows.
#[test]
#[ignore]
fn gc_pass_at_200k_flows() {
    let tb = Testbed::with_daemon_args(&[
        "--ct-max",
        "262144",
        "--ct-gc-interval",
        "2",
        "--ct-udp-unreplied-timeout",
        "12",
    ]);
    let c1 = tb.add("c1");
    // Four sockets (source ports) times 50,000 destination ports.
    for _ in 0..4 {
        open_udp_flows(&c1, 50_000);
    }
    // Passes while every flow is live, then the ones that expire them.
    std::thread::sleep(Duration::from_secs(16));
    let passes: Vec<String> = tb
        .log()
        .lines()
        .filter(|l| l.contains("conntrack gc pass") && !l.contains("ipv6=true"))
        .map(str::to_owned)
        .collect();
    eprintln!("{}", passes.join("\n"));
}
