//! Never lose state: an empty, missing or corrupt state database next to a
//! running deployment is not a fresh start, and `netd down` still removes
//! everything netd created, found from its kernel objects.

use std::fs;

use netd_tests::{HttpServer, Testbed, bpftool, curl_ok, empty_or_missing, in_ns_ok, netns_exists};

const HOST: &str = "198.18.0.1";

fn web(tb: &Testbed, ns: &str, port: u16, tag: &str) -> HttpServer {
    let dir = tb.tmp().join(format!("web-{tag}-{port}"));
    HttpServer::start(ns, port, &dir, &format!("{tag} {}\n", tb.p))
}

fn db(tb: &Testbed) -> std::path::PathBuf {
    tb.state_dir().join("netd.redb")
}

/// Nothing netd made is left in the host namespace, the netns dir, the
/// bpffs dir or the state dir.
fn assert_clean(tb: &Testbed, containers: &[&str]) {
    let links = tb.host_links();
    assert!(
        !links
            .iter()
            .any(|l| l == "netd0" || l.starts_with("veth") || l.starts_with("br-")),
        "links left: {links:?}"
    );
    for c in containers {
        assert!(!netns_exists(c), "netns of {c} left");
    }
    assert!(empty_or_missing(&tb.bpffs()), "pinned BPF objects left");
    assert!(
        !db(tb).exists() && empty_or_missing(&tb.state_dir().join("containers")),
        "state left"
    );
}

#[test]
fn empty_or_missing_database_next_to_a_deployment_is_not_a_fresh_start() {
    let mut tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    let veth = tb.inspect(&c1)["interfaces"][0]["host_veth"]
        .as_str()
        .expect("host_veth")
        .to_owned();
    tb.stop();
    for (what, damage) in [("empty", true), ("missing", false)] {
        if damage {
            fs::File::create(db(&tb)).expect("truncate the database");
        } else {
            fs::remove_file(db(&tb)).expect("remove the database");
        }
        let status = tb.start_fails();
        assert!(
            !status.success(),
            "the daemon started over an {what} database"
        );
        let log = tb.log();
        assert!(log.contains("refusing to start fresh"), "{log}");
        assert!(log.contains(what), "{log}");
        // Nothing was swept: the container and its datapath still work.
        assert!(tb.host_link(&veth).is_some(), "the veth was deleted");
        assert!(netns_exists(&c1), "the namespace was deleted");
        assert_eq!(
            curl_ok(&tb.ext(), &format!("http://{HOST}:8088/id.txt")),
            server.body
        );
    }
    // The way out the message names: `netd down` cleans up from the kernel.
    let out = tb.down_offline();
    assert!(out.status.success(), "offline down failed: {out:?}");
    assert_clean(&tb, &[&c1]);
}

#[test]
fn corrupt_database_down_removes_everything_from_kernel_objects() {
    let mut tb = Testbed::new();
    let host = tb.host();
    in_ns_ok(&host, &["ip", "link", "add", "br-mine", "type", "bridge"]);
    tb.netd_ok(&["network", "create", "front"]);
    tb.netd_ok(&[
        "network",
        "create",
        "mine",
        "--bridge",
        "br-mine",
        "--adopt-bridge",
        "--subnet",
        "172.29.0.0/24",
    ]);
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let c2 = tb.add_with("c2", &["--network", "front"]);
    let c3 = tb.add_with("c3", &["--network", "mine"]);
    tb.netd_ok(&["network", "connect", "front", &c1]);
    tb.kill9();
    fs::write(db(&tb), vec![0xa5u8; 8192]).expect("corrupt the database");
    let status = tb.start_fails();
    assert!(
        !status.success(),
        "the daemon started on a corrupt database"
    );
    assert!(tb.log().contains("netd down"), "{}", tb.log());

    let out = tb.down_offline();
    assert!(out.status.success(), "offline down failed: {out:?}");
    // The adopted bridge stays (without netd's address); everything netd
    // made goes.
    let mine = in_ns_ok(&host, &["ip", "-o", "addr", "show", "dev", "br-mine"]);
    assert!(!mine.contains("172.29.0.1"), "{mine}");
    in_ns_ok(&host, &["ip", "link", "del", "br-mine"]);
    assert_clean(&tb, &[&c1, &c2, &c3]);
}

/// A small tmpfs mounted over `dir` (in the root mount namespace, where
/// the daemon's state dir is); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_one_change_not_every_later_one() {
    let mut tb = Testbed::new();
    tb.stop();
    let state = tb.state_dir();
    let saved = tb.tmp().join("state.saved");
    fs::rename(&state, &saved).expect("move the state dir aside");
    fs::create_dir(&state).expect("recreate the state dir");
    let _tmpfs = Tmpfs::mount(&state, "2m");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(saved.join("."))
        .arg(&state)
        .status()
        .expect("run cp");
    assert!(copy.success(), "copying the state back");
    tb.start();

    // Fill the disk, then ask for a change big enough to need room.
    let fill = state.join("fill");
    let _ = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", fill.display()))
        .args(["bs=64k", "status=none"])
        .stderr(std::process::Stdio::null())
        .status(); // ends with "No space left on device", as it should
    let hosts: Vec<String> = (0..3000)
        .map(|i| format!("--add-host=host{i}.example.test:198.18.1.{}", i % 250 + 1))
        .collect();
    let name = tb.name("big");
    let mut args = vec!["container", "add", name.as_str()];
    args.extend(hosts.iter().map(String::as_str));
    let err = tb.netd_err(&args);
    assert!(err.to_lowercase().contains("space"), "{err}");

    // Room again: the next changes work without a restart, and the failed
    // add left no record behind.
    fs::remove_file(&fill).expect("free the disk");
    let c1 = tb.add("c1");
    tb.ping(&c1, "172.17.0.1");
    let names: Vec<String> = tb.ls().into_keys().collect();
    assert_eq!(names, vec![c1.clone()], "the failed add left a record");
    tb.rm(&c1);
    tb.stop();
}

/// How many CPUs the kernel keeps per-CPU map values for.
fn possible_cpus() -> u64 {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").expect("read possible CPUs");
    text.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().expect("cpu"), b.parse().expect("cpu"));
                b - a + 1
            }
            None => 1,
        })
        .sum()
}

#[test]
fn an_upgrade_over_a_shorter_stats_map_keeps_the_counters() {
    let mut tb = Testbed::new();
    tb.stop();
    // NETD_STATS as the previous release pinned it: 17 counters, the last
    // (drop_ra, index 16) at 1000 packets / 64000 bytes on every CPU.
    let pin = tb.bpffs().join("NETD_STATS");
    fs::remove_file(&pin).expect("unpin NETD_STATS");
    let pin_s = pin.to_string_lossy().into_owned();
    bpftool(&[
        "map",
        "create",
        &pin_s,
        "type",
        "percpu_array",
        "key",
        "4",
        "value",
        "16",
        "entries",
        "17",
        "name",
        "NETD_STATS",
    ]);
    // bpftool gives every CPU the value.
    bpftool(&[
        "map", "update", "pinned", &pin_s, "key", "16", "0", "0", "0", "value", "hex", "e8", "03",
        "00", "00", "00", "00", "00", "00", "00", "fa", "00", "00", "00", "00", "00", "00",
    ]);
    tb.start();
    let stats = tb.netd_json(&["stats"]);
    let cpus = possible_cpus();
    assert_eq!(stats["drop_ra"]["packets"], 1000 * cpus, "{stats}");
    assert_eq!(stats["drop_ra"]["bytes"], 64000 * cpus, "{stats}");
    assert_eq!(stats["pass_unparsed"]["packets"], 0, "{stats}");
    let shown = bpftool(&["map", "show", "pinned", &pin_s]);
    assert!(
        shown.contains("max_entries 18"),
        "the new counter has no room: {shown}"
    );
    assert!(
        tb.log()
            .contains("converted the pinned map NETD_STATS to this version's layout (17 entries)"),
        "{}",
        tb.log()
    );
    // It counts: traffic through the datapath still adds to the copied
    // counters (the new map is the one the programs use).
    let before = tb.counter("from_container");
    let c = tb.add("a");
    tb.ping(&c, HOST);
    assert!(tb.counter("from_container") > before);
}

/// `bpftool link show pinned PIN`: (link id, program id).
fn link_and_program(pin: &std::path::Path) -> (u64, u64) {
    let out = bpftool(&["-j", "link", "show", "pinned", &pin.to_string_lossy()]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("bpftool JSON");
    let id = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (id("id"), id("prog_id"))
}

/// A restart (an upgrade among them) runs the new socket hooks: each
/// pinned cgroup link stays (so host sockets are never left
/// unredirected) and gets the new run's program, as the tcx links do.
#[test]
fn a_restart_gives_the_pinned_socket_hook_links_the_new_programs() {
    let mut tb = Testbed::new();
    let c1 = tb.add_with("c1", &["-p", "8088:80"]);
    let server = web(&tb, &c1, 80, "c1");
    let pins: Vec<_> = ["netd_connect4", "netd_connect6", "netd_recvmsg6"]
        .iter()
        .map(|p| tb.bpffs().join("links").join(format!("cgroup-{p}")))
        .collect();
    let before: Vec<_> = pins.iter().map(|p| link_and_program(p)).collect();
    tb.stop();
    tb.restart();
    for (pin, (link, prog)) in pins.iter().zip(before) {
        let (link_after, prog_after) = link_and_program(pin);
        assert_eq!(
            link_after,
            link,
            "{} was replaced, not updated",
            pin.display()
        );
        assert_ne!(
            prog_after,
            prog,
            "{} still runs the old program",
            pin.display()
        );
    }
    let url = format!("http://{HOST}:8088/id.txt");
    assert_eq!(
        curl_ok(&tb.host(), &url),
        server.body,
        "host-local after the restart"
    );
}
