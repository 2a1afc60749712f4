//! Docker on netd's plugin: a real dockerd (Debian's docker.io 20.10) in
//! the testbed's host namespace with `--iptables=false
//! --userland-proxy=false --bridge=none`, containers from a busybox image,
//! real traffic from the ext namespace (../shared/docs/engines.md).

use std::time::Duration;

use netd_tests::{
    HttpServer, Testbed, curl, curl_ok,
    docker::{DockerBed, USR},
    in_ns, in_ns_ok, udp_exchange, wait_until,
};

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
    let procs = std::process::Command::new("ps")
        .args(["-eo", "comm"])
        .output()
        .expect("ps");
    assert!(
        !String::from_utf8_lossy(&procs.stdout)
            .lines()
            .any(|c| c.trim() == "docker-proxy"),
        "a docker-proxy runs"
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

#[allow(dead_code)]
fn unused() {
    let _ = udp_exchange;
}
