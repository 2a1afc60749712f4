//! Running commands: the netd CLI, commands inside namespaces, bounded waits.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

/// Seconds any single CLI call may take.
const CLI_TIMEOUT: &str = "30";
/// Seconds any command inside a namespace may take.
const NS_TIMEOUT: &str = "20";
const POLL: Duration = Duration::from_millis(50);

/// The netd binary: `NETD_BIN`, else `<workspace>/target/debug/netd`.
pub fn netd_bin() -> PathBuf {
    match env::var_os("NETD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/netd"),
    }
}

/// `netd --socket SOCKET ARGS...` from the root namespace, bounded in time.
pub fn netd_at(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg(CLI_TIMEOUT)
        .arg(netd_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NETD_SOCKET");
    run(&mut cmd)
}

/// `ip netns exec NS CMD...`, bounded in time.
pub fn in_ns(ns: &str, cmd: &[&str]) -> Output {
    let mut c = Command::new("timeout");
    c.args([NS_TIMEOUT, "ip", "netns", "exec", ns]).args(cmd);
    run(&mut c)
}

/// [`in_ns`], asserting success; returns stdout.
pub fn in_ns_ok(ns: &str, cmd: &[&str]) -> String {
    let out = in_ns(ns, cmd);
    assert_success(&format!("ip netns exec {ns} {}", cmd.join(" ")), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with captured output; panics if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Panics with the command's output unless it exited 0.
pub fn assert_success(what: &str, out: &Output) {
    let timed_out = if out.status.code() == Some(124) {
        " (timed out)"
    } else {
        ""
    };
    assert!(
        out.status.success(),
        "`{what}` failed{timed_out}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` every 50 ms until it returns true; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}
