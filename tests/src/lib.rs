//! Test harness for netd's integration tests (docs/testbed.md).
//!
//! Every test builds its own [`Testbed`]: two namespaces `<p>-ext` and
//! `<p>-host` joined by a veth (198.18.0.2/24 and 198.18.0.1/24), and a netd
//! daemon running in `<p>-host` with its own state dir, bpffs dir and socket.
//! `<p>` is unique per test; container names start with it too, so that the
//! guard's `Drop` finds and removes everything, also when a test fails.
//!
//! The `netd` binary comes from `NETD_BIN`, else `target/debug/netd`.
//!
//! [`Bg`] runs servers and clients in namespaces (killed by PID on drop);
//! [`HttpServer`], [`curl`] and [`udp_exchange`] are the usual traffic.

pub mod cleanup;
pub mod cni;
pub mod docker;
mod process;
pub mod scripts;
mod testbed;
pub mod topology;
mod traffic;

pub use process::{in_ns, in_ns_ok, netd_at, netd_bin, wait_until};
pub use testbed::{Snapshot, Testbed};
pub use traffic::{
    Bg, HttpServer, TcpClient, bpftool, bpftool_dump, curl, curl_ok, in_ns_for, mac_of, snmp,
    udp_exchange,
};

/// The error line of a failed CLI call: asserts a non-zero exit and exactly
/// one stderr line starting with `error: `.
pub fn expect_error(what: &str, out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "`{what}` succeeded but should have failed; stdout: {stdout}"
    );
    assert_ne!(out.status.code(), Some(124), "`{what}` timed out");
    let stderr = stderr.trim_end();
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() == 1,
        "`{what}`: stderr must be one line starting with `error: `, got:\n{stderr}"
    );
    stderr.to_owned()
}

/// Whether `netd daemon --help` mentions `flag` (for optional features).
pub fn daemon_supports(flag: &str) -> bool {
    let out = process::run(std::process::Command::new(netd_bin()).args(["daemon", "--help"]));
    String::from_utf8_lossy(&out.stdout).contains(flag)
}

/// True if `dir` does not exist or has no entries.
pub fn empty_or_missing(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// `Path::exists` for `/run/netns/<name>`.
pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}
