//! Foundation: containers on the default `bridge` network, the CLI contract,
//! restart and reconcile, datapath counters, `netd down`, no netfilter NAT.

use std::{
    env, fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{self, Command, Output},
    time::Duration,
};

use netd_tests::{
    Testbed, bpftool_dump, daemon_supports, empty_or_missing, expect_error, in_ns, in_ns_ok,
    netd_at, netd_bin, netns_exists, wait_until,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn seed000_two_containers_talk() {
    let tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    assert_eq!(tb.ip_of(&c1), "172.17.0.2");
    assert_eq!(tb.ip_of(&c2), "172.17.0.3");
    tb.ping(&c1, "172.17.0.3");
    tb.ping(&c1, "172.17.0.1");
    tb.ping(&c2, "172.17.0.2");
    assert_inspect_first(&tb, &c1);
    assert_container_netns(&tb, &c1);
}

/// `container inspect` of the first container (172.17.0.2).
fn assert_inspect_first(tb: &Testbed, name: &str) {
    let info = tb.inspect(name);
    let expected = [
        ("name", name.to_owned()),
        ("netns", format!("/run/netns/{name}")),
        ("network", "bridge".to_owned()),
        ("ip", "172.17.0.2".to_owned()),
        ("mac", "02:42:ac:11:00:02".to_owned()),
        ("gateway", "172.17.0.1".to_owned()),
        ("status", "running".to_owned()),
    ];
    for (key, want) in expected {
        assert_eq!(
            info[key].as_str(),
            Some(want.as_str()),
            "inspect.{key} in {info}"
        );
    }
    assert!(
        info["id"].as_str().is_some_and(|id| !id.is_empty()),
        "inspect.id in {info}"
    );
    assert_host_veth(tb, &info);
}

/// `host_veth` is `veth` + 7 hex digits, on netd0, with index `host_ifindex`.
fn assert_host_veth(tb: &Testbed, info: &Value) {
    let veth = info["host_veth"].as_str().unwrap_or_default();
    let hex = veth.strip_prefix("veth").unwrap_or_default();
    assert!(
        hex.len() == 7 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "host_veth in {info}"
    );
    let link = tb
        .host_link(veth)
        .unwrap_or_else(|| panic!("{veth} not in the host netns"));
    assert!(link.contains("master netd0"), "{veth} not on netd0: {link}");
    let index = link.split(':').next().unwrap_or_default().trim();
    assert_eq!(
        info["host_ifindex"]
            .as_u64()
            .map(|i| i.to_string())
            .as_deref(),
        Some(index)
    );
}

/// eth0, lo and the default route inside the container.
fn assert_container_netns(tb: &Testbed, name: &str) {
    let addr = tb.netd_ok(&["exec", name, "--", "ip", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains("172.17.0.2/16"), "eth0 of {name}: {addr}");
    let eth0 = in_ns_ok(name, &["ip", "-o", "link", "show", "eth0"]);
    assert!(
        eth0.contains("02:42:ac:11:00:02") && eth0.contains(",UP"),
        "eth0: {eth0}"
    );
    let lo = in_ns_ok(name, &["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "lo of {name} is down: {lo}");
    let routes = in_ns_ok(name, &["ip", "route"]);
    assert!(
        routes.contains("default via 172.17.0.1"),
        "routes of {name}: {routes}"
    );
}

#[test]
fn exec_forwards_exit_code() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let out = tb.netd(&["exec", &c1, "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let links = tb.netd_ok(&["exec", &c1, "--", "ip", "-o", "link", "show"]);
    assert!(
        !links.contains("netd0"),
        "exec ran outside the container: {links}"
    );
}

#[test]
fn rm_releases_ip_veth_and_netns() {
    let tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    let veth = tb.field(&c1, "host_veth");
    tb.netd_ok(&["container", "rm", &c1]);
    assert!(!netns_exists(&c1), "/run/netns/{c1} still exists");
    // The veth is reclaimed in the background (its deletion waits for RCU
    // grace periods); it must be gone shortly after.
    wait_until(&format!("{veth} to leave the host netns"), WAIT, || {
        tb.host_link(&veth).is_none()
    });
    assert!(!tb.ls().contains_key(&c1), "{c1} still listed");
    let c3 = tb.add("c3");
    assert_eq!(
        tb.ip_of(&c3),
        "172.17.0.2",
        "the address of {c1} was not released"
    );
    tb.ping(&c3, "172.17.0.3");
    tb.ping(&c2, "172.17.0.2");
}

#[test]
fn bad_add_fails_without_leftovers() {
    let tb = Testbed::new();
    let c1 = tb.add("c1");
    let c9 = tb.name("c9");
    let ip_cases: [&[&str]; 6] = [
        &["--ip", "172.17.0.1"],     // the gateway
        &["--ip", "10.0.0.5"],       // outside the subnet
        &["--ip", "172.17.0.2"],     // taken by c1
        &["--ip", "172.17.0.0"],     // network address
        &["--ip", "172.17.255.255"], // broadcast address
        &["--network", "nosuch"],    // unknown network
    ];
    for extra in ip_cases {
        add_fails(&tb, &c9, extra);
    }
    let (slash, long) = (format!("{}/x", tb.p), tb.name(&"x".repeat(60)));
    for name in [c1.as_str(), "bad/name", &slash, "", &long] {
        add_fails(&tb, name, &[]);
    }
    assert_eq!(tb.ip_of(&tb.add("c2")), "172.17.0.3");
    assert_eq!(
        tb.ip_of(&tb.add(&"y".repeat(59))),
        "172.17.0.4",
        "64-char name"
    );
    assert_eq!(
        tb.ip_of(&tb.add_with("c3", &["--ip", "172.17.0.10"])),
        "172.17.0.10"
    );
}

/// `container add NAME EXTRA...` fails with one error line and changes nothing.
fn add_fails(tb: &Testbed, name: &str, extra: &[&str]) -> String {
    let before = tb.snapshot();
    let existed = !name.is_empty() && netns_exists(name);
    let args = [&["container", "add", name][..], extra].concat();
    let err = tb.netd_err(&args);
    let what = format!("`netd {}` ({err})", args.join(" "));
    assert_eq!(tb.snapshot(), before, "{what} left state behind");
    if !name.is_empty() {
        assert_eq!(
            netns_exists(name),
            existed,
            "{what} touched /run/netns/{name}"
        );
    }
    err
}

#[test]
fn unknown_container_is_an_error() {
    let tb = Testbed::new();
    let ghost = tb.name("ghost");
    tb.netd_err(&["container", "rm", &ghost]);
    tb.netd_err(&["container", "inspect", &ghost]);
    tb.netd_err(&["exec", &ghost, "--", "true"]);
}

#[test]
fn small_subnet_exhausts_cleanly() {
    if !daemon_supports("--default-subnet") {
        eprintln!("skipped: `netd daemon` has no --default-subnet yet");
        return;
    }
    let tb = Testbed::with_daemon_args(&["--default-subnet", "172.17.0.0/29"]);
    for i in 2..=6 {
        assert_eq!(tb.ip_of(&tb.add(&format!("c{i}"))), format!("172.17.0.{i}"));
    }
    let err = add_fails(&tb, &tb.name("c7"), &[]);
    assert!(err.contains("exhausted"), "{err}");
    tb.rm(&tb.name("c4"));
    assert_eq!(tb.ip_of(&tb.add("c8")), "172.17.0.4");
}

#[test]
fn missing_daemon_is_reported() {
    let dir = env::temp_dir().join(format!("netd-nodaemon-{}", process::id()));
    let socket = dir.join("netd.sock");
    for args in [&["status"][..], &["container", "ls"]] {
        let err = expect_error("netd (no daemon)", &netd_at(&socket, args));
        assert!(err.contains("not running"), "{err}");
    }
}

/// What `netd down` promises: no bridge, veth, container netns, pinned
/// object or state left.
fn assert_all_removed(tb: &Testbed, containers: &[&str]) {
    assert!(tb.host_link("netd0").is_none(), "bridge netd0 still exists");
    let veths = tb.host_veths();
    assert!(veths.is_empty(), "veths left: {veths:?}");
    for c in containers {
        assert!(!netns_exists(c), "netns of {c} left");
    }
    assert!(empty_or_missing(&tb.bpffs()), "pinned BPF objects left");
    assert!(empty_or_missing(&tb.state_dir()), "state left");
}

#[test]
fn down_without_a_daemon_cleans_up_from_state() {
    let mut tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    tb.kill9();
    let out = tb.down_offline();
    assert!(out.status.success(), "offline down failed: {out:?}");
    assert_all_removed(&tb, &[&c1, &c2]);
    // A second time there is nothing to remove: one clear error line.
    let again = netd_at(
        &tb.socket(),
        &["down", "--state-dir", &tb.state_dir().to_string_lossy()],
    );
    let err = expect_error("netd down with nothing to remove", &again);
    assert!(err.contains("nothing to remove"), "{err}");
}

#[test]
fn socket_is_root_only_and_stale_socket_is_not_running() {
    let mut tb = Testbed::new();
    let mode = fs::metadata(tb.socket()).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "socket mode");
    let cli = tb.tmp().join("netd-cli");
    fs::copy(netd_bin(), &cli).expect("copy netd binary");
    fs::set_permissions(&cli, fs::Permissions::from_mode(0o755)).expect("chmod netd copy");
    let help = as_nobody(&cli, &tb.socket(), &["--help"]);
    assert!(
        help.status.success(),
        "uid 65534 cannot run {}: {help:?}",
        cli.display()
    );
    let err = expect_error(
        "netd status as uid 65534",
        &as_nobody(&cli, &tb.socket(), &["status"]),
    );
    assert!(err.to_lowercase().contains("permission"), "{err}");
    tb.kill9();
    let err = tb.netd_err(&["status"]);
    assert!(
        err.contains("not running"),
        "stale socket after kill -9: {err}"
    );
}

/// The CLI `cli` run as uid/gid 65534 without supplementary groups.
fn as_nobody(cli: &Path, socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "30",
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ])
    .arg(cli)
    .arg("--socket")
    .arg(socket)
    .args(args)
    .env_remove("RUST_LOG");
    cmd.output().expect("run setpriv")
}

#[test]
fn restart_keeps_containers_and_allocations() {
    let mut tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    let before = tb.ls();
    assert!(tb.stop().success(), "daemon must exit 0 on SIGTERM");
    assert!(
        netns_exists(&c1) && netns_exists(&c2),
        "SIGTERM tore containers down"
    );
    tb.restart();
    assert_eq!(tb.ls(), before, "after SIGTERM + restart");
    tb.kill9();
    tb.restart();
    assert_eq!(tb.ls(), before, "after kill -9 + restart");
    assert_eq!(tb.field(&c1, "status"), "running");
    tb.ping(&c1, "172.17.0.3");
    assert_eq!(tb.ip_of(&tb.add("c3")), "172.17.0.4");
}

#[test]
fn restart_repairs_deleted_host_veth() {
    let mut tb = Testbed::new();
    let c1 = tb.add("c1");
    let veth = tb.field(&c1, "host_veth");
    tb.stop();
    in_ns_ok(&tb.host(), &["ip", "link", "del", &veth]);
    tb.restart();
    wait_until("c1 repaired", WAIT, || tb.field(&c1, "status") == "running");
    assert_host_veth(&tb, &tb.inspect(&c1));
    assert_container_netns(&tb, &c1);
    tb.ping(&c1, "172.17.0.1");
    assert!(
        tb.log().to_lowercase().contains("repair"),
        "the log does not mention the repair"
    );
}

#[test]
fn datapath_counters_move() {
    let tb = Testbed::new();
    let (c1, _c2) = (tb.add("c1"), tb.add("c2"));
    let before = tb.netd_json(&["stats"]);
    in_ns_ok(&c1, &["ping", "-c3", "-i0.2", "-W2", "172.17.0.3"]);
    let after = tb.netd_json(&["stats"]);
    for counter in ["from_container", "to_container"] {
        for unit in ["packets", "bytes"] {
            let (old, new) = (count(&before, counter, unit), count(&after, counter, unit));
            assert!(new > old, "{counter}.{unit}: {old} -> {new}\n{after}");
        }
    }
    // Not via `ip netns exec`: it remounts /sys, hiding /sys/fs/bpf.
    let map = tb.bpffs().join("NETD_STATS");
    // Asserts the dump succeeded.
    let text = bpftool_dump(&map);
    assert!(
        text.contains("packets"),
        "bpftool dump has no field names:\n{text}"
    );
}

fn count(stats: &Value, counter: &str, unit: &str) -> u64 {
    match stats[counter][unit].as_u64() {
        Some(n) => n,
        None => panic!("stats.{counter}.{unit} missing in {stats}"),
    }
}

#[test]
fn down_removes_everything_and_exits() {
    let mut tb = Testbed::new();
    let (c1, c2) = (tb.add("c1"), tb.add("c2"));
    assert_eq!(tb.host_veths().len(), 2);
    tb.netd_ok(&["down"]);
    assert!(
        tb.wait_exit(WAIT).success(),
        "daemon exit status after down"
    );
    assert_all_removed(&tb, &[&c1, &c2]);
}

#[test]
fn no_netfilter_rules_in_host_netns() {
    let tb = Testbed::new();
    let (c1, _c2) = (tb.add("c1"), tb.add("c2"));
    tb.ping(&c1, "172.17.0.3");
    let ruleset = in_ns_ok(&tb.host(), &["nft", "list", "ruleset"]);
    assert!(ruleset.trim().is_empty(), "nft ruleset:\n{ruleset}");
    let nat = in_ns(&tb.host(), &["iptables-save", "-t", "nat"]);
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        !nat.lines().any(|l| l.starts_with("-A")),
        "iptables nat rules:\n{nat}"
    );
}
