//! netd's CNI plugin: driven exactly as a runtime drives it (environment
//! and stdin JSON, from the host namespace) through every verb and error
//! of CNI 1.1.0, chained with a reference plugin, and under a real engine
//! (podman 4.3 with its CNI backend), with real traffic.

use std::{path::Path, time::Duration};

use netd_tests::{
    Bg, HttpServer, Testbed,
    cni::{
        Call, Containerd, INDEX, Podman, REFERENCE_PLUGINS, conf, invoke, netd_cni, ns_name,
        runtime_netns,
    },
    curl, curl_ok, in_ns, in_ns_ok,
    topology::{EXT_IP6, HOST_IP6},
    wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// `netd network create <p><suffix> --subnet SUBNET`; returns the name.
fn network(tb: &Testbed, suffix: &str, subnet: &str) -> String {
    let name = tb.name(suffix);
    tb.netd_ok(&["network", "create", &name, "--subnet", subnet]);
    name
}

/// The names of netd's containers.
fn names(tb: &Testbed) -> Vec<String> {
    tb.ls().into_keys().collect()
}

/// Whether `dev` exists in the namespace at `path`.
fn has_link(path: &str, dev: &str) -> bool {
    in_ns(ns_name(path), &["ip", "link", "show", "dev", dev])
        .status
        .success()
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut conf = conf.clone();
    conf["prevResult"] = prev.clone();
    conf
}

/// ADD with CNI_ARGS `args`.
fn add<'a>(id: &'a str, ns: &'a str, ifname: &'a str, args: &'a str) -> Call<'a> {
    Call {
        args: Some(args),
        ..Call::new("ADD", id, ns, ifname)
    }
}

fn args_of(pod: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAME={pod}")
}

// ---------------------------------------------------------------------------
// The spec, verb by verb.

#[test]
fn add_check_del_as_a_runtime_does() {
    let tb = Testbed::new();
    let net = network(&tb, "n1", "198.19.1.0/24");
    let ns = runtime_netns(&tb, "ca");
    let id = tb.name("c0ffee01");
    let conf = conf(&tb, "1.1.0", &tb.name("-cni"), &net);
    let pod = tb.name("web");
    let args = args_of(&pod);
    let add = Call {
        args: Some(&args),
        ..Call::new("ADD", &id, &ns, "eth0")
    };
    let result = netd_cni(&tb, &add, &conf).ok();

    // A proper 1.1.0 result.
    assert_eq!(result["cniVersion"], "1.1.0");
    let info = tb.inspect(&pod);
    assert_eq!(result["interfaces"][0]["name"], info["host_veth"]);
    assert_eq!(
        result["interfaces"][0]["mac"].as_str().unwrap(),
        netd_tests::mac_of(&tb.host(), info["host_veth"].as_str().unwrap())
    );
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], ns.as_str());
    assert_eq!(result["interfaces"][1]["mac"], info["mac"]);
    assert_eq!(result["ips"][0]["address"], "198.19.1.2/24");
    assert_eq!(result["ips"][0]["gateway"], "198.19.1.1");
    assert_eq!(result["ips"][0]["interface"], 1);
    assert!(
        result["ips"][0].get("version").is_none(),
        "no version in 1.x"
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "198.19.1.1"}])
    );
    assert_eq!(result["dns"]["nameservers"], json!(["198.19.1.1"]));

    // netd knows it by the runtime's id, name and interface.
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["netns"], ns.as_str());
    assert_eq!(info["netns_owner"], "runtime");
    assert_eq!(info["status"], "running");
    assert_eq!(info["interfaces"][0]["name"], "eth0");
    assert_eq!(info["hostname"], pod.as_str());
    assert!(tb.ls().contains_key(&pod));

    // Real traffic: the gateway, and the outside through MASQUERADE.
    tb.ping(ns_name(&ns), "198.19.1.1");
    tb.ping(ns_name(&ns), "198.18.0.2");

    // CHECK passes, then fails once the address is removed by hand.
    let check = Call::new("CHECK", &id, &ns, "eth0");
    let checked = netd_cni(&tb, &check, &with_prev(&conf, &result));
    assert_eq!(checked.ok(), Value::Null, "CHECK prints nothing");
    in_ns_ok(
        ns_name(&ns),
        &["ip", "addr", "del", "198.19.1.2/24", "dev", "eth0"],
    );
    let failed = netd_cni(&tb, &check, &with_prev(&conf, &result));
    assert_eq!(failed.code(), 107);
    assert!(failed.msg().contains("198.19.1.2/24"), "{}", failed.msg());
    assert_eq!(failed.out["cniVersion"], "1.1.0");

    // DEL removes it all; a second DEL, and one without CNI_NETNS, succeed.
    let del = Call::new("DEL", &id, &ns, "eth0");
    assert_eq!(netd_cni(&tb, &del, &conf).ok(), Value::Null);
    assert!(!names(&tb).contains(&pod));
    let veth = info["host_veth"].as_str().unwrap().to_owned();
    wait_until("the host veth to go", WAIT, || {
        tb.host_link(&veth).is_none()
    });
    assert!(!has_link(&ns, "eth0"));
    assert!(
        Path::new(&ns).exists(),
        "the runtime's namespace is its own"
    );
    netd_cni(&tb, &del, &conf).ok();
    let no_netns = Call { netns: None, ..del };
    netd_cni(&tb, &no_netns, &conf).ok();
    assert!(tb.portmaps().is_empty());
}

#[test]
fn del_is_idempotent_without_netns_and_without_the_record() {
    let tb = Testbed::new();
    let ns = runtime_netns(&tb, "cb");
    let conf = conf(&tb, "1.0.0", &tb.name("-cni"), "bridge");
    let id = tb.name("deadbeef01");
    let name: String = id.chars().take(12).collect();

    // Without a name in CNI_ARGS the container is named after its id; on
    // the default network, no DNS (netd's bridge has no resolver).
    let result = netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf).ok();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(result.get("dns").is_none(), "{result}");
    assert_eq!(tb.inspect(&name)["id"], id.as_str());
    let veth = tb.field(&name, "host_veth");

    // DEL without CNI_NETNS (the runtime lost the namespace).
    let del = Call {
        netns: None,
        ..Call::new("DEL", &id, &ns, "eth0")
    };
    netd_cni(&tb, &del, &conf).ok();
    assert!(!names(&tb).contains(&name));
    wait_until("the veth to go", WAIT, || tb.host_link(&veth).is_none());
    assert!(!has_link(&ns, "eth0"));

    // DEL after the daemon's record went another way.
    netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf).ok();
    tb.rm(&name);
    netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &conf).ok();
    netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &conf).ok();

    // DEL of something never added, and after the namespace is gone.
    netd_cni(
        &tb,
        &Call::new("DEL", &tb.name("never"), &ns, "eth0"),
        &conf,
    )
    .ok();
    netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf).ok();
    let deleted = std::process::Command::new("ip")
        .args(["netns", "del", ns_name(&ns)])
        .status()
        .expect("ip netns del");
    assert!(deleted.success());
    netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &conf).ok();
    assert!(!names(&tb).contains(&name));
}

#[test]
fn errors_carry_the_spec_codes() {
    let tb = Testbed::new();
    let net = network(&tb, "n1", "198.19.1.0/24");
    let ns = runtime_netns(&tb, "cc");
    let id = tb.name("e1");
    let good = conf(&tb, "1.1.0", &tb.name("-cni"), &net);
    let add = Call::new("ADD", &id, &ns, "eth0");
    let before = tb.snapshot();

    // VERSION: every version from 0.3.0 to 1.1.0.
    let version = invoke(
        &tb,
        &netd_tests::cni::cni_bin(),
        &Call::verb("VERSION"),
        b"",
    )
    .ok();
    assert_eq!(version["cniVersion"], "1.1.0");
    assert_eq!(
        version["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );

    let mut unknown = good.clone();
    unknown["cniVersion"] = json!("9.9.9");
    let e = netd_cni(&tb, &add, &unknown);
    assert_eq!(e.code(), 1);
    assert!(
        e.msg().contains("1.1.0"),
        "names what it supports: {}",
        e.msg()
    );
    assert_eq!(
        netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &unknown).code(),
        1
    );

    let bad_json = invoke(&tb, &netd_tests::cni::cni_bin(), &add, b"{\"cniVersion\": ");
    assert_eq!(bad_json.code(), 6);

    let no_id = Call {
        container_id: None,
        ..add.clone()
    };
    let e = netd_cni(&tb, &no_id, &good);
    assert_eq!(e.code(), 4);
    assert!(e.msg().contains("CNI_CONTAINERID"), "{}", e.msg());
    let no_netns = Call {
        netns: None,
        ..add.clone()
    };
    assert_eq!(netd_cni(&tb, &no_netns, &good).code(), 4);
    let no_verb = Call {
        verb: "",
        ..add.clone()
    };
    assert_eq!(netd_cni(&tb, &no_verb, &good).code(), 4);
    let missing_ns = Call {
        netns: Some("/run/netns/no-such-netns-of-netd"),
        ..add.clone()
    };
    assert_eq!(netd_cni(&tb, &missing_ns, &good).code(), 4);

    let mut ipam = good.clone();
    ipam["ipam"] = json!({"type": "host-local", "subnet": "198.19.9.0/24"});
    let e = netd_cni(&tb, &add, &ipam);
    assert_eq!(e.code(), 7);
    assert!(e.msg().contains("ipam"), "{}", e.msg());
    let mut mtu = good.clone();
    mtu["mtu"] = json!(9000);
    assert_eq!(netd_cni(&tb, &add, &mtu).code(), 7);
    let mut sctp = good.clone();
    sctp["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 99, "containerPort": 99, "protocol": "sctp"}]});
    assert_eq!(netd_cni(&tb, &add, &sctp).code(), 7);

    let missing_net = conf(&tb, "1.1.0", &tb.name("-cni"), &tb.name("nonet"));
    let e = netd_cni(&tb, &add, &missing_net);
    assert_eq!(e.code(), 100);
    assert!(e.msg().contains("netd network create"), "{}", e.msg());
    assert_eq!(
        netd_cni(&tb, &Call::verb("STATUS"), &missing_net).code(),
        50
    );

    let mut old = good.clone();
    old["cniVersion"] = json!("0.3.1");
    old["prevResult"] = json!({"cniVersion": "0.3.1"});
    assert_eq!(
        netd_cni(&tb, &Call::new("CHECK", &id, &ns, "eth0"), &old).code(),
        1
    );

    // Nothing was made by any of these; STATUS is fine.
    assert_eq!(tb.snapshot(), before);
    assert_eq!(
        netd_cni(&tb, &Call::verb("STATUS"), &good).ok(),
        Value::Null
    );
}

#[test]
fn daemon_down_status_50_and_add_says_start_it() {
    let mut tb = Testbed::new();
    let ns = runtime_netns(&tb, "cd");
    let conf = conf(&tb, "1.1.0", &tb.name("-cni"), "bridge");
    let id = tb.name("d1");
    netd_cni(&tb, &Call::verb("STATUS"), &conf).ok();
    tb.stop();
    let status = netd_cni(&tb, &Call::verb("STATUS"), &conf);
    assert_eq!(status.code(), 50);
    assert!(status.msg().contains("netd daemon"), "{}", status.msg());
    let add = netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf);
    assert_eq!(add.code(), 11);
    assert!(
        add.msg().contains("start it with `netd daemon`"),
        "{}",
        add.msg()
    );
    assert!(!has_link(&ns, "eth0"));
    assert_eq!(
        netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &conf).code(),
        11
    );
    tb.restart();
    netd_cni(&tb, &Call::verb("STATUS"), &conf).ok();
    netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf).ok();
    netd_cni(&tb, &Call::new("DEL", &id, &ns, "eth0"), &conf).ok();
}

#[test]
fn port_mappings_are_published_removed_and_a_conflict_leaves_nothing() {
    let tb = Testbed::new();
    let net = network(&tb, "n1", "198.19.1.0/24");
    let (ns1, ns2) = (runtime_netns(&tb, "p1"), runtime_netns(&tb, "p2"));
    let (id1, id2) = (tb.name("p0001"), tb.name("p0002"));
    let mut conf = conf(&tb, "1.1.0", &tb.name("-cni"), &net);
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8088, "containerPort": 80, "protocol": "tcp"},
    ]});
    let result = netd_cni(&tb, &Call::new("ADD", &id1, &ns1, "eth0"), &conf).ok();
    let maps = tb.portmaps();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!(maps[0]["container_id"], id1.as_str());
    assert_eq!(maps[0]["host_port"], "8088");
    assert_eq!(maps[0]["container_ip"], "198.19.1.2");

    // ext reaches the container through the host; the container sees ext.
    let server = HttpServer::start(ns_name(&ns1), 80, &tb.tmp().join("www1"), "c1");
    assert_eq!(
        curl_ok(&tb.ext(), "http://198.18.0.1:8088/id.txt").trim(),
        "c1"
    );
    server.wait_client("198.18.0.2");

    // Another container asking for the same host port: refused, nothing
    // left behind.
    let before = tb.snapshot();
    let e = netd_cni(&tb, &Call::new("ADD", &id2, &ns2, "eth0"), &conf);
    assert_eq!(e.code(), 102, "{}", e.msg());
    assert!(e.msg().contains("8088"), "{}", e.msg());
    assert_eq!(tb.snapshot(), before);
    assert_eq!(tb.portmaps().len(), 1);
    assert!(!has_link(&ns2, "eth0"));

    // CHECK sees the mapping, and its loss.
    let check = Call::new("CHECK", &id1, &ns1, "eth0");
    netd_cni(&tb, &check, &with_prev(&conf, &result)).ok();
    tb.netd_ok(&["portmap", "rm", "8088"]);
    let e = netd_cni(&tb, &check, &with_prev(&conf, &result));
    assert_eq!(e.code(), 107);
    assert!(e.msg().contains("8088"), "{}", e.msg());
    assert!(
        !curl(&tb.ext(), "http://198.18.0.1:8088/id.txt")
            .status
            .success()
    );

    // A second ADD gets the port now; DEL unpublishes it.
    let mut hosted = conf.clone();
    hosted["runtimeConfig"]["portMappings"][0]["hostIP"] = json!("198.18.0.1");
    netd_cni(&tb, &Call::new("ADD", &id2, &ns2, "eth0"), &hosted).ok();
    let maps = tb.portmaps();
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0]["host_ip"], "198.18.0.1");
    assert_eq!(maps[0]["container_id"], id2.as_str());
    netd_cni(&tb, &Call::new("DEL", &id2, &ns2, "eth0"), &hosted).ok();
    assert!(tb.portmaps().is_empty());
    netd_cni(&tb, &Call::new("DEL", &id1, &ns1, "eth0"), &conf).ok();
}

#[test]
fn a_second_interface_connects_and_gc_removes_only_stale_attachments() {
    let tb = Testbed::new();
    let net1 = network(&tb, "n1", "198.19.1.0/24");
    let net2 = network(&tb, "n2", "198.19.2.0/24");
    let (conf_a, conf_b) = (
        conf(&tb, "1.1.0", &tb.name("-a"), &net1),
        conf(&tb, "1.1.0", &tb.name("-b"), &net2),
    );
    let (nsx, nsy) = (runtime_netns(&tb, "gx"), runtime_netns(&tb, "gy"));
    let (x, y) = (tb.name("x0001"), tb.name("y0001"));
    let (px, py) = (tb.name("podx"), tb.name("pody"));
    let (ax, ay) = (args_of(&px), args_of(&py));
    netd_cni(&tb, &add(&x, &nsx, "eth0", &ax), &conf_a).ok();
    netd_cni(&tb, &add(&y, &nsy, "eth0", &ay), &conf_a).ok();
    let second = netd_cni(&tb, &add(&y, &nsy, "eth1", &ay), &conf_b).ok();
    assert_eq!(second["ips"][0]["address"], "198.19.2.2/24");
    assert_eq!(second["ips"][0]["interface"], 1);
    assert_eq!(second["interfaces"][1]["name"], "eth1");
    assert!(
        second.get("routes").is_none(),
        "eth0 keeps the default route: {second}"
    );
    assert_eq!(second["dns"]["nameservers"], json!(["198.19.2.1"]));
    let info = tb.inspect(&py);
    assert_eq!(info["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(info["interfaces"][1]["network"], net2.as_str());
    tb.ping(ns_name(&nsy), "198.19.2.1");

    // The same ifname again is refused; DEL of one interface disconnects.
    let again = netd_cni(&tb, &add(&x, &nsx, "eth0", &ax), &conf_b);
    assert_eq!(again.code(), 101);
    netd_cni(&tb, &add(&x, &nsx, "eth1", &ax), &conf_b).ok();
    netd_cni(&tb, &Call::new("DEL", &x, &nsx, "eth1"), &conf_b).ok();
    assert_eq!(tb.inspect(&px)["interfaces"].as_array().unwrap().len(), 1);
    wait_until("x's eth1 to go", WAIT, || !has_link(&nsx, "eth1"));
    assert!(has_link(&nsx, "eth0"));

    // A container of netd's own CLI is none of GC's business.
    let cli = tb.add_with("cli", &["--network", &net1]);

    // GC of configuration a, keeping y's eth0: x goes, y stays whole.
    let mut gc_a = conf_a.clone();
    gc_a["cni.dev/valid-attachments"] = json!([{"containerID": y, "ifname": "eth0"}]);
    netd_cni(&tb, &Call::verb("GC"), &gc_a).ok();
    let left = names(&tb);
    assert!(!left.contains(&px), "{left:?}");
    assert!(left.contains(&py) && left.contains(&cli), "{left:?}");
    assert_eq!(tb.inspect(&py)["interfaces"].as_array().unwrap().len(), 2);
    wait_until("x's eth0 to go", WAIT, || !has_link(&nsx, "eth0"));

    // GC of configuration b with nothing valid: y loses eth1 only.
    let mut gc_b = conf_b.clone();
    gc_b["cni.dev/valid-attachments"] = json!([]);
    netd_cni(&tb, &Call::verb("GC"), &gc_b).ok();
    let info = tb.inspect(&py);
    assert_eq!(info["interfaces"].as_array().unwrap().len(), 1);
    assert_eq!(info["interfaces"][0]["name"], "eth0");
    wait_until("y's eth1 to go", WAIT, || !has_link(&nsy, "eth1"));
    assert!(names(&tb).contains(&cli));
    netd_cni(&tb, &Call::new("DEL", &y, &nsy, "eth0"), &conf_a).ok();
    assert!(!names(&tb).contains(&py));
}

#[test]
fn chained_with_the_reference_tuning_plugin() {
    let tb = Testbed::new();
    let net = network(&tb, "n1", "198.19.1.0/24");
    let ns = runtime_netns(&tb, "ch");
    let id = tb.name("ch01");
    let name = tb.name("-chain");
    // Debian's reference plugins speak up to 1.0.0.
    let netd_conf = conf(&tb, "1.0.0", &name, &net);
    let tuning_conf =
        json!({"cniVersion": "1.0.0", "name": name, "type": "tuning", "promisc": true});
    let tuning = Path::new(REFERENCE_PLUGINS).join("tuning");

    let first = netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &netd_conf).ok();
    let out = invoke(
        &tb,
        &tuning,
        &Call::new("ADD", &id, &ns, "eth0"),
        with_prev(&tuning_conf, &first).to_string().as_bytes(),
    )
    .ok();
    assert_eq!(out["ips"], first["ips"], "tuning passes netd's result on");
    assert_eq!(out["interfaces"], first["interfaces"]);
    let link = in_ns_ok(ns_name(&ns), &["ip", "link", "show", "dev", "eth0"]);
    assert!(link.contains("PROMISC"), "{link}");
    tb.ping(ns_name(&ns), "198.19.1.1");

    // CHECK down the chain with the chain's final result.
    let check = Call::new("CHECK", &id, &ns, "eth0");
    netd_cni(&tb, &check, &with_prev(&netd_conf, &out)).ok();
    invoke(
        &tb,
        &tuning,
        &check,
        with_prev(&tuning_conf, &out).to_string().as_bytes(),
    )
    .ok();

    // DEL in reverse order.
    let del = Call::new("DEL", &id, &ns, "eth0");
    invoke(
        &tb,
        &tuning,
        &del,
        with_prev(&tuning_conf, &out).to_string().as_bytes(),
    )
    .ok();
    netd_cni(&tb, &del, &with_prev(&netd_conf, &out)).ok();
    assert!(tb.ls().is_empty());

    // netd after another plugin: its result is appended to prevResult.
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "dummy0", "sandbox": ns}],
        "ips": [{"address": "198.19.200.1/32", "interface": 0}]});
    let chained = netd_cni(
        &tb,
        &Call::new("ADD", &id, &ns, "eth0"),
        &with_prev(&netd_conf, &prev),
    )
    .ok();
    assert_eq!(chained["interfaces"].as_array().unwrap().len(), 3);
    assert_eq!(chained["ips"][0]["address"], "198.19.200.1/32");
    assert_eq!(chained["ips"][1]["address"], "198.19.1.2/24");
    assert_eq!(chained["ips"][1]["interface"], 2);
    netd_cni(&tb, &del, &netd_conf).ok();

    // A 0.4.0 configuration gets a 0.4.0 result.
    let mut old = netd_conf.clone();
    old["cniVersion"] = json!("0.4.0");
    let r = netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &old).ok();
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(r["ips"][0]["version"], "4");
    netd_cni(
        &tb,
        &Call::new("CHECK", &id, &ns, "eth0"),
        &with_prev(&old, &r),
    )
    .ok();
    netd_cni(&tb, &del, &old).ok();
}

#[test]
fn static_addresses_isolation_anti_spoofing_and_dns_names() {
    let tb = Testbed::new();
    let net1 = network(&tb, "n1", "198.19.1.0/24");
    let net2 = network(&tb, "n2", "198.19.2.0/24");
    let conf1 = conf(&tb, "1.1.0", &tb.name("-one"), &net1);
    let conf2 = conf(&tb, "1.1.0", &tb.name("-two"), &net2);
    let (nsa, nsb, nsc, nsd) = (
        runtime_netns(&tb, "sa"),
        runtime_netns(&tb, "sb"),
        runtime_netns(&tb, "sc"),
        runtime_netns(&tb, "sd"),
    );
    let (a, b, c, d) = (
        tb.name("s0a"),
        tb.name("s0b"),
        tb.name("s0c"),
        tb.name("s0d"),
    );
    let web = tb.name("web");

    // A fixed address through CNI_ARGS IP=, and through the ips capability.
    let args_a = format!("IgnoreUnknown=1;K8S_POD_NAME={web};IP=198.19.1.50");
    let ra = netd_cni(
        &tb,
        &Call {
            args: Some(&args_a),
            ..Call::new("ADD", &a, &nsa, "eth0")
        },
        &conf1,
    )
    .ok();
    assert_eq!(ra["ips"][0]["address"], "198.19.1.50/24");
    let mut conf_ips = conf1.clone();
    conf_ips["runtimeConfig"] = json!({"ips": ["198.19.1.51/24"]});
    let rb = netd_cni(&tb, &Call::new("ADD", &b, &nsb, "eth0"), &conf_ips).ok();
    assert_eq!(rb["ips"][0]["address"], "198.19.1.51/24");
    let taken = netd_cni(&tb, &Call::new("ADD", &d, &nsd, "eth0"), &conf_ips);
    assert!(taken.code() >= 100, "{}", taken.msg());
    assert!(!has_link(&nsd, "eth0"));
    netd_cni(&tb, &Call::new("ADD", &c, &nsc, "eth0"), &conf2).ok();

    // Same network: reachable, and by name through netd's resolver.
    tb.ping(ns_name(&nsb), "198.19.1.50");
    let looked = in_ns_ok(ns_name(&nsb), &["busybox", "nslookup", &web, "198.19.1.1"]);
    assert!(looked.contains("198.19.1.50"), "{looked}");

    // Another network: dropped by policy.
    let policy = tb.counter("drop_policy");
    assert!(
        !in_ns(ns_name(&nsc), &["ping", "-c1", "-W1", "198.19.1.50"])
            .status
            .success()
    );
    assert!(tb.counter("drop_policy") > policy);
    tb.ping(ns_name(&nsc), "198.19.2.1");

    // A source that is not the endpoint's: dropped as spoofed.
    let spoofed = tb.counter("drop_spoofed");
    in_ns_ok(
        ns_name(&nsb),
        &["ip", "addr", "add", "198.19.1.99/24", "dev", "eth0"],
    );
    assert!(
        !in_ns(
            ns_name(&nsb),
            &["ping", "-c1", "-W1", "-I", "198.19.1.99", "198.19.1.1"]
        )
        .status
        .success()
    );
    assert!(tb.counter("drop_spoofed") > spoofed);
    for (id, ns, conf) in [(&a, &nsa, &conf1), (&b, &nsb, &conf1), (&c, &nsc, &conf2)] {
        netd_cni(&tb, &Call::new("DEL", id, ns, "eth0"), conf).ok();
    }
    assert!(tb.ls().is_empty());
}

// ---------------------------------------------------------------------------
// Dual stack: a netd network created with --ipv6.

/// `netd network create <p><suffix> --ipv6 --subnet V4 --subnet V6`.
fn network6(tb: &Testbed, suffix: &str, v4: &str, v6: &str) -> String {
    let name = tb.name(suffix);
    tb.netd_ok(&[
        "network", "create", &name, "--ipv6", "--subnet", v4, "--subnet", v6,
    ]);
    name
}

/// An address in its short form (socat writes it in full, bracketed).
fn short6(text: &str) -> String {
    let text = text.trim().trim_start_matches('[').trim_end_matches(']');
    text.parse::<std::net::Ipv6Addr>()
        .map_or_else(|_| text.to_owned(), |ip| ip.to_string())
}

/// A TCP server on [::]:`port` in `ns` answering with the peer's address.
fn who6(tb: &Testbed, ns: &str, port: u16) -> Bg {
    Bg::server(
        ns,
        &[
            "socat",
            "-t5",
            &format!("TCP6-LISTEN:{port},fork,reuseaddr"),
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
        &tb.tmp().join(format!("who6-{ns}-{port}.log")),
        "tcp",
        port,
    )
}

fn ask6(ns: &str, ip: &str, port: u16) -> String {
    short6(&in_ns_ok(
        ns,
        &["socat", "-t5", "-T5", "-", &format!("TCP6:[{ip}]:{port}")],
    ))
}

#[test]
fn dual_stack_add_check_del_and_ipv6_ports() {
    let tb = Testbed::new();
    tb.uplink6();
    let net = network6(&tb, "d6", "198.19.6.0/24", "fd00:96::/64");
    let ns = runtime_netns(&tb, "d6a");
    let id = tb.name("d6000001");
    let mut conf = conf(&tb, "1.1.0", &tb.name("-cni"), &net);
    // A runtime may list a mapping once per family.
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
        {"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "2001:2::1"},
        // As the reference portmap plugin: 0.0.0.0 is IPv4 only, :: IPv6 only.
        {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": "0.0.0.0"},
        {"hostPort": 8083, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
    ]});
    let result = netd_cni(&tb, &Call::new("ADD", &id, &ns, "eth0"), &conf).ok();

    // Both addresses on the container's interface, both default routes.
    assert_eq!(
        result["ips"],
        json!([
            {"address": "198.19.6.2/24", "gateway": "198.19.6.1", "interface": 1},
            {"address": "fd00:96::2/64", "gateway": "fd00:96::1", "interface": 1},
        ])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "198.19.6.1"}, {"dst": "::/0", "gw": "fd00:96::1"}])
    );
    let addrs = in_ns_ok(
        ns_name(&ns),
        &["ip", "-6", "-o", "addr", "show", "dev", "eth0"],
    );
    assert!(addrs.contains("fd00:96::2/64"), "{addrs}");
    let routes = in_ns_ok(ns_name(&ns), &["ip", "-6", "route"]);
    assert!(routes.contains("default via fd00:96::1"), "{routes}");
    let maps = tb.portmaps();
    assert_eq!(
        maps.len(),
        4,
        "one mapping for both families, one on 2001:2::1, one per family's every address: {maps:?}"
    );

    // ext reaches the container on the host's IPv6 address and is seen
    // as itself; the container reaches ext masqueraded.
    let _web = who6(&tb, ns_name(&ns), 80);
    assert_eq!(ask6(&tb.ext(), HOST_IP6, 8086), EXT_IP6);
    // hostIP 2001:2::1: that address only, ext seen as itself.
    assert_eq!(ask6(&tb.ext(), HOST_IP6, 8081), EXT_IP6);
    assert!(
        in_ns(&tb.ext(), &["socat", "-T2", "-", "TCP4:198.18.0.1:8081"])
            .stdout
            .is_empty(),
        "a mapping on 2001:2::1 answered on IPv4"
    );
    let tcp4 = |port: u16| {
        in_ns(
            &tb.ext(),
            &["socat", "-T2", "-", &format!("TCP4:198.18.0.1:{port}")],
        )
        .stdout
    };
    let tcp6 = |port: u16| {
        let target = format!("TCP6:[{HOST_IP6}]:{port}");
        in_ns(&tb.ext(), &["socat", "-T2", "-", &target]).stdout
    };
    assert!(
        !tcp4(8082).is_empty(),
        "0.0.0.0:8082 did not answer on IPv4"
    );
    assert!(
        tcp6(8082).is_empty(),
        "a mapping on 0.0.0.0 answered on IPv6"
    );
    assert_eq!(ask6(&tb.ext(), HOST_IP6, 8083), EXT_IP6);
    assert!(tcp4(8083).is_empty(), "a mapping on :: answered on IPv4");
    let _ext = who6(&tb, &tb.ext(), 7300);
    assert_eq!(ask6(ns_name(&ns), EXT_IP6, 7300), HOST_IP6);

    // CHECK passes, then fails once the IPv6 address is removed by hand.
    let check = Call::new("CHECK", &id, &ns, "eth0");
    assert_eq!(
        netd_cni(&tb, &check, &with_prev(&conf, &result)).ok(),
        Value::Null
    );
    in_ns_ok(
        ns_name(&ns),
        &["ip", "addr", "del", "fd00:96::2/64", "dev", "eth0"],
    );
    let failed = netd_cni(&tb, &check, &with_prev(&conf, &result));
    assert_eq!(failed.code(), 107);
    assert!(failed.msg().contains("fd00:96::2/64"), "{}", failed.msg());

    // Fixed addresses of both families through CNI_ARGS IP=; a 0.3.1
    // result names each address's version.
    let ns_b = runtime_netns(&tb, "d6b");
    let id_b = tb.name("d6000002");
    let conf_old = {
        let mut c = conf.clone();
        c["cniVersion"] = json!("0.3.1");
        c["runtimeConfig"] = json!({});
        c
    };
    let fixed = netd_cni(
        &tb,
        &add(&id_b, &ns_b, "eth0", "IP=198.19.6.50,fd00:96::50"),
        &conf_old,
    )
    .ok();
    assert_eq!(fixed["cniVersion"], "0.3.1");
    assert_eq!(
        fixed["ips"],
        json!([
            {"version": "4", "address": "198.19.6.50/24", "gateway": "198.19.6.1", "interface": 1},
            {"version": "6", "address": "fd00:96::50/64", "gateway": "fd00:96::1", "interface": 1},
        ])
    );
    // The two containers reach each other over IPv6.
    in_ns_ok(ns_name(&ns_b), &["ping", "-6", "-c1", "-W2", "fd00:96::1"]);

    // DEL removes everything, both families.
    for (i, n, c) in [(&id, &ns, &conf), (&id_b, &ns_b, &conf_old)] {
        netd_cni(&tb, &Call::new("DEL", i, n, "eth0"), c).ok();
    }
    assert!(tb.ls().is_empty());
    assert!(tb.portmaps().is_empty());
    assert!(!has_link(&ns_b, "eth0"));
    assert!(
        in_ns(
            &tb.ext(),
            &["socat", "-T2", "-", &format!("TCP6:[{HOST_IP6}]:8086")]
        )
        .stdout
        .is_empty()
    );
}

#[test]
fn ipv6_requests_netd_cannot_honour_are_refused_and_leave_nothing() {
    let tb = Testbed::new();
    // The host has IPv6 addresses (2001:2::1), only not 2001:2::99.
    tb.uplink6();
    let v4only = network(&tb, "n4", "198.19.4.0/24");
    let net6 = network6(&tb, "n6", "198.19.6.0/24", "fd00:96::/64");
    let ns = runtime_netns(&tb, "e6");
    let id = tb.name("e6000001");
    let before = tb.snapshot();
    let refused = |conf: &Value, args: &str, code: u64, says: &str| {
        let e = netd_cni(&tb, &add(&id, &ns, "eth0", args), conf);
        assert_eq!(e.code(), code, "{}", e.msg());
        assert!(e.msg().contains(says), "{}", e.msg());
        assert!(!has_link(&ns, "eth0"));
        assert_eq!(tb.snapshot(), before);
    };
    // An IPv6 address on a network without IPv6.
    refused(
        &conf(&tb, "1.1.0", &tb.name("-cni"), &v4only),
        "IP=fd00:96::9",
        7,
        "--ipv6",
    );
    // Two IPv6 addresses for one interface.
    let mut two = conf(&tb, "1.1.0", &tb.name("-cni"), &net6);
    two["runtimeConfig"] = json!({"ips": ["fd00:96::9/64", "fd00:96::a/64"]});
    refused(&two, "", 7, "one IPv4 and one IPv6");
    // An IPv6 address outside the network's IPv6 subnet.
    refused(
        &conf(&tb, "1.1.0", &tb.name("-cni"), &net6),
        "IP=fd00:97::9",
        7,
        "fd00:97::9",
    );
    // A port on an IPv6 host address that is not the host's.
    let mut not_ours = conf(&tb, "1.1.0", &tb.name("-cni"), &net6);
    not_ours["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8086, "containerPort": 80, "hostIP": "2001:2::99"},
    ]});
    refused(&not_ours, "", 7, "is not an address of this host");
}

// ---------------------------------------------------------------------------
// podman 4.3 with its CNI backend.

/// A conflist named after the netd network, with netd alone.
fn podman_conflist(tb: &Testbed, pm: &Podman, net: &str) {
    pm.conflist(
        net,
        json!([{"type": "netd", "network": net, "socket": tb.socket(),
                "capabilities": {"portMappings": true}}]),
    );
}

/// No iptables or nftables rules in the host namespace.
fn assert_no_firewall_rules(tb: &Testbed) {
    let saved = in_ns_ok(&tb.host(), &["iptables-save"]);
    assert!(
        !saved.lines().any(|l| l.starts_with("-A")),
        "iptables rules in the host namespace:\n{saved}"
    );
    let ruleset = in_ns_ok(&tb.host(), &["nft", "list", "ruleset"]);
    assert!(ruleset.trim().is_empty(), "nftables rules:\n{ruleset}");
}

#[test]
fn podman_publishes_masquerades_and_removes_through_netd() {
    let tb = Testbed::new();
    let net = network(&tb, "pn", "198.19.1.0/24");
    let pm = Podman::new(&tb);
    podman_conflist(&tb, &pm, &net);
    let web = tb.name("web");
    let id = pm.run_detached(
        &web,
        &net,
        &["-p", "8088:80"],
        &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let netns = pm.netns(&web);

    // netd knows it by podman's id and name, in podman's namespace.
    let info = tb.inspect(&web);
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["netns"], netns.as_str());
    assert_eq!(info["ip"], "198.19.1.2");
    assert_eq!(info["interfaces"][0]["name"], "eth0");
    assert_eq!(
        pm.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            &web
        ]),
        "198.19.1.2"
    );
    // ... and finds it by podman's id, which `container ls` shows.
    let by_id = tb.netd_json(&["container", "inspect", &id[..12]]);
    assert_eq!(by_id["name"], web.as_str());
    let ls = tb.netd_ok(&["container", "ls"]);
    let row = ls.lines().find(|l| l.contains(&web)).unwrap_or_default();
    assert!(row.starts_with(&id[..12]) && row.contains("eth0"), "{ls}");
    let veth = info["host_veth"].as_str().unwrap().to_owned();
    let maps = tb.portmaps();
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0]["container_id"], id.as_str());

    // ext fetches from the host's address; the container sees ext.
    let mut body = String::new();
    wait_until("httpd to answer through port 8088", WAIT, || {
        let out = curl(&tb.ext(), "http://198.18.0.1:8088/index.html");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert_eq!(body, INDEX);
    let client = curl_ok(&tb.ext(), "http://198.18.0.1:8088/cgi-bin/ip");
    // busybox httpd listens on a dual-stack socket: [::ffff:198.18.0.2].
    let client = client.trim().trim_matches(['[', ']']);
    assert_eq!(client.trim_start_matches("::ffff:"), "198.18.0.2");

    // The container reaches ext through MASQUERADE.
    let server = HttpServer::start(&tb.ext(), 8000, &tb.tmp().join("ext-www"), "ext-server");
    let got = pm.wait_exec(&web, &["wget", "-qO-", "http://198.18.0.2:8000/id.txt"]);
    assert_eq!(got.trim(), "ext-server");
    server.wait_client("198.18.0.1");
    assert_no_firewall_rules(&tb);

    // podman rm -f: interface, address and mapping go.
    pm.ok(&["rm", "-f", "-t", "0", &web]);
    assert!(!names(&tb).contains(&web));
    assert!(tb.portmaps().is_empty());
    wait_until("the host veth to go", WAIT, || {
        tb.host_link(&veth).is_none()
    });
    wait_until("podman's namespace to go", WAIT, || {
        !Path::new(&netns).exists()
    });
    assert!(
        !curl(&tb.ext(), "http://198.18.0.1:8088/index.html")
            .status
            .success()
    );
    assert_no_firewall_rules(&tb);
}

#[test]
fn podman_on_a_dual_stack_netd_network_publishes_on_ipv6() {
    let tb = Testbed::new();
    tb.uplink6();
    let net = network6(&tb, "p6", "198.19.6.0/24", "fd00:96::/64");
    let pm = Podman::new(&tb);
    podman_conflist(&tb, &pm, &net);
    let web = tb.name("web6");
    pm.run_detached(
        &web,
        &net,
        &["-p", "8089:80"],
        &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    );
    // podman shows the IPv6 address netd gave, from the CNI result.
    let info = tb.inspect(&web);
    assert_eq!(info["ip6"], "fd00:96::2");
    let shown = pm.ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").GlobalIPv6Address}}}}"),
        &web,
    ]);
    assert_eq!(shown, "fd00:96::2");
    // ext over IPv6 to the host's address; httpd sees ext's.
    let url = format!("http://[{HOST_IP6}]:8089/index.html");
    let mut body = String::new();
    wait_until("httpd to answer over IPv6", WAIT, || {
        let out = in_ns(&tb.ext(), &["curl", "-6", "-sS", "-m5", "-f", &url]);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert_eq!(body, INDEX);
    let client = in_ns_ok(
        &tb.ext(),
        &[
            "curl",
            "-6",
            "-sS",
            "-m5",
            "-f",
            &format!("http://[{HOST_IP6}]:8089/cgi-bin/ip"),
        ],
    );
    assert_eq!(short6(&client), EXT_IP6);
    // IPv4 as before.
    assert_eq!(
        curl_ok(&tb.ext(), "http://198.18.0.1:8089/index.html"),
        INDEX
    );
    assert_no_firewall_rules(&tb);
    pm.ok(&["rm", "-f", "-t", "0", &web]);
    assert!(tb.portmaps().is_empty());
    assert!(!names(&tb).contains(&web));
}

#[test]
fn podman_containers_on_two_netd_networks_are_isolated() {
    let tb = Testbed::new();
    let net1 = network(&tb, "pa", "198.19.1.0/24");
    let net2 = network(&tb, "pb", "198.19.2.0/24");
    let pm = Podman::new(&tb);
    podman_conflist(&tb, &pm, &net1);
    podman_conflist(&tb, &pm, &net2);
    let sleep = ["/bin/sleep", "300"];
    let (c1, c2, c3) = (tb.name("one"), tb.name("two"), tb.name("three"));
    pm.run_detached(&c1, &net1, &[], &sleep);
    pm.run_detached(&c2, &net2, &[], &sleep);
    pm.run_detached(&c3, &net1, &[], &sleep);
    let ip1 = tb.ip_of(&c1);
    assert_eq!(tb.field(&c2, "network"), net2);
    let (ns2, ns3) = (pm.netns(&c2), pm.netns(&c3));

    // Same network: reachable, by name too; the other network: dropped.
    tb.ping(ns_name(&ns3), &ip1);
    let looked = in_ns_ok(ns_name(&ns3), &["busybox", "nslookup", &c1, "198.19.1.1"]);
    assert!(looked.contains(&ip1), "{looked}");
    let policy = tb.counter("drop_policy");
    assert!(
        !in_ns(ns_name(&ns2), &["ping", "-c1", "-W1", &ip1])
            .status
            .success()
    );
    assert!(tb.counter("drop_policy") > policy);
    tb.ping(ns_name(&ns2), "198.19.2.1");
    assert_no_firewall_rules(&tb);
    pm.ok(&["rm", "-f", "-t", "0", &c1, &c2, &c3]);
    assert!(tb.ls().is_empty());
}

// ---------------------------------------------------------------------------
// containerd 1.6 (Debian) with `ctr run --cni`.

/// busybox httpd run by `ctr run --cni` on netd network `net`, once netd
/// lists it (complete) and its task runs.
struct CtrHttpd {
    ctrd: Containerd,
    task: Bg,
    id: String,
    /// The id ctr gives the CNI container: `<namespace>-<id>`.
    cni_id: String,
    /// Its `container ls` entry.
    info: Value,
}

impl CtrHttpd {
    fn run(tb: &Testbed, net: &str, name: &str) -> Self {
        let ctrd = Containerd::start(tb);
        ctrd.conflist(
            net,
            json!([{"type": "netd", "network": net, "socket": tb.socket()}]),
        );
        let id = tb.name(name);
        let mut task = ctrd.run_cni(&id, &["/bin/httpd", "-f", "-p", "80", "-h", "/www"]);
        let cni_id = format!("default-{id}");
        let info = ctr_container(tb, &mut task, &cni_id);
        wait_until("the task to run", WAIT, || ctrd.task_pid(&id) != 0);
        CtrHttpd {
            ctrd,
            task,
            id,
            cni_id,
            info,
        }
    }

    /// Waits (bounded) until the host gets `url` from the httpd; its body.
    fn served(&self, tb: &Testbed, url: &str) -> String {
        let mut body = String::new();
        wait_until("httpd in the ctr container", WAIT, || {
            let out = curl(&tb.host(), url);
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
        });
        body
    }

    /// `wget -qO- url` inside the task (exec `exec_id`): what it printed.
    fn wget(&self, exec_id: &str, url: &str) -> String {
        let exec = self.ctrd.ctr(&[
            "task",
            "exec",
            "--exec-id",
            exec_id,
            &self.id,
            "/bin/wget",
            "-qO-",
            url,
        ]);
        assert!(exec.status.success(), "{exec:?}");
        String::from_utf8_lossy(&exec.stdout).trim().to_owned()
    }

    /// Kills the task: ctr's DEL must remove the container from netd.
    fn kill(mut self, tb: &Testbed) {
        let killed = self.ctrd.ctr(&["task", "kill", "-s", "SIGKILL", &self.id]);
        assert!(killed.status.success(), "{killed:?}");
        self.task.wait(WAIT);
        wait_until("netd to drop ctr's container", WAIT, || {
            !tb.netd_json(&["container", "ls"])
                .as_array()
                .is_some_and(|l| l.iter().any(|c| c["id"] == self.cni_id.as_str()))
        });
    }
}

/// ctr's container in netd once its add is complete (`container ls`
/// lists it as "creating" before that).
fn ctr_container(tb: &Testbed, task: &mut Bg, cni_id: &str) -> Value {
    let mut info = Value::Null;
    wait_until("ctr's container in netd", WAIT, || {
        if let Some(status) = task.try_wait() {
            panic!("ctr run exited ({status}): {}", task.log());
        }
        let list = tb.netd_json(&["container", "ls"]);
        match list.as_array().and_then(|l| {
            l.iter()
                .find(|c| c["id"] == cni_id && c["status"] == "running")
        }) {
            Some(c) => {
                info = c.clone();
                true
            }
            None => false,
        }
    });
    info
}

#[test]
fn containerd_ctr_run_cni_attaches_masquerades_and_detaches_through_netd() {
    let tb = Testbed::new();
    let net = network(&tb, "cn", "198.19.1.0/24");
    let ctr = CtrHttpd::run(&tb, &net, "ctr1");
    let info = &ctr.info;
    let pid = ctr.ctrd.task_pid(&ctr.id);
    assert_eq!(info["netns"], format!("/proc/{pid}/ns/net"));
    assert_eq!(info["interfaces"][0]["name"], "eth0");
    assert_eq!(info["status"], "running");
    let ip = info["ip"].as_str().unwrap().to_owned();
    assert_eq!(ip, "198.19.1.2");
    let veth = info["host_veth"].as_str().unwrap().to_owned();

    // The host reaches the container's httpd; the container reaches ext
    // through MASQUERADE.
    assert_eq!(ctr.served(&tb, &format!("http://{ip}/index.html")), INDEX);
    let server = HttpServer::start(&tb.ext(), 8000, &tb.tmp().join("ext-www"), "ext-server");
    assert_eq!(
        ctr.wget("wget1", "http://198.18.0.2:8000/id.txt"),
        "ext-server"
    );
    server.wait_client("198.18.0.1");
    assert_no_firewall_rules(&tb);

    // The task ends: ctr's DEL removes the container from netd.
    ctr.kill(&tb);
    wait_until("the host veth to go", WAIT, || {
        tb.host_link(&veth).is_none()
    });
}

#[test]
fn containerd_ctr_on_a_dual_stack_network_serves_and_masquerades_ipv6() {
    let tb = Testbed::new();
    tb.uplink6();
    let net = network6(&tb, "cn6", "198.19.7.0/24", "fd00:97::/64");
    let ctr = CtrHttpd::run(&tb, &net, "ctr6");
    assert_eq!(ctr.info["ip"], "198.19.7.2");
    assert_eq!(ctr.info["ip6"], "fd00:97::2");

    // The host reaches its httpd over IPv6; it reaches ext over IPv6,
    // MASQUERADE-d to the host's address.
    assert_eq!(ctr.served(&tb, "http://[fd00:97::2]/index.html"), INDEX);
    let server = HttpServer::start_on(
        &tb.ext(),
        "::",
        8000,
        &tb.tmp().join("ext-www6"),
        "ext-server6",
    );
    let url = format!("http://[{EXT_IP6}]:8000/id.txt");
    assert_eq!(ctr.wget("wget6", &url), "ext-server6");
    server.wait_client(HOST_IP6);
    assert_no_firewall_rules(&tb);
    ctr.kill(&tb);
    assert!(tb.ls().is_empty());
}
