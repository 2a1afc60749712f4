//! Docker's network model: user-defined networks and their isolation,
//! `--internal`, `network connect`/`disconnect`, the host/none/container
//! modes, generated hosts and resolv.conf files, and the embedded DNS.
//!
//! Reachability is always proven with real traffic (ping, TCP and UDP through
//! socat) in both directions, and non-reachability with short timeouts.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use netd_tests::{
    Bg, Testbed, in_ns, in_ns_ok, netd_bin, netns_exists, scripts::FAKE_UPSTREAM, wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const TCP_PORT: u16 = 7001;
const UDP_PORT: u16 = 7002;
/// What clients send; the servers echo it back after the peer's address.
const TOKEN: &str = "netd-network-token";
/// A socat server reply: the client's address as the server sees it, then
/// an echo of what the client sent.
const REPLY: &str = "SYSTEM:echo $SOCAT_PEERADDR; cat";

// ---------------------------------------------------------------------------
// Background servers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Ping,
    Tcp,
    Udp,
}

const ALL: [Proto; 3] = [Proto::Ping, Proto::Tcp, Proto::Udp];

/// `socat` arguments of a TCP or UDP reply server on `port`.
fn socat_server(proto: Proto, port: u16, bind: Option<&str>) -> Vec<String> {
    let bind = bind.map(|ip| format!(",bind={ip}")).unwrap_or_default();
    let listen = match proto {
        Proto::Tcp => format!("TCP4-LISTEN:{port},reuseaddr,fork{bind}"),
        Proto::Udp => format!("UDP4-RECVFROM:{port},fork{bind}"),
        Proto::Ping => unreachable!("no ping server"),
    };
    ["timeout", "120", "socat", &listen, REPLY]
        .map(str::to_owned)
        .to_vec()
}

/// `ss`'s name of a server protocol.
fn ss_proto(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        _ => "udp",
    }
}

/// A reply server in namespace `ns` (via `ip netns exec`), ready.
fn server_in(ns: &str, proto: Proto, port: u16, bind: Option<&str>) -> Bg {
    let args = socat_server(proto, port, bind);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bg::server(ns, &args, Path::new("/dev/null"), ss_proto(proto), port)
}

/// TCP and UDP reply servers on every address of namespace `ns`.
fn servers(ns: &str) -> [Bg; 2] {
    [
        server_in(ns, Proto::Tcp, TCP_PORT, None),
        server_in(ns, Proto::Udp, UDP_PORT, None),
    ]
}

// ---------------------------------------------------------------------------
// Clients.

/// Shell script of one client probe to `to`.
fn client_script(proto: Proto, to: &str, port: u16) -> String {
    match proto {
        Proto::Ping => format!("ping -c1 -W1 {to}"),
        Proto::Tcp => {
            format!("echo {TOKEN} | socat -t1 -T3 - TCP4:{to}:{port},connect-timeout=1")
        }
        Proto::Udp => format!("echo {TOKEN} | socat -t1 -T3 - UDP4:{to}:{port}"),
    }
}

/// Whether a probe got through: ping's exit status, or the echoed token.
fn reached(proto: Proto, out: &Output) -> bool {
    match proto {
        Proto::Ping => out.status.success(),
        _ => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == TOKEN),
    }
}

/// The client address the reply server saw (first line of its reply).
fn peer(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().next().unwrap_or_default().to_owned()
}

fn probe_cmd(from: &str, proto: Proto, to: &str) -> Command {
    let port = if proto == Proto::Udp {
        UDP_PORT
    } else {
        TCP_PORT
    };
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "ip", "netns", "exec", from, "sh", "-c"])
        .arg(client_script(proto, to, port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs all probes at once (so that the failing ones time out together).
fn run_probes(probes: &[(&str, Proto, &str)]) -> Vec<Output> {
    let children: Vec<Child> = probes
        .iter()
        .map(|(from, proto, to)| {
            probe_cmd(from, *proto, to)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start a probe: {e}"))
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for a probe"))
        .collect()
}

/// For every `(from namespace, to address, expected)`: ping, TCP and UDP
/// from `from` to `to` all get through, or all fail. Reports every mismatch.
fn assert_reach(cases: &[(&str, &str, bool)]) {
    let probes: Vec<(&str, Proto, &str)> = cases
        .iter()
        .flat_map(|&(from, to, _)| ALL.map(|proto| (from, proto, to)))
        .collect();
    let outputs = run_probes(&probes);
    let mut wrong = Vec::new();
    for ((&(from, proto, to), out), expected) in probes
        .iter()
        .zip(&outputs)
        .zip(cases.iter().flat_map(|c| [c.2; 3]))
    {
        if reached(proto, out) != expected {
            let verdict = if expected { "FAILED" } else { "GOT THROUGH" };
            wrong.push(format!(
                "{proto:?} {from} -> {to} {verdict} (expected {}): status {}, stdout {:?}, stderr {:?}",
                if expected { "reachable" } else { "blocked" },
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
    }
    assert!(wrong.is_empty(), "reachability:\n{}", wrong.join("\n"));
}

/// A TCP probe that must succeed; returns the address the server saw.
fn tcp_peer(from: &str, to: &str) -> String {
    let out = &run_probes(&[(from, Proto::Tcp, to)])[0];
    assert!(reached(Proto::Tcp, out), "TCP {from} -> {to}: {out:?}");
    peer(out)
}

/// `netd exec NAME -- sh -c SCRIPT`.
fn exec_sh(tb: &Testbed, name: &str, script: &str) -> Output {
    tb.netd(&["exec", name, "--", "sh", "-c", script])
}

// ---------------------------------------------------------------------------
// Small accessors.

fn drop_policy(tb: &Testbed) -> u64 {
    let stats = tb.netd_json(&["stats"]);
    stats["drop_policy"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.drop_policy.packets missing in {stats}"))
}

fn network_ls(tb: &Testbed) -> BTreeMap<String, Value> {
    let list = tb.netd_json(&["network", "ls"]);
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("network ls: not an array: {list}"));
    items
        .iter()
        .map(|n| (n["Name"].as_str().unwrap_or_default().to_owned(), n.clone()))
        .collect()
}

/// `network create ARGS...`; returns the id it printed (64 hex digits).
fn create(tb: &Testbed, args: &[&str]) -> String {
    let args: Vec<&str> = ["network", "create"].iter().chain(args).copied().collect();
    let id = tb.netd_ok(&args).trim().to_owned();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "`netd {}` printed {id:?}, not a network id",
        args.join(" ")
    );
    id
}

fn net_inspect(tb: &Testbed, net: &str) -> Value {
    tb.netd_json(&["network", "inspect", net])
}

/// The bridge device of a network (from `network inspect`).
fn bridge_of(tb: &Testbed, net: &str) -> String {
    let info = net_inspect(tb, net);
    info["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or_else(|| panic!("no bridge name in {info}"))
        .to_owned()
}

/// `ip -o -4 addr show dev DEV` in namespace `ns`.
fn addrs(ns: &str, dev: &str) -> String {
    in_ns_ok(ns, &["ip", "-o", "-4", "addr", "show", "dev", dev])
}

/// `container inspect NAME`'s `interfaces`.
fn interfaces(tb: &Testbed, name: &str) -> Vec<Value> {
    let info = tb.inspect(name);
    info["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no interfaces array in {info}"))
        .clone()
}

/// What a failed `container` call must leave unchanged. Not
/// `Testbed::snapshot`: its `container ls` wants an `ip`, which host, none
/// and container mode containers do not have.
fn snapshot(tb: &Testbed) -> (Value, BTreeSet<String>, Vec<String>) {
    (
        tb.netd_json(&["container", "ls"]),
        tb.host_links(),
        tb.container_netns(),
    )
}

/// What a failed network call must leave unchanged.
fn net_snapshot(tb: &Testbed) -> (BTreeMap<String, Value>, BTreeSet<String>) {
    (network_ls(tb), tb.host_links())
}

/// The call fails with one `error: ` line containing every word of `want`,
/// and changes neither the networks nor the host's interfaces.
fn refused(tb: &Testbed, args: &[&str], want: &[&str]) -> String {
    let before = net_snapshot(tb);
    let err = tb.netd_err(args);
    for word in want {
        assert!(
            err.contains(word),
            "`netd {}`: {err:?} does not mention {word:?}",
            args.join(" ")
        );
    }
    assert_eq!(
        net_snapshot(tb),
        before,
        "`netd {}` ({err}) left state behind",
        args.join(" ")
    );
    err
}

/// `getent hosts NAME` in namespace `ns` with `resolv` (and, if given,
/// `hosts`) bind-mounted over /etc, in a private mount namespace.
///
/// With a hosts file it is `getent ahostsv4`: `getent hosts` asks for IPv6
/// first, which the hosts file cannot answer, and would then wait for the
/// (unreachable) --dns servers.
fn getent_cmd(ns: &str, resolv: &str, hosts: Option<&str>, name: &str) -> Command {
    let mut script = format!("mount --bind {resolv} /etc/resolv.conf");
    let database = match hosts {
        Some(hosts) => {
            script.push_str(&format!(" && mount --bind {hosts} /etc/hosts"));
            "ahostsv4"
        }
        None => "hosts",
    };
    script.push_str(&format!(" && exec getent {database} {name}"));
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c"])
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn getent(ns: &str, resolv: &str, hosts: Option<&str>, name: &str) -> Output {
    let out = getent_cmd(ns, resolv, hosts, name).output();
    out.unwrap_or_else(|e| panic!("cannot run getent: {e}"))
}

/// Asserts that none of `(namespace, resolv.conf, name)` resolves. All at
/// once: the embedded DNS forwards unknown names to its upstream, and each
/// lookup takes seconds to fail.
fn assert_unresolved(lookups: &[(&str, &str, &str)]) {
    let children: Vec<Child> = lookups
        .iter()
        .map(|(ns, resolv, name)| {
            getent_cmd(ns, resolv, None, name)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run getent: {e}"))
        })
        .collect();
    for ((ns, _, name), child) in lookups.iter().zip(children) {
        let out = child.wait_with_output().expect("wait for getent");
        assert_ne!(
            out.status.code(),
            Some(124),
            "getent {name} in {ns} timed out"
        );
        assert!(
            !out.status.success(),
            "{name} (another network) resolved in {ns}: {out:?}"
        );
    }
}

/// The address `getent hosts NAME` resolved (asserting it resolved).
fn resolves(ns: &str, resolv: &str, hosts: Option<&str>, name: &str) -> String {
    let out = getent(ns, resolv, hosts, name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "getent hosts {name} in {ns} failed: {out:?}"
    );
    stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------
// `network create / ls / inspect / rm`.

#[test]
fn network_create_inspect_ls_rm() {
    let tb = Testbed::new();
    let front = create(&tb, &["front"]);
    let back = create(&tb, &["back"]);
    let lab = create(
        &tb,
        &[
            "lab",
            "--subnet",
            "172.30.5.0/24",
            "--gateway",
            "172.30.5.254",
            "--internal",
            "--bridge",
            "labbr0",
        ],
    );
    assert_eq!(
        net_inspect(&tb, "front")["Containers"],
        json!({}),
        "no containers yet"
    );
    let (c1, c2) = (
        tb.add_with("c1", &["--network", "front"]),
        tb.add_with("c2", &["--network", "front"]),
    );
    assert_eq!(tb.ip_of(&c2), "172.18.0.3");
    let info = tb.inspect(&c1);
    for (key, want) in [
        ("network", json!("front")),
        ("mode", json!("bridge")),
        ("ip", json!("172.18.0.2")),
        ("gateway", json!("172.18.0.1")),
    ] {
        assert_eq!(info[key], want, "inspect {c1}.{key} in {info}");
    }
    let eth0 = &info["interfaces"][0];
    for (key, want) in [
        ("name", json!("eth0")),
        ("network", json!("front")),
        ("ip", json!("172.18.0.2")),
        ("prefix_len", json!(16)),
        ("gateway", json!("172.18.0.1")),
        ("mac", json!("02:42:ac:12:00:02")),
        ("host_veth", info["host_veth"].clone()),
        ("host_ifindex", info["host_ifindex"].clone()),
    ] {
        assert_eq!(eth0[key], want, "interfaces[0].{key} in {info}");
    }
    assert_eq!(info["interfaces"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        tb.netd_ok(&[
            "exec", &c1, "--", "ip", "-o", "-4", "route", "show", "default"
        ])
        .split_whitespace()
        .nth(2),
        Some("172.18.0.1"),
        "default route of {c1}"
    );

    // inspect, field by field.
    let info = net_inspect(&tb, "front");
    assert_eq!(info["Name"], "front", "{info}");
    assert_eq!(info["Id"], front.as_str(), "{info}");
    assert_eq!(info["Driver"], "bridge", "{info}");
    assert_eq!(info["Scope"], "local", "{info}");
    assert_eq!(info["EnableIPv6"], false, "{info}");
    assert_eq!(info["Internal"], false, "{info}");
    assert_eq!(
        info["IPAM"],
        json!({"Driver": "default",
               "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}),
        "{info}"
    );
    let mut want = serde_json::Map::new();
    for (name, ip, mac) in [
        (&c1, "172.18.0.2/16", "02:42:ac:12:00:02"),
        (&c2, "172.18.0.3/16", "02:42:ac:12:00:03"),
    ] {
        want.insert(
            tb.field(name, "id"),
            json!({"Name": name, "MacAddress": mac, "IPv4Address": ip, "IPv6Address": ""}),
        );
    }
    assert_eq!(info["Containers"], Value::Object(want), "{info}");
    let bridge = bridge_of(&tb, "front");
    assert_eq!(
        info["Options"],
        json!({"com.docker.network.bridge.name": bridge}),
        "{info}"
    );
    assert!(
        bridge.starts_with("br-") && front.starts_with(&bridge[3..]),
        "default bridge name br-<id prefix>: {bridge} for {front}"
    );
    assert!(
        addrs(&tb.host(), &bridge).contains("inet 172.18.0.1/16"),
        "gateway address on {bridge}"
    );
    let veth = tb.field(&c1, "host_veth");
    let link = tb.host_link(&veth).unwrap_or_default();
    assert!(
        link.contains(&format!("master {bridge}")),
        "{veth} not on {bridge}: {link}"
    );

    // A second default network gets the next /16; --subnet/--gateway/
    // --internal/--bridge are honoured.
    let info = net_inspect(&tb, "back");
    assert_eq!(
        info["IPAM"]["Config"],
        json!([{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}])
    );
    let info = net_inspect(&tb, "lab");
    assert_eq!(info["Id"], lab.as_str());
    assert_eq!(info["Internal"], true, "{info}");
    assert_eq!(
        info["IPAM"]["Config"],
        json!([{"Subnet": "172.30.5.0/24", "Gateway": "172.30.5.254"}])
    );
    assert_eq!(
        info["Options"],
        json!({"com.docker.network.bridge.name": "labbr0"})
    );
    assert!(addrs(&tb.host(), "labbr0").contains("inet 172.30.5.254/24"));
    let info = net_inspect(&tb, "bridge");
    assert_eq!(
        info["IPAM"]["Config"],
        json!([{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}])
    );
    assert_eq!(
        info["Options"]["com.docker.network.bridge.name"], "netd0",
        "{info}"
    );

    // ls, with the host and none pseudo networks.
    let ls = network_ls(&tb);
    let names: BTreeSet<&str> = ls.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["back", "bridge", "front", "host", "lab", "none"]),
        "{ls:?}"
    );
    let row = |name: &str, id: &str, driver: &str, subnet: &str, internal: bool| {
        json!({"Name": name, "Id": id, "Driver": driver, "Scope": "local",
               "Subnet": subnet, "Internal": internal})
    };
    assert_eq!(
        ls["front"],
        row("front", &front, "bridge", "172.18.0.0/16", false)
    );
    assert_eq!(
        ls["back"],
        row("back", &back, "bridge", "172.19.0.0/16", false)
    );
    assert_eq!(ls["lab"], row("lab", &lab, "bridge", "172.30.5.0/24", true));
    assert_eq!(ls["bridge"]["Driver"], "bridge");
    assert_eq!(ls["bridge"]["Subnet"], "172.17.0.0/16");
    assert_eq!(ls["host"]["Driver"], "host");
    assert_eq!(ls["none"]["Driver"], "null");
    let text = tb.netd_ok(&["network", "ls"]);
    for name in ["bridge", "front", "back", "lab", "host", "none"] {
        assert!(text.contains(name), "text ls lacks {name}:\n{text}");
    }

    // rm: an empty network goes away with its bridge; its subnet is free
    // again.
    let back_bridge = bridge_of(&tb, "back");
    tb.netd_ok(&["network", "rm", "back"]);
    assert!(tb.host_link(&back_bridge).is_none(), "{back_bridge} left");
    assert!(!network_ls(&tb).contains_key("back"));
    tb.netd_err(&["network", "inspect", "back"]);
    create(&tb, &["again"]);
    assert_eq!(
        net_inspect(&tb, "again")["IPAM"]["Config"][0]["Subnet"],
        "172.19.0.0/16",
        "172.19.0.0/16 was not released"
    );
    // Once its containers are gone, `front` can go too.
    tb.rm(&c1);
    tb.rm(&c2);
    tb.netd_ok(&["network", "rm", "front"]);
    assert!(tb.host_link(&bridge).is_none(), "{bridge} left");
    assert!(!network_ls(&tb).contains_key("front"));
}

#[test]
fn network_create_refusals() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["network", "create", "x1", "--subnet", "172.18.5.0/24"],
            &["overlaps"],
        ),
        (
            &["network", "create", "x2", "--subnet", "172.16.0.0/12"],
            &["overlaps"],
        ),
        (
            &["network", "create", "x3", "--subnet", "172.17.128.0/17"],
            &["overlaps"],
        ),
        (&["network", "create", "front"], &["already exists"]),
        (&["network", "create", "bridge"], &["already exists"]),
        (&["network", "create", "host"], &["already exists"]),
        (&["network", "create", "none"], &["already exists"]),
        (
            &[
                "network",
                "create",
                "x4",
                "--subnet",
                "172.30.0.0/24",
                "--gateway",
                "172.31.0.1",
            ],
            &[],
        ),
    ];
    for (args, want) in cases {
        refused(&tb, args, want);
    }
    // Nothing was half-created: the names and the subnets are still free.
    create(&tb, &["x1", "--subnet", "172.30.0.0/24"]);
    assert_eq!(
        net_inspect(&tb, "x1")["IPAM"]["Config"],
        json!([{"Subnet": "172.30.0.0/24", "Gateway": "172.30.0.1"}])
    );
}

#[test]
fn network_rm_refused_while_containers_attached() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    let (c1, c2) = (
        tb.add_with("c1", &["--network", "front"]),
        tb.add_with("c2", &["--network", "front"]),
    );
    let err = refused(
        &tb,
        &["network", "rm", "front"],
        &["has containers attached"],
    );
    assert!(
        err.contains(&format!("{c1}, {c2}")),
        "the error must name the attached containers: {err}"
    );
    // Still fully working.
    tb.ping(&c1, "172.18.0.3");
    tb.ping(&c2, "172.18.0.2");
    refused(&tb, &["network", "rm", "bridge"], &[]);
    refused(&tb, &["network", "rm", "nosuch"], &[]);
    tb.rm(&c1);
    let err = refused(
        &tb,
        &["network", "rm", "front"],
        &["has containers attached"],
    );
    assert!(
        err.contains(&c2) && !err.contains(&format!("{c1},")),
        "{err}"
    );
    tb.rm(&c2);
    tb.netd_ok(&["network", "rm", "front"]);
}

// ---------------------------------------------------------------------------
// Isolation.

#[test]
fn networks_are_isolated_both_directions() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    create(&tb, &["back"]);
    let c1 = tb.add_with("c1", &["--network", "front"]); // 172.18.0.2
    let c2 = tb.add_with("c2", &["--network", "front"]); // 172.18.0.3
    let c3 = tb.add_with("c3", &["--network", "back"]); // 172.19.0.2
    let c4 = tb.add("c4"); // bridge, 172.17.0.2
    assert_eq!(tb.ip_of(&c3), "172.19.0.2");
    assert_eq!(tb.ip_of(&c4), "172.17.0.2");
    let _servers: Vec<Bg> = [&c1, &c2, &c3, &c4]
        .into_iter()
        .flat_map(|c| servers(c))
        .collect();
    let drops = drop_policy(&tb);
    assert_reach(&[
        (&c1, "172.18.0.3", true),
        (&c2, "172.18.0.2", true),
        (&c1, "172.19.0.2", false),
        (&c3, "172.18.0.2", false),
        (&c1, "172.17.0.2", false),
        (&c4, "172.18.0.2", false),
        (&c3, "172.17.0.2", false),
        (&c4, "172.19.0.2", false),
    ]);
    assert_eq!(
        tcp_peer(&c1, "172.18.0.3"),
        "172.18.0.2",
        "no NAT inside a network"
    );
    let after = drop_policy(&tb);
    assert!(
        after > drops,
        "drop_policy did not move: {drops} -> {after}"
    );
}

#[test]
fn internal_network_stays_inside() {
    let tb = Testbed::new();
    create(&tb, &["lab", "--internal"]); // 172.18.0.0/16
    create(&tb, &["open"]); // 172.19.0.0/16
    let c1 = tb.add_with("c1", &["--network", "lab"]);
    let c2 = tb.add_with("c2", &["--network", "lab"]);
    let c3 = tb.add_with("c3", &["--network", "open"]);
    let routes = in_ns_ok(&c1, &["ip", "route"]);
    assert!(
        !routes.contains("default"),
        "internal network with a default route:\n{routes}"
    );
    let ext = tb.ext();
    let _servers: Vec<Bg> = [&c1, &c2, &ext]
        .into_iter()
        .flat_map(|ns| servers(ns))
        .collect();
    // Inside: both directions. Outside: a normal network gets out (the
    // control), the internal one does not.
    assert_reach(&[
        (&c1, "172.18.0.3", true),
        (&c2, "172.18.0.2", true),
        (&c1, "198.18.0.2", false),
        (&c3, "198.18.0.2", true),
    ]);
    assert_eq!(tcp_peer(&c3, "198.18.0.2"), "198.18.0.1", "masquerade");

    // Give the traffic every chance: a default route in the container and a
    // route back in the outside namespace. Without the eBPF policy the host
    // would forward both ways (no NAT needed with the return route).
    in_ns_ok(&c1, &["ip", "route", "add", "default", "via", "172.18.0.1"]);
    in_ns_ok(
        &ext,
        &["ip", "route", "add", "172.18.0.0/16", "via", "198.18.0.1"],
    );
    let drops = drop_policy(&tb);
    assert_reach(&[
        (&c1, "198.18.0.2", false),
        (&ext, "172.18.0.2", false),
        (&c1, "172.18.0.3", true),
    ]);
    let after = drop_policy(&tb);
    assert!(
        after > drops,
        "drop_policy did not move: {drops} -> {after}"
    );
}

// ---------------------------------------------------------------------------
// connect / disconnect.

/// Seed 002: a container on a user network also joins the default bridge.
#[test]
fn connect_and_disconnect_seed002() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    let c1 = tb.add_with("c1", &["--network", "front"]); // 172.18.0.2
    let c3 = tb.add_with("c3", &["--network", "front"]); // 172.18.0.3
    let c2 = tb.add("c2"); // bridge, 172.17.0.2
    let _servers: Vec<Bg> = [&c1, &c2, &c3]
        .into_iter()
        .flat_map(|c| servers(c))
        .collect();
    assert_reach(&[(&c1, "172.17.0.2", false), (&c2, "172.18.0.2", false)]);

    tb.netd_ok(&["network", "connect", "bridge", &c1]);
    let ifs = interfaces(&tb, &c1);
    assert_eq!(ifs.len(), 2, "{ifs:?}");
    let eth1 = &ifs[1];
    for (key, want) in [
        ("name", json!("eth1")),
        ("network", json!("bridge")),
        ("ip", json!("172.17.0.3")),
        ("prefix_len", json!(16)),
        ("gateway", json!("172.17.0.1")),
        ("mac", json!("02:42:ac:11:00:03")),
    ] {
        assert_eq!(eth1[key], want, "interfaces[1].{key} in {eth1}");
    }
    assert_eq!(ifs[0]["name"], "eth0");
    assert_eq!(ifs[0]["network"], "front");
    let veth = eth1["host_veth"].as_str().unwrap_or_default().to_owned();
    let link = tb.host_link(&veth).unwrap_or_default();
    assert!(link.contains("master netd0"), "{veth}: {link}");
    assert_eq!(
        link.split(':').next().map(str::trim),
        eth1["host_ifindex"]
            .as_u64()
            .map(|i| i.to_string())
            .as_deref()
    );
    assert!(addrs(&c1, "eth1").contains("inet 172.17.0.3/16"));
    let members = &net_inspect(&tb, "bridge")["Containers"];
    assert_eq!(
        members[tb.field(&c1, "id")]["IPv4Address"],
        "172.17.0.3/16",
        "{members}"
    );

    // c1 now reaches both networks; the others stay apart.
    assert_reach(&[
        (&c1, "172.17.0.2", true),
        (&c2, "172.17.0.3", true),
        (&c1, "172.18.0.3", true),
        (&c3, "172.18.0.2", true),
        (&c2, "172.18.0.2", false),
        (&c3, "172.17.0.3", false),
        (&c3, "172.17.0.2", false),
    ]);
    assert_eq!(tcp_peer(&c1, "172.17.0.2"), "172.17.0.3");

    // Refusals change nothing.
    refused(&tb, &["network", "connect", "bridge", &c1], &[]);
    refused(&tb, &["network", "connect", "nosuch", &c1], &[]);
    refused(
        &tb,
        &["network", "connect", "front", &c2, "--ip", "172.18.0.3"],
        &[],
    );
    refused(&tb, &["network", "disconnect", "front", &c2], &[]);
    assert_eq!(interfaces(&tb, &c2).len(), 1);

    // --ip, and eth2; `network rm` names containers attached by connect.
    create(&tb, &["back"]);
    tb.netd_ok(&["network", "connect", "back", &c1, "--ip", "172.19.0.50"]);
    let ifs = interfaces(&tb, &c1);
    assert_eq!(ifs.len(), 3, "{ifs:?}");
    assert_eq!(ifs[2]["name"], "eth2");
    assert_eq!(ifs[2]["ip"], "172.19.0.50");
    assert!(addrs(&c1, "eth2").contains("inet 172.19.0.50/16"));
    tb.ping(&c1, "172.19.0.1");
    let err = refused(
        &tb,
        &["network", "rm", "back"],
        &["has containers attached"],
    );
    assert!(err.contains(&c1), "{err}");
    tb.netd_ok(&["network", "disconnect", "back", &c1]);
    tb.netd_ok(&["network", "rm", "back"]);

    // disconnect: eth1 and its veth go, and so does the reachability.
    tb.netd_ok(&["network", "disconnect", "bridge", &c1]);
    assert_eq!(interfaces(&tb, &c1).len(), 1);
    assert!(
        tb.host_link(&veth).is_none(),
        "{veth} left after disconnect"
    );
    let links = in_ns_ok(&c1, &["ip", "-o", "link", "show"]);
    assert!(
        !links.contains("eth1") && !links.contains("eth2"),
        "{links}"
    );
    assert!(
        net_inspect(&tb, "bridge")["Containers"]
            .get(tb.field(&c1, "id"))
            .is_none(),
        "{c1} still a member of bridge"
    );
    assert_reach(&[
        (&c1, "172.17.0.2", false),
        (&c2, "172.17.0.3", false),
        (&c1, "172.18.0.3", true),
    ]);
    refused(&tb, &["network", "disconnect", "bridge", &c1], &[]);
}

// ---------------------------------------------------------------------------
// Modes.

#[test]
fn host_mode_uses_the_host_namespace() {
    let tb = Testbed::new();
    let h2 = tb.name("h2");
    let before = snapshot(&tb);
    let err = tb.netd_err(&["container", "add", &h2, "--network", "host", "-p", "80:80"]);
    assert!(err.contains("host"), "{err}");
    assert_eq!(snapshot(&tb), before, "refused add left state behind");
    assert!(!netns_exists(&h2));

    let h = tb.add_with("h", &["--network", "host"]);
    assert!(!netns_exists(&h), "host mode created /run/netns/{h}");
    let info = tb.inspect(&h);
    assert_eq!(info["mode"], "host", "{info}");
    assert_eq!(info["network"], "host", "{info}");
    assert_eq!(info["interfaces"], json!([]), "{info}");
    let out = tb.netd_ok(&["exec", &h, "--", "ip", "-o", "-4", "addr"]);
    assert!(
        out.contains("uplink0") && out.contains("inet 198.18.0.1/24"),
        "exec in host mode does not run in the host netns:\n{out}"
    );
    // Real traffic from the host mode container: the server outside sees
    // the host's own address.
    let _srv = server_in(&tb.ext(), Proto::Tcp, TCP_PORT, None);
    let out = exec_sh(&tb, &h, &client_script(Proto::Tcp, "198.18.0.2", TCP_PORT));
    assert!(reached(Proto::Tcp, &out), "{out:?}");
    assert_eq!(peer(&out), "198.18.0.1");
    tb.rm(&h);
    assert!(
        tb.host_link("uplink0").is_some(),
        "rm of a host mode container broke the host netns"
    );
}

#[test]
fn none_mode_has_only_loopback() {
    let tb = Testbed::new();
    let n = tb.add_with("n", &["--network", "none"]);
    assert!(netns_exists(&n), "/run/netns/{n} missing");
    let info = tb.inspect(&n);
    assert_eq!(info["mode"], "none", "{info}");
    assert_eq!(info["network"], "none", "{info}");
    assert_eq!(info["interfaces"], json!([]), "{info}");
    let links = in_ns_ok(&n, &["ip", "-o", "link", "show"]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "{links}");
    assert!(links.contains(",UP"), "lo is down: {links}");
    let v4 = in_ns_ok(&n, &["ip", "-o", "-4", "addr"]);
    assert_eq!(v4.lines().count(), 1, "{v4}");
    assert!(v4.contains("inet 127.0.0.1/8"), "{v4}");
    assert!(in_ns_ok(&n, &["ip", "route"]).trim().is_empty());
    tb.ping(&n, "127.0.0.1");
    let out = in_ns(&n, &["ping", "-c1", "-W1", "172.17.0.1"]);
    assert!(!out.status.success(), "none mode reached the gateway");
    tb.rm(&n);
    assert!(!netns_exists(&n), "/run/netns/{n} left");
}

#[test]
fn container_mode_shares_the_namespace() {
    let tb = Testbed::new();
    let c1 = tb.add("c1"); // 172.17.0.2
    let c2 = tb.add("c2"); // 172.17.0.3
    let s = tb.add_with("s", &["--network", &format!("container:{c1}")]);
    assert!(!netns_exists(&s), "container mode created /run/netns/{s}");
    let info = tb.inspect(&s);
    assert_eq!(info["mode"], format!("container:{c1}"), "{info}");
    let show = ["ip", "-o", "-4", "addr", "show", "dev", "eth0"];
    let mine = tb.netd_ok(&[&["exec", &c1, "--"][..], &show].concat());
    let shared = tb.netd_ok(&[&["exec", &s, "--"][..], &show].concat());
    assert!(mine.contains("inet 172.17.0.2/16"), "{mine}");
    assert_eq!(mine, shared, "{s} does not share {c1}'s namespace");

    // localhost is shared: a server in one, a client in the other.
    let _in_c1 = server_in(&c1, Proto::Tcp, TCP_PORT, Some("127.0.0.1"));
    let out = exec_sh(&tb, &s, &client_script(Proto::Tcp, "127.0.0.1", TCP_PORT));
    assert!(
        reached(Proto::Tcp, &out),
        "{s} -> {c1} via localhost: {out:?}"
    );
    let mut cmd = Command::new(netd_bin());
    cmd.arg("--socket")
        .arg(tb.socket())
        .args(["exec", &s, "--"])
        .args(socat_server(Proto::Tcp, 7003, Some("127.0.0.1")));
    let what = format!("TCP server :7003 in {s}");
    let mut in_s = Bg::command(&what, cmd, Path::new("/dev/null"));
    in_s.wait_listening(&c1, "tcp", 7003);
    let out = exec_sh(&tb, &c1, &client_script(Proto::Tcp, "127.0.0.1", 7003));
    assert!(
        reached(Proto::Tcp, &out),
        "{c1} -> {s} via localhost: {out:?}"
    );
    drop(in_s);

    // The shared namespace cannot go while shared.
    let before = snapshot(&tb);
    let err = tb.netd_err(&["container", "rm", &c1]);
    assert!(err.contains(&s), "the error must name {s}: {err}");
    assert_eq!(snapshot(&tb), before, "refused rm changed state");
    assert!(netns_exists(&c1));
    tb.ping(&c2, "172.17.0.2");
    tb.rm(&s);
    assert!(netns_exists(&c1), "rm {s} removed {c1}'s namespace");
    tb.ping(&c2, "172.17.0.2");
    tb.rm(&c1);
    assert!(!netns_exists(&c1));
}

// ---------------------------------------------------------------------------
// Names: hosts, resolv.conf, embedded DNS.

/// `(address, names)` of every entry of a hosts file.
fn hosts_entries(path: &str) -> Vec<(String, Vec<String>)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace().map(str::to_owned);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

fn has_entry(entries: &[(String, Vec<String>)], ip: &str, name: &str) -> bool {
    entries
        .iter()
        .any(|(a, names)| a == ip && names.iter().any(|n| n == name))
}

fn nameservers(path: &str) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn hostname_dns_and_add_host_files() {
    let tb = Testbed::new();
    let c1 = tb.add_with(
        "c1",
        &[
            "--hostname",
            "web1",
            "--dns",
            "198.18.0.53",
            "--dns",
            "198.18.0.54",
            "--add-host",
            "db.local:198.18.0.10",
            "--add-host",
            "cache:198.18.0.11",
        ],
    );
    let info = tb.inspect(&c1);
    assert_eq!(info["hostname"], "web1", "{info}");
    let hosts = tb.field(&c1, "hosts_path");
    let resolv = tb.field(&c1, "resolv_conf_path");
    for path in [&hosts, &resolv] {
        assert!(
            Path::new(path).starts_with(tb.state_dir()),
            "{path} is not under the state dir"
        );
    }
    let entries = hosts_entries(&hosts);
    for (ip, name) in [
        ("127.0.0.1", "localhost"),
        ("172.17.0.2", "web1"),
        ("198.18.0.10", "db.local"),
        ("198.18.0.11", "cache"),
    ] {
        assert!(
            has_entry(&entries, ip, name),
            "{hosts} lacks {ip} {name}: {entries:?}"
        );
    }
    assert_eq!(nameservers(&resolv), ["198.18.0.53", "198.18.0.54"]);
    // The real resolver reads them.
    assert_eq!(
        resolves(&c1, &resolv, Some(&hosts), "db.local"),
        "198.18.0.10"
    );
    assert_eq!(resolves(&c1, &resolv, Some(&hosts), "web1"), "172.17.0.2");

    // On a user network resolv.conf points at the embedded DNS (the
    // gateway), whatever --dns says.
    create(&tb, &["front"]);
    let c2 = tb.add_with("c2", &["--network", "front", "--dns", "198.18.0.53"]);
    let resolv2 = tb.field(&c2, "resolv_conf_path");
    assert_eq!(nameservers(&resolv2), ["172.18.0.1"]);
    let hostname = tb.field(&c2, "hostname");
    assert!(!hostname.is_empty());
    let entries = hosts_entries(&tb.field(&c2, "hosts_path"));
    assert!(has_entry(&entries, "172.18.0.2", &hostname), "{entries:?}");

    // Bad values are refused without leftovers.
    for extra in [
        &["--add-host", "nocolon"][..],
        &["--add-host", "bad:notanip"],
        &["--dns", "notanip"],
    ] {
        let c9 = tb.name("c9");
        let before = snapshot(&tb);
        let args = [&["container", "add", &c9][..], extra].concat();
        tb.netd_err(&args);
        assert_eq!(
            snapshot(&tb),
            before,
            "`netd {}` left state",
            args.join(" ")
        );
        assert!(!netns_exists(&c9));
    }
}

#[test]
fn embedded_dns_resolves_names_on_user_network() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    create(&tb, &["back"]);
    let c1 = tb.add_with("c1", &["--network", "front"]); // 172.18.0.2
    let c2 = tb.add_with("c2", &["--network", "front", "--hostname", "web"]); // .3
    let c3 = tb.add_with("c3", &["--network", "back"]); // 172.19.0.2
    let c4 = tb.add("c4"); // bridge
    let host = tb.host();
    wait_until("the embedded DNS on 172.18.0.1:53", WAIT, || {
        String::from_utf8_lossy(&in_ns(&host, &["ss", "-Hlun"]).stdout).contains("172.18.0.1:53")
    });
    let r1 = tb.field(&c1, "resolv_conf_path");
    assert_eq!(resolves(&c1, &r1, None, &c2), "172.18.0.3");
    assert_eq!(resolves(&c1, &r1, None, "web"), "172.18.0.3");
    assert_eq!(resolves(&c1, &r1, None, &c1), "172.18.0.2");
    let r3 = tb.field(&c3, "resolv_conf_path");
    assert_eq!(nameservers(&r3), ["172.19.0.1"]);
    assert_eq!(resolves(&c3, &r3, None, &c3), "172.19.0.2");
    // Names of containers on other networks do not resolve.
    assert_unresolved(&[
        (&c1, &r1, &c3),
        (&c1, &r1, &c4),
        (&c3, &r3, &c1),
        (&c3, &r3, &c2),
        (&c3, &r3, "web"),
    ]);
}

/// Asks `server` for three unknown names (which go upstream), then at once
/// for `known`; prints the answer's address and how long it took.
const DNS_BEHIND_UPSTREAM: &str = r#"
import socket, struct, sys, time
server, known = sys.argv[1], sys.argv[2]
def query(qid, name):
    labels = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.'))
    return struct.pack('!HHHHHH', qid, 0x0100, 1, 0, 0, 0) + labels + b'\0' + struct.pack('!HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(15)
for i in range(3):
    s.sendto(query(100 + i, f'nosuch{i}.invalid'), (server, 53))
start = time.monotonic()
s.sendto(query(7, known), (server, 53))
while True:
    r = s.recv(512)
    if struct.unpack('!H', r[:2])[0] == 7:
        break
ancount = struct.unpack('!H', r[6:8])[0]
addr = socket.inet_ntoa(r[-4:]) if ancount else 'none'
print(f'{addr} {time.monotonic() - start:.3f}')
"#;

/// Names of the network are answered at once, also while queries for
/// unknown names wait for the upstream resolver.
#[test]
fn embedded_dns_answers_while_upstream_is_slow() {
    let tb = Testbed::new();
    create(&tb, &["front"]);
    let c1 = tb.add_with("c1", &["--network", "front"]);
    let c2 = tb.add_with("c2", &["--network", "front"]);
    let out = in_ns_ok(
        &c1,
        &["python3", "-c", DNS_BEHIND_UPSTREAM, "172.18.0.1", &c2],
    );
    let mut words = out.split_whitespace();
    let (addr, secs) = (
        words.next(),
        words.next().and_then(|s| s.parse::<f64>().ok()),
    );
    assert_eq!(addr, Some("172.18.0.3"), "{out}");
    let secs = secs.unwrap_or_else(|| panic!("no time in {out:?}"));
    assert!(
        secs < 1.0,
        "the answer for {c2} took {secs}s: it waited behind the upstream \
         lookups of unknown names (one query at a time?)"
    );
}

#[test]
fn embedded_dns_forwards_unknown_names_upstream() {
    let tb = Testbed::new(); // the harness passes --dns-upstream 198.18.0.2
    create(&tb, &["front"]);
    let c1 = tb.add_with("c1", &["--network", "front"]);
    let log = tb.tmp().join("upstream.log");
    let _upstream = Bg::server(
        &tb.ext(),
        &["timeout", "60", "python3", "-c", FAKE_UPSTREAM],
        &log,
        "udp",
        53,
    );
    let host = tb.host();
    wait_until("the embedded DNS on 172.18.0.1:53", WAIT, || {
        String::from_utf8_lossy(&in_ns(&host, &["ss", "-Hlun"]).stdout).contains("172.18.0.1:53")
    });
    let r1 = tb.field(&c1, "resolv_conf_path");
    // Not a container name: relayed to the upstream and its answer returned.
    assert_eq!(resolves(&c1, &r1, None, "example.test"), "198.18.0.77");
    // Container names are still answered locally.
    assert_eq!(resolves(&c1, &r1, None, &c1), "172.18.0.2");
}

/// `FAKE_UPSTREAM` on another address with another answer.
fn fake_upstream_at(bind: &str, answer_last_octet: u8) -> String {
    FAKE_UPSTREAM
        .replace("(\"198.18.0.2\", 53)", &format!("(\"{bind}\", 53)"))
        .replace(
            "[198, 18, 0, 77]",
            &format!("[198, 18, 0, {answer_last_octet}]"),
        )
}

#[test]
fn container_dns_servers_skip_netds_own_resolver_and_go_in_order() {
    let tb = Testbed::new(); // the harness passes --dns-upstream 198.18.0.2
    create(&tb, &["front"]); // resolver 172.18.0.1
    let ext = tb.ext();
    in_ns_ok(&ext, &["ip", "addr", "add", "198.18.0.3/24", "dev", "ext0"]);
    let tmp = tb.tmp().to_owned();
    let _default = Bg::server(
        &ext,
        &["timeout", "60", "python3", "-c", FAKE_UPSTREAM],
        &tmp.join("up2.log"),
        "udp",
        53,
    );
    let third = fake_upstream_at("198.18.0.3", 78);
    let mut up3 = Bg::spawn(
        &ext,
        &["timeout", "60", "python3", "-c", &third],
        &tmp.join("up3.log"),
    );
    wait_until("the second fake upstream", WAIT, || {
        String::from_utf8_lossy(&in_ns(&ext, &["ss", "-Hlun"]).stdout).contains("198.18.0.3:53")
    });
    assert!(up3.try_wait().is_none(), "{}", up3.log());
    // netd's own resolver as a --dns is no forwarder: the next one answers.
    let c1 = tb.add_with(
        "c1",
        &[
            "--network",
            "front",
            "--dns",
            "172.18.0.1",
            "--dns",
            "198.18.0.3",
        ],
    );
    // Servers are asked in order.
    let c2 = tb.add_with(
        "c2",
        &[
            "--network",
            "front",
            "--dns",
            "198.18.0.3",
            "--dns",
            "198.18.0.2",
        ],
    );
    let host = tb.host();
    wait_until("the embedded DNS on 172.18.0.1:53", WAIT, || {
        String::from_utf8_lossy(&in_ns(&host, &["ss", "-Hlun"]).stdout).contains("172.18.0.1:53")
    });
    for c in [&c1, &c2] {
        let resolv = tb.field(c, "resolv_conf_path");
        assert_eq!(
            resolves(c, &resolv, None, "example.test"),
            "198.18.0.78",
            "{c}"
        );
    }
}
