//! IPv6 and dual stack (issue 14), the parts that hold so far: dual-stack
//! networks and their addresses (Docker's `--ipv6`, `inspect`), the
//! container's IPv6 address and default route, container to container
//! and host to container over IPv6 on one network, isolation between
//! networks, internal networks, AAAA answers, and IPv6 anti-spoofing in the
//! veth program (forged sources, forged neighbour advertisements, router
//! advertisements), and connection tracking of IPv6 flows (listing,
//! expiry, TCP close, floods, kill -9, ICMPv6 errors from containers,
//! `--ct6-max`). ULA (fd00::/8) subnets only; nothing leaves the
//! testbed's namespaces.

use std::time::Duration;

use netd_tests::{
    Bg, TcpClient, Testbed, bpftool, bpftool_dump, in_ns, in_ns_ok, mac_of,
    scripts::{ERROR_HOPS, with_packet_helpers},
    udp_exchange, wait_until,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn create_net(tb: &Testbed, args: &[&str]) -> String {
    let mut all = vec!["network", "create"];
    all.extend_from_slice(args);
    tb.netd_ok(&all).trim().to_owned()
}

fn ip6_of(tb: &Testbed, name: &str) -> String {
    tb.field(name, "ip6")
}

/// A counter of `/proc/net/snmp6` in `ns` (e.g. "Icmp6InEchos").
fn snmp6(ns: &str, field: &str) -> u64 {
    let text = in_ns_ok(ns, &["cat", "/proc/net/snmp6"]);
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(field)).then(|| it.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/net/snmp6 of {ns}"))
}

fn ping6(ns: &str, ip: &str) {
    in_ns_ok(ns, &["ping", "-6", "-c1", "-W2", ip]);
}

fn ping6_fails(ns: &str, ip: &str) {
    let out = in_ns(ns, &["ping", "-6", "-c2", "-W1", ip]);
    assert!(
        !out.status.success(),
        "ping -6 {ip} from {ns} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A TCP server on [::]:`port` in `ns` answering each connection with the
/// peer address.
fn who_server6(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("who6-{ns}-{port}.log"));
    Bg::server(
        ns,
        &["socat", "-t5", &listen, "SYSTEM:echo $SOCAT_PEERADDR"],
        &log,
        "tcp",
        port,
    )
}

fn ask6(ns: &str, ip: &str, port: u16) -> String {
    let target = format!("TCP6:[{ip}]:{port}");
    let peer = in_ns_ok(ns, &["socat", "-t5", "-T5", "-", &target]);
    // socat writes the address in full: compare it in its short form.
    let peer = peer.trim().trim_start_matches('[').trim_end_matches(']');
    match peer.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => peer.to_owned(),
    }
}

/// An HTTP server on [::]:80 in `ns` whose `id.txt` says "`tag` <prefix>".
fn http6_server(tb: &Testbed, ns: &str, tag: &str) -> Bg {
    let root = tb.tmp().join(format!("www-{tag}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("id.txt"), format!("{tag} {}\n", tb.p)).unwrap();
    let root_s = root.to_string_lossy().into_owned();
    let cmd = [
        "python3",
        "-u",
        "-m",
        "http.server",
        "80",
        "--bind",
        "::",
        "--directory",
        &root_s,
    ];
    Bg::server(
        ns,
        &cmd,
        &tb.tmp().join(format!("http-{tag}.log")),
        "tcp",
        80,
    )
}

#[test]
fn dual_stack_networks_are_shown_as_docker_shows_them() {
    let tb = Testbed::new();
    create_net(
        &tb,
        &[
            "app",
            "--ipv6",
            "--subnet",
            "10.77.0.0/24",
            "--subnet",
            "fd00:77::/64",
        ],
    );
    let net = tb.netd_json(&["network", "inspect", "app"]);
    assert_eq!(net["EnableIPv6"], Value::Bool(true), "{net}");
    let config = net["IPAM"]["Config"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let subnets: Vec<&str> = config.iter().filter_map(|c| c["Subnet"].as_str()).collect();
    let gateways: Vec<&str> = config
        .iter()
        .filter_map(|c| c["Gateway"].as_str())
        .collect();
    assert_eq!(subnets, ["10.77.0.0/24", "fd00:77::/64"], "{net}");
    assert_eq!(gateways, ["10.77.0.1", "fd00:77::1"], "{net}");

    // The bridge has both gateways; the container both addresses and both
    // default routes.
    let bridge = net["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_bridge = in_ns_ok(
        &tb.host(),
        &["ip", "-6", "-o", "addr", "show", "dev", &bridge],
    );
    assert!(on_bridge.contains("fd00:77::1/64"), "{on_bridge}");
    let c1 = tb.add_with("c1", &["--network", "app"]);
    assert_eq!(tb.ip_of(&c1), "10.77.0.2");
    assert_eq!(ip6_of(&tb, &c1), "fd00:77::2");
    let addrs = in_ns_ok(&c1, &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("fd00:77::2/64"), "{addrs}");
    let global = addrs
        .lines()
        .find(|l| l.contains("fd00:77::2/64"))
        .unwrap_or_default();
    assert!(
        !global.contains("tentative"),
        "DAD must not hold the address: {addrs}"
    );
    let routes = in_ns_ok(&c1, &["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("via fd00:77::1 dev eth0"), "{routes}");
    let c2 = tb.add_with("c2", &["--network", "app", "--ip6", "fd00:77::99"]);
    assert_eq!(ip6_of(&tb, &c2), "fd00:77::99");
    let net = tb.netd_json(&["network", "inspect", "app"]);
    let members: Vec<String> = net["Containers"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|m| m["IPv6Address"].as_str().map(str::to_owned))
        .collect();
    assert!(members.contains(&"fd00:77::2/64".to_owned()), "{net}");
    assert!(members.contains(&"fd00:77::99/64".to_owned()), "{net}");

    // Without a v6 subnet, one from the ULA pool; without --ipv6, none.
    create_net(&tb, &["auto", "--ipv6"]);
    let auto = tb.netd_json(&["network", "inspect", "auto"]);
    assert_eq!(
        auto["IPAM"]["Config"][1]["Subnet"].as_str(),
        Some("fd00:6e65:7464::/64"),
        "{auto}"
    );
    create_net(&tb, &["plain"]);
    let plain = tb.netd_json(&["network", "inspect", "plain"]);
    assert_eq!(plain["EnableIPv6"], Value::Bool(false));
    assert_eq!(plain["IPAM"]["Config"].as_array().map(Vec::len), Some(1));
    let c3 = tb.add_with("c3", &["--network", "plain"]);
    let routes = in_ns_ok(&c3, &["ip", "-6", "route", "show", "default"]);
    assert!(routes.trim().is_empty(), "no v6 default route: {routes}");

    // Refusals, each one line.
    let err = tb.netd_err(&["network", "create", "x", "--subnet", "fd00:78::/64"]);
    assert!(err.contains("--ipv6"), "{err}");
    let err = tb.netd_err(&[
        "network",
        "create",
        "y",
        "--ipv6",
        "--subnet",
        "fd00:79::/64",
        "--subnet",
        "fd00:7a::/64",
    ]);
    assert!(err.contains("at most one"), "{err}");
    let err = tb.netd_err(&[
        "network",
        "create",
        "z",
        "--ipv6",
        "--subnet",
        "fd00:77::/80",
    ]);
    assert!(err.contains("overlaps"), "{err}");
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("c4"),
        "--network",
        "plain",
        "--ip6",
        "fd00:77::5",
    ]);
    assert!(err.contains("no IPv6 subnet"), "{err}");
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("c5"),
        "--network",
        "app",
        "--ip6",
        "fd00:77::2",
    ]);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn the_default_bridge_is_dual_stack_with_the_daemon_flag() {
    let tb = Testbed::with_daemon_args(&["--default-subnet6", "fd00:17::/64"]);
    let c1 = tb.add("c1");
    let c2 = tb.add("c2");
    assert_eq!(ip6_of(&tb, &c1), "fd00:17::2");
    assert_eq!(ip6_of(&tb, &c2), "fd00:17::3");
    ping6(&c1, "fd00:17::3");
    ping6(&c1, "fd00:17::1");
    let net = tb.netd_json(&["network", "inspect", "bridge"]);
    assert_eq!(net["EnableIPv6"], Value::Bool(true), "{net}");
}

#[test]
fn containers_reach_each_other_and_the_host_over_v6() {
    let tb = Testbed::new();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:80::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "app"]);
    let (ip1, ip2) = (ip6_of(&tb, &c1), ip6_of(&tb, &c2));
    ping6(&c1, &ip2);
    ping6(&c2, &ip1);
    // The gateway (the host) and the host to the container.
    ping6(&c1, "fd00:80::1");
    ping6(&tb.host(), &ip1);
    // TCP: the server sees the client's own IPv6 address, both ways, and
    // a dual-stack container reaches v4 and v6 destinations alike.
    let _s2 = who_server6(&tb, &c2, 7001);
    assert_eq!(ask6(&c1, &ip2, 7001), ip1);
    let _s1 = who_server6(&tb, &c1, 7002);
    assert_eq!(ask6(&c2, &ip1, 7002), ip2);
    tb.ping(&c1, &tb.ip_of(&c2));
    // The host reaches the container's server over v6 too.
    assert_eq!(ask6(&tb.host(), &ip2, 7001), "fd00:80::1");
}

#[test]
fn v6_networks_are_isolated_and_internal_ones_have_no_way_out() {
    let tb = Testbed::new();
    create_net(&tb, &["a", "--ipv6", "--subnet", "fd00:a::/64"]);
    create_net(&tb, &["b", "--ipv6", "--subnet", "fd00:b::/64"]);
    create_net(
        &tb,
        &["inner", "--ipv6", "--internal", "--subnet", "fd00:c::/64"],
    );
    let a1 = tb.add_with("a1", &["--network", "a"]);
    let b1 = tb.add_with("b1", &["--network", "b"]);
    let i1 = tb.add_with("i1", &["--network", "inner"]);
    let i2 = tb.add_with("i2", &["--network", "inner"]);
    let (ip_a1, ip_b1) = (ip6_of(&tb, &a1), ip6_of(&tb, &b1));
    let before = snmp6(&b1, "Icmp6InEchos");
    let policy = tb.counter("drop_policy");
    ping6_fails(&a1, &ip_b1);
    ping6_fails(&b1, &ip_a1);
    assert_eq!(
        snmp6(&b1, "Icmp6InEchos"),
        before,
        "an echo crossed networks"
    );
    assert!(
        tb.counter("drop_policy") >= policy + 2,
        "not dropped by eBPF"
    );
    // Connected to both, a container reaches both.
    tb.netd_ok(&["network", "connect", "b", &a1]);
    ping6(&a1, &ip_b1);
    // Internal: its containers reach each other, nothing else, and have no
    // default route.
    ping6(&i1, &ip6_of(&tb, &i2));
    let routes = in_ns_ok(&i1, &["ip", "-6", "route", "show", "default"]);
    assert!(routes.trim().is_empty(), "{routes}");
    ping6_fails(&i1, &ip_a1);
    // The host routes no IPv6 between networks: forwarding stays off.
    let fwd = in_ns_ok(
        &tb.host(),
        &["sysctl", "-n", "net.ipv6.conf.all.forwarding"],
    );
    assert_eq!(fwd.trim(), "0");
}

/// Sends three ICMPv6 echo requests with any source and MAC as whole
/// Ethernet frames on eth0 (built by hand, AF_PACKET): `SRC DST DSTMAC
/// SRCMAC`. With [`with_packet_helpers`] (`csum`).
const SEND_ECHO6: &str = r#"
src, dst, dmac, smac = sys.argv[1:5]
s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
icmp = struct.pack('!BBHHH', 128, 0, 0, 0x4242, 1) + b'netd-v6-spoof'
c = csum(s + d + struct.pack('!IxxxB', len(icmp), 58) + icmp)
icmp = icmp[:2] + struct.pack('!H', c) + icmp[4:]
ip6 = struct.pack('!IHBB', 6 << 28, len(icmp), 58, 64) + s + d
mac = lambda m: bytes.fromhex(m.replace(':', ''))
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(('eth0', 0))
for _ in range(3):
    sock.send(mac(dmac) + mac(smac) + b'\x86\xdd' + ip6 + icmp)
"#;

/// Sends a router advertisement (prefix fd00:bad::/64, autonomous) or a
/// neighbour advertisement for TARGET to all nodes, from eth0's link-local
/// address: `ra` or `na TARGET MAC`.
const SEND_ND: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
if sys.argv[1] == 'ra':
    prefix = socket.inet_pton(socket.AF_INET6, 'fd00:bad::')
    pi = struct.pack('!BBBBIII', 3, 4, 64, 0xc0, 86400, 14400, 0) + prefix
    msg = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0) + pi
else:
    target = socket.inet_pton(socket.AF_INET6, sys.argv[2])
    mac = bytes.fromhex(sys.argv[3].replace(':', ''))
    msg = struct.pack('!BBHI', 136, 0, 0, 0x20000000) + target + struct.pack('!BB', 2, 1) + mac
for _ in range(3):
    s.sendto(msg, ('ff02::1', 0, 0, socket.if_nametoindex('eth0')))
"#;

#[test]
fn forged_v6_sources_and_router_advertisements_are_dropped() {
    let tb = Testbed::new();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:90::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "app"]);
    let c3 = tb.add_with("c3", &["--network", "app"]);
    let (ip1, ip2, ip3) = (ip6_of(&tb, &c1), ip6_of(&tb, &c2), ip6_of(&tb, &c3));
    let (mac1, mac2) = (mac_of(&c1, "eth0"), mac_of(&c2, "eth0"));
    let script = with_packet_helpers(SEND_ECHO6);
    let send = |args: &[&str]| {
        let mut cmd = vec!["/usr/bin/python3", "-c", &script];
        cmd.extend_from_slice(args);
        in_ns_ok(&c1, &cmd);
    };

    // The control: c1's own source, by the same raw path, reaches c2.
    let before = snmp6(&c2, "Icmp6InEchos");
    send(&[&ip1, &ip2, &mac2, &mac1]);
    wait_until("c1's own echoes to reach c2", WAIT, || {
        snmp6(&c2, "Icmp6InEchos") >= before + 3
    });

    // Another container's address, an address from nowhere, another MAC.
    let spoofed = tb.counter("drop_spoofed");
    let before = snmp6(&c2, "Icmp6InEchos");
    send(&[&ip3, &ip2, &mac2, &mac1]);
    send(&["fd00:90::dead", &ip2, &mac2, &mac1]);
    send(&[&ip1, &ip2, &mac2, "02:42:0a:0b:0c:0d"]);
    wait_until("9 forged echoes to be counted", WAIT, || {
        tb.counter("drop_spoofed") >= spoofed + 9
    });
    assert_eq!(snmp6(&c2, "Icmp6InEchos"), before, "a forged echo arrived");

    // A neighbour advertisement claiming c3's address for c1's MAC.
    let spoofed = tb.counter("drop_spoofed");
    in_ns_ok(&c1, &["/usr/bin/python3", "-c", SEND_ND, "na", &ip3, &mac1]);
    wait_until("the forged advertisements to be counted", WAIT, || {
        tb.counter("drop_spoofed") >= spoofed + 3
    });
    let neigh = in_ns_ok(&c2, &["ip", "-6", "neigh", "show", &ip3]);
    assert!(!neigh.contains(&mac1), "c2 learnt c1's MAC for c3: {neigh}");

    // Router advertisements: dropped, counted, never seen by the host or
    // the other containers, no address from their prefix anywhere.
    let ra_before = snmp6(&c2, "Icmp6InRouterAdvertisements");
    let host_before = snmp6(&tb.host(), "Icmp6InRouterAdvertisements");
    let dropped = tb.counter("drop_ra");
    in_ns_ok(&c1, &["/usr/bin/python3", "-c", SEND_ND, "ra"]);
    wait_until("3 router advertisements to be counted", WAIT, || {
        tb.counter("drop_ra") >= dropped + 3
    });
    assert_eq!(snmp6(&c2, "Icmp6InRouterAdvertisements"), ra_before);
    assert_eq!(
        snmp6(&tb.host(), "Icmp6InRouterAdvertisements"),
        host_before
    );
    let host_addrs = in_ns_ok(&tb.host(), &["ip", "-6", "-o", "addr"]);
    assert!(!host_addrs.contains("fd00:bad"), "{host_addrs}");

    // Still fine afterwards: link-local and own traffic.
    ping6(&c1, &ip2);
    let link_local = |ns: &str| {
        let args = [
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ];
        in_ns_ok(ns, &args)
    };
    for ns in [&c1, &c2] {
        wait_until("the link-local address to pass DAD", WAIT, || {
            let text = link_local(ns);
            text.contains("fe80:") && !text.contains("tentative")
        });
    }
    let ll2 = link_local(&c2);
    let ll2 = ll2
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_owned();
    assert!(ll2.starts_with("fe80:"), "{ll2}");
    ping6(&c1, &format!("{ll2}%eth0"));
}

/// One query for NAME of TYPE (1 = A, 28 = AAAA) to SERVER:53; prints the
/// answers' addresses, one a line.
const DNS_QUERY: &str = r#"
import socket, struct, sys
server, name, qtype = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
q += struct.pack('!HH', qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(q, (server, 53))
r = s.recv(4096)
count = struct.unpack('!H', r[6:8])[0]
at = len(q)
for _ in range(count):
    rtype, _, _, rdlen = struct.unpack('!HHIH', r[at + 2:at + 12])
    data = r[at + 12:at + 12 + rdlen]
    fam = socket.AF_INET if rtype == 1 else socket.AF_INET6
    print(socket.inet_ntop(fam, data))
    at += 12 + rdlen
"#;

#[test]
fn names_on_dual_stack_networks_have_aaaa_answers() {
    let tb = Testbed::new();
    create_net(
        &tb,
        &[
            "app",
            "--ipv6",
            "--subnet",
            "10.78.0.0/24",
            "--subnet",
            "fd00:91::/64",
        ],
    );
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "app"]);
    let ask = |ty: &str| {
        in_ns_ok(
            &c1,
            &["/usr/bin/python3", "-c", DNS_QUERY, "10.78.0.1", &c2, ty],
        )
        .trim()
        .to_owned()
    };
    assert_eq!(ask("1"), "10.78.0.3");
    assert_eq!(ask("28"), "fd00:91::3");
    let hosts = std::fs::read_to_string(tb.inspect(&c2)["hosts_path"].as_str().unwrap()).unwrap();
    assert!(hosts.contains("fd00:91::3"), "{hosts}");
}

#[test]
fn no_ip6tables_rules_and_the_v6_map_dumps_with_field_names() {
    let tb = Testbed::new();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:92::/64"]);
    let _c1 = tb.add_with("c1", &["--network", "app"]);
    for cmd in [&["ip6tables-save"][..], &["nft", "list", "ruleset"][..]] {
        let out = in_ns(&tb.host(), cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        let rules: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A") || l.trim_start().starts_with("chain"))
            .collect();
        assert!(rules.is_empty(), "{cmd:?} shows rules: {text}");
    }
    let dump = bpftool_dump(&tb.bpffs().join("NETD_VETHS"));
    assert!(dump.contains("\"ip6\""), "{dump}");
    assert!(dump.contains("\"network_id\""), "{dump}");
}

/// A TCP server on [::]:`port` in `ns` answering with the peer's address
/// and port.
fn who_port_server6(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("whoport6-{port}.log"));
    Bg::server(
        ns,
        &[
            "socat",
            "-t5",
            &listen,
            "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT",
        ],
        &log,
        "tcp",
        port,
    )
}

#[test]
fn v6_flows_to_the_outside_are_masqueraded() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:93::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "app"]);
    let snat = tb.counter("snat");

    // TCP: the server outside sees the host's address, never the ULA one.
    let _who = who_server6(&tb, &tb.ext(), 7300);
    assert_eq!(ask6(&c1, "2001:2::2", 7300), "2001:2::1");
    assert_eq!(ask6(&c2, "2001:2::2", 7300), "2001:2::1");
    // ICMPv6 echo.
    ping6(&c1, "2001:2::2");
    // UDP.
    let log = tb.tmp().join("udp6.log");
    let _udp = Bg::server(
        &tb.ext(),
        &[
            "socat",
            "UDP6-RECVFROM:7302,fork",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
        &log,
        "udp",
        7302,
    );
    let got = udp_exchange(&c1, "2001:2::2", 7302, "hi");
    let got = got.trim().trim_start_matches('[').trim_end_matches(']');
    assert_eq!(
        got.parse::<std::net::Ipv6Addr>().ok(),
        "2001:2::1".parse().ok(),
        "{got}"
    );
    assert!(
        tb.counter("snat") > snat,
        "the eBPF MASQUERADE counted nothing"
    );

    // Two containers with the same source port to the same server: both
    // answered, from distinct ports of the host.
    let _ports = who_port_server6(&tb, &tb.ext(), 7301);
    let from = |ns: &str| {
        let target = "TCP6:[2001:2::2]:7301,sourceport=40000,reuseaddr";
        let out = in_ns_ok(ns, &["socat", "-t5", "-T5", "-", target]);
        let mut it = out.split_whitespace();
        let addr = it.next().unwrap_or_default().to_owned();
        let port = it.next().unwrap_or_default().to_owned();
        (addr, port)
    };
    let (a1, p1) = from(&c1);
    let (a2, p2) = from(&c2);
    let host: std::net::Ipv6Addr = "2001:2::1".parse().unwrap();
    for a in [&a1, &a2] {
        let a = a.trim_start_matches('[').trim_end_matches(']');
        assert_eq!(a.parse::<std::net::Ipv6Addr>().ok(), Some(host), "{a}");
    }
    assert_eq!(p1, "40000", "the first flow keeps its port");
    assert_ne!(p1, p2, "both flows got the same host port");

    // The flows go with their containers (NETD_CT6, dumped with its field
    // names).
    let ct6 = tb.bpffs().join("NETD_CT6");
    assert!(
        bpftool_dump(&ct6).contains("\"nat_src_ip\""),
        "no v6 flow tracked"
    );
    tb.rm(&c1);
    tb.rm(&c2);
    let left = bpftool_dump(&ct6);
    assert!(
        !left.contains("\"nat_src_ip\""),
        "flows outlived their containers: {left}"
    );

    // Still no IPv6 routing by the stack.
    let fwd = in_ns_ok(
        &tb.host(),
        &["sysctl", "-n", "net.ipv6.conf.all.forwarding"],
    );
    assert_eq!(fwd.trim(), "0");
}

#[test]
fn published_ports_answer_on_the_hosts_v6_address_with_the_client_kept() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:94::/64"]);
    let web = tb.add_with(
        "web",
        &[
            "--network",
            "app",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "9000-9001:7000-7001",
        ],
    );
    // HTTP on [::]:80 in the container.
    let _http = http6_server(&tb, &web, "web6");
    let dnat = tb.counter("dnat");
    let body = in_ns_ok(
        &tb.ext(),
        &[
            "curl",
            "-6",
            "-sS",
            "--max-time",
            "5",
            "http://[2001:2::1]:8080/id.txt",
        ],
    );
    assert_eq!(body, format!("web6 {}\n", tb.p));
    assert!(tb.counter("dnat") > dnat, "the eBPF DNAT counted nothing");
    // The container saw the client's own address.
    let who = who_server6(&tb, &web, 7000);
    let _who2 = who_server6(&tb, &web, 7001);
    assert_eq!(ask6(&tb.ext(), "2001:2::1", 9000), "2001:2::2");
    assert_eq!(ask6(&tb.ext(), "2001:2::1", 9001), "2001:2::2");
    drop(who);
    // UDP.
    let _udp = Bg::server(
        &web,
        &[
            "socat",
            "UDP6-RECVFROM:53,fork",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
        &tb.tmp().join("udp6-web.log"),
        "udp",
        53,
    );
    let got = udp_exchange(&tb.ext(), "2001:2::1", 5353, "hi");
    let got = got.trim().trim_start_matches('[').trim_end_matches(']');
    assert_eq!(
        got.parse::<std::net::Ipv6Addr>().ok(),
        "2001:2::2".parse().ok(),
        "{got}"
    );
    // The same -p publishes the IPv4 side as before.
    let v4 = in_ns_ok(
        &tb.ext(),
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://198.18.0.1:8080/id.txt",
        ],
    );
    assert_eq!(v4, format!("web6 {}\n", tb.p));
    // An unpublished port of the container's IPv6 address is not reachable
    // from outside, even routed to it.
    in_ns_ok(
        &tb.ext(),
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:94::/64",
            "via",
            "2001:2::1",
        ],
    );
    let unpublished = tb.counter("drop_unpublished");
    let out = in_ns(
        &tb.ext(),
        &[
            "curl",
            "-6",
            "-sS",
            "--max-time",
            "2",
            "http://[fd00:94::2]:80/id.txt",
        ],
    );
    assert!(!out.status.success(), "reached an unpublished port");
    assert!(tb.counter("drop_unpublished") > unpublished);
    // Removing the container removes the IPv6 mapping too.
    tb.rm(&web);
    let dump = bpftool_dump(&tb.bpffs().join("NETD_PORTMAPS6"));
    assert!(!dump.contains("container_ip"), "{dump}");
}

/// Behind ext, a router: `<p>-far` (2001:2:1::2) reached through ext
/// (2001:2:1::1) over a link whose ext side has an MTU of 1280, while far
/// itself has 1500 (it announces a 1440-byte MSS, so only Packet Too Big
/// from ext can tell a sender to send less).
fn far_behind_a_small_mtu(tb: &Testbed) -> String {
    let (ext, far) = (tb.ext(), format!("{}-far", tb.p));
    // From the root namespace: `ip netns exec` would hide the new one.
    for args in [
        vec!["netns", "add", &far],
        vec![
            "-n", &ext, "link", "add", "ext1", "type", "veth", "peer", "name", "far0", "netns",
            &far,
        ],
    ] {
        let out = std::process::Command::new("ip")
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    in_ns_ok(&ext, &["ip", "link", "set", "ext1", "mtu", "1280", "up"]);
    in_ns_ok(
        &ext,
        &[
            "ip",
            "addr",
            "add",
            "2001:2:1::1/64",
            "dev",
            "ext1",
            "nodad",
        ],
    );
    in_ns_ok(&ext, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    in_ns_ok(&far, &["ip", "link", "set", "lo", "up"]);
    in_ns_ok(&far, &["ip", "link", "set", "far0", "up"]);
    in_ns_ok(
        &far,
        &[
            "ip",
            "addr",
            "add",
            "2001:2:1::2/64",
            "dev",
            "far0",
            "nodad",
        ],
    );
    in_ns_ok(
        &far,
        &["ip", "-6", "route", "add", "default", "via", "2001:2:1::1"],
    );
    far
}

#[test]
fn packet_too_big_reaches_the_container_and_the_transfer_completes() {
    let tb = Testbed::new();
    tb.uplink6();
    let far = far_behind_a_small_mtu(&tb);
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:95::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    // A sink that answers with the number of bytes it got.
    let _sink = Bg::server(
        &far,
        &[
            "socat",
            "-t10",
            "TCP6-LISTEN:7400,reuseaddr",
            "SYSTEM:wc -c",
        ],
        &tb.tmp().join("sink.log"),
        "tcp",
        7400,
    );
    let errors = tb.counter("reverse_nat");
    let got = in_ns_ok(
        &c1,
        &[
            "timeout",
            "20",
            "sh",
            "-c",
            "head -c 300000 /dev/zero | socat -t10 -T15 - TCP6:[2001:2:1::2]:7400",
        ],
    );
    assert_eq!(got.trim(), "300000", "the transfer did not complete");
    // The container learnt the path MTU from the translated Packet Too Big.
    let route = in_ns_ok(&c1, &["ip", "-6", "route", "get", "2001:2:1::2"]);
    assert!(route.contains("mtu 1280"), "{route}");
    let ptb = snmp6(&c1, "Icmp6InPktTooBigs");
    assert!(ptb >= 1, "no Packet Too Big arrived in the container");
    assert!(tb.counter("reverse_nat") > errors);
}

#[test]
fn containers_reach_published_ports_on_host_v6_addresses_hairpin() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:96::/64"]);
    create_net(&tb, &["other", "--ipv6", "--subnet", "fd00:97::/64"]);
    let web = tb.add_with("web", &["--network", "app", "-p", "8081:80"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "other"]);
    let _who = who_server6(&tb, &web, 80);
    let dnat = tb.counter("dnat");
    // Through the uplink's address and the gateway's: the target sees the
    // client container's own address, on its network and from another.
    assert_eq!(ask6(&c1, "2001:2::1", 8081), ip6_of(&tb, &c1));
    assert_eq!(ask6(&c1, "fd00:96::1", 8081), ip6_of(&tb, &c1));
    assert_eq!(ask6(&c2, "2001:2::1", 8081), ip6_of(&tb, &c2));
    assert!(
        tb.counter("dnat") >= dnat + 3,
        "the hairpins were not eBPF's"
    );
}

#[test]
fn host_processes_reach_published_ports_over_v6_through_the_socket_hooks() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:98::/64"]);
    let web = tb.add_with("web", &["--network", "app", "-p", "8082:80"]);
    let _who = who_server6(&tb, &web, 80);
    let dnat = tb.counter("dnat");
    // ::1 and the host's own IPv6 address: the socket goes straight to the
    // container (no packet is translated), which sees the host's address
    // on the bridge.
    assert_eq!(ask6(&tb.host(), "::1", 8082), "fd00:98::1");
    assert_eq!(ask6(&tb.host(), "2001:2::1", 8082), "fd00:98::1");
    assert_eq!(tb.counter("dnat"), dnat, "host-local went through tc DNAT");
    // getpeername() shows the address the application asked for.
    let peer = in_ns_ok(
        &tb.host(),
        &[
            "/usr/bin/python3",
            "-c",
            "import socket; s = socket.create_connection(('::1', 8082), timeout=5); print(s.getpeername()[0], s.getpeername()[1])",
        ],
    );
    assert_eq!(peer.trim(), "::1 8082");
}

/// A UDP echo server on [::]:PORT that logs each datagram's size and
/// sender: `PORT`.
const UDP_ECHO6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('::', int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(65535)
    print(len(data), peer[0], flush=True)
    s.sendto(data, peer)
"#;

/// Sends SIZE bytes to [DST]:PORT over UDP, with a Destination Options
/// header (PadN) when MODE is "ext", and prints the size of the answer
/// and its sender (up to 3 tries): `MODE DST PORT SIZE`.
const UDP_ASK6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
if sys.argv[1] == 'ext':
    s.setsockopt(socket.IPPROTO_IPV6, 59, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.settimeout(2)
for _ in range(3):
    s.sendto(b'x' * int(sys.argv[4]), (sys.argv[2], int(sys.argv[3])))
    try:
        data, peer = s.recvfrom(65535)
        print(len(data), peer[0])
        break
    except socket.timeout:
        pass
"#;

/// Sends a later fragment (offset 1000, UDP) of a datagram whose first
/// fragment is never sent, through a raw socket: `DST`.
const ORPHAN_FRAGMENT6: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 44)
for _ in range(3):
    s.sendto(struct.pack('!BBHI', 17, 0, 1000 & 0xfff8, 0x6e657464) + b'x' * 64, (sys.argv[1], 0))
"#;

/// Sends a UDP datagram of 40 + N bytes behind N Destination Options
/// headers, through a raw socket (the checksum computed here): `SRC DST
/// PORT N`. With [`with_packet_helpers`] (`csum`; UDP sends a zero sum as
/// 0xffff).
const UDP_BEHIND_N_OPTIONS: &str = r#"
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = b'x' * (40 + n)
length = 8 + len(data)
pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
pseudo += struct.pack('!I3xB', length, 17)
sport = 41000 + n
check = csum(pseudo + struct.pack('!HHHH', sport, port, length, 0) + data) or 0xffff
udp = struct.pack('!HHHH', sport, port, length, check) + data
opts = b''.join(bytes([17 if i == n - 1 else 60, 0, 1, 4, 0, 0, 0, 0]) for i in range(n))
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 60)
for _ in range(3):
    s.sendto(opts + udp, (dst, 0))
"#;

/// `UDP_ASK6` from `ns`: (size, sender) of the answer, if one came.
fn udp_ask6(ns: &str, mode: &str, dst: &str, port: u16, size: usize) -> Option<(usize, String)> {
    let (port, size) = (port.to_string(), size.to_string());
    let out = in_ns_ok(
        ns,
        &["/usr/bin/python3", "-c", UDP_ASK6, mode, dst, &port, &size],
    );
    let mut it = out.split_whitespace();
    let len = it.next()?.parse().ok()?;
    Some((len, short(it.next()?)))
}

fn udp_echo6(tb: &Testbed, ns: &str, port: u16) -> (Bg, std::path::PathBuf) {
    let log = tb.tmp().join(format!("echo6-{ns}-{port}.log"));
    let port_s = port.to_string();
    let bg = Bg::server(
        ns,
        &["/usr/bin/python3", "-u", "-c", UDP_ECHO6, &port_s],
        &log,
        "udp",
        port,
    );
    (bg, log)
}

#[test]
fn v6_extension_headers_and_fragments_are_translated_and_never_leak() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:99::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app", "-p", "5353:53/udp"]);
    let ext = tb.ext();
    let (_far, far_log) = udp_echo6(&tb, &ext, 7500);
    let (_near, near_log) = udp_echo6(&tb, &c1, 53);
    let dump = tb.tmp().join("tcpdump6.log");
    let wire = Bg::spawn(&ext, &["tcpdump", "-l", "-n", "-i", "ext0", "ip6"], &dump);
    wait_until("tcpdump to listen", WAIT, || {
        std::fs::read_to_string(&dump)
            .unwrap_or_default()
            .contains("listening")
    });
    let host = "2001:2::1".to_owned();
    let (snat, dnat) = (tb.counter("snat"), tb.counter("dnat"));

    // Out, with a Destination Options header: masqueraded (the transport
    // header found behind it), answered, the answer translated back.
    assert_eq!(
        udp_ask6(&c1, "ext", "2001:2::2", 7500, 100),
        Some((100, "2001:2::2".to_owned()))
    );
    // In, to a published port, with the same header.
    assert_eq!(
        udp_ask6(&ext, "ext", "2001:2::1", 5353, 100),
        Some((100, host.clone()))
    );
    // Fragmented both ways (3000 bytes over 1500-byte links: the senders'
    // stacks fragment, and so does the answerer's): every fragment gets
    // the first one's translation and the datagram arrives whole.
    assert_eq!(
        udp_ask6(&c1, "plain", "2001:2::2", 7500, 3000),
        Some((3000, "2001:2::2".to_owned()))
    );
    assert_eq!(
        udp_ask6(&ext, "plain", "2001:2::1", 5353, 3000),
        Some((3000, host.clone()))
    );
    assert!(tb.counter("snat") > snat, "not masqueraded by eBPF");
    assert!(tb.counter("dnat") > dnat, "not DNAT-ed by eBPF");
    let far = std::fs::read_to_string(&far_log).unwrap_or_default();
    assert!(far.contains(&format!("3000 {host}")), "{far}");
    assert!(far.contains(&format!("100 {host}")), "{far}");
    let near = std::fs::read_to_string(&near_log).unwrap_or_default();
    assert!(near.contains("3000 2001:2::2"), "the container saw: {near}");
    assert!(near.contains("100 2001:2::2"), "the container saw: {near}");
    // The walk's bound: behind 4 options headers, translated; behind 5,
    // passed to the stack untranslated and counted.
    let (unparsed, dnat) = (tb.counter("pass_unparsed"), tb.counter("dnat"));
    let behind_options = with_packet_helpers(UDP_BEHIND_N_OPTIONS);
    for n in ["4", "5"] {
        in_ns_ok(
            &ext,
            &[
                "/usr/bin/python3",
                "-c",
                &behind_options,
                "2001:2::2",
                "2001:2::1",
                "5353",
                n,
            ],
        );
    }
    wait_until("the datagram behind 4 headers to arrive", WAIT, || {
        std::fs::read_to_string(&near_log)
            .unwrap_or_default()
            .contains("44 2001:2::2")
    });
    assert!(tb.counter("dnat") > dnat);
    assert!(
        tb.counter("pass_unparsed") >= unparsed + 3,
        "5 headers were not counted"
    );
    let near = std::fs::read_to_string(&near_log).unwrap_or_default();
    assert!(!near.contains("45 "), "translated behind 5 headers: {near}");
    // A later fragment whose first never passed (no ports to translate
    // it by): dropped and counted, not sent out with the ULA source.
    let untranslatable = tb.counter("drop_untranslatable");
    in_ns_ok(
        &c1,
        &["/usr/bin/python3", "-c", ORPHAN_FRAGMENT6, "2001:2::2"],
    );
    assert!(
        tb.counter("drop_untranslatable") > untranslatable,
        "an orphan fragment was not counted"
    );
    wait_until("tcpdump to see the fragments", WAIT, || {
        std::fs::read_to_string(&dump)
            .unwrap_or_default()
            .contains("frag")
    });
    drop(wire);
    let seen = std::fs::read_to_string(&dump).unwrap_or_default();
    assert!(
        !seen.contains("fd00:99"),
        "a ULA source left the host: {seen}"
    );
}

// ---------------------------------------------------------------------------
// Connection tracking of IPv6 flows, as of IPv4 ones (tracking.rs,
// conntrack.rs, datapath.rs): listed, expired, closed, kept through a
// flood and a kill -9, gone with their container; ICMPv6 errors from a
// container translated.

/// `IFACE DMAC SMAC DST DPORT N`: N TCP SYNs to [DST]:DPORT from spoofed
/// sources in 2001:2:0:ff::/64 (inside the testbed's range), each a new
/// flow, each sent twice (a second look makes an LRU entry "recently
/// used"), as Ethernet frames.
const SYN_FLOOD6: &str = r#"
iface, dmac, smac, dst, dport, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
eth = bytes.fromhex(dmac.replace(':', '')) + bytes.fromhex(smac.replace(':', '')) + b'\x86\xdd'
dst = socket.inet_pton(socket.AF_INET6, dst)
base = socket.inet_pton(socket.AF_INET6, '2001:2:0:ff::')[:12]
for i in range(n):
    src = base + struct.pack('!I', i + 1)
    tcp = struct.pack('!HHIIBBHHH', 1024, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
    c = csum(src + dst + struct.pack('!IxxxB', len(tcp), 6) + tcp)
    tcp = tcp[:16] + struct.pack('!H', c) + tcp[18:]
    frame = eth + struct.pack('!IHBB', 0x60000000, len(tcp), 6, 64) + src + dst + tcp
    s.send(frame)
    s.send(frame)
"#;

/// `HOST PORT`: one UDP datagram to [HOST]:PORT from a connected socket;
/// prints what came of it: "answer", "refused" (an ICMPv6 port
/// unreachable matched the socket) or "timeout".
const UDP_REFUSED6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b'anyone?')
try:
    s.recv(100)
    print('answer')
except ConnectionRefusedError:
    print('refused')
except socket.timeout:
    print('timeout')
"#;

/// `ping` to [2001:2::1]:5353 from [2001:2::2]:45100, sent again (bounded)
/// while no answer comes (the echo forks a shell per datagram); prints the
/// answer.
const UDP_FROM_45100: &str = r#"
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('2001:2::2', 45100))
s.settimeout(2)
for _ in range(3):
    s.sendto(b'ping', ('2001:2::1', 5353))
    try:
        print(s.recv(100).decode())
        break
    except socket.timeout:
        pass
"#;

/// A [`TcpClient`] from [2001:2::2]:SPORT (ext) to the host's published
/// `port` on 2001:2::1.
fn client6(tb: &Testbed, port: u16, sport: u16, how: &str) -> TcpClient {
    TcpClient::start(
        tb,
        &tb.ext(),
        ("2001:2::1", port),
        ("2001:2::2", sport),
        how,
    )
}

fn echo_server6(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("echo6-{port}.log"));
    Bg::server(ns, &["socat", &listen, "EXEC:cat"], &log, "tcp", port)
}

/// A dual-stack network (fd00:95::/64) with `web` publishing 8091 (TCP)
/// and 5353/udp (to 53), and the uplink's IPv6 addresses.
fn published_web(tb: &Testbed) -> String {
    tb.uplink6();
    create_net(tb, &["app", "--ipv6", "--subnet", "fd00:95::/64"]);
    tb.add_with(
        "web",
        &["--network", "app", "-p", "8091:80", "-p", "5353:53/udp"],
    )
}

/// The IPv6 flow whose original tuple is [2001:2::2]:SPORT -> [2001:2::1]:PORT.
fn flow6(tb: &Testbed, sport: u16, port: u16) -> Option<Value> {
    let (src, dst) = (
        format!("[2001:2::2]:{sport}"),
        format!("[2001:2::1]:{port}"),
    );
    tb.conntrack()
        .into_iter()
        .find(|f| f["original"]["src"] == src.as_str() && f["original"]["dst"] == dst.as_str())
}

fn state6(tb: &Testbed, sport: u16, port: u16) -> String {
    let flow = flow6(tb, sport, port);
    let state = flow.as_ref().and_then(|f| f["state"].as_str());
    state.unwrap_or("none").to_owned()
}

#[test]
fn v6_flows_are_listed_expire_and_go_with_their_container() {
    let tb = Testbed::with_daemon_args(&["--ct-gc-interval", "1", "--ct-udp-timeout", "2"]);
    let web = published_web(&tb);
    let web_ip6 = ip6_of(&tb, &web);
    let _udp = Bg::server(
        &web,
        &["socat", "UDP6-RECVFROM:53,fork", "SYSTEM:echo pong"],
        &tb.tmp().join("udp6-53.log"),
        "udp",
        53,
    );
    // From a fixed port, to find the flow.
    let got = in_ns_ok(&tb.ext(), &["python3", "-c", UDP_FROM_45100]);
    assert_eq!(got.trim(), "pong");
    // Listed, with IPv6 addresses, by container and by port too.
    let flow = flow6(&tb, 45100, 5353).expect("the v6 UDP flow is listed");
    assert_eq!(flow["family"], "ipv6", "{flow}");
    assert_eq!(flow["kind"], "dnat", "{flow}");
    assert_eq!(flow["state"], "REPLIED", "{flow}");
    assert_eq!(
        flow["translated"]["dst"],
        format!("[{web_ip6}]:53").as_str(),
        "{flow}"
    );
    let by_container = tb.netd_json(&["conntrack", "ls", "--container", &web]);
    assert!(
        by_container.to_string().contains("[2001:2::2]:45100"),
        "{by_container}"
    );
    let by_port = tb.netd_json(&["conntrack", "ls", "--port", "45100"]);
    assert_eq!(by_port.as_array().map(Vec::len), Some(1), "{by_port}");
    let table = tb.netd_ok(&["conntrack", "ls", "--port", "45100"]);
    assert!(table.contains("[2001:2::2]:45100"), "{table}");
    // Counted in status, against the IPv6 tables' size.
    wait_until("the GC to count the v6 entries", WAIT, || {
        let status = tb.netd_json(&["status"]);
        status["conntrack"]["ipv6"]["entries"].as_u64() >= Some(2)
    });
    let status = tb.netd_json(&["status"]);
    assert_eq!(status["conntrack"]["ipv6"]["max_flows"], 131072, "{status}");
    assert_eq!(
        status["conntrack"]["ipv6"]["max_entries"], 524288,
        "{status}"
    );
    // Idle, it expires by the UDP timeout.
    wait_until("the idle v6 UDP flow to expire", WAIT, || {
        flow6(&tb, 45100, 5353).is_none()
    });
    // A live TCP flow goes with its container.
    let _echo = echo_server6(&tb, &web, 80);
    let _client = client6(&tb, 8091, 45101, "fin");
    assert_eq!(state6(&tb, 45101, 8091), "ESTABLISHED");
    tb.rm(&web);
    let left = tb.conntrack();
    assert!(
        flow6(&tb, 45101, 8091).is_none(),
        "a flow outlived its container: {left:?}"
    );
}

#[test]
fn v6_tcp_close_moves_the_flow_to_closing_and_it_expires() {
    let tb = Testbed::with_daemon_args(&["--ct-gc-interval", "1", "--ct-tcp-closing-timeout", "3"]);
    let web = published_web(&tb);
    let _echo = echo_server6(&tb, &web, 80);
    // FIN both ways, then an RST.
    for (sport, how) in [(45110, "fin"), (45111, "rst")] {
        let client = client6(&tb, 8091, sport, how);
        assert_eq!(state6(&tb, sport, 8091), "ESTABLISHED", "{how}");
        client.finish();
        wait_until("the closed flow to be CLOSING", WAIT, || {
            state6(&tb, sport, 8091) == "CLOSING"
        });
        wait_until("the closed flow to expire", WAIT, || {
            state6(&tb, sport, 8091) == "none"
        });
    }
    // The same tuple again is a new, working connection.
    client6(&tb, 8091, 45111, "fin").finish();
}

#[test]
fn v6_established_flows_survive_a_flood_that_fills_the_table() {
    // A small IPv6 table (2048 entries a tier), so the flood overflows it
    // many times: an LRU alone would evict the idle live flow.
    let tb = Testbed::with_daemon_args(&["--ct6-max", "1024"]);
    let web = published_web(&tb);
    let _echo = echo_server6(&tb, &web, 80);
    let live = client6(&tb, 8091, 45120, "fin");
    let dnat = tb.counter("dnat");
    let ext = tb.ext();
    let (dmac, smac) = (mac_of(&tb.host(), "uplink0"), mac_of(&ext, "ext0"));
    let flood = with_packet_helpers(SYN_FLOOD6);
    in_ns_ok(
        &ext,
        &[
            "python3",
            "-c",
            &flood,
            "ext0",
            &dmac,
            &smac,
            "2001:2::1",
            "8091",
            "20000",
        ],
    );
    wait_until("the flood to be DNAT-ed", WAIT, || {
        tb.counter("dnat") >= dnat + 19_000
    });
    // Only the live flow is assured (its originator spoke after an answer).
    let assured = bpftool_dump(&tb.bpffs().join("NETD_CT6_ASSURED"));
    live.finish();
    assert_eq!(
        assured.matches("\"key\"").count(),
        2,
        "assured entries:\n{assured}"
    );
    // And a new connection gets in.
    client6(&tb, 8091, 45121, "fin").finish();
}

#[test]
fn v6_flows_keep_working_across_kill9() {
    let mut tb = Testbed::new();
    let web = published_web(&tb);
    let _echo = echo_server6(&tb, &web, 80);
    let client = client6(&tb, 8091, 45130, "fin");
    tb.kill9();
    // No daemon: the pinned programs and tables carry the flow on.
    client.finish();
    tb.restart();
    let flows = tb.conntrack();
    assert!(
        flow6(&tb, 45130, 8091).is_some(),
        "the v6 flow is gone after restart: {flows:?}"
    );
    client6(&tb, 8091, 45131, "fin").finish();
}

#[test]
fn a_containers_icmpv6_errors_reach_the_peer_translated() {
    let tb = Testbed::new();
    let web = published_web(&tb);
    // Nothing listens on the container's UDP 53: its kernel answers port
    // unreachable, which must reach the client as the host's, about what
    // the client sent (the connected socket gets ECONNREFUSED).
    let reverse = tb.counter("reverse_nat");
    let got = in_ns_ok(
        &tb.ext(),
        &["python3", "-c", UDP_REFUSED6, "2001:2::1", "5353"],
    );
    assert_eq!(got.trim(), "refused");
    assert!(tb.counter("reverse_nat") > reverse);
    // Forwarded one hop on, as any packet: the container's kernel sends it
    // with hop limit 64, the host routes it.
    let hops = in_ns_ok(
        &tb.ext(),
        &["python3", "-c", ERROR_HOPS, "2001:2::1", "5353"],
    );
    assert_eq!(
        hops.trim(),
        "63",
        "hop limit of the container's error at ext"
    );
    // A datagram from the published port without a flow (an answer whose
    // flow expired) does not leave with the container's port.
    let invalid = tb.counter("drop_invalid");
    let late = "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); \
                s.bind(('::', 53)); s.sendto(b'late answer', ('2001:2::2', 45140))";
    let log = tb.tmp().join("late6.log");
    let mut listener = Bg::server(
        &tb.ext(),
        &["socat", "-u", "UDP6-RECV:45140", "STDOUT"],
        &log,
        "udp",
        45140,
    );
    in_ns_ok(&web, &["python3", "-c", late]);
    wait_until("the orphan answer to be dropped", WAIT, || {
        tb.counter("drop_invalid") > invalid
    });
    assert!(listener.try_wait().is_none());
    assert!(!listener.log().contains("late"), "{}", listener.log());
    // Nor as a hairpin, to a published port on a host address.
    let invalid = tb.counter("drop_invalid");
    let hairpin = "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); \
                   s.bind(('::', 53)); s.sendto(b'late answer', ('2001:2::1', 5353))";
    in_ns_ok(&web, &["python3", "-c", hairpin]);
    wait_until("the orphan hairpin to be dropped", WAIT, || {
        tb.counter("drop_invalid") > invalid
    });
}

/// A UDP server on [::]:argv[1] answering each datagram with the hop
/// limit it arrived with.
const HOPS_ECHO6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.bind(('::', int(sys.argv[1])))
while True:
    _, anc, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(4))
    hops = [int.from_bytes(d[:4], sys.byteorder) for _, t, d in anc if t == socket.IPV6_HOPLIMIT]
    s.sendto(str(hops[0]).encode(), peer)
"#;

/// From [::]:argv[3], one datagram to [argv[1]]:argv[2] per hop limit in
/// argv[4:], each printed as "<sent> <arrived with> <answer's hop limit>"
/// ("-" for no answer; sent again, bounded, unless the hop limit is 1).
const HOPS_ASK6: &str = r#"
import socket, sys
dst, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.bind(('::', sport))
s.settimeout(1)
for hops in map(int, sys.argv[4:]):
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
    got = '- -'
    for _ in range(1 if hops == 1 else 3):
        s.sendto(b'hops?', (dst, port))
        try:
            data, anc, _, _ = s.recvmsg(64, socket.CMSG_SPACE(4))
        except socket.timeout:
            continue
        back = [int.from_bytes(d[:4], sys.byteorder) for _, t, d in anc if t == socket.IPV6_HOPLIMIT]
        got = '%s %d' % (data.decode(), back[0])
        break
    print(hops, got, flush=True)
"#;

/// Sends a datagram from [::]:argv[3] with hop limit 1 to [argv[1]]:argv[2]
/// and prints the time exceeded answer: its source, the quoted
/// destination and port, and whether the quoted source port is ours.
const HOPS_PROBE6: &str = r#"
import socket, struct, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
r.settimeout(5)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
u.bind(('::', sport))
u.sendto(b'probe', (host, port))
while True:
    data, peer = r.recvfrom(2000)
    if data[0] != 3:
        continue
    inner = data[8:]
    isport, idport = struct.unpack('!HH', inner[40:44])
    print(peer[0], socket.inet_ntop(socket.AF_INET6, inner[24:40]), idport, isport == sport)
    break
"#;

#[test]
fn v6_flows_are_forwarded_one_hop_on_and_expiring_packets_get_time_exceeded() {
    let tb = Testbed::new();
    let web = published_web(&tb);
    let _echo = Bg::server(
        &web,
        &["/usr/bin/python3", "-u", "-c", HOPS_ECHO6, "53"],
        &tb.tmp().join("hops6.log"),
        "udp",
        53,
    );
    // The first datagram makes the flow, the next ones are tracked: each
    // reaches the container one hop on, and so does each answer (sent
    // with the default 64) at ext. A tracked packet that would expire
    // is dropped and counted, and the flow goes on.
    let expired = tb.counter("drop_ttl");
    let got = in_ns_ok(
        &tb.ext(),
        &[
            "python3",
            "-c",
            HOPS_ASK6,
            "2001:2::1",
            "5353",
            "45200",
            "10",
            "10",
            "1",
            "10",
        ],
    );
    assert_eq!(got, "10 9 63\n10 9 63\n1 - -\n10 9 63\n");
    assert!(
        tb.counter("drop_ttl") > expired,
        "the expiring datagram was not counted"
    );
    // The host answers time exceeded, as a router does, quoting the packet
    // as it was sent (before DNAT): for the tracked flow's packet, and for
    // one that would have made a new flow (none made).
    for sport in ["45200", "45201"] {
        let answer = in_ns_ok(
            &tb.ext(),
            &["python3", "-c", HOPS_PROBE6, "2001:2::1", "5353", sport],
        );
        assert_eq!(
            answer.trim(),
            "2001:2::1 2001:2::1 5353 True",
            "from port {sport}"
        );
    }
    assert!(
        flow6(&tb, 45201, 5353).is_none(),
        "an expired packet made a flow"
    );
    // From the container, out: a tracked flow's packet and one that would
    // make a new flow get time exceeded from the network's gateway
    // (traceroute from a container shows the host), quoting what the
    // container sent; the expiring one makes no flow.
    let _ext_echo = Bg::server(
        &tb.ext(),
        &["/usr/bin/python3", "-u", "-c", HOPS_ECHO6, "7053"],
        &tb.tmp().join("hops6-ext.log"),
        "udp",
        7053,
    );
    let got = in_ns_ok(
        &web,
        &[
            "python3",
            "-c",
            HOPS_ASK6,
            "2001:2::2",
            "7053",
            "45300",
            "10",
        ],
    );
    assert_eq!(got, "10 9 63\n");
    for sport in ["45300", "45301"] {
        let answer = in_ns_ok(
            &web,
            &["python3", "-c", HOPS_PROBE6, "2001:2::2", "7053", sport],
        );
        assert_eq!(
            answer.trim(),
            "fd00:95::1 2001:2::2 7053 True",
            "from port {sport}"
        );
    }
    let made = tb.conntrack().into_iter().any(|f| {
        f["original"]["src"]
            .as_str()
            .is_some_and(|s| s.ends_with("]:45301"))
    });
    assert!(!made, "an expiring packet from the container made a flow");
}

#[test]
fn ct6_max_sizes_the_v6_tables_and_bad_values_are_refused() {
    let mut tb = Testbed::with_daemon_args(&["--ct6-max", "1024"]);
    for table in ["NETD_CT6", "NETD_CT6_ASSURED"] {
        let shown = bpftool(&[
            "map",
            "show",
            "pinned",
            &tb.bpffs().join(table).to_string_lossy(),
        ]);
        assert!(shown.contains("max_entries 2048"), "{table}: {shown}");
    }
    let status = tb.netd_json(&["status"]);
    assert_eq!(status["conntrack"]["ipv6"]["max_flows"], 1024, "{status}");
    tb.stop();
    tb.set_daemon_args(&["--ct6-max", "4096"]);
    assert!(!tb.start_fails().success());
    let log = tb.log();
    assert!(
        log.contains("holds 1024 flows but --ct6-max asks for 4096") && log.contains("netd down"),
        "the refusal must say what to do:\n{log}"
    );
    tb.set_daemon_args(&["--ct6-max", "1024"]);
    tb.start();
    // Without the flag, a restart keeps the pinned size (an upgrade from a
    // version with another default included).
    tb.stop();
    tb.set_daemon_args(&[]);
    tb.start();
    let status = tb.netd_json(&["status"]);
    assert_eq!(status["conntrack"]["ipv6"]["max_flows"], 1024, "{status}");
    for bad in ["10", "0", "many", "99999999"] {
        let err = tb.netd_err(&["daemon", "--ct6-max", bad]);
        assert!(err.contains("--ct6-max"), "{bad}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{bad}: {err}"
        );
    }
}

/// `CLIENT CPORT TARGET TPORT`: an ICMPv6 port unreachable to CLIENT
/// about a UDP datagram CLIENT:CPORT -> TARGET:TPORT, from this
/// namespace's own address (the kernel fills in the checksum).
const FORGE_UNREACH6: &str = r#"
import socket, struct, sys
client, cport, target, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
udp = struct.pack('!HHHH', cport, tport, 16, 0) + b'anyone?!'
inner = (struct.pack('!IHBB', 0x60000000, len(udp), 17, 63) + socket.inet_pton(socket.AF_INET6, client)
         + socket.inet_pton(socket.AF_INET6, target) + udp)
for _ in range(3):
    s.sendto(struct.pack('!BBHI', 1, 4, 0, 0) + inner, (client, 0))
"#;

/// `HOST PORT BIND SPORT GO`: a connected UDP socket from [BIND]:SPORT that
/// gets an answer ("answered"; up to three tries: the echo server forks a
/// shell per datagram, slow on a loaded machine), then, once the file GO exists, waits 2 s
/// for anything more: "refused" if an ICMPv6 error reached it, else
/// "quiet".
const UDP_LISTEN6: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[3], int(sys.argv[4])))
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
for attempt in range(3):
    s.send(b'ping')
    try:
        s.recv(100)
        break
    except socket.timeout:
        print('lost', attempt, flush=True)
print('answered', flush=True)
deadline = time.time() + 30
while not os.path.exists(sys.argv[5]) and time.time() < deadline:
    time.sleep(0.05)
s.settimeout(2)
try:
    s.recv(100)
    print('more')
except ConnectionRefusedError:
    print('refused')
except socket.timeout:
    print('quiet')
"#;

#[test]
fn a_container_cannot_report_errors_about_another_containers_flows() {
    let tb = Testbed::new();
    let web = published_web(&tb);
    let other = tb.add_with("other", &["--network", "app"]);
    let _udp = Bg::server(
        &web,
        &["socat", "UDP6-RECVFROM:53,fork", "SYSTEM:echo pong"],
        &tb.tmp().join("udp6-53.log"),
        "udp",
        53,
    );
    let go = tb.tmp().join("go-forge");
    let go_arg = go.to_string_lossy().into_owned();
    let mut client = Bg::spawn(
        &tb.ext(),
        &[
            "python3",
            "-c",
            UDP_LISTEN6,
            "2001:2::1",
            "5353",
            "2001:2::2",
            "45150",
            &go_arg,
        ],
        &tb.tmp().join("udp-listen6.log"),
    );
    wait_until("the client's flow to be answered", WAIT, || {
        client.log().contains("answered")
    });
    // `other` claims web's flow hit a closed port: it never received that
    // packet, so its error is not translated and never reaches the client.
    let web_ip6 = ip6_of(&tb, &web);
    let from_container = tb.counter("from_container");
    in_ns_ok(
        &other,
        &[
            "python3",
            "-c",
            FORGE_UNREACH6,
            "2001:2::2",
            "45150",
            &web_ip6,
            "53",
        ],
    );
    assert!(tb.counter("from_container") >= from_container + 3);
    std::fs::write(&go, b"go").expect("write trigger");
    let out = client.wait_ok(WAIT);
    assert!(out.contains("quiet"), "a forged error got through: {out}");
}

/// An address's 16 bytes.
fn octets6(ip: &str) -> Vec<u8> {
    let ip: std::net::Ipv6Addr = ip.parse().expect("an IPv6 address");
    ip.octets().to_vec()
}

/// CLOCK_MONOTONIC in ns, the clock of the conntrack entries' last_seen_ns.
fn monotonic_ns() -> u64 {
    let out = std::process::Command::new("python3")
        .args(["-c", "import time; print(time.monotonic_ns())"])
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("monotonic_ns: {text:?}"))
}

/// One entry of `NETD_CT6` as netd dd4b0f4 (the previous release) wrote
/// it: a 40-byte `Ct6Key` and a 64-byte value (no TCP state), as
/// `bpftool map update` arguments. `(src, sport, dst, dport)` is the key,
/// `nat` the tuple it is rewritten to.
fn previous_ct6_entry(
    key: (&str, u16, &str, u16),
    nat: (&str, u16, &str, u16),
    direction: u8,
    packets: u64,
    now: u64,
) -> Vec<String> {
    let tuple = |(src, sport, dst, dport): (&str, u16, &str, u16)| {
        let mut b = octets6(src);
        b.extend(octets6(dst));
        b.extend(sport.to_be_bytes());
        b.extend(dport.to_be_bytes());
        b
    };
    let mut k = tuple(key);
    k.extend([6, 0, 0, 0]); // TCP, pad
    let mut v = tuple(nat);
    v.extend([2, direction, 0, 0]); // ct_kind::SNAT, direction, pad
    v.extend(now.to_le_bytes());
    v.extend(packets.to_le_bytes());
    v.extend((packets * 100).to_le_bytes());
    entry_args(&k, &v)
}

/// `key hex … value hex …`: a map entry as `bpftool map update` takes it.
fn entry_args(key: &[u8], value: &[u8]) -> Vec<String> {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
    let mut args = vec!["key".to_owned(), "hex".to_owned()];
    args.extend(hex(key));
    args.extend(["value".to_owned(), "hex".to_owned()]);
    args.extend(hex(value));
    args
}

/// Pins at `pin` a `NETD_CT6` as the previous release made it (at the
/// default `--ct6-max` of then, 32,768 flows), holding one answered MASQUERADE flow from
/// [fd00:77::2]:SPORT: its ORIGINAL entry (7 packets) and its REPLY entry
/// (5).
fn pin_previous_ct6(pin: &std::path::Path, sport: u16) {
    let pin = pin.to_string_lossy().into_owned();
    bpftool(&[
        "map", "create", &pin, "type", "lru_hash", "key", "40", "value", "64", "entries", "65536",
        "name", "NETD_CT6",
    ]);
    let original = ("fd00:77::2", sport, "2001:2::2", 8080);
    let translated = ("2001:2::1", sport, "2001:2::2", 8080);
    let reply = ("2001:2::2", 8080, "2001:2::1", sport);
    let to_container = ("2001:2::2", 8080, "fd00:77::2", sport);
    let now = monotonic_ns();
    for (key, nat, direction, packets) in
        [(original, translated, 0, 7), (reply, to_container, 1, 5)]
    {
        let mut args = vec![
            "map".to_owned(),
            "update".to_owned(),
            "pinned".to_owned(),
            pin.clone(),
        ];
        args.extend(previous_ct6_entry(key, nat, direction, packets, now));
        bpftool(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// The flow `pin_previous_ct6` pinned, as `netd conntrack ls` shows it
/// once converted: every field kept, no TCP flag seen yet (so, answered,
/// ESTABLISHED), and in the new layout (BTF field names of `Ct6Value`).
fn assert_previous_flow_kept(tb: &Testbed, sport: u16) {
    let flows = tb.conntrack();
    let src = format!("[fd00:77::2]:{sport}");
    let flow = flows
        .iter()
        .find(|f| f["original"]["src"] == src.as_str())
        .unwrap_or_else(|| panic!("the earlier version's flow {src} is gone: {flows:?}"));
    assert_eq!(flow["original"]["dst"], "[2001:2::2]:8080", "{flow}");
    let translated = format!("[2001:2::1]:{sport}");
    assert_eq!(flow["translated"]["src"], translated.as_str(), "{flow}");
    assert_eq!(flow["kind"], "snat", "{flow}");
    assert_eq!(flow["state"], "ESTABLISHED", "{flow}");
    assert_eq!(
        (&flow["packets"], &flow["bytes"], &flow["reply_packets"]),
        (&Value::from(7), &Value::from(700), &Value::from(5)),
        "{flow}"
    );
    let ct6 = tb.bpffs().join("NETD_CT6");
    let shown = bpftool(&["map", "show", "pinned", &ct6.to_string_lossy()]);
    assert!(shown.contains("value 72B"), "{shown}");
    let dump = bpftool_dump(&ct6);
    assert!(dump.contains("\"tcp_seq_end\": 0"), "{dump}");
}

#[test]
fn an_upgrade_over_the_previous_releases_v6_table_keeps_its_flows() {
    let mut tb = Testbed::new();
    tb.stop();
    // The previous release's pins: no NETD_CT6_ASSURED yet.
    std::fs::remove_file(tb.bpffs().join("NETD_CT6_ASSURED")).expect("unpin NETD_CT6_ASSURED");
    let pin = tb.bpffs().join("NETD_CT6");
    std::fs::remove_file(&pin).expect("unpin NETD_CT6");
    pin_previous_ct6(&pin, 40000);
    tb.start();
    assert_previous_flow_kept(&tb, 40000);
    // Started without --ct6-max, it keeps the earlier table's size.
    let status = tb.netd_json(&["status"]);
    assert_eq!(status["conntrack"]["ipv6"]["max_flows"], 32768, "{status}");
    let converted = "converted the pinned map NETD_CT6 to this version's layout (2 entries)";
    assert!(tb.log().contains(converted), "not logged:\n{}", tb.log());
    assert!(!tb.bpffs().join("upgrading/NETD_CT6").exists());
    // Done once: the next start reuses the converted map as it is.
    tb.stop();
    tb.start();
    assert_previous_flow_kept(&tb, 40000);
    assert_eq!(tb.log().matches(converted).count(), 1, "{}", tb.log());
}

/// The raw entries of the pinned hash map at `pin`: (key, value) bytes.
fn raw_entries(pin: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let json: Value = serde_json::from_str(&bpftool(&[
        "-j",
        "map",
        "dump",
        "pinned",
        &pin.to_string_lossy(),
    ]))
    .expect("bpftool -j map dump");
    let bytes = |v: &Value| -> Vec<u8> {
        v.as_array()
            .unwrap_or_else(|| panic!("not raw bytes: {v}"))
            .iter()
            .map(|b| {
                let b = b.as_str().expect("a hex byte");
                u8::from_str_radix(b.trim_start_matches("0x"), 16).expect("a hex byte")
            })
            .collect()
    };
    json.as_array()
        .expect("a list of entries")
        .iter()
        .map(|e| (bytes(&e["key"]), bytes(&e["value"])))
        .collect()
}

/// `bpftool map update` arguments writing `key` and `value` (raw bytes).
fn update_args(pin: &str, key: &[u8], value: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = ["map", "update", "pinned", pin].map(str::to_owned).to_vec();
    args.extend(entry_args(key, value));
    args
}

#[test]
fn an_upgrade_over_the_split_veth_maps_keeps_every_endpoint() {
    let mut tb = Testbed::new();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:9d::/64"]);
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let c2 = tb.add_with("c2", &["--network", "app"]);
    let c2_ip6 = ip6_of(&tb, &c2);
    ping6(&c1, &c2_ip6);
    let veths = tb.bpffs().join("NETD_VETHS");
    let entries = raw_entries(&veths);
    tb.stop();
    // cb7eb2b's layout: 24-byte entries in NETD_VETHS, the IPv6 address
    // (and network id) in NETD_VETHS6.
    std::fs::remove_file(&veths).expect("unpin NETD_VETHS");
    let old = veths.to_string_lossy().into_owned();
    let v6 = tb
        .bpffs()
        .join("NETD_VETHS6")
        .to_string_lossy()
        .into_owned();
    for (pin, value, name) in [(&old, "24", "NETD_VETHS"), (&v6, "24", "NETD_VETHS6")] {
        bpftool(&[
            "map", "create", pin, "type", "hash", "key", "4", "value", value, "entries", "65536",
            "name", name,
        ]);
    }
    let mut dual_stack = 0;
    for (key, value) in &entries {
        assert_eq!(value.len(), 40, "the current VethValue");
        let args = update_args(&old, key, &value[..24]);
        bpftool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if value[24..].iter().any(|b| *b != 0) {
            let mut v6_value = value[24..40].to_vec();
            v6_value.extend(&value[4..8]); // network_id
            v6_value.extend([0; 4]);
            let args = update_args(&v6, key, &v6_value);
            bpftool(&args.iter().map(String::as_str).collect::<Vec<_>>());
            dual_stack += 1;
        }
    }
    assert_eq!(dual_stack, 2, "{entries:?}");
    tb.start();
    let converted = "converted the pinned map NETD_VETHS to this version's layout (2 entries)";
    assert!(tb.log().contains(converted), "not logged:\n{}", tb.log());
    assert!(
        !tb.bpffs().join("NETD_VETHS6").exists(),
        "the retired pin stayed"
    );
    let mut now = raw_entries(&veths);
    let mut before = entries.clone();
    now.sort();
    before.sort();
    assert_eq!(now, before, "every entry as it was, IPv6 address included");
    // Anti-spoofing lets each endpoint's own IPv6 source through.
    ping6(&c1, &c2_ip6);
    ping6(&c2, &ip6_of(&tb, &c1));
}

#[test]
fn an_upgrade_stopped_midway_is_finished_by_the_next_start() {
    let mut tb = Testbed::new();
    tb.stop();
    // What a start that died after moving the old pin aside, before the
    // new map was pinned, leaves (over the previous release's pins: no
    // NETD_CT6_ASSURED).
    std::fs::remove_file(tb.bpffs().join("NETD_CT6_ASSURED")).expect("unpin NETD_CT6_ASSURED");
    std::fs::remove_file(tb.bpffs().join("NETD_CT6")).expect("unpin NETD_CT6");
    let aside = tb.bpffs().join("upgrading/NETD_CT6");
    std::fs::create_dir(tb.bpffs().join("upgrading")).expect("mkdir upgrading");
    pin_previous_ct6(&aside, 40000);
    tb.start();
    assert_previous_flow_kept(&tb, 40000);
    assert!(!aside.exists(), "the old pin outlived the conversion");
    assert!(tb.log().contains("resuming the conversion of NETD_CT6"));
    // What one that died after the new map was pinned (before its entries
    // were all written) leaves: both pins. The new map is written again.
    tb.stop();
    std::fs::create_dir_all(tb.bpffs().join("upgrading")).expect("mkdir upgrading");
    pin_previous_ct6(&aside, 40001);
    tb.start();
    assert_previous_flow_kept(&tb, 40001);
    assert_previous_flow_kept(&tb, 40000);
    assert!(!aside.exists(), "the old pin outlived the conversion");
}

#[test]
fn an_upgrade_refuses_a_ct6_max_too_small_for_the_flows_it_converts() {
    let mut tb = Testbed::with_daemon_args(&["--ct6-max", "1024"]);
    tb.stop();
    // The previous release's pins: no NETD_CT6_ASSURED yet.
    let assured = tb.bpffs().join("NETD_CT6_ASSURED");
    std::fs::remove_file(assured).expect("unpin NETD_CT6_ASSURED");
    let pin = tb.bpffs().join("NETD_CT6");
    std::fs::remove_file(&pin).expect("unpin NETD_CT6");
    pin_previous_ct6(&pin, 40000);
    // 2050 entries in all, where --ct6-max 1024 leaves room for 2048.
    let pin_s = pin.to_string_lossy().into_owned();
    let now = monotonic_ns();
    let batch: String = (0..2048u16)
        .map(|i| {
            let key = ("fd00:77::3", 10000 + i, "2001:2::2", 8080);
            let nat = ("2001:2::1", 10000 + i, "2001:2::2", 8080);
            let entry = previous_ct6_entry(key, nat, 0, 1, now).join(" ");
            format!("map update pinned {pin_s} {entry}\n")
        })
        .collect();
    let batch_file = tb.tmp().join("ct6-batch");
    std::fs::write(&batch_file, batch).expect("write the bpftool batch");
    bpftool(&["batch", "file", &batch_file.to_string_lossy()]);
    assert!(!tb.start_fails().success());
    let log = tb.log();
    assert!(
        log.contains("holds 2050 entries, more than the 2048")
            && log.contains("a larger --ct6-max (at least 1025)"),
        "the refusal must say what to do:\n{log}"
    );
    assert!(pin.exists() && !tb.bpffs().join("upgrading/NETD_CT6").exists());
    // As it says: with room enough, every flow is converted. (Not at
    // 1025 exactly: an LRU evicts a little before it is full.)
    tb.set_daemon_args(&["--ct6-max", "2048"]);
    tb.start();
    assert_previous_flow_kept(&tb, 40000);
    assert!(
        tb.log()
            .contains("converted the pinned map NETD_CT6 to this version's layout (2050 entries)"),
        "{}",
        tb.log()
    );
}

#[test]
fn a_v6_table_pinned_with_an_unknown_layout_is_refused() {
    let mut tb = Testbed::new();
    tb.stop();
    // NETD_CT6 with 56-byte entries, a layout no netd had: nothing to
    // convert from.
    let pin = tb.bpffs().join("NETD_CT6");
    std::fs::remove_file(&pin).expect("unpin NETD_CT6");
    let pin_s = pin.to_string_lossy().into_owned();
    bpftool(&[
        "map", "create", &pin_s, "type", "lru_hash", "key", "40", "value", "56", "entries",
        "65536", "name", "NETD_CT6",
    ]);
    assert!(!tb.start_fails().success());
    let log = tb.log();
    assert!(
        log.contains("56-byte values")
            && log.contains("72-byte values")
            && log.contains("no conversion")
            && log.contains("netd down"),
        "the refusal must say what to do:\n{log}"
    );
    assert!(pin.exists(), "the refusal moved the pin");
    assert!(!tb.bpffs().join("upgrading/NETD_CT6").exists());
}

/// An address as socat writes it (`[0000:...]`), in its short form; an
/// IPv4-mapped one as IPv4.
fn short(addr: &str) -> String {
    let addr = addr.trim().trim_start_matches('[').trim_end_matches(']');
    match addr.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => ip
            .to_ipv4_mapped()
            .map_or_else(|| ip.to_string(), |v4| v4.to_string()),
        Err(_) => addr.to_owned(),
    }
}

/// `socat` to `target` from `ns`: Some(what the server answered, an
/// address in its short form), None when the connection fails.
fn try_ask(ns: &str, target: &str) -> Option<String> {
    let out = in_ns(ns, &["socat", "-t3", "-T3", "-", target]);
    let got = short(&String::from_utf8_lossy(&out.stdout));
    (out.status.success() && !got.is_empty()).then_some(got)
}

#[test]
fn v6_host_addresses_and_families_of_published_ports() {
    let tb = Testbed::new();
    tb.uplink6();
    // A second IPv6 address of the host, on which nothing is published.
    in_ns_ok(
        &tb.host(),
        &[
            "ip",
            "addr",
            "add",
            "2001:2::3/64",
            "dev",
            "uplink0",
            "nodad",
        ],
    );
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:9b::/64"]);
    let web = tb.add_with(
        "web",
        &[
            "--network",
            "app",
            "-p",
            "[2001:2::1]:8083:80",
            "-p",
            "0.0.0.0:8084:80",
            "-p",
            "[::]:8085:80",
            "-p",
            "[::1]:8086:80",
            "-p",
            "8087:80",
        ],
    );
    let _who = who_server6(&tb, &web, 80);
    let ext = tb.ext();
    let v6 = |port: u16| try_ask(&ext, &format!("TCP6:[2001:2::1]:{port}"));
    let v6_other = |port: u16| try_ask(&ext, &format!("TCP6:[2001:2::3]:{port}"));
    let v4 = |port: u16| try_ask(&ext, &format!("TCP4:198.18.0.1:{port}"));
    // [2001:2::1]: that address only, IPv6 only.
    assert_eq!(v6(8083).as_deref(), Some("2001:2::2"));
    assert_eq!(v6_other(8083), None, "published on another v6 address");
    assert_eq!(v4(8083), None, "a v6 binding answered on v4");
    // 0.0.0.0 written out: IPv4 only.
    assert!(v4(8084).is_some());
    assert_eq!(v6(8084), None, "0.0.0.0 answered on v6");
    // [::]: every IPv6 address, no IPv4.
    assert!(v6(8085).is_some());
    assert!(v6_other(8085).is_some());
    assert_eq!(v4(8085), None, "[::] answered on v4");
    // [::1]: the host's own sockets only, never DNAT-ed.
    assert_eq!(v6(8086), None, "a ::1 binding answered from outside");
    assert_eq!(ask6(&tb.host(), "::1", 8086), "fd00:9b::1");
    // None: both.
    assert!(v6(8087).is_some());
    assert!(v4(8087).is_some());

    // Only the host's own addresses are DNAT-ed: a flow routed through the
    // host to another address on a published port is left alone.
    in_ns_ok(
        &ext,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:2:99::/64",
            "via",
            "2001:2::1",
        ],
    );
    let dnat = tb.counter("dnat");
    assert_eq!(try_ask(&ext, "TCP6:[2001:2:99::1]:8087"), None);
    assert_eq!(tb.counter("dnat"), dnat, "a routed flow was DNAT-ed");

    // `portmap ls` shows the bindings of each family.
    let ls = tb.netd_json(&["portmap", "ls"]);
    let row = |port: &str| {
        ls.as_array()
            .and_then(|a| a.iter().find(|m| m["host_port"] == port))
            .cloned()
            .unwrap_or_else(|| panic!("no {port} in {ls}"))
    };
    assert_eq!(
        row("8087")["host_ips"],
        serde_json::json!(["0.0.0.0", "::"])
    );
    assert_eq!(row("8087")["container_ip6"], "fd00:9b::2");
    assert_eq!(row("8083")["host_ips"], serde_json::json!(["2001:2::1"]));
    assert_eq!(
        row("8083")["spec"],
        format!("[2001:2::1]:8083:{}:80/tcp", tb.ip_of(&web))
    );
    assert_eq!(row("8084")["host_ips"], serde_json::json!(["0.0.0.0"]));
    let table = tb.netd_ok(&["portmap", "ls"]);
    assert!(table.contains("0.0.0.0,::"), "{table}");

    // `portmap add` takes the same host side; `rm` by host side.
    let spec = format!("[2001:2::3]:8091:{}:80", tb.ip_of(&web));
    tb.netd_ok(&["portmap", "add", &spec]);
    assert!(try_ask(&ext, "TCP6:[2001:2::3]:8091").is_some());
    assert_eq!(v6(8091), None);
    tb.netd_ok(&["portmap", "rm", "[2001:2::3]:8091"]);
    assert_eq!(try_ask(&ext, "TCP6:[2001:2::3]:8091"), None);

    // Conflicts are per family: [::]:8085 leaves 0.0.0.0:8085 free, not
    // [2001:2::1]:8085 nor 8085 (both).
    let other = tb.add_with("other", &["--network", "app", "-p", "0.0.0.0:8085:80"]);
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("x1"),
        "--network",
        "app",
        "-p",
        "[2001:2::1]:8085:80",
    ]);
    assert!(err.contains("conflicts with existing mapping"), "{err}");
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("x2"),
        "--network",
        "app",
        "-p",
        "8083:80",
    ]);
    assert!(err.contains("conflicts with existing mapping"), "{err}");
    tb.rm(&other);

    // Bad host sides: one line each, nothing left behind.
    let before = tb.ls();
    for (spec, want) in [
        ("[2001:2::99]:8095:80", "is not an address of this host"),
        (
            "2001:2::1:8095:80",
            "write an IPv6 host address in brackets",
        ),
        ("[2001:2::1:8095:80", "unclosed '['"),
        ("[::ffff:198.18.0.1]:8095:80", "write it as 198.18.0.1"),
    ] {
        let err = tb.netd_err(&[
            "container",
            "add",
            &tb.name("bad"),
            "--network",
            "app",
            "-p",
            spec,
        ]);
        assert!(err.contains(want), "-p {spec}: {err}");
    }
    // IPv6 only on a container without an IPv6 address.
    create_net(&tb, &["v4only", "--subnet", "10.79.0.0/24"]);
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("bad"),
        "--network",
        "v4only",
        "-p",
        "[::]:8096:80",
    ]);
    assert!(err.contains("has no IPv6 address"), "{err}");
    let v4c = tb.add_with("v4c", &["--network", "v4only"]);
    let err = tb.netd_err(&[
        "portmap",
        "add",
        &format!("[2001:2::1]:8096:{}:80", tb.ip_of(&v4c)),
    ]);
    assert!(err.contains("has no IPv6 address"), "{err}");
    tb.rm(&v4c);
    assert_eq!(tb.ls(), before, "a refused add left a container");

    // A host process listening on an IPv6 address holds its port there,
    // not on IPv4.
    let listen = Bg::server(
        &tb.host(),
        &["socat", "TCP6-LISTEN:8097,bind=[2001:2::1],reuseaddr", "-"],
        &tb.tmp().join("listen6.log"),
        "tcp",
        8097,
    );
    let err = tb.netd_err(&[
        "container",
        "add",
        &tb.name("x3"),
        "--network",
        "app",
        "-p",
        "[2001:2::1]:8097:80",
    ]);
    assert!(err.contains("in use by a process on the host"), "{err}");
    tb.add_with("v4side", &["--network", "app", "-p", "0.0.0.0:8097:80"]);
    drop(listen);
}

#[test]
fn a_container_reaches_itself_through_its_v6_published_port() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--ipv6", "--subnet", "fd00:9c::/64"]);
    let web = tb.add_with("web", &["--network", "app", "-p", "8092:80"]);
    let _http = http6_server(&tb, &web, "self6");
    let dnat = tb.counter("dnat");
    for url in [
        "http://[2001:2::1]:8092/id.txt",
        "http://[fd00:9c::1]:8092/id.txt",
    ] {
        let body = in_ns_ok(&web, &["curl", "-6", "-sS", "--max-time", "5", url]);
        assert_eq!(body, format!("self6 {}\n", tb.p), "{url}");
    }
    assert!(tb.counter("dnat") >= dnat + 2, "not translated by eBPF");
    // Its source was translated to the address it asked for (its own
    // would have it answer itself, untranslated).
    let _who = who_server6(&tb, &web, 81);
    tb.netd_ok(&["portmap", "add", &format!("8098:{}:81", tb.ip_of(&web))]);
    assert_eq!(ask6(&web, "2001:2::1", 8098), "2001:2::1");
}

#[test]
fn routed_v6_networks_are_reached_directly_and_not_masqueraded() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(
        &tb,
        &[
            "app",
            "--ipv6",
            "--subnet",
            "fd00:9d::/64",
            "--gateway-mode",
            "routed",
        ],
    );
    let c1 = tb.add_with("c1", &["--network", "app"]);
    let ext = tb.ext();
    in_ns_ok(
        &ext,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:9d::/64",
            "via",
            "2001:2::1",
        ],
    );
    // From outside to the container's own address, no published port.
    let _who = who_server6(&tb, &c1, 80);
    assert_eq!(ask6(&ext, "fd00:9d::2", 80), "2001:2::2");
    ping6(&ext, "fd00:9d::2");
    // Out with its own address.
    let _out = who_server6(&tb, &ext, 7310);
    let snat = tb.counter("snat");
    assert_eq!(ask6(&c1, "2001:2::2", 7310), "fd00:9d::2");
    ping6(&c1, "2001:2::2");
    assert_eq!(tb.counter("snat"), snat, "a routed network was masqueraded");
    // A NAT network beside it stays hidden.
    create_net(&tb, &["nat", "--ipv6", "--subnet", "fd00:9e::/64"]);
    let c2 = tb.add_with("c2", &["--network", "nat"]);
    let _who2 = who_server6(&tb, &c2, 80);
    in_ns_ok(
        &ext,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:9e::/64",
            "via",
            "2001:2::1",
        ],
    );
    assert_eq!(try_ask(&ext, "TCP6:[fd00:9e::2]:80"), None);
}

#[test]
fn host_v6_sockets_reach_published_ports_through_ipv4_mapped_addresses() {
    let tb = Testbed::new();
    tb.uplink6();
    create_net(&tb, &["app", "--subnet", "10.80.0.0/24"]);
    let web = tb.add_with("web", &["--network", "app", "-p", "8099:80"]);
    let _who = who_server6(&tb, &web, 80);
    let dnat = tb.counter("dnat");
    // A v6 socket to ::ffff:HOSTIP and ::ffff:127.0.0.1: the container
    // (IPv4 only) answers, and sees the host's side of its bridge.
    let ask = |ip: &str| try_ask(&tb.host(), &format!("TCP6:[{ip}]:8099"));
    assert_eq!(ask("::ffff:198.18.0.1").as_deref(), Some("10.80.0.1"));
    assert_eq!(ask("::ffff:127.0.0.1").as_deref(), Some("10.80.0.1"));
    assert_eq!(tb.counter("dnat"), dnat, "host-local went through tc DNAT");
    // getpeername() shows the address the application asked for.
    let peer = in_ns_ok(
        &tb.host(),
        &[
            "/usr/bin/python3",
            "-c",
            "import socket; s = socket.create_connection(('::ffff:198.18.0.1', 8099), timeout=5); print(s.getpeername()[0], s.getpeername()[1])",
        ],
    );
    assert_eq!(peer.trim(), "::ffff:198.18.0.1 8099");
    // UDP: the datagram goes to the container (sendmsg), and the answer
    // comes from the address the application sent to (recvmsg).
    tb.netd_ok(&["portmap", "add", &format!("5399:{}:53/udp", tb.ip_of(&web))]);
    let (_echo, log) = udp_echo6(&tb, &web, 53);
    let answer = in_ns_ok(
        &tb.host(),
        &[
            "/usr/bin/python3",
            "-c",
            "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(b'hi', ('::ffff:198.18.0.1', 5399)); d, p = s.recvfrom(100); print(d.decode(), p[0], p[1])",
        ],
    );
    assert_eq!(answer.trim(), "hi ::ffff:198.18.0.1 5399");
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(seen.contains("2 "), "the container saw: {seen}");
}

/// A real upgrade, run by hand (building the previous release takes too
/// long for every run): `NETD_PREVIOUS_BIN=<netd built at dd4b0f4>
/// NETD_BIN=<this netd> cargo test -p netd-tests --test ipv6 --
/// --ignored --test-threads=1 an_upgrade_from_the_previous_binary`. A v6
/// connection begun under the previous release goes on under this one,
/// and its flow and the counters are kept.
#[test]
#[ignore]
fn an_upgrade_from_the_previous_binary_keeps_live_v6_flows() {
    let Ok(previous) = std::env::var("NETD_PREVIOUS_BIN") else {
        panic!("set NETD_PREVIOUS_BIN to a netd built at dd4b0f4");
    };
    let this = netd_tests::netd_bin();
    // SAFETY: the test runs alone (--test-threads=1), and NETD_BIN is how
    // the testbed picks the binary of the daemon and the CLI.
    unsafe { std::env::set_var("NETD_BIN", &previous) };
    let mut tb = Testbed::new();
    let web = published_web(&tb);
    let _echo = echo_server6(&tb, &web, 80);
    let client = client6(&tb, 8091, 45130, "fin");
    let dnat = tb.counter("dnat");
    tb.stop();
    // SAFETY: as above.
    unsafe { std::env::set_var("NETD_BIN", &this) };
    tb.start();
    let log = tb.log();
    for map in ["NETD_CT6", "NETD_STATS"] {
        let converted = format!("converted the pinned map {map} to this version's layout");
        assert!(log.contains(&converted), "{map} not converted:\n{log}");
    }
    assert!(dnat > 0 && tb.counter("dnat") >= dnat, "counters lost");
    client.finish();
    let flows = tb.conntrack();
    assert!(flow6(&tb, 45130, 8091).is_some(), "{flows:?}");
    client6(&tb, 8091, 45131, "fin").finish();
}
