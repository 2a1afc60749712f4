//! The NAT datapath with real traffic: published ports (DNAT, TCP, UDP and
//! ranges), MASQUERADE (SNAT) with port-collision handling, container to
//! container forwarding, hairpin and host-local access, a 1 GiB transfer,
//! conntrack (listing, expiry, surviving kill -9), counters, pinned maps,
//! malformed packets, the port mapping CLI's errors, and no netfilter.

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use netd_tests::{
    Bg, HttpServer, Testbed, bpftool_dump, curl, curl_ok, in_ns, in_ns_for, in_ns_ok, netns_exists,
    scripts::{ERROR_HOPS, with_packet_helpers},
    udp_exchange, wait_until,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const EXT: &str = "198.18.0.1";
const EXT_PEER: &str = "198.18.0.2";
const C1: &str = "172.17.0.2";
const C2: &str = "172.17.0.3";

// ---------------------------------------------------------------------------
// Helpers.

/// An HTTP server on `port` in `ns`, serving `/id.txt` = "`tag` <p>".
fn web(tb: &Testbed, ns: &str, port: u16, tag: &str) -> HttpServer {
    let dir = tb.tmp().join(format!("web-{tag}-{port}"));
    HttpServer::start(ns, port, &dir, &format!("{tag} {}\n", tb.p))
}

/// A socat TCP server on `port` in `ns` that answers every connection with
/// one line "`tag` PEERADDR PEERPORT", after `delay` seconds.
fn who_server(tb: &Testbed, ns: &str, port: u16, tag: &str, delay: u32) -> Bg {
    let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
    let reply = format!("SYSTEM:sleep {delay}; echo {tag} $SOCAT_PEERADDR $SOCAT_PEERPORT");
    let log = tb.tmp().join(format!("who-{tag}-{port}.log"));
    Bg::server(ns, &["socat", "-t5", &listen, &reply], &log, "tcp", port)
}

/// A socat UDP echo server on `port` in `ns`.
fn udp_echo_server(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("UDP-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("udp-echo-{port}.log"));
    Bg::server(ns, &["socat", &listen, "EXEC:cat"], &log, "udp", port)
}

/// Connects from `ns` to `ip:port` (socat) and returns the server's line.
fn ask(ns: &str, ip: &str, port: u16) -> String {
    let target = format!("TCP:{ip}:{port}");
    in_ns_ok(ns, &["socat", "-t5", "-T5", "-", &target])
        .trim()
        .to_owned()
}

/// The `ip:port` field `which.key` ("original"/"translated", "src"/"dst").
fn addr<'a>(flow: &'a Value, which: &str, key: &str) -> &'a str {
    flow[which][key].as_str().unwrap_or_default()
}

fn ip_part(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(ip, _)| ip)
}

fn port_part(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, port)| port)
}

/// The flows of `conntrack ls` that match `pred`, with the whole listing
/// for messages.
fn flows(tb: &Testbed, pred: impl Fn(&Value) -> bool) -> (Vec<Value>, String) {
    let all = tb.conntrack();
    let listing = serde_json::to_string_pretty(&all).unwrap_or_default();
    (all.into_iter().filter(|f| pred(f)).collect(), listing)
}

fn is(flow: &Value, proto: &str, kind: &str) -> bool {
    flow["proto"] == proto && flow["kind"] == kind
}

/// Asserts that every counter in `names` grew between `before` and now.
fn assert_grew(tb: &Testbed, before: &std::collections::BTreeMap<String, u64>, names: &[&str]) {
    let after = tb.counters();
    for name in names {
        let (old, new) = (before.get(*name), after.get(*name));
        assert!(
            matches!((old, new), (Some(o), Some(n)) if n > o),
            "stats.{name}.packets did not grow: {old:?} -> {new:?}\n{after:?}"
        );
    }
}

/// No rule of any table in iptables, and an empty nft ruleset, in the host
/// namespace.
fn assert_no_netfilter(tb: &Testbed) {
    let saved = in_ns_ok(&tb.host(), &["iptables-save"]);
    let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A")).collect();
    assert!(
        rules.is_empty(),
        "iptables rules in the host netns:\n{saved}"
    );
    let ruleset = in_ns_ok(&tb.host(), &["nft", "list", "ruleset"]);
    assert!(
        ruleset.trim().is_empty(),
        "nft ruleset in the host netns:\n{ruleset}"
    );
}

// ---------------------------------------------------------------------------
// Published ports.

#[test]
fn published_port_reaches_container_with_client_address() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let spec = tb.netd_ok(&["portmap", "add", "8088:172.17.0.2:80"]);
    assert_eq!(spec.trim(), "8088:172.17.0.2:80/tcp");
    let maps = tb.portmaps();
    assert_eq!(maps.len(), 1, "portmap ls: {maps:?}");
    let mapping = &maps[0];
    for (key, want) in [
        ("spec", "8088:172.17.0.2:80/tcp"),
        ("host_ip", "0.0.0.0"),
        ("host_port", "8088"),
        ("container_ip", C1),
        ("container_port", "80"),
        ("proto", "tcp"),
        ("container", c1.as_str()),
    ] {
        let got = match &mapping[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(got, want, "portmap ls .{key} in {mapping}");
    }
    let server = web(&tb, &c1, 80, "c1");
    let before = tb.counters();

    let body = curl_ok(&tb.ext(), "http://198.18.0.1:8088/id.txt");
    assert_eq!(body, server.body);
    server.wait_client(EXT_PEER);
    assert_eq!(
        server.clients(),
        [EXT_PEER],
        "the container must see the real client address"
    );

    let (found, all) = flows(&tb, |f| {
        is(f, "tcp", "dnat")
            && addr(f, "original", "dst") == "198.18.0.1:8088"
            && addr(f, "translated", "dst") == "172.17.0.2:80"
    });
    assert_eq!(found.len(), 1, "one tcp dnat flow to :8088 in\n{all}");
    let flow = &found[0];
    let src = addr(flow, "original", "src");
    assert_eq!(ip_part(src), EXT_PEER, "{flow}");
    assert_eq!(
        addr(flow, "translated", "src"),
        src,
        "DNAT keeps the source"
    );
    assert!(
        flow["packets"].as_u64() > Some(0) && flow["reply_packets"].as_u64() > Some(0),
        "{flow}"
    );
    assert_grew(&tb, &before, &["dnat", "reverse_nat", "uplink"]);
}

#[test]
fn an_open_host_port_is_picked_from_the_ephemeral_range() {
    let tb = Testbed::new();
    // Docker's `-p 80`: netd picks the host port.
    let c1 = tb.add_with("c1", &["-p", "80"]);
    let maps = tb.portmaps();
    assert_eq!(maps.len(), 1, "portmap ls: {maps:?}");
    let port: u16 = maps[0]["host_port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("one host port, not a range: {}", maps[0]));
    let range = in_ns_ok(
        &tb.host(),
        &["cat", "/proc/sys/net/ipv4/ip_local_port_range"],
    );
    let bounds: Vec<u16> = range
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(
        bounds.len() == 2 && (bounds[0]..=bounds[1]).contains(&port),
        "host port {port} outside the ephemeral range {range}"
    );
    let server = web(&tb, &c1, 80, "c1");
    let body = curl_ok(&tb.ext(), &format!("http://{EXT}:{port}/id.txt"));
    assert_eq!(body, server.body);
    // A second open port gets another host port.
    let c2 = tb.add_with("c2", &["-p", "80"]);
    let ports: Vec<String> = tb
        .portmaps()
        .iter()
        .map(|m| m["host_port"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_ne!(ports[0], ports[1], "{c2} got {c1}'s host port");
}

#[test]
fn published_udp_port_and_port_range() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "5353:5353/udp", "-p", "7000-7002:8000-8002"]);
    assert_eq!(
        tb.portmap_specs(),
        [
            "5353:172.17.0.2:5353/udp",
            "7000-7002:172.17.0.2:8000-8002/tcp"
        ]
    );
    let _echo = udp_echo_server(&tb, &c1, 5353);
    let payload = format!("netd-udp-{}-{}", tb.p, "x".repeat(300));
    assert_eq!(udp_exchange(&tb.ext(), EXT, 5353, &payload), payload);
    let (found, all) = flows(&tb, |f| {
        is(f, "udp", "dnat")
            && addr(f, "original", "dst") == "198.18.0.1:5353"
            && addr(f, "translated", "dst") == "172.17.0.2:5353"
            && ip_part(addr(f, "original", "src")) == EXT_PEER
    });
    assert_eq!(found.len(), 1, "one udp dnat flow to :5353 in\n{all}");

    let _servers: Vec<Bg> = (8000..=8002)
        .map(|port| who_server(&tb, &c1, port, &format!("c1-{port}"), 0))
        .collect();
    for (host_port, port) in (7000..=7002).zip(8000..=8002) {
        let line = ask(&tb.ext(), EXT, host_port);
        assert!(
            line.starts_with(&format!("c1-{port} {EXT_PEER} ")),
            "{EXT}:{host_port} must reach {C1}:{port} from {EXT_PEER}, got {line:?}"
        );
    }
    let beyond = in_ns(&tb.ext(), &["socat", "-T2", "-", "TCP:198.18.0.1:7003"]);
    assert!(
        !beyond.status.success(),
        "7003 is not published but answered"
    );
}

// ---------------------------------------------------------------------------
// MASQUERADE.

#[test]
fn masquerade_to_the_outside() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let server = web(&tb, &tb.ext(), 80, "ext");
    let before = tb.counters();

    assert_eq!(curl_ok(&c1, "http://198.18.0.2/id.txt"), server.body);
    server.wait_client(EXT);
    assert_eq!(
        server.clients(),
        [EXT],
        "the outside must see the uplink address"
    );
    tb.ping(&c1, EXT_PEER);

    let (tcp, all) = flows(&tb, |f| {
        is(f, "tcp", "snat")
            && ip_part(addr(f, "original", "src")) == C1
            && addr(f, "original", "dst") == "198.18.0.2:80"
    });
    assert_eq!(tcp.len(), 1, "one tcp snat flow from c1 in\n{all}");
    assert_eq!(
        ip_part(addr(&tcp[0], "translated", "src")),
        EXT,
        "{}",
        tcp[0]
    );
    assert_eq!(addr(&tcp[0], "translated", "dst"), "198.18.0.2:80");
    let (icmp, all) = flows(&tb, |f| {
        is(f, "icmp", "snat")
            && ip_part(addr(f, "original", "src")) == C1
            && ip_part(addr(f, "original", "dst")) == EXT_PEER
            && ip_part(addr(f, "translated", "src")) == EXT
    });
    assert_eq!(icmp.len(), 1, "one icmp snat flow from c1 in\n{all}");
    assert_grew(&tb, &before, &["snat", "reverse_nat", "from_container"]);
}

#[test]
fn masquerade_separates_colliding_source_ports() {
    let tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    // Holds each connection for 2 s so that both are open at once.
    let _server = who_server(&tb, &tb.ext(), 9000, "ext", 2);
    let target = "TCP:198.18.0.2:9000,sourceport=40000,reuseaddr";
    let mut clients: Vec<Bg> = [&c1, &c2]
        .iter()
        .map(|c| {
            let log = tb.tmp().join(format!("client-{c}.log"));
            Bg::spawn(c, &["socat", "-t5", "-T5", "-", target], &log)
        })
        .collect();
    let lines: Vec<String> = clients
        .iter_mut()
        .map(|c| c.wait_ok(WAIT).trim().to_owned())
        .collect();
    let ports: Vec<&str> = lines
        .iter()
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["ext", ip, port] if ip == EXT => port,
                _ => panic!("the server must see {EXT}: {lines:?}"),
            },
        )
        .collect();
    assert_ne!(
        ports[0], ports[1],
        "both connections share {EXT}:{}",
        ports[0]
    );

    let (found, all) = flows(&tb, |f| {
        is(f, "tcp", "snat") && addr(f, "original", "dst") == "198.18.0.2:9000"
    });
    let mut sources: Vec<&str> = found.iter().map(|f| addr(f, "original", "src")).collect();
    sources.sort();
    assert_eq!(
        sources,
        ["172.17.0.2:40000", "172.17.0.3:40000"],
        "two snat flows in\n{all}"
    );
    let mut translated: Vec<&str> = found
        .iter()
        .map(|f| port_part(addr(f, "translated", "src")))
        .collect();
    translated.sort();
    let mut seen = ports.clone();
    seen.sort();
    assert_eq!(
        translated, seen,
        "conntrack must show the ports the server saw\n{all}"
    );
}

// ---------------------------------------------------------------------------
// Between containers, hairpin, host-local.

#[test]
fn container_to_container_is_forwarded() {
    let tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    let _server = who_server(&tb, &c2, 7777, "c2", 0);
    let before = tb.counters();
    let line = ask(&c1, C2, 7777);
    assert!(
        line.starts_with(&format!("c2 {C1} ")),
        "c2 must see c1's own address: {line:?}"
    );
    assert_grew(&tb, &before, &["forwarded"]);
}

#[test]
fn hairpin_and_host_local_reach_published_port() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let c2 = tb.add("c2");
    let server = web(&tb, &c1, 80, "c1");
    for ns in [&c2, &c1] {
        let body = curl_ok(ns, "http://198.18.0.1:8088/id.txt");
        assert_eq!(body, server.body, "hairpin from {ns}");
    }
    let (found, all) = flows(&tb, |f| {
        is(f, "tcp", "hairpin")
            && addr(f, "original", "dst") == "198.18.0.1:8088"
            && addr(f, "translated", "dst") == "172.17.0.2:80"
    });
    let mut sources: Vec<&str> = found
        .iter()
        .map(|f| ip_part(addr(f, "original", "src")))
        .collect();
    sources.sort();
    assert_eq!(sources, [C1, C2], "hairpin flows in\n{all}");
    for url in [
        "http://127.0.0.1:8088/id.txt",
        "http://198.18.0.1:8088/id.txt",
    ] {
        assert_eq!(curl_ok(&tb.host(), url), server.body, "{url} from the host");
    }
    let clients = server.clients();
    assert_eq!(clients.len(), 4, "{}", server.log());
    // Like Docker: another container is seen with its own address; a
    // container reaching itself, through its gateway.
    assert_eq!(clients[0], C2, "hairpin client seen by c1: {clients:?}");
    assert_eq!(clients[1], "172.17.0.1", "self-hairpin client: {clients:?}");
}

// ---------------------------------------------------------------------------
// Bulk data, robustness.

#[test]
fn one_gib_through_published_port_arrives_intact() {
    const SIZE: &str = "1073741824";
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "9000:9000"]);
    let input = tb.tmp().join("1g.bin");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {SIZE} /dev/urandom > '{}'",
            input.display()
        ))
        .status()
        .expect("run head");
    assert!(made.success(), "cannot create {}", input.display());
    let sent = sha256(&input);

    let sink = "socat -u TCP-LISTEN:9000,reuseaddr STDOUT | sha256sum";
    let log = tb.tmp().join("sink.log");
    let mut server = Bg::server(&c1, &["sh", "-c", sink], &log, "tcp", 9000);
    let started = Instant::now();
    let source = format!("OPEN:{}", input.display());
    let out = in_ns_for(
        120,
        &tb.ext(),
        &["socat", "-u", &source, "TCP:198.18.0.1:9000"],
    );
    let took = started.elapsed();
    fs::remove_file(&input).expect("remove the 1 GiB file");
    assert!(
        out.status.success(),
        "sending 1 GiB failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let received = server.wait_ok(Duration::from_secs(30));
    let received = received.split_whitespace().next().unwrap_or_default();
    assert_eq!(received, sent, "checksum of the 1 GiB received by c1");
    eprintln!("1 GiB through the published port in {took:?}");
}

/// The sha256 of a file, hex.
fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn no_netfilter_after_nat_traffic() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80", "-p", "5353:5353/udp"]);
    let c2 = tb.add("c2");
    let inside = web(&tb, &c1, 80, "c1");
    let outside = web(&tb, &tb.ext(), 80, "ext");
    let _echo = udp_echo_server(&tb, &c1, 5353);
    let url = "http://198.18.0.1:8088/id.txt";
    for ns in [tb.ext(), c2.clone(), c1.clone(), tb.host()] {
        assert_eq!(curl_ok(&ns, url), inside.body, "{url} from {ns}");
    }
    assert_eq!(udp_exchange(&tb.ext(), EXT, 5353, "ping"), "ping");
    assert_eq!(
        curl_ok(&c2, "http://198.18.0.2/id.txt"),
        outside.body,
        "masquerade"
    );
    tb.ping(&c1, EXT_PEER);
    assert_no_netfilter(&tb);
}

#[test]
fn kill9_during_transfer_keeps_datapath_and_conntrack() {
    let mut tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "5201:5201", "-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    let _iperf = Bg::server(
        &c1,
        &["iperf3", "-s", "-1", "-p", "5201"],
        &tb.tmp().join("iperf-server.log"),
        "tcp",
        5201,
    );
    let mut client = Bg::spawn(
        &tb.ext(),
        &["iperf3", "-c", EXT, "-p", "5201", "-t", "4", "-J"],
        &tb.tmp().join("iperf-client.log"),
    );
    let to_iperf = |f: &Value| {
        is(f, "tcp", "dnat")
            && addr(f, "original", "dst") == "198.18.0.1:5201"
            && addr(f, "translated", "dst") == "172.17.0.2:5201"
    };
    wait_until("iperf3 data flowing through :5201", WAIT, || {
        flows(&tb, to_iperf)
            .0
            .iter()
            .any(|f| f["packets"].as_u64() > Some(1000))
    });
    tb.kill9();

    let report = client.wait_ok(Duration::from_secs(30));
    let report: Value = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("iperf3 -J output ({e}):\n{report}"));
    let intervals = report["intervals"].as_array().cloned().unwrap_or_default();
    assert!(intervals.len() >= 4, "iperf3 intervals: {report}");
    for (i, interval) in intervals.iter().enumerate() {
        let bytes = interval["sum"]["bytes"].as_u64().unwrap_or_default();
        assert!(bytes > 0, "interval {i} moved no data after kill -9");
    }
    let received = report["end"]["sum_received"]["bytes"].as_u64();
    assert!(received > Some(0), "iperf3 received nothing: {report}");

    tb.restart();
    assert!(
        tb.portmap_specs()
            .contains(&"5201:172.17.0.2:5201/tcp".to_owned()),
        "mapping lost: {:?}",
        tb.portmap_specs()
    );
    let (found, all) = flows(&tb, to_iperf);
    assert!(
        !found.is_empty(),
        "the iperf3 flows are gone after restart:\n{all}"
    );
    assert_eq!(
        curl_ok(&tb.ext(), "http://198.18.0.1:8088/id.txt"),
        server.body
    );
    assert_no_netfilter(&tb);
}

#[test]
fn pinned_portmaps_have_field_names() {
    let tb = Testbed::new();
    tb.add("c1");
    tb.netd_ok(&["portmap", "add", "8088:172.17.0.2:80"]);
    let dump = bpftool_dump(&tb.bpffs().join("NETD_PORTMAPS"));
    for field in ["host_port", "container_ip"] {
        assert!(dump.contains(field), "no `{field}` in:\n{dump}");
    }
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    // Three IPv4 packets to the uplink address that claim TCP but carry only
    // 2 bytes of it (the kernel fills in checksum and length).
    const SEND: &str = "import socket, struct\n\
        src, dst = socket.inet_aton('198.18.0.2'), socket.inet_aton('198.18.0.1')\n\
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 22, 0x1234, 0, 64, 6, 0, src, dst)\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n\
        for _ in range(3):\n    s.sendto(ip + b'\\x1f\\x98', ('198.18.0.1', 0))\n";
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    let before = tb.counter("drop_malformed");
    in_ns_ok(&tb.ext(), &["python3", "-c", SEND]);
    wait_until("drop_malformed to count 3 packets", WAIT, || {
        tb.counter("drop_malformed") >= before + 3
    });
    assert_eq!(
        curl_ok(&tb.ext(), "http://198.18.0.1:8088/id.txt"),
        server.body
    );
}

// ---------------------------------------------------------------------------
// Conntrack expiry.

#[test]
fn idle_udp_flow_expires() {
    let tb = Testbed::with_daemon_args(&["--ct-gc-interval", "1", "--ct-udp-timeout", "2"]);
    let c1 = tb.add_with("c1", &["-p", "5353:5353/udp"]);
    let _echo = udp_echo_server(&tb, &c1, 5353);
    assert_eq!(udp_exchange(&tb.ext(), EXT, 5353, "expire-me"), "expire-me");
    let udp = |f: &Value| is(f, "udp", "dnat") && addr(f, "original", "dst") == "198.18.0.1:5353";
    let (found, all) = flows(&tb, udp);
    assert_eq!(found.len(), 1, "one udp flow in\n{all}");
    wait_until("the idle udp flow to expire", WAIT, || {
        flows(&tb, udp).0.is_empty()
    });
}

// ---------------------------------------------------------------------------
// The port mapping CLI.

#[test]
fn portmap_errors_and_cleanup() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    for bad in [
        "8088",
        "8088-8090:172.17.0.2:80",
        "8088:172.17.0.2:80/sctp",
        "0:172.17.0.2:80",
        "70000:172.17.0.2:80",
        "8088:172.17.0.2",
    ] {
        tb.netd_err(&["portmap", "add", bad]);
    }
    assert!(tb.portmaps().is_empty(), "bad specs left mappings");

    tb.netd_ok(&["portmap", "add", "8088:172.17.0.2:80"]);
    for taken in [
        "8088:172.17.0.2:80",
        "8088:172.17.0.2:81",
        "127.0.0.1:8088:172.17.0.2:80",
        "8080-8090:172.17.0.2:80-90",
    ] {
        let err = tb.netd_err(&["portmap", "add", taken]);
        assert!(err.contains("conflicts"), "{taken}: {err}");
    }
    let err = tb.netd_err(&["portmap", "add", "8089:172.17.0.99:80"]);
    assert!(err.contains("no container has address"), "{err}");
    for missing in ["9999", "8089/tcp", "8088/udp", "127.0.0.1:8088"] {
        let err = tb.netd_err(&["portmap", "rm", missing]);
        assert!(err.contains("no port mapping"), "rm {missing}: {err}");
    }
    assert_eq!(tb.portmap_specs(), ["8088:172.17.0.2:80/tcp"]);

    // The other protocol and another host address of a free port are fine.
    tb.netd_ok(&["portmap", "add", "8088:172.17.0.2:80/udp"]);
    tb.netd_ok(&["portmap", "add", "127.0.0.1:8089:172.17.0.2:80"]);
    tb.netd_ok(&["portmap", "rm", "8088/udp"]);
    tb.netd_ok(&["portmap", "rm", "127.0.0.1:8089:172.17.0.2:80"]);
    assert_eq!(tb.portmap_specs(), ["8088:172.17.0.2:80/tcp"]);

    // `container add -p` with a taken port creates nothing.
    let before = tb.snapshot();
    let c9 = tb.name("c9");
    let err = tb.netd_err(&["container", "add", &c9, "-p", "8088:80"]);
    assert!(err.contains("conflicts"), "{err}");
    assert_eq!(tb.snapshot(), before, "failed add left state behind");
    assert!(!netns_exists(&c9), "/run/netns/{c9} left behind");
    assert_eq!(tb.portmap_specs(), ["8088:172.17.0.2:80/tcp"]);

    // `container rm` takes its mappings along.
    let server = web(&tb, &c1, 80, "c1");
    assert_eq!(
        curl_ok(&tb.ext(), "http://198.18.0.1:8088/id.txt"),
        server.body
    );
    drop(server);
    tb.rm(&c1);
    assert!(tb.portmaps().is_empty(), "{:?}", tb.portmap_specs());
    let out = curl(&tb.ext(), "http://198.18.0.1:8088/id.txt");
    assert_eq!(
        out.status.code(),
        Some(7),
        "after container rm, :8088 must refuse connections: {out:?}"
    );
}

#[test]
fn portmap_rm_of_full_spec_must_match_container_side() {
    let tb = Testbed::new();
    tb.add("c1");
    tb.netd_ok(&["portmap", "add", "8088:172.17.0.2:80"]);
    for other in ["8088:172.17.0.2:81", "8088:172.17.0.3:80/tcp"] {
        let err = tb.netd_err(&["portmap", "rm", other]);
        assert!(err.contains("no port mapping"), "rm {other}: {err}");
        assert_eq!(
            tb.portmap_specs(),
            ["8088:172.17.0.2:80/tcp"],
            "`portmap rm {other}` removed another mapping"
        );
    }
    tb.netd_ok(&["portmap", "rm", "8088:172.17.0.2:80/tcp"]);
    assert!(tb.portmaps().is_empty(), "{:?}", tb.portmap_specs());
}

// ---------------------------------------------------------------------------
// ICMP errors about translated flows.

/// Sends one datagram from a connected UDP socket (bound to argv[3] when
/// given) to argv[1]:argv[2] and prints what came back: "refused" when an
/// ICMP port unreachable arrived, "data" or "timeout".
const UDP_PROBE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
if len(sys.argv) > 3:
    s.bind(("0.0.0.0", int(sys.argv[3])))
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"probe")
try:
    s.recv(100); print("data")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;

/// Plays a router on the path: sends "fragmentation needed, next-hop MTU
/// 1300" to argv[1] about a UDP packet argv[1]:argv[2] -> argv[3]:argv[4].
/// With [`with_packet_helpers`] (`csum`).
const FRAG_NEEDED: &str = r#"
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
udp = struct.pack("!HHHH", sport, dport, 1480, 0)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 1, 0x4000, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
body = struct.pack("!BBHHH", 3, 4, 0, 0, 1300) + ip + udp
body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(body, (src, 0))
"#;

fn udp_probe(ns: &str, ip: &str, port: u16, bind: Option<u16>) -> String {
    let port = port.to_string();
    let bind = bind.map(|b| b.to_string());
    let mut args = vec!["python3", "-c", UDP_PROBE, ip, &port];
    args.extend(bind.as_deref());
    in_ns_ok(ns, &args).trim().to_owned()
}

#[test]
fn icmp_port_unreachable_is_translated_both_ways() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "5353:5353/udp"]);
    // c1 -> closed port outside: the error comes back through MASQUERADE.
    assert_eq!(udp_probe(&c1, EXT_PEER, 4444, None), "refused");
    // outside -> published port nobody listens on: c1's error goes out.
    assert_eq!(udp_probe(&tb.ext(), EXT, 5353, None), "refused");
    // Forwarded one hop on, as any packet: c1's kernel sends it with TTL
    // 64, the host routes it.
    let ttl = in_ns_ok(&tb.ext(), &["python3", "-c", ERROR_HOPS, EXT, "5353"]);
    assert_eq!(ttl.trim(), "63", "TTL of c1's error as ext received it");
}

/// Keeps a connected UDP socket (port 40123 -> argv[1]:9999) open and
/// prints its path MTU as soon as it drops below 1500 (or after 8 s).
const PMTU_WATCH: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40123))
s.connect((sys.argv[1], 9999))
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.send(b"probe")
deadline = time.time() + 8
while time.time() < deadline:
    mtu = s.getsockopt(socket.IPPROTO_IP, 14)  # IP_MTU
    if mtu < 1500:
        break
    time.sleep(0.05)
print(mtu, flush=True)
"#;

#[test]
fn fragmentation_needed_reaches_the_container_socket() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let log = tb.tmp().join("pmtu.log");
    let mut watch = Bg::spawn(&c1, &["python3", "-c", PMTU_WATCH, EXT_PEER], &log);
    let mut nat_port = String::new();
    wait_until("the udp snat flow of c1's socket", WAIT, || {
        let (snat, _) = flows(&tb, |f| is(f, "udp", "snat"));
        if let Some(flow) = snat.first() {
            nat_port = port_part(addr(flow, "translated", "src")).to_owned();
        }
        !nat_port.is_empty()
    });
    // A router on the path says the packet was too big: the error names
    // the translated tuple, and must reach c1's socket translated back,
    // with valid checksums, for the kernel to lower the path MTU.
    let frag_needed = with_packet_helpers(FRAG_NEEDED);
    in_ns_ok(
        &tb.ext(),
        &[
            "python3",
            "-c",
            &frag_needed,
            EXT,
            &nat_port,
            EXT_PEER,
            "9999",
        ],
    );
    let mtu = watch.wait_ok(Duration::from_secs(15));
    assert_eq!(mtu.trim(), "1300", "path MTU seen by c1's socket");
}

/// From the host: a TCP connect to argv[1]:argv[2] printing getpeername(),
/// then an unconnected UDP exchange with argv[1]:argv[3] printing where
/// recvfrom() says the reply came from.
const HOST_SOCKETS: &str = r#"
import socket, sys
ip, tport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = socket.create_connection((ip, tport), timeout=5)
print("%s:%d" % t.getpeername())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"hello", (ip, uport))
data, peer = u.recvfrom(100)
print("%s:%d %s" % (peer[0], peer[1], data.decode()))
"#;

#[test]
fn host_local_sockets_see_the_published_address() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80", "-p", "5353:5353/udp"]);
    let _web = web(&tb, &c1, 80, "c1");
    let _echo = udp_echo_server(&tb, &c1, 5353);
    for ip in ["127.0.0.1", EXT] {
        let out = in_ns_ok(
            &tb.host(),
            &["python3", "-c", HOST_SOCKETS, ip, "8088", "5353"],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [format!("{ip}:8088"), format!("{ip}:5353 hello")],
            "getpeername/recvfrom of host sockets to {ip}"
        );
    }
}
