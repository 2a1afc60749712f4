//! What netd may touch and how it cleans up: never an interface it did not
//! create (an adopted bridge is explicit and survives), a daemon started in
//! a private mount namespace still visible to everyone, removals that
//! tolerate pieces already gone, and a default route that follows
//! `network connect`/`disconnect`.

use std::time::Duration;

use netd_tests::{Bg, HttpServer, Testbed, bpftool, bpftool_dump, curl_ok, in_ns_ok};

const HOST: &str = "198.18.0.1";
const EXT: &str = "198.18.0.2";

fn web(tb: &Testbed, ns: &str, port: u16, tag: &str) -> HttpServer {
    let dir = tb.tmp().join(format!("web-{tag}-{port}"));
    HttpServer::start(ns, port, &dir, &format!("{tag} {}\n", tb.p))
}

fn addrs(ns: &str, dev: &str) -> String {
    in_ns_ok(ns, &["ip", "-o", "-4", "addr", "show", "dev", dev])
}

fn default_route(ns: &str) -> String {
    in_ns_ok(ns, &["ip", "route", "show", "default"])
        .trim()
        .to_owned()
}

/// The peer address an ext server sees for a TCP connection from `ns`.
fn seen_from(tb: &Testbed, ns: &str, port: u16) -> String {
    let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
    let log = tb.tmp().join(format!("who-{port}.log"));
    let _who = Bg::server(
        &tb.ext(),
        &["socat", "-t5", &listen, "SYSTEM:echo $SOCAT_PEERADDR"],
        &log,
        "tcp",
        port,
    );
    let target = format!("TCP:{EXT}:{port}");
    in_ns_ok(ns, &["socat", "-t5", "-T5", "-", &target])
        .trim()
        .to_owned()
}

#[test]
fn interfaces_that_are_not_netds_are_never_taken_over() {
    let tb = Testbed::new();
    let host = tb.host();
    let before = tb.snapshot();
    for dev in ["uplink0", "lo"] {
        let err = tb.netd_err(&["network", "create", "x", "--bridge", dev]);
        assert!(err.contains("not a bridge"), "{err}");
    }
    assert!(addrs(&host, "uplink0").contains("198.18.0.1/24"));
    assert!(
        !addrs(&host, "uplink0").contains("172."),
        "uplink re-addressed"
    );
    // A bridge someone else made: refused unless adopted explicitly.
    in_ns_ok(&host, &["ip", "link", "add", "br-mine", "type", "bridge"]);
    let err = tb.netd_err(&["network", "create", "y", "--bridge", "br-mine"]);
    assert!(err.contains("--adopt-bridge"), "{err}");
    let err = tb.netd_err(&[
        "network",
        "create",
        "z",
        "--bridge",
        "nope",
        "--adopt-bridge",
    ]);
    assert!(err.contains("no bridge nope"), "{err}");
    assert_eq!(tb.snapshot().host_links, {
        let mut links = before.host_links.clone();
        links.insert("br-mine".into());
        links
    });

    tb.netd_ok(&[
        "network",
        "create",
        "y",
        "--bridge",
        "br-mine",
        "--adopt-bridge",
        "--subnet",
        "172.29.0.0/24",
    ]);
    let c1 = tb.add_with("c1", &["--network", "y"]);
    tb.ping(&c1, "172.29.0.1");
    tb.rm(&c1);
    tb.netd_ok(&["network", "rm", "y"]);
    assert!(tb.host_link("br-mine").is_some(), "adopted bridge deleted");
    assert!(
        !addrs(&host, "br-mine").contains("172.29.0.1"),
        "address left"
    );

    // Adopted again, then `netd down`: still only the address goes.
    tb.netd_ok(&[
        "network",
        "create",
        "y",
        "--bridge",
        "br-mine",
        "--adopt-bridge",
    ]);
    let mut tb = tb;
    tb.netd_ok(&["down"]);
    tb.wait_exit(Duration::from_secs(20));
    assert!(
        tb.host_link("br-mine").is_some(),
        "down deleted an adopted bridge"
    );
    assert!(tb.host_link("uplink0").is_some());
    assert!(!addrs(&host, "br-mine").contains("172."), "address left");
}

#[test]
fn daemon_started_by_ip_netns_exec_is_visible_to_everyone() {
    let tb = Testbed::started_by_ip_netns_exec();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    // The container's namespace is usable from outside the daemon.
    in_ns_ok(&c1, &["ip", "link", "show", "eth0"]);
    // Its pins are where bpftool (and the operator) look.
    let dump = bpftool_dump(&tb.bpffs().join("NETD_PORTMAPS"));
    assert!(dump.contains("container_ip"), "{dump}");
    let server = web(&tb, &c1, 80, "c1");
    // Host-local access (the socket hooks on the real cgroup2 root) and
    // access from outside both work.
    assert_eq!(
        curl_ok(&tb.host(), "http://127.0.0.1:8088/id.txt"),
        server.body
    );
    assert_eq!(
        curl_ok(&tb.ext(), &format!("http://{HOST}:8088/id.txt")),
        server.body
    );
    assert!(tb.log().contains("joined the host's"), "{}", tb.log());
}

#[test]
fn rm_completes_when_datapath_entries_are_already_gone() {
    let tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let before_links = tb.host_veths();
    // An operator (or a crash) removed the endpoint's entry already.
    let map = tb.bpffs().join("NETD_ENDPOINTS");
    let map = map.to_string_lossy();
    let key = ["0xac", "0x11", "0x00", "0x02"]; // 172.17.0.2
    bpftool(&[["map", "delete", "pinned", &map, "key"].as_slice(), &key].concat());
    tb.rm(&c1);
    assert!(tb.ls().is_empty(), "container still listed");
    assert!(tb.container_netns().is_empty(), "namespace left");
    assert!(
        tb.netd_json(&["portmap", "ls"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(tb.host_veths().len() < before_links.len(), "veth left");
}

#[test]
fn disconnecting_the_default_network_moves_the_default_route() {
    let tb = Testbed::new();
    tb.netd_ok(&["network", "create", "a"]); // 172.18.0.0/16
    tb.netd_ok(&["network", "create", "lab", "--internal"]); // 172.19.0.0/16
    let c1 = tb.add("c1"); // bridge: default via 172.17.0.1
    tb.netd_ok(&["network", "connect", "lab", &c1]);
    tb.netd_ok(&["network", "connect", "a", &c1]);
    assert!(default_route(&c1).contains("via 172.17.0.1"));
    tb.netd_ok(&["network", "disconnect", "bridge", &c1]);
    // Not the internal network: the first one with a way out.
    let route = default_route(&c1);
    assert!(route.contains("via 172.18.0.1"), "{route}");
    assert_eq!(seen_from(&tb, &c1, 7790), HOST, "egress after disconnect");
    tb.netd_ok(&["network", "disconnect", "a", &c1]);
    assert_eq!(default_route(&c1), "", "a default route into nothing");
    tb.netd_ok(&["network", "connect", "bridge", &c1]);
    let route = default_route(&c1);
    assert!(route.contains("via 172.17.0.1"), "{route}");
    assert_eq!(seen_from(&tb, &c1, 7791), HOST, "egress after reconnect");
}

#[test]
fn published_ports_follow_host_address_changes_at_once() {
    // The GC timer (which also refreshes host addresses) is out of reach:
    // only address events can make the new addresses work in time.
    let tb = Testbed::with_daemon_args(&["--ct-gc-interval", "600"]);
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    in_ns_ok(
        &tb.host(),
        &["ip", "addr", "add", "198.18.0.5/24", "dev", "uplink0"],
    );
    let url = "http://198.18.0.5:8088/id.txt";
    netd_tests::wait_until(
        "the new host address to publish 8088",
        Duration::from_secs(3),
        || netd_tests::curl(&tb.ext(), url).status.success(),
    );
    assert_eq!(curl_ok(&tb.ext(), url), server.body);
    // A new network's gateway is a host address the moment it exists.
    tb.netd_ok(&["network", "create", "front"]); // gateway 172.18.0.1
    tb.netd_ok(&["portmap", "add", "172.18.0.1:8090:172.17.0.2:80"]);
    assert_eq!(
        curl_ok(&tb.host(), "http://172.18.0.1:8090/id.txt"),
        server.body
    );
}
