//! Docker on netd's plugin: a real dockerd (Debian's docker.io 20.10) in
//! the testbed's host namespace with `--iptables=false
//! --userland-proxy=false --bridge=none`, containers from a busybox image,
//! real traffic from the ext namespace (../shared/docs/engines.md).

use std::time::Duration;

use netd_tests::{
    Bg, HttpServer, Testbed, curl, curl_ok,
    docker::{DockerBed, USR},
    in_ns, in_ns_ok,
    topology::{EXT_IP6, HOST_IP6},
    wait_until,
};
use serde_json::Value;

const HOST: &str = "198.18.0.1";
const EXT: &str = "198.18.0.2";
const WAIT: Duration = Duration::from_secs(15);

/// busybox httpd in the foreground, logging clients to stderr (`-v`).
const HTTPD: &str = "httpd -f -v -p 80 -h /www";

/// No netfilter rule in the host namespace and no docker-proxy anywhere.
fn assert_no_netfilter(bed: &Testbed) {
    let ipt = in_ns_ok(&bed.host(), &["iptables-save"]);
    let rules: Vec<&str> = ipt
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with(':') && !l.contains("ACCEPT [0:0]"))
        .filter(|l| l.starts_with('-'))
        .collect();
    assert!(
        rules.is_empty(),
        "iptables rules in the host namespace:\n{ipt}"
    );
    let nft = in_ns_ok(&bed.host(), &["nft", "list", "ruleset"]);
    assert!(
        !nft.lines().any(|l| l.trim_start().starts_with("chain")
            || l.contains(" dnat ")
            || l.contains("masquerade")),
        "nftables rules in the host namespace:\n{nft}"
    );
    // docker-proxy processes in this testbed's host namespace (other
    // dockerds on the machine, a benchmark's say, are not this test's).
    let netns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let host_ns = netns_of(&bed.daemon_pid().to_string());
    assert!(host_ns.is_some(), "cannot read the daemon's namespace");
    let proxies: Vec<String> = std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "docker-proxy")
                && netns_of(pid) == host_ns
        })
        .collect();
    assert!(
        proxies.is_empty(),
        "docker-proxy runs in the host namespace: pids {proxies:?}"
    );
}

#[test]
fn published_ports_masquerade_names_and_no_netfilter() {
    let d = DockerBed::new();
    let bed = &d.bed;
    let net = d.network("n1", &[]);
    assert!(!net.is_empty());
    // The netd network behind it carries Docker's network id.
    let nets = bed.netd_json(&["network", "ls"]);
    assert!(
        nets.as_array()
            .unwrap()
            .iter()
            .any(|n| n["Id"].as_str() == Some(net.as_str())),
        "no netd network with Docker's id {net}: {nets}"
    );

    d.run_d(
        "web",
        &[
            "--network",
            "n1",
            "-p",
            "8080:80",
            "-p",
            "9000-9001:9000-9001/udp",
            "-p",
            "80",
            USR[0],
            USR[1],
        ],
        &[
            "sh",
            "-c",
            &format!("{HTTPD} & /usr/bin/python3 /udp-echo.py 9000 9001 & wait"),
        ],
    );
    d.wait_running("web");
    let web_ip = d.ip_on("web", "n1");
    assert!(!web_ip.is_empty(), "web has no address on n1");

    // TCP from outside to a published port; the container sees ext.
    let url = format!("http://{HOST}:8080/index.html");
    wait_until("web's httpd to answer", WAIT, || {
        curl(&bed.ext(), &url).status.success()
    });
    assert_eq!(curl_ok(&bed.ext(), &url).trim(), "hello from busybox");
    wait_until("httpd to log ext's address", WAIT, || {
        let logs = d.docker(&["logs", "web"]);
        String::from_utf8_lossy(&logs.stderr).contains(EXT)
            || String::from_utf8_lossy(&logs.stdout).contains(EXT)
    });

    // The UDP range answers on both ports.
    for port in [9000, 9001] {
        let payload = format!("ping-{port}");
        let mut got = String::new();
        wait_until(&format!("UDP echo on {port}"), WAIT, || {
            let out = in_ns(
                &bed.ext(),
                &["python3", "-c", UDP_ONCE, HOST, &port.to_string(), &payload],
            );
            got = String::from_utf8_lossy(&out.stdout).into_owned();
            got == payload
        });
    }

    // `-p 80`: the host port netd picked, shown by netd, reachable.
    let ports = d.netd_ports("web");
    let picked = ports
        .lines()
        .filter(|l| l.starts_with("80/tcp -> 0.0.0.0:"))
        .map(|l| l.rsplit(':').next().unwrap().to_string())
        .find(|p| p != "8080")
        .unwrap_or_else(|| panic!("no ephemeral port for 80/tcp in:\n{ports}"));
    assert!(ports.contains("9000/udp -> 0.0.0.0:9000"), "{ports}");
    assert!(ports.contains("9001/udp -> 0.0.0.0:9001"), "{ports}");
    let body = curl_ok(&bed.ext(), &format!("http://{HOST}:{picked}/index.html"));
    assert_eq!(body.trim(), "hello from busybox");
    // netd's listings name Docker's endpoint.
    let endpoint = d.endpoint_on("web", "n1");
    let maps = bed.portmaps();
    assert!(
        maps.iter()
            .any(|m| m["container_id"].as_str() == Some(endpoint.as_str())),
        "portmap ls does not show endpoint {endpoint}: {maps:?}"
    );

    // Out: the container reaches ext's server as 198.18.0.1.
    let server = HttpServer::start(&bed.ext(), 8000, &bed.tmp().join("ext-http"), "ext");
    let got = d.exec_ok(
        "web",
        &["wget", "-qO-", &format!("http://{EXT}:8000/id.txt")],
    );
    assert_eq!(got, "ext");
    server.wait_client(HOST);

    // A second container reaches the first by address and by name.
    d.run_d("peer", &["--network", "n1"], &["sleep", "3600"]);
    d.wait_running("peer");
    d.exec_ok("peer", &["ping", "-c1", "-W2", &web_ip]);
    let by_name = d.exec_ok("peer", &["wget", "-qO-", "http://web/index.html"]);
    assert_eq!(by_name, "hello from busybox");

    assert_no_netfilter(bed);
}

/// One UDP datagram and its answer (2 s).
const UDP_ONCE: &str = "import socket, sys\n\
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
    s.settimeout(2)\n\
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))\n\
    print(s.recv(65535).decode(), end='')\n";

/// The flows in netd's table that involve `ip`.
fn flows_of(bed: &Testbed, ip: &str) -> usize {
    bed.conntrack()
        .iter()
        .filter(|f| f.to_string().contains(&format!("\"{ip}:")))
        .count()
}

/// netd's containers (Docker endpoints), by name.
fn netd_containers(bed: &Testbed) -> Vec<String> {
    bed.ls().into_keys().collect()
}

#[test]
fn networks_are_isolated_and_internal_has_no_way_out() {
    let d = DockerBed::new();
    let bed = &d.bed;
    d.network("n1", &[]);
    d.network(
        "n2",
        &["--subnet", "198.19.2.0/24", "--gateway", "198.19.2.254"],
    );
    d.network("n3", &["--internal"]);
    d.run_d("a1", &["--network", "n1"], &["sleep", "3600"]);
    d.run_d("a2", &["--network", "n1"], &["sleep", "3600"]);
    d.run_d("b1", &["--network", "n2"], &["sleep", "3600"]);
    d.run_d("c1", &["--network", "n3"], &["sleep", "3600"]);
    d.run_d("c2", &["--network", "n3"], &["sleep", "3600"]);
    for c in ["a1", "a2", "b1", "c1", "c2"] {
        d.wait_running(c);
    }
    // --subnet and --gateway were honoured.
    let b1 = d.ip_on("b1", "n2");
    assert!(b1.starts_with("198.19.2."), "b1 got {b1}");
    let route = d.exec_ok("b1", &["ip", "route"]);
    assert!(route.contains("default via 198.19.2.254"), "{route}");
    // Same network: reachable; across networks: not.
    d.exec_ok("a1", &["ping", "-c1", "-W2", &d.ip_on("a2", "n1")]);
    assert!(!d.exec("a1", &["ping", "-c1", "-W1", &b1]).status.success());
    assert!(
        !d.exec("b1", &["ping", "-c1", "-W1", &d.ip_on("a1", "n1")])
            .status
            .success()
    );
    // Internal: its containers reach each other, nothing outside.
    d.exec_ok("c1", &["ping", "-c1", "-W2", &d.ip_on("c2", "n3")]);
    let route = d.exec_ok("c1", &["ip", "route"]);
    assert!(
        !route.contains("default"),
        "an internal network got a default route: {route}"
    );
    assert!(!d.exec("c1", &["ping", "-c1", "-W1", EXT]).status.success());
    let server = HttpServer::start(&bed.ext(), 8000, &bed.tmp().join("ext-http"), "ext");
    let url = format!("http://{EXT}:8000/id.txt");
    assert!(!d.exec("c1", &["wget", "-qO-", &url]).status.success());
    assert_eq!(d.exec_ok("a1", &["wget", "-qO-", &url]), "ext");
    assert!(
        server.clients().iter().all(|c| c == HOST),
        "{:?}",
        server.clients()
    );
    // No docker_gwbridge: every container has one interface besides lo.
    let links = d.exec_ok("a1", &["ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 2, "{links}");
    let host_links = bed.host_links();
    assert!(!host_links.contains("docker_gwbridge"), "{host_links:?}");
    assert_no_netfilter(bed);
}

#[test]
fn rm_stop_start_and_network_rm_leave_exactly_what_they_should() {
    let d = DockerBed::new();
    let bed = &d.bed;
    let net = d.network("n1", &[]);
    d.run_d(
        "web",
        &["--network", "n1", "-p", "8080:80"],
        &["sh", "-c", HTTPD],
    );
    d.wait_running("web");
    let ip = d.ip_on("web", "n1");
    let url = format!("http://{HOST}:8080/index.html");
    wait_until("web to answer", WAIT, || {
        curl(&bed.ext(), &url).status.success()
    });
    assert!(flows_of(bed, &ip) > 0, "no flow of {ip}");
    assert_eq!(bed.host_veths().len(), 1);

    // stop: the endpoint goes (veth, mapping, flows); start: it comes back.
    d.docker_ok(&["stop", "-t", "1", "web"]);
    wait_until("web's veth to go", WAIT, || bed.host_veths().is_empty());
    assert!(bed.portmaps().is_empty(), "{:?}", bed.portmaps());
    assert_eq!(flows_of(bed, &ip), 0, "flows of a stopped container");
    assert!(netd_containers(bed).is_empty());
    d.docker_ok(&["start", "web"]);
    d.wait_running("web");
    wait_until("web to answer again", WAIT, || {
        curl(&bed.ext(), &url).status.success()
    });
    assert_eq!(bed.portmaps().len(), 1);
    assert_eq!(netd_containers(bed).len(), 1);

    // rm -f: nothing of it is left.
    let ip = d.ip_on("web", "n1");
    d.docker_ok(&["rm", "-f", "web"]);
    wait_until("web's veth to go", WAIT, || bed.host_veths().is_empty());
    assert!(bed.portmaps().is_empty());
    assert_eq!(flows_of(bed, &ip), 0, "flows of a removed container");
    assert!(netd_containers(bed).is_empty());
    assert!(!curl(&bed.ext(), &url).status.success());

    // network rm: the netd network and its bridge go.
    let bridge = format!("br-{}", &net[..12]);
    assert!(bed.host_link(&bridge).is_some(), "no bridge {bridge}");
    d.docker_ok(&["network", "rm", "n1"]);
    let nets = bed.netd_json(&["network", "ls"]);
    assert!(!nets.to_string().contains(&net), "{nets}");
    assert!(bed.host_link(&bridge).is_none(), "bridge {bridge} left");
    // Its subnet is free again for the next network.
    let again = d.network("n2", &[]);
    let subnet = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        &again,
    ]);
    assert_eq!(subnet, "172.18.0.0/16");
}

#[test]
fn netd_restarts_and_kill9_keep_traffic_and_cleanup_follows() {
    let mut d = DockerBed::new();
    d.network("n1", &[]);
    d.run_d(
        "web",
        &["--network", "n1", "-p", "8080:80"],
        &["sh", "-c", HTTPD],
    );
    d.run_d(
        "gone",
        &["--network", "n1", "-p", "8081:80"],
        &["sh", "-c", HTTPD],
    );
    d.wait_running("web");
    d.wait_running("gone");
    let url = format!("http://{HOST}:8080/index.html");
    let ext = d.bed.ext();
    wait_until("web to answer", WAIT, || curl(&ext, &url).status.success());

    // Stopped: traffic continues; back up: a later rm cleans up.
    d.bed.stop();
    assert_eq!(curl_ok(&ext, &url).trim(), "hello from busybox");
    d.bed.restart();
    assert_eq!(curl_ok(&ext, &url).trim(), "hello from busybox");

    // Killed: traffic continues; Docker removes a container meanwhile
    // (its DeleteEndpoint fails); the next start removes what is left.
    let gone_ip = d.ip_on("gone", "n1");
    d.bed.kill9();
    assert_eq!(curl_ok(&ext, &url).trim(), "hello from busybox");
    let _ = d.docker(&["rm", "-f", "gone"]);
    d.bed.restart();
    assert_eq!(curl_ok(&ext, &url).trim(), "hello from busybox");
    wait_until("the leftover endpoint to be removed", WAIT, || {
        netd_containers(&d.bed).len() == 1 && d.bed.host_veths().len() == 1
    });
    let maps = d.bed.portmap_specs();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!(flows_of(&d.bed, &gone_ip), 0);
    assert!(!curl(&ext, &format!("http://{HOST}:8081/")).status.success());

    // A later docker rm cleans up through the restarted netd.
    d.docker_ok(&["rm", "-f", "web"]);
    wait_until("web's veth to go", WAIT, || d.bed.host_veths().is_empty());
    assert!(d.bed.portmaps().is_empty());
    assert!(netd_containers(&d.bed).is_empty());
    // And a new container starts on the restarted netd.
    d.run_d(
        "web2",
        &["--network", "n1", "-p", "8080:80"],
        &["sh", "-c", HTTPD],
    );
    d.wait_running("web2");
    wait_until("web2 to answer", WAIT, || curl(&ext, &url).status.success());
}

#[test]
fn dockerd_restart_brings_containers_back_on_netd() {
    let mut d = DockerBed::new();
    d.network("n1", &[]);
    d.run_d(
        "web",
        &["--network", "n1", "-p", "8080:80", "--restart", "always"],
        &["sh", "-c", HTTPD],
    );
    d.wait_running("web");
    let url = format!("http://{HOST}:8080/index.html");
    let ext = d.bed.ext();
    wait_until("web to answer", WAIT, || curl(&ext, &url).status.success());
    d.stop_dockerd();
    d.start_dockerd();
    d.wait_running("web");
    wait_until("web to answer after dockerd's restart", WAIT, || {
        curl(&ext, &url).status.success()
    });
    // One endpoint: the old one was deleted when dockerd stopped it.
    assert_eq!(netd_containers(&d.bed).len(), 1);
    assert_eq!(d.bed.host_veths().len(), 1);
    assert_eq!(d.bed.portmaps().len(), 1);
    assert_no_netfilter(&d.bed);
}

/// `docker network inspect NAME` as JSON.
fn network_inspect(d: &DockerBed, name: &str) -> Value {
    let out = d.docker_ok(&["network", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("docker network inspect JSON");
    v[0].clone()
}

/// The subnets of a Docker network's IPAM configuration.
fn docker_subnets(net: &Value) -> Vec<String> {
    net["IPAM"]["Config"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Subnet"].as_str().map(str::to_owned))
        .collect()
}

/// The netd network behind a Docker network, from `netd network ls`.
fn netd_network(bed: &Testbed, docker_id: &str) -> Option<Value> {
    bed.netd_json(&["network", "ls"])
        .as_array()?
        .iter()
        .find(|n| n["Id"].as_str() == Some(docker_id))
        .cloned()
}

/// An address in its short form (socat and Docker may write it in full).
fn short6(text: &str) -> String {
    let text = text.trim().trim_start_matches('[').trim_end_matches(']');
    text.parse::<std::net::Ipv6Addr>()
        .map_or_else(|_| text.to_owned(), |ip| ip.to_string())
}

#[test]
fn dual_stack_networks_publish_and_masquerade_ipv6() {
    let mut d = DockerBed::new();
    let bed = &d.bed;
    bed.uplink6();

    // netd's IPAM, no subnet given: a /64 of netd's ULA pool, shown by
    // Docker and by netd alike.
    let n6 = d.network("n6", &["--ipv6"]);
    let shown = network_inspect(&d, "n6");
    assert_eq!(shown["EnableIPv6"], Value::Bool(true), "{shown}");
    let subnets = docker_subnets(&shown);
    let subnet6 = subnets
        .iter()
        .find(|s| s.contains(':'))
        .unwrap_or_else(|| panic!("no IPv6 subnet in {shown}"))
        .clone();
    assert!(subnet6.starts_with("fd00:6e65:7464:"), "{subnet6}");
    assert!(subnet6.ends_with("/64"), "{subnet6}");
    let netd_net = netd_network(bed, &n6).expect("netd network of n6");
    assert_eq!(netd_net["Subnet6"].as_str(), Some(subnet6.as_str()));

    // Docker's default IPAM with both subnets given.
    let d6 = d.docker_ok(&[
        "network",
        "create",
        "-d",
        &d.plugin,
        "--ipv6",
        "--subnet",
        "10.88.0.0/24",
        "--subnet",
        "fd00:88::/64",
        "d6",
    ]);
    let netd_d6 = netd_network(bed, &d6).expect("netd network of d6");
    assert_eq!(netd_d6["Subnet6"].as_str(), Some("fd00:88::/64"));

    d.run_d(
        "web",
        &[
            "--network",
            "n6",
            "-p",
            "8080:80",
            "-p",
            "[2001:2::1]:8081:80",
            "-p",
            "0.0.0.0:8082:80",
            "-p",
            "[::]:8083:80",
            USR[0],
            USR[1],
        ],
        &["sh", "-c", HTTPD],
    );
    d.run_d("other", &["--network", "d6"], &["sleep", "3600"]);
    d.wait_running("web");
    d.wait_running("other");

    // The IPv6 address and gateway Docker shows are those in the
    // container, with the IPv6 default route via the gateway.
    let settings = &d.inspect("web")["NetworkSettings"]["Networks"]["n6"];
    let ip6 = settings["GlobalIPv6Address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let gw6 = settings["IPv6Gateway"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A /64: the upper half is the subnet, the gateway its first host.
    let base: std::net::Ipv6Addr = subnet6.trim_end_matches("/64").parse().unwrap();
    let in_subnet = |ip: &str| {
        ip.parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| u128::from(ip) >> 64 == u128::from(base) >> 64)
    };
    assert!(
        in_subnet(&ip6),
        "web's IPv6 address {ip6:?} is not in {subnet6}: {settings}"
    );
    let first = std::net::Ipv6Addr::from(u128::from(base) + 1).to_string();
    assert_eq!(gw6, first, "{settings}");
    let addrs = d.exec_ok("web", &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{ip6}/64")), "{addrs}");
    let routes = d.exec_ok("web", &["ip", "-6", "route"]);
    assert!(routes.contains(&format!("default via {gw6}")), "{routes}");
    let other6 = d.inspect("other")["NetworkSettings"]["Networks"]["d6"]["GlobalIPv6Address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(other6.starts_with("fd00:88::"), "{other6}");
    let addrs = d.exec_ok("other", &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{other6}/64")), "{addrs}");

    // In: from ext to the host's IPv6 address; httpd sees ext's address.
    let url6 = format!("http://[{HOST_IP6}]:8080/index.html");
    wait_until("web's httpd to answer over IPv6", WAIT, || {
        in_ns(&bed.ext(), &["curl", "-6", "-sS", "-m5", "-f", &url6])
            .status
            .success()
    });
    let body = in_ns_ok(&bed.ext(), &["curl", "-6", "-sS", "-m5", "-f", &url6]);
    assert_eq!(body.trim(), "hello from busybox");
    wait_until("httpd to log ext's IPv6 address", WAIT, || {
        let logs = d.docker(&["logs", "web"]);
        String::from_utf8_lossy(&logs.stderr).contains(EXT_IP6)
            || String::from_utf8_lossy(&logs.stdout).contains(EXT_IP6)
    });
    // netd shows the mapping once per family, as `docker port` would.
    let ports = d.netd_ports("web");
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");
    assert!(ports.contains("80/tcp -> [::]:8080"), "{ports}");
    // The same -p publishes IPv4 as before.
    assert_eq!(
        curl_ok(&bed.ext(), &format!("http://{HOST}:8080/index.html")).trim(),
        "hello from busybox"
    );

    // `-p [2001:2::1]:8081:80`: that IPv6 address only, ext seen as itself.
    let logged = || {
        let logs = d.docker(&["logs", "web"]);
        let text = String::from_utf8_lossy(&logs.stderr) + String::from_utf8_lossy(&logs.stdout);
        text.matches(EXT_IP6).count()
    };
    let seen = logged();
    let url81 = format!("http://[{HOST_IP6}]:8081/index.html");
    assert_eq!(
        in_ns_ok(&bed.ext(), &["curl", "-6", "-sS", "-m5", "-f", &url81]).trim(),
        "hello from busybox"
    );
    wait_until("httpd to log ext's IPv6 address again", WAIT, || {
        logged() > seen
    });
    assert!(
        !curl(&bed.ext(), &format!("http://{HOST}:8081/index.html"))
            .status
            .success(),
        "a binding on 2001:2::1 answered on IPv4"
    );
    assert!(ports.contains("80/tcp -> [2001:2::1]:8081"), "{ports}");
    assert!(!ports.contains("0.0.0.0:8081"), "{ports}");
    // As Docker means them: 0.0.0.0 written out is IPv4 only, [::] IPv6
    // only.
    let answers = |url: String| curl(&bed.ext(), &url).status.success();
    assert!(answers(format!("http://{HOST}:8082/index.html")));
    assert!(!answers(format!("http://[{HOST_IP6}]:8082/index.html")));
    assert!(answers(format!("http://[{HOST_IP6}]:8083/index.html")));
    assert!(!answers(format!("http://{HOST}:8083/index.html")));
    assert!(ports.contains("80/tcp -> 0.0.0.0:8082"), "{ports}");
    assert!(!ports.contains("[::]:8082"), "{ports}");
    assert!(ports.contains("80/tcp -> [::]:8083"), "{ports}");
    assert!(!ports.contains("0.0.0.0:8083"), "{ports}");

    // Out: masqueraded to the host's IPv6 address.
    let _who = Bg::server(
        &bed.ext(),
        &[
            "socat",
            "-t5",
            "TCP6-LISTEN:7300,fork,reuseaddr",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
        &bed.tmp().join("who6.log"),
        "tcp",
        7300,
    );
    let seen = d.exec_ok(
        "web",
        &["/usr/bin/python3", "-c", TCP_READ, EXT_IP6, "7300"],
    );
    assert_eq!(short6(&seen), HOST_IP6);

    // netd restarts: web's IPv6 address stays held in the pool (the next
    // container gets another), and web keeps answering.
    d.bed.stop();
    d.bed.restart();
    let bed = &d.bed;
    assert_eq!(
        in_ns_ok(&bed.ext(), &["curl", "-6", "-sS", "-m5", "-f", &url6]).trim(),
        "hello from busybox"
    );

    // Container to container over IPv6, and web's AAAA from Docker's DNS.
    d.run_d("peer", &["--network", "n6"], &["sleep", "3600"]);
    d.wait_running("peer");
    let peer6 = d.inspect("peer")["NetworkSettings"]["Networks"]["n6"]["GlobalIPv6Address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        in_subnet(&peer6) && peer6 != ip6,
        "peer got {peer6:?}, web has {ip6}"
    );
    d.exec_ok("peer", &["ping", "-c1", "-W2", &ip6]);
    let looked = d.exec_ok("peer", &["nslookup", "-type=AAAA", "web", "127.0.0.11"]);
    assert!(looked.contains(&ip6), "{looked}");

    // network rm: the IPv6 state goes with the rest; the /64 is free for
    // the next network.
    d.docker_ok(&["rm", "-f", "web", "other", "peer"]);
    wait_until("the veths to go", WAIT, || bed.host_veths().is_empty());
    assert!(bed.portmaps().is_empty(), "{:?}", bed.portmaps());
    d.docker_ok(&["network", "rm", "n6", "d6"]);
    assert!(netd_network(bed, &n6).is_none());
    assert!(netd_network(bed, &d6).is_none());
    d.network("again", &["--ipv6"]);
    assert!(
        docker_subnets(&network_inspect(&d, "again")).contains(&subnet6),
        "the released /64 {subnet6} was not handed out again"
    );
    assert_no_netfilter(bed);
}

/// Connects to `argv[1]`:`argv[2]` and prints what the server says.
const TCP_READ: &str = "import socket, sys\n\
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
    print(s.recv(200).decode().strip())\n";

#[test]
fn what_netd_cannot_honour_over_ipv6_is_refused_and_leaves_nothing() {
    let d = DockerBed::new();
    let bed = &d.bed;
    // The host has IPv6 addresses (2001:2::1), only not the one asked for.
    bed.uplink6();
    let nets_before = bed.netd_json(&["network", "ls"]);
    // `docker network create -d netd EXTRA... bad` fails with `expect`.
    let refused = |extra: &[&str], expect: &str| {
        let mut args = vec!["network", "create", "-d", d.plugin.as_str()];
        args.extend_from_slice(extra);
        args.push("bad");
        let out = d.docker(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "`docker {}` succeeded",
            args.join(" ")
        );
        assert!(err.contains(expect), "`docker {}`: {err}", args.join(" "));
    };
    // Too small a subnet for netd's IPAM, and for Docker's.
    refused(
        &[
            "--ipam-driver",
            &d.plugin,
            "--ipv6",
            "--subnet",
            "fd00:89::/125",
        ],
        "too small",
    );
    refused(
        &[
            "--ipv6",
            "--subnet",
            "10.89.0.0/24",
            "--subnet",
            "fd00:89::/125",
        ],
        "too small",
    );
    // Two IPv6 subnets.
    refused(
        &[
            "--ipv6",
            "--subnet",
            "10.89.0.0/24",
            "--subnet",
            "fd00:89::/64",
            "--subnet",
            "fd00:90::/64",
        ],
        "one IPv6 subnet",
    );
    // --ipv6 with Docker's IPAM and no IPv6 subnet: Docker 20.10 has no
    // IPv6 pool of its own; and were an IPAM driver to answer without one,
    // netd says so (the call as Docker makes it).
    let out = d.docker(&["network", "create", "-d", &d.plugin, "--ipv6", "bad"]);
    assert!(
        !out.status.success(),
        "--ipv6 without an IPv6 pool succeeded"
    );
    let answer = in_ns_ok(
        &bed.host(),
        &[
            "curl",
            "-sS",
            "-m5",
            "--unix-socket",
            &d.plugin_socket().to_string_lossy(),
            "-d",
            r#"{"NetworkID":"0123456789abcdef","Options":{"com.docker.network.enable_ipv6":true},"IPv4Data":[{"Pool":"10.89.0.0/24","Gateway":"10.89.0.1/24"}],"IPv6Data":[]}"#,
            "http://plugin/NetworkDriver.CreateNetwork",
        ],
    );
    let answer: Value = serde_json::from_str(&answer).expect("the plugin's JSON");
    assert!(
        answer["Err"]
            .as_str()
            .is_some_and(|e| e.contains("no IPv6 pool")),
        "{answer}"
    );
    // Nothing of them is left, in netd or in Docker.
    assert_eq!(bed.netd_json(&["network", "ls"]), nets_before);
    assert!(
        !d.docker_ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == "bad")
    );
    // The refused networks held no pool: the first /64 is still free.
    d.network("n6", &["--ipv6"]);
    assert!(docker_subnets(&network_inspect(&d, "n6")).contains(&"fd00:6e65:7464::/64".to_owned()));

    // An IPv6 host address that is not the host's: refused at start with
    // the engine's reason, nothing published or left.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "not_ours",
        "--network",
        "n6",
        "-p",
        "[2001:2::99]:8081:80",
        netd_tests::docker::IMAGE,
        "sleep",
        "3600",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "not_ours started");
    assert!(err.contains("is not an address of this host"), "{err}");
    assert!(bed.portmaps().is_empty(), "{:?}", bed.portmaps());
    wait_until("not_ours's endpoint to go", WAIT, || {
        netd_containers(bed).is_empty() && bed.host_veths().is_empty()
    });
}
