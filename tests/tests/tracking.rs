//! Connection tracking under hostile and odd traffic: forged RSTs, quick
//! reconnects from the same port, a SYN that clashes with another flow's
//! reply, replies whose flow is gone, protocols netd does not translate,
//! TTLs, and malformed headers. Each is what an outsider (or a container)
//! could do to break or leak through today's datapath.

use std::time::Duration;

use netd_tests::{
    Bg, TcpClient, Testbed, in_ns, in_ns_ok, mac_of, scripts::with_packet_helpers, snmp, wait_until,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const HOST: &str = "198.18.0.1";
const EXT: &str = "198.18.0.2";

/// Sends crafted packets. Modes:
/// - `tcp SRC DST SPORT DPORT FLAGS SEQ`: one TCP segment (FLAGS: letters
///   of FSRA), through a raw IP socket;
/// - `bad IFACE DMAC SMAC SRC DST DPORT WHAT`: three broken IPv4 frames
///   (WHAT: csum, totlen, udplen, doff) through AF_PACKET;
/// - `gre DST`: three GRE packets (IP protocol 47) from a raw socket.
const CRAFT: &str = r#"
def ip(src, dst, proto, l4, tot=None, bad_csum=False):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, tot or 20 + len(l4), 0x4242, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(h) ^ (0x5555 if bad_csum else 0)
    return h[:10] + struct.pack('!H', c) + h[12:] + l4
def l4csum(src, dst, proto, l4, at):
    c = csum(socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, proto, len(l4)) + l4)
    return l4[:at] + struct.pack('!H', c or 0xffff) + l4[at + 2:]
def tcp(src, dst, sport, dport, flags, seq, doff=5):
    bits = sum({'F': 1, 'S': 2, 'R': 4, 'A': 16}[f] for f in flags)
    l4 = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, doff << 4, bits, 65535, 0, 0)
    return l4csum(src, dst, 6, l4, 16)
def udp(src, dst, sport, dport, payload, ulen=None):
    l4 = struct.pack('!HHHH', sport, dport, ulen or 8 + len(payload), 0) + payload
    return l4csum(src, dst, 17, l4, 6)
mode = sys.argv[1]
if mode == 'tcp':
    src, dst, sport, dport, flags, seq = sys.argv[2:8]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip(src, dst, 6, tcp(src, dst, int(sport), int(dport), flags, int(seq))), (dst, 0))
elif mode == 'bad':
    iface, dmac, smac, src, dst, dport, what = sys.argv[2:9]
    dport = int(dport)
    if what == 'csum':
        pkt = ip(src, dst, 17, udp(src, dst, 40000, dport, b'x' * 8), bad_csum=True)
    elif what == 'totlen':
        l4 = udp(src, dst, 40000, dport, b'x' * 8)
        pkt = ip(src, dst, 17, l4, tot=20 + len(l4) + 200)
    elif what == 'udplen':
        pkt = ip(src, dst, 17, udp(src, dst, 40000, dport, b'x' * 8, ulen=200))
    else:
        pkt = ip(src, dst, 6, tcp(src, dst, 40000, dport, 'S', 1, doff=4))
    mac = lambda m: bytes.fromhex(m.replace(':', ''))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for _ in range(3):
        s.send(mac(dmac) + mac(smac) + b'\x08\x00' + pkt)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    for _ in range(3):
        s.sendto(b'\x00\x00\x08\x00' + b'gre payload', (sys.argv[2], 0))
"#;

/// Receives UDP on 198.18.0.2:PORT and prints "TTL SRC" per datagram.
const TTL_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, anc, flags, peer = s.recvmsg(100, 64)
    ttl = [int.from_bytes(d[:4], 'little') for l, t, d in anc if t == socket.IP_TTL]
    print(ttl[0] if ttl else -1, peer[0], flush=True)
"#;

/// Prints the source address of each GRE packet that arrives.
const GRE_LISTENER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
while True:
    data, peer = s.recvfrom(2000)
    print(peer[0], flush=True)
"#;

/// `DST DPORT N`: N SYNs to DST:DPORT from spoofed sources in
/// 198.19.0.0/16 (inside the testbed's range), each a new flow, each sent
/// twice (a second look makes an LRU entry "recently used").
const SYN_FLOOD: &str = r#"
import socket, struct, sys
dst, dport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
pkt = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0, 64, 6, 0, bytes(4), socket.inet_aton(dst))
                + struct.pack('!HHIIBBHHH', 0, dport, 1, 0, 0x50, 0x02, 65535, 0, 0))
for i in range(n):
    struct.pack_into('!BBBB', pkt, 12, 198, 19, (i >> 8) & 255, i & 255)
    struct.pack_into('!H', pkt, 20, 1024 + (i >> 16))
    s.sendto(pkt, (dst, 0))
    s.sendto(pkt, (dst, 0))
"#;

/// `SRC DST DPORT N`: N UDP datagrams from SRC (the sender's own address)
/// to DST:DPORT, each from another source port or address pair: N flows.
const UDP_FLOOD: &str = r#"
import socket, struct, sys
src, dst, dport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
pkt = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28, 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
                + struct.pack('!HHHH', 0, dport, 8, 0))
for i in range(n):
    struct.pack_into('!HH', pkt, 20, 1024 + i % 64000, dport + i // 64000)
    s.sendto(pkt, (dst, 0))
"#;

/// A UDP echo on ADDR:PORT that logs "LEN PEERIP" per datagram.
const BIG_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    print(len(data), peer[0], flush=True)
    s.sendto(data, peer)
"#;

/// Sends one datagram of N bytes to HOST:PORT; prints the answer's length.
const BIG_ASK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b'x' * int(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))
print(len(s.recv(65535)))
"#;

/// Sends a UDP datagram with TTL 1 to HOST:PORT from 198.18.0.2 and waits
/// for the ICMP time exceeded; prints "FROM QUOTED_DST QUOTED_DPORT OURS".
const TTL_PROBE: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r.settimeout(5)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
u.bind(('198.18.0.2', 0))
sport = u.getsockname()[1]
u.sendto(b'probe', (host, port))
while True:
    data, peer = r.recvfrom(2000)
    icmp = data[(data[0] & 15) * 4:]
    if icmp[0] != 11:
        continue
    inner = icmp[8:]
    ihl = (inner[0] & 15) * 4
    isport, idport = struct.unpack('!HH', inner[ihl:ihl + 4])
    print(peer[0], socket.inet_ntoa(inner[16:20]), idport, isport == sport, flush=True)
    break
"#;

fn craft(ns: &str, args: &[&str]) {
    let script = with_packet_helpers(CRAFT);
    let mut cmd = vec!["python3", "-c", &script];
    cmd.extend_from_slice(args);
    in_ns_ok(ns, &cmd);
}

fn echo_server(tb: &Testbed, ns: &str, port: u16) -> Bg {
    let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("echo-{port}.log"));
    Bg::server(ns, &["socat", &listen, "EXEC:cat"], &log, "tcp", port)
}

/// A [`TcpClient`] from ext:SPORT to the host's published `port`.
fn client(tb: &Testbed, port: u16, sport: u16, how: &str) -> TcpClient {
    TcpClient::start(tb, &tb.ext(), (HOST, port), (EXT, sport), how)
}

/// The tracked flow whose original tuple is ext:SPORT -> host:PORT.
fn flow_from(tb: &Testbed, sport: u16, port: u16) -> Option<Value> {
    let (src, dst) = (format!("{EXT}:{sport}"), format!("{HOST}:{port}"));
    tb.conntrack()
        .into_iter()
        .find(|f| f["original"]["src"] == src.as_str() && f["original"]["dst"] == dst.as_str())
}

fn state_of(tb: &Testbed, sport: u16, port: u16) -> String {
    let flow = flow_from(tb, sport, port);
    let state = flow.as_ref().and_then(|f| f["state"].as_str());
    state.unwrap_or("none").to_owned()
}

// ---------------------------------------------------------------------------
// TCP state.

#[test]
fn forged_rst_does_not_close_a_live_flow_and_a_real_one_does() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8091:80"]);
    let _echo = echo_server(&tb, &c1, 80);
    let client = client(&tb, 8091, 45000, "rst");
    assert_eq!(state_of(&tb, 45000, 8091), "ESTABLISHED");
    // An outsider who knows the client's address and port, not its
    // sequence numbers: two RSTs half the sequence space apart, so at most
    // one can be near the real one.
    for seq in ["12345", "2147495993"] {
        craft(&tb.ext(), &["tcp", EXT, HOST, "45000", "8091", "R", seq]);
    }
    let flows = tb.conntrack();
    assert_eq!(
        state_of(&tb, 45000, 8091),
        "ESTABLISHED",
        "a forged RST closed the flow: {flows:?}"
    );
    // The connection works, and its own RST (SO_LINGER 0) does count.
    client.finish();
    wait_until("the real RST to close the flow", WAIT, || {
        state_of(&tb, 45000, 8091) == "CLOSING"
    });
}

#[test]
fn reconnect_from_the_same_port_is_a_new_flow() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8091:80"]);
    let _echo = echo_server(&tb, &c1, 80);
    client(&tb, 8091, 45001, "rst").finish();
    wait_until("the first connection to close", WAIT, || {
        state_of(&tb, 45001, 8091) == "CLOSING"
    });
    // The same 4-tuple again, at once: a SYN over a closed flow reopens it.
    let again = client(&tb, 8091, 45001, "fin");
    let flows = tb.conntrack();
    assert_eq!(
        state_of(&tb, 45001, 8091),
        "ESTABLISHED",
        "the new connection inherited the old one's close: {flows:?}"
    );
    again.finish();
}

#[test]
fn a_clashing_syn_to_another_port_does_not_take_over_a_live_flow() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8091:80", "-p", "8092:80"]);
    let _echo = echo_server(&tb, &c1, 80);
    let client = client(&tb, 8091, 45002, "fin");
    let invalid = tb.counter("drop_invalid");
    // Same client address and port to the other published port: its reply
    // tuple (c1:80 -> ext:45002) is the live flow's.
    craft(&tb.ext(), &["tcp", EXT, HOST, "45002", "8092", "S", "777"]);
    wait_until("the clashing SYN to be dropped", WAIT, || {
        tb.counter("drop_invalid") > invalid
    });
    client.finish();
}

#[test]
fn established_flows_survive_a_flood_that_fills_the_table() {
    // A small table (2048 entries a tier), so the flood overflows it many
    // times: an LRU alone would evict the idle live flows.
    let tb = Testbed::with_daemon_args(&["--ct-max", "1024"]);
    let c1 = tb.add_with("c1", &["-p", "8091:80"]);
    let ext = tb.ext();
    let _echo = echo_server(&tb, &c1, 80);
    let _outside = echo_server(&tb, &ext, 9000);
    // A live DNAT and a live SNAT connection, idle while the flood runs.
    let dnat_client = client(&tb, 8091, 45010, "fin");
    let snat_client = TcpClient::start(&tb, &c1, (EXT, 9000), ("0.0.0.0", 45011), "fin");
    let dnat = tb.counter("dnat");
    in_ns_ok(&ext, &["python3", "-c", SYN_FLOOD, HOST, "8091", "50000"]);
    wait_until("the flood to be DNAT-ed", WAIT, || {
        tb.counter("dnat") >= dnat + 49_000
    });
    // The SYN-ACKs answered the flood, but only flows whose originator
    // spoke again are assured: the two live ones.
    let assured = netd_tests::bpftool_dump(&tb.bpffs().join("NETD_CT_ASSURED"));
    dnat_client.finish();
    snat_client.finish();
    let entries = assured.matches("\"key\"").count();
    assert_eq!(entries, 4, "assured entries:\n{assured}");
    // And a new connection gets in.
    client(&tb, 8091, 45012, "fin").finish();
}

#[test]
fn a_flooding_container_does_not_starve_the_others() {
    let tb = Testbed::with_daemon_args(&["--ct-max", "1024"]);
    let c1 = tb.add("c1"); // 172.17.0.2, the flood
    let c2 = tb.add("c2"); // 172.17.0.3
    let ext = tb.ext();
    let _outside = echo_server(&tb, &ext, 9000);
    let live = TcpClient::start(&tb, &c2, (EXT, 9000), ("0.0.0.0", 45020), "fin");
    // 30,000 new UDP flows from c1, 15 times what a tier holds.
    let snat = tb.counter("snat");
    in_ns_ok(
        &c1,
        &[
            "python3",
            "-c",
            UDP_FLOOD,
            "172.17.0.2",
            EXT,
            "7000",
            "30000",
        ],
    );
    wait_until("the flood to be masqueraded", WAIT, || {
        tb.counter("snat") >= snat + 29_000
    });
    // c2's live connection goes on, and a new one of c2 gets in.
    live.finish();
    TcpClient::start(&tb, &c2, (EXT, 9000), ("0.0.0.0", 45021), "fin").finish();
}

// ---------------------------------------------------------------------------
// Nothing leaves with a private address or a container's port.

#[test]
fn a_reply_without_its_flow_is_not_masqueraded() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8091:80", "-p", "5353:5353/udp"]);
    let ext = tb.ext();
    let udp_in = || snmp(&ext, "Udp", "InDatagrams") + snmp(&ext, "Udp", "NoPorts");
    let (segs, datagrams) = (snmp(&ext, "Tcp", "InSegs"), udp_in());
    let invalid = tb.counter("drop_invalid");
    // What a published service sends when its flow's entry is gone: TCP
    // segments from port 80, a datagram from the published UDP port.
    for flags in ["SA", "A", "FA"] {
        craft(&c1, &["tcp", "172.17.0.2", EXT, "80", "45003", flags, "99"]);
    }
    let reply = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                 s.bind(('0.0.0.0', 5353)); s.sendto(b'late answer', ('198.18.0.2', 45004))";
    in_ns_ok(&c1, &["python3", "-c", reply]);
    wait_until("the orphan replies to be dropped", WAIT, || {
        tb.counter("drop_invalid") >= invalid + 4
    });
    assert_eq!(
        snmp(&ext, "Tcp", "InSegs"),
        segs,
        "a TCP reply left the host"
    );
    assert_eq!(udp_in(), datagrams, "a UDP reply left the host");
}

#[test]
fn gre_from_a_container_never_leaves_with_its_address() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let ext = tb.ext();
    let log = tb.tmp().join("gre.log");
    let mut listener = Bg::spawn(&ext, &["python3", "-c", GRE_LISTENER], &log);
    // The control: the host's own GRE arrives (and shows the listener is up).
    wait_until("the GRE listener to hear the host", WAIT, || {
        craft(&tb.host(), &["gre", EXT]);
        listener.log().contains(HOST)
    });
    let dropped = tb.counter("drop_untranslatable");
    craft(&c1, &["gre", EXT]);
    wait_until("the container's GRE to be dropped", WAIT, || {
        tb.counter("drop_untranslatable") >= dropped + 3
    });
    assert!(
        !listener.log().contains("172.17."),
        "GRE left with a private address:\n{}",
        listener.log()
    );
    assert!(listener.try_wait().is_none(), "{}", listener.log());
}

#[test]
fn fragmented_udp_is_translated_both_ways() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "5353:5353/udp"]);
    let ext = tb.ext();
    // A 4000-byte datagram is three fragments on these 1500-byte links.
    // Out and back: masqueraded, and the fragmented answer comes back.
    let log = tb.tmp().join("big-ext.log");
    let mut outside = Bg::spawn(&ext, &["python3", "-c", BIG_ECHO, EXT, "7100"], &log);
    outside.wait_listening(&ext, "udp", 7100);
    let answer = in_ns_ok(&c1, &["python3", "-c", BIG_ASK, EXT, "7100", "4000"]);
    assert_eq!(answer.trim(), "4000");
    assert!(
        outside.log().contains(&format!("4000 {HOST}")),
        "{}",
        outside.log()
    );
    // In: to the published port (DNAT, the client's address kept) and back.
    let log = tb.tmp().join("big-c1.log");
    let mut inside = Bg::spawn(&c1, &["python3", "-c", BIG_ECHO, "0.0.0.0", "5353"], &log);
    inside.wait_listening(&c1, "udp", 5353);
    let answer = in_ns_ok(&ext, &["python3", "-c", BIG_ASK, HOST, "5353", "4000"]);
    assert_eq!(answer.trim(), "4000");
    assert!(
        inside.log().contains(&format!("4000 {EXT}")),
        "{}",
        inside.log()
    );
}

// ---------------------------------------------------------------------------
// TTL.

#[test]
fn routed_paths_take_one_hop_and_expiring_packets_get_time_exceeded() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "5353:5353/udp"]);
    let ext = tb.ext();
    // Out: a container's datagram arrives with one hop less.
    let log = tb.tmp().join("ttl-ext.log");
    let mut server = Bg::spawn(&ext, &["python3", "-c", TTL_SERVER, EXT, "7001"], &log);
    server.wait_listening(&ext, "udp", 7001);
    in_ns_ok(
        &c1,
        &["sh", "-c", "echo x | socat -u - UDP:198.18.0.2:7001,ttl=64"],
    );
    wait_until("ext to see the datagram", WAIT, || {
        server.log().contains(HOST)
    });
    assert!(
        server.log().contains(&format!("63 {HOST}")),
        "{}",
        server.log()
    );
    // In: a published port's datagram too.
    let log = tb.tmp().join("ttl-c1.log");
    let mut inner = Bg::spawn(&c1, &["python3", "-c", TTL_SERVER, "0.0.0.0", "5353"], &log);
    inner.wait_listening(&c1, "udp", 5353);
    in_ns_ok(
        &ext,
        &["sh", "-c", "echo x | socat -u - UDP:198.18.0.1:5353,ttl=64"],
    );
    wait_until("c1 to see the datagram", WAIT, || inner.log().contains(EXT));
    assert!(
        inner.log().contains(&format!("63 {EXT}")),
        "{}",
        inner.log()
    );
    // A TTL that runs out at the host, from outside: the host answers, as a
    // router does, quoting the packet as it was sent (before DNAT).
    let answer = in_ns_ok(&ext, &["python3", "-c", TTL_PROBE, HOST, "5353"]);
    assert_eq!(answer.trim(), format!("{HOST} {HOST} 5353 True"));
    // And from a container (traceroute from it shows the host as the first
    // hop).
    let ping = in_ns(&c1, &["ping", "-c1", "-W2", "-t1", EXT]);
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        out.contains("Time to live exceeded") && out.contains("172.17.0.1"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Malformed headers.

#[test]
fn malformed_headers_are_dropped_not_translated() {
    let tb = Testbed::new();
    tb.add_with("c1", &["-p", "5353:5353/udp", "-p", "8091:80"]);
    let ext = tb.ext();
    let host_mac = mac_of(&tb.host(), "uplink0");
    let ext_mac = mac_of(&ext, "ext0");
    let (dnat, malformed) = (tb.counter("dnat"), tb.counter("drop_malformed"));
    for (what, port) in [
        ("csum", "5353"),
        ("totlen", "5353"),
        ("udplen", "5353"),
        ("doff", "8091"),
    ] {
        craft(
            &ext,
            &["bad", "ext0", &host_mac, &ext_mac, EXT, HOST, port, what],
        );
    }
    wait_until("12 malformed packets to be counted", WAIT, || {
        tb.counter("drop_malformed") >= malformed + 12
    });
    assert_eq!(tb.counter("dnat"), dnat, "a malformed packet was DNAT-ed");
}
