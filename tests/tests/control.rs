//! Control-plane safety and Docker parity: the socket API's request limits,
//! hostname and `--add-host` validation, the predefined networks, and
//! subnet choice (host bits, `--default-address-pool`).

use std::{
    fs,
    io::{Read, Write},
    net::Shutdown,
    os::unix::net::UnixStream,
    time::Duration,
};

use netd_tests::{Testbed, netns_exists};
use serde_json::{Value, json};

/// What one request may carry, as the daemon enforces it.
const REQUEST_LIMIT: usize = 1 << 20;
/// The daemon's memory must stay below this whatever a client sends.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

// ---------------------------------------------------------------------------
// The socket API.

/// Sends `payload` on a fresh connection (then closes the write side, as
/// far as the daemon still reads), and returns the daemon's reply line.
/// Writing may fail once the daemon has answered and closed: that is the
/// point of the limit, so only the reply counts.
fn raw_request(tb: &Testbed, payload: &[u8]) -> Value {
    let mut stream = UnixStream::connect(tb.socket()).expect("connect to the daemon socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    let _ = stream.write_all(payload);
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let line = String::from_utf8_lossy(&reply);
    serde_json::from_str(line.trim_end()).unwrap_or_else(|e| {
        panic!(
            "no JSON reply to a {}-byte request ({e}): {line:?}",
            payload.len()
        )
    })
}

/// The `err` of a reply, asserting that it is one.
fn reply_error(reply: &Value) -> String {
    match reply.get("err").and_then(Value::as_str) {
        Some(err) => err.to_owned(),
        None => panic!("expected an error reply, got {reply}"),
    }
}

/// `VmRSS` and `VmHWM` (peak) of the daemon, KiB.
fn daemon_memory_kib(tb: &Testbed) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{}/status", tb.daemon_pid()))
        .expect("read the daemon's /proc status");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in the daemon's status:\n{status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn oversized_and_non_utf8_requests_get_an_error_reply() {
    let tb = Testbed::new();
    let huge = vec![b'a'; 2 * REQUEST_LIMIT];
    let err = reply_error(&raw_request(&tb, &huge));
    assert!(
        err.contains("1 MiB") || err.contains(&REQUEST_LIMIT.to_string()),
        "the error must name the limit: {err}"
    );
    let err = reply_error(&raw_request(&tb, b"{\"op\":\"status\xff\xfe\"}\n"));
    assert!(err.contains("not UTF-8"), "{err}");
    // A request just under the limit (padded with spaces) is still served.
    let mut big = vec![b' '; REQUEST_LIMIT - 20];
    big.extend_from_slice(b"{\"op\":\"status\"}\n");
    let reply = raw_request(&tb, &big);
    assert!(reply.get("ok").is_some(), "{reply}");
    tb.netd_ok(&["status"]);
}

#[test]
fn a_50mb_request_does_not_grow_the_daemon() {
    let tb = Testbed::new();
    let payload = vec![b'a'; 50 * 1000 * 1000];
    reply_error(&raw_request(&tb, &payload));
    let (rss, peak) = daemon_memory_kib(&tb);
    assert!(
        rss < RSS_LIMIT_KIB && peak < RSS_LIMIT_KIB,
        "daemon VmRSS {rss} KiB, VmHWM {peak} KiB after a 50 MB request (limit {RSS_LIMIT_KIB} KiB)"
    );
    tb.netd_ok(&["status"]);
}

// ---------------------------------------------------------------------------
// Hostnames and --add-host.

#[test]
fn bad_hostnames_and_extra_hosts_are_refused() {
    let tb = Testbed::new();
    let long = "x".repeat(512);
    let label64 = "a".repeat(64);
    let name65 = format!("{}.{}", "a".repeat(32), "b".repeat(32));
    let bad: [&[&str]; 11] = [
        &["--hostname", "web\n10.0.0.9 evil"],
        &["--hostname", &long],
        &["--hostname", &label64],
        &["--hostname", &name65],
        &["--hostname=-lead"],
        &["--hostname", "trail-"],
        &["--hostname", "sp ace"],
        &["--hostname", ""],
        &["--add-host", "db\n10.6.6.6 evil:10.0.0.5"],
        &["--add-host", "d b:10.0.0.5"],
        &["--add-host", &format!("{long}:10.0.0.5")],
    ];
    for extra in bad {
        let c9 = tb.name("c9");
        let before = tb.snapshot();
        let args = [&["container", "add", &c9][..], extra].concat();
        let err = tb.netd_err(&args);
        assert!(
            err.contains("hostname") || err.contains("--add-host"),
            "the error must name the rule: {err}"
        );
        assert_eq!(tb.snapshot(), before, "`{args:?}` left state behind");
        assert!(!netns_exists(&c9));
    }
    // The limits themselves are fine: 64 characters, 63-character labels.
    let name64 = format!("{}.b", "a".repeat(62));
    let c1 = tb.add_with(
        "c1",
        &["--hostname", &name64, "--add-host", "db-1.local:10.0.0.5"],
    );
    assert_eq!(tb.field(&c1, "hostname"), name64);
    let hosts = fs::read_to_string(tb.field(&c1, "hosts_path")).expect("read hosts");
    assert!(hosts.contains("10.0.0.5\tdb-1.local"), "{hosts}");
    let c2 = tb.add_with("c2", &["--hostname", &"a".repeat(63)]);
    assert_eq!(tb.field(&c2, "hostname"), "a".repeat(63));
}

// ---------------------------------------------------------------------------
// Predefined networks.

#[test]
fn host_and_none_can_be_inspected() {
    let tb = Testbed::new();
    let h = tb.add_with("h", &["--network", "host"]);
    let n = tb.add_with("n", &["--network", "none"]);
    let _b = tb.add("b");
    for (net, driver, member) in [("host", "host", &h), ("none", "null", &n)] {
        let info = tb.netd_json(&["network", "inspect", net]);
        let id = tb.field(member, "id");
        assert_eq!(info["Name"], net, "{info}");
        assert_eq!(info["Driver"], driver, "{info}");
        assert_eq!(info["Scope"], "local", "{info}");
        assert_eq!(info["Internal"], false, "{info}");
        assert_eq!(info["Options"], json!({}), "{info}");
        assert_eq!(
            info["IPAM"],
            json!({"Driver": "default", "Config": []}),
            "{info}"
        );
        assert!(info["Id"].as_str().is_some_and(|i| !i.is_empty()), "{info}");
        let containers = info["Containers"].as_object().expect("Containers object");
        assert_eq!(containers.len(), 1, "only {member} is in {net}: {info}");
        assert_eq!(containers[&id]["Name"], member.as_str(), "{info}");
        // The Id matches `network ls`.
        let ls = tb.netd_json(&["network", "ls"]);
        let listed = ls
            .as_array()
            .and_then(|l| l.iter().find(|x| x["Name"] == net).cloned())
            .expect("listed");
        assert_eq!(listed["Id"], info["Id"]);
    }
}

#[test]
fn predefined_networks_cannot_be_removed() {
    let tb = Testbed::new();
    for net in ["bridge", "host", "none"] {
        let before = tb.snapshot();
        let err = tb.netd_err(&["network", "rm", net]);
        assert!(
            err.contains(&format!(
                "{net} is a pre-defined network and cannot be removed"
            )),
            "{err}"
        );
        assert_eq!(tb.snapshot(), before);
    }
    tb.netd_json(&["network", "inspect", "bridge"]);
}

// ---------------------------------------------------------------------------
// Subnets.

#[test]
fn subnet_with_host_bits_is_refused() {
    let tb = Testbed::new();
    let before = tb.snapshot();
    let err = tb.netd_err(&["network", "create", "hb", "--subnet", "10.77.6.5/24"]);
    assert!(
        err.contains("invalid subnet 10.77.6.5/24: it should be 10.77.6.0/24"),
        "{err}"
    );
    assert_eq!(tb.snapshot(), before);
    let err = tb.netd_err(&["network", "inspect", "hb"]);
    assert!(err.contains("no such network"), "{err}");
    let info = tb.netd_json(&["network", "create", "hb", "--subnet", "10.77.6.0/24"]);
    assert!(info.is_string() || info.is_object(), "{info}");
    let info = tb.netd_json(&["network", "inspect", "hb"]);
    assert_eq!(info["IPAM"]["Config"][0]["Subnet"], "10.77.6.0/24");
}

#[test]
fn default_address_pool_hands_out_small_subnets() {
    let tb = Testbed::with_daemon_args(&["--default-address-pool", "base=10.99.0.0/16,size=24"]);
    for i in 0..20 {
        let name = format!("p{i}");
        tb.netd_ok(&["network", "create", &name]);
        let info = tb.netd_json(&["network", "inspect", &name]);
        assert_eq!(
            info["IPAM"]["Config"],
            json!([{"Subnet": format!("10.99.{i}.0/24"), "Gateway": format!("10.99.{i}.1")}]),
            "{name}: {info}"
        );
    }
    // A freed subnet is handed out again, lowest first.
    tb.netd_ok(&["network", "rm", "p3"]);
    tb.netd_ok(&["network", "create", "again"]);
    let info = tb.netd_json(&["network", "inspect", "again"]);
    assert_eq!(info["IPAM"]["Config"][0]["Subnet"], "10.99.3.0/24");
}

#[test]
fn exhausted_address_pool_names_the_flag() {
    let tb = Testbed::with_daemon_args(&["--default-address-pool", "base=10.98.0.0/23,size=24"]);
    tb.netd_ok(&["network", "create", "e1"]);
    tb.netd_ok(&["network", "create", "e2"]);
    let before = tb.snapshot();
    let err = tb.netd_err(&["network", "create", "e3"]);
    assert!(err.contains("--default-address-pool"), "{err}");
    assert_eq!(tb.snapshot(), before);
}
