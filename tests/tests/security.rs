//! Isolation and exposure, tried the way an attacker would: spoofed sources
//! from containers (raw sockets, forged MACs), an internal network trying
//! to get out, a host outside routing container subnets or loopback
//! addresses via the host, DNS and `-p` on internal networks, and ports
//! that host processes listen on.

use std::time::Duration;

use netd_tests::{
    Bg, HttpServer, Testbed, curl, curl_ok, in_ns, in_ns_ok, mac_of,
    scripts::{FAKE_UPSTREAM, with_packet_helpers},
    snmp, udp_exchange, wait_until,
};

const WAIT: Duration = Duration::from_secs(10);
const HOST: &str = "198.18.0.1";
const EXT: &str = "198.18.0.2";

/// Sends three copies of a UDP datagram or TCP SYN with any source:
/// `KIND SRC DST DPORT [IFACE DSTMAC SRCMAC]`. Without IFACE it goes out of
/// a raw IP socket (the kernel routes it); with it, as a whole Ethernet
/// frame on IFACE (any MAC, any destination). Run with the packet helpers.
const SEND: &str = r#"
kind, src, dst, dport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s, d = socket.inet_aton(src), socket.inet_aton(dst)
if kind == 'udp':
    proto, payload = 17, b'spoofed'
    l4 = struct.pack('!HHHH', 40000, dport, 8 + len(payload), 0) + payload
    at = 6
else:
    proto = 6
    l4 = struct.pack('!HHIIBBHHH', 40000, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
    at = 16
c = csum(s + d + struct.pack('!BBH', 0, proto, len(l4)) + l4) or 0xffff
l4 = l4[:at] + struct.pack('!H', c) + l4[at + 2:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 0x4242, 0, 64, proto, 0, s, d)
pkt = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:] + l4
if len(sys.argv) > 5:
    iface, dmac, smac = sys.argv[5:8]
    mac = lambda m: bytes.fromhex(m.replace(':', ''))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    for _ in range(3):
        sock.send(mac(dmac) + mac(smac) + b'\x08\x00' + pkt)
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for _ in range(3):
        sock.sendto(pkt, (dst, 0))
"#;

/// One A query for NAME to SERVER:53; prints "RCODE ANCOUNT".
const DNS_QUERY: &str = r#"
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
q += struct.pack('!HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(q, (server, 53))
r = s.recv(4096)
print(r[3] & 0x0f, struct.unpack('!H', r[6:8])[0])
"#;

/// Runs [`SEND`] in `ns`.
fn send(ns: &str, args: &[&str]) {
    let script = with_packet_helpers(SEND);
    let mut cmd = vec!["python3", "-c", &script];
    cmd.extend_from_slice(args);
    in_ns_ok(ns, &cmd);
}

/// TCP segments and UDP datagrams that reached `ns`'s stack, good or bad
/// (ICMP and IGMP are left out: the kernel sends those on its own).
fn ip_in(ns: &str) -> u64 {
    ["InDatagrams", "NoPorts", "InErrors"]
        .iter()
        .map(|f| snmp(ns, "Udp", f))
        .sum::<u64>()
        + snmp(ns, "Tcp", "InSegs")
        + snmp(ns, "Tcp", "InErrs")
}

/// Waits until counter `name` has grown by at least `by` from `before`.
fn wait_counter(tb: &Testbed, name: &str, before: u64, by: u64) {
    wait_until(&format!("{name} to grow by {by}"), WAIT, || {
        tb.counter(name) >= before + by
    });
}

fn create_net(tb: &Testbed, args: &[&str]) {
    let mut all = vec!["network", "create"];
    all.extend_from_slice(args);
    tb.netd_ok(&all);
}

fn web(tb: &Testbed, ns: &str, port: u16, tag: &str) -> HttpServer {
    let dir = tb.tmp().join(format!("web-{tag}-{port}"));
    HttpServer::start(ns, port, &dir, &format!("{tag} {}\n", tb.p))
}

/// A TCP server in `ns` answering each connection with the peer address.
fn who_server(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("who-{port}.log"));
    Bg::server(
        ns,
        &["socat", "-t5", &listen, "SYSTEM:echo $SOCAT_PEERADDR"],
        &log,
        "tcp",
        port,
    )
}

fn ask(ns: &str, ip: &str, port: u16) -> String {
    let target = format!("TCP:{ip}:{port}");
    in_ns_ok(ns, &["socat", "-t5", "-T5", "-", &target])
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Anti-spoofing.

#[test]
fn spoofed_sources_never_cross_networks() {
    let tb = Testbed::new();
    create_net(&tb, &["a"]); // 172.18.0.0/16
    create_net(&tb, &["b"]); // 172.19.0.0/16
    let c1 = tb.add_with("c1", &["--network", "a"]); // 172.18.0.2
    let c3 = tb.add_with("c3", &["--network", "a"]); // 172.18.0.3
    let c2 = tb.add_with("c2", &["--network", "b"]); // 172.19.0.2

    // The control: c1's own source reaches c3 through the same raw path.
    let before = ip_in(&c3);
    send(&c1, &["udp", "172.18.0.2", "172.18.0.3", "7777"]);
    wait_until("c1's own datagrams to reach c3", WAIT, || {
        ip_in(&c3) >= before + 3
    });

    // Foreign sources: an unused address of b, another container's, one
    // from outside. UDP and TCP, to b and to c1's own network.
    let (b_before, c3_before) = (ip_in(&c2), ip_in(&c3));
    let spoofed = tb.counter("drop_spoofed");
    let cases = [
        ("udp", "172.19.0.99", "172.19.0.2"),
        ("syn", "172.19.0.99", "172.19.0.2"),
        ("udp", "172.18.0.3", "172.19.0.2"),
        ("syn", "198.18.0.99", "172.19.0.2"),
        ("udp", "172.18.0.99", "172.18.0.3"),
    ];
    for (kind, src, dst) in cases {
        send(&c1, &[kind, src, dst, "7777"]);
    }
    wait_counter(&tb, "drop_spoofed", spoofed, 3 * cases.len() as u64);
    assert_eq!(ip_in(&c2), b_before, "a spoofed packet reached c2 on b");
    assert_eq!(ip_in(&c3), c3_before, "a spoofed packet reached c3");

    // A forged MAC with c1's own address is dropped too; the real MAC
    // (the control) gets through.
    let c3_mac = mac_of(&c3, "eth0");
    let c1_mac = mac_of(&c1, "eth0");
    let spoofed = tb.counter("drop_spoofed");
    let frame = |smac: &str| {
        send(
            &c1,
            &[
                "udp",
                "172.18.0.2",
                "172.18.0.3",
                "7777",
                "eth0",
                &c3_mac,
                smac,
            ],
        )
    };
    frame("02:42:ac:12:00:99");
    wait_counter(&tb, "drop_spoofed", spoofed, 3);
    assert_eq!(ip_in(&c3), c3_before, "a forged MAC reached c3");
    frame(&c1_mac);
    wait_until("c1's real MAC to reach c3", WAIT, || {
        ip_in(&c3) >= c3_before + 3
    });
}

#[test]
fn internal_network_cannot_be_escaped_with_foreign_sources() {
    let tb = Testbed::new();
    create_net(&tb, &["lab", "--internal"]); // 172.18.0.0/16
    let c1 = tb.add("c1"); // default bridge, 172.17.0.2
    let c4 = tb.add_with("c4", &["--network", "lab"]); // 172.18.0.2
    // Every chance to get out: a default route inside, a route back outside.
    in_ns_ok(&c4, &["ip", "route", "add", "default", "via", "172.18.0.1"]);
    in_ns_ok(
        &tb.ext(),
        &["ip", "route", "add", "172.18.0.0/16", "via", HOST],
    );
    let ext = tb.ext();
    let ext_before = ip_in(&ext);
    let (spoofed, policy) = (tb.counter("drop_spoofed"), tb.counter("drop_policy"));
    // An unused address of its own subnet, a container of a normal
    // network, and its own address (dropped by policy, not as spoofed).
    for src in ["172.18.0.99", "172.17.0.2"] {
        send(&c4, &["udp", src, EXT, "7779"]);
        send(&c4, &["syn", src, EXT, "7780"]);
    }
    send(&c4, &["udp", "172.18.0.2", EXT, "7779"]);
    wait_counter(&tb, "drop_spoofed", spoofed, 12);
    wait_counter(&tb, "drop_policy", policy, 3);
    assert_eq!(ip_in(&ext), ext_before, "traffic from lab reached ext");
    // The control: c1 on the default bridge does get out.
    let _who = who_server(&tb, &ext, 7781);
    assert_eq!(ask(&c1, EXT, 7781), HOST, "c1 is masqueraded");
}

// ---------------------------------------------------------------------------
// Exposure to hosts outside.

#[test]
fn container_addresses_are_not_reachable_from_outside() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    let ext = tb.ext();
    // ext routes the container subnet via the host, as a neighbour could.
    in_ns_ok(&ext, &["ip", "route", "add", "172.17.0.0/16", "via", HOST]);
    let (c1_before, dropped) = (ip_in(&c1), tb.counter("drop_unpublished"));
    send(&ext, &["udp", EXT, "172.17.0.2", "9999"]);
    send(&ext, &["syn", EXT, "172.17.0.2", "80"]);
    let ping = in_ns(&ext, &["ping", "-c1", "-W1", "172.17.0.2"]);
    assert!(!ping.status.success(), "ext pinged a container directly");
    wait_counter(&tb, "drop_unpublished", dropped, 7);
    assert_eq!(ip_in(&c1), c1_before, "ext reached c1 on its own address");
    assert!(
        !curl(&ext, "http://172.17.0.2:80/id.txt").status.success(),
        "ext fetched from the container's address directly"
    );
    // What must still work: the published port, and replies to flows the
    // container started.
    assert_eq!(
        curl_ok(&ext, &format!("http://{HOST}:8088/id.txt")),
        server.body
    );
    let _who = who_server(&tb, &ext, 7781);
    assert_eq!(ask(&c1, EXT, 7781), HOST);
}

#[test]
fn routed_network_is_reachable_directly_and_not_masqueraded() {
    let tb = Testbed::new();
    create_net(
        &tb,
        &[
            "direct",
            "--subnet",
            "172.30.0.0/24",
            "--gateway-mode",
            "routed",
        ],
    );
    let info = tb.netd_json(&["network", "inspect", "direct"]);
    assert_eq!(
        info["Options"]["com.docker.network.bridge.gateway_mode_ipv4"], "routed",
        "{info}"
    );
    let c1 = tb.add_with("c1", &["--network", "direct"]); // 172.30.0.2
    let server = web(&tb, &c1, 80, "c1");
    let ext = tb.ext();
    in_ns_ok(&ext, &["ip", "route", "add", "172.30.0.0/24", "via", HOST]);
    assert_eq!(curl_ok(&ext, "http://172.30.0.2:80/id.txt"), server.body);
    server.wait_client(EXT);
    let _who = who_server(&tb, &ext, 7781);
    assert_eq!(ask(&c1, EXT, 7781), "172.30.0.2", "routed: no MASQUERADE");
    // Refused together with --internal.
    let err = tb.netd_err(&[
        "network",
        "create",
        "both",
        "--internal",
        "--gateway-mode",
        "routed",
    ]);
    assert!(err.contains("contradict"), "{err}");
}

#[test]
fn loopback_mapping_answers_the_host_only() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "127.0.0.2:5001:5000/udp"]);
    let log = tb.tmp().join("echo.log");
    let _echo = Bg::server(
        &c1,
        &["socat", "UDP-LISTEN:5000,fork,reuseaddr", "EXEC:cat"],
        &log,
        "udp",
        5000,
    );
    assert_eq!(
        udp_exchange(&tb.host(), "127.0.0.2", 5001, "from-host"),
        "from-host"
    );
    // ext sends straight to 127.0.0.2 through the host's MAC, as a host
    // that routes 127.0.0.2 via this one would.
    let ext = tb.ext();
    let host_mac = mac_of(&tb.host(), "uplink0");
    let ext_mac = mac_of(&ext, "ext0");
    let (c1_before, dnat) = (ip_in(&c1), tb.counter("dnat"));
    let uplink = tb.counter("uplink");
    send(
        &ext,
        &["udp", EXT, "127.0.0.2", "5001", "ext0", &host_mac, &ext_mac],
    );
    wait_counter(&tb, "uplink", uplink, 3);
    assert_eq!(tb.counter("dnat"), dnat, "a loopback mapping was DNAT-ed");
    assert_eq!(ip_in(&c1), c1_before, "ext reached a loopback-bound port");
}

// ---------------------------------------------------------------------------
// Internal networks: DNS and -p.

#[test]
fn internal_network_gets_servfail_and_no_published_ports() {
    let tb = Testbed::new(); // the harness passes --dns-upstream 198.18.0.2
    create_net(&tb, &["lab", "--internal"]); // 172.18.0.0/16
    create_net(&tb, &["front"]); // 172.19.0.0/16
    let c1 = tb.add_with("c1", &["--network", "lab"]);
    let c2 = tb.add_with("c2", &["--network", "lab"]);
    let c3 = tb.add_with("c3", &["--network", "front"]);
    let log = tb.tmp().join("upstream.log");
    let _upstream = Bg::server(
        &tb.ext(),
        &["timeout", "60", "python3", "-c", FAKE_UPSTREAM],
        &log,
        "udp",
        53,
    );
    let query = |ns: &str, server: &str, name: &str| {
        in_ns_ok(ns, &["python3", "-c", DNS_QUERY, server, name])
            .trim()
            .to_owned()
    };
    // The control: a normal network's container gets the upstream's answer.
    assert_eq!(query(&c3, "172.19.0.1", "example.test"), "0 1");
    // Internal: names on the network resolve, nothing else is forwarded.
    assert_eq!(query(&c1, "172.18.0.1", &c2), "0 1");
    assert_eq!(query(&c1, "172.18.0.1", "example.test"), "2 0", "SERVFAIL");

    let before = tb.snapshot();
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("c9"),
        "--network",
        "lab",
        "-p",
        "8080:80",
    ]);
    assert!(err.contains("internal"), "{err}");
    let err = tb.netd_err(&["portmap", "add", "8080:172.18.0.2:80"]);
    assert!(err.contains("internal"), "{err}");
    assert_eq!(tb.snapshot(), before, "a refused -p left something behind");
    assert!(
        tb.netd_json(&["portmap", "ls"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// The host's own ports and addresses.

#[test]
fn publishing_a_port_a_host_process_listens_on_is_refused() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let host = tb.host();
    let tmp = tb.tmp().to_owned();
    let _ssh = Bg::server(
        &host,
        &[
            "socat",
            "TCP-LISTEN:2222,fork,reuseaddr",
            "SYSTEM:echo host",
        ],
        &tmp.join("ssh.log"),
        "tcp",
        2222,
    );
    let _local = Bg::server(
        &host,
        &[
            "socat",
            "TCP-LISTEN:2223,bind=127.0.0.1,fork,reuseaddr",
            "SYSTEM:echo host",
        ],
        &tmp.join("local.log"),
        "tcp",
        2223,
    );
    let _dns = Bg::server(
        &host,
        &["socat", "-u", "UDP-RECV:5300", "STDOUT"],
        &tmp.join("dns.log"),
        "udp",
        5300,
    );
    let before = tb.snapshot();
    let err = tb.netd_err(&["container", "add", &tb.name("c2"), "-p", "2222:22"]);
    assert!(err.contains("2222/tcp") && err.contains("in use"), "{err}");
    for (spec, ports) in [
        ("2222:172.17.0.2:22", &["2222/tcp"][..]),
        ("2220-2230:172.17.0.2:2220-2230", &["2222/tcp", "2223/tcp"]),
        ("2223:172.17.0.2:22", &["2223/tcp"]),
        ("5300:172.17.0.2:53/udp", &["5300/udp"]),
    ] {
        let err = tb.netd_err(&["portmap", "add", spec]);
        let names_port = ports.iter().any(|p| err.contains(p));
        assert!(names_port && err.contains("in use"), "{spec}: {err}");
    }
    // A host address the host does not have.
    let err = tb.netd_err(&["portmap", "add", "198.18.0.77:8080:172.17.0.2:80"]);
    assert!(err.contains("not an address of this host"), "{err}");
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("c2"),
        "-p",
        "198.18.0.77:8080:80",
    ]);
    assert!(err.contains("not an address of this host"), "{err}");
    assert_eq!(
        tb.snapshot(),
        before,
        "a refused publish left something behind"
    );
    assert!(
        tb.netd_json(&["portmap", "ls"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Where the addresses do not meet, and when forced, it is published.
    tb.netd_ok(&["portmap", "add", &format!("{HOST}:2223:172.17.0.2:80")]);
    tb.netd_ok(&["portmap", "add", "--force", "2222:172.17.0.2:80"]);
    tb.add_with("c2", &["--force-publish", "-p", "5300:53/udp"]);
    let server = web(&tb, &c1, 80, "c1");
    assert_eq!(
        curl_ok(&tb.ext(), &format!("http://{HOST}:2222/id.txt")),
        server.body
    );
}
