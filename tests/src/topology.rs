//! The standard testbed topology (docs/testbed.md) as `ip` commands, one
//! definition for the integration tests and `cargo xtask bench`: `<p>-ext`
//! (198.18.0.2) and `<p>-host` (198.18.0.1) joined by a veth, the host's
//! default route via ext. Each caller runs the commands its own way.

pub const HOST_IP: &str = "198.18.0.1";
pub const EXT_IP: &str = "198.18.0.2";
/// IPv6 between ext and host, as 198.18.0.0/15 is for IPv4: the IPv6
/// benchmarking range (RFC 5180).
pub const HOST_IP6: &str = "2001:2::1";
pub const EXT_IP6: &str = "2001:2::2";

/// `ip` argument lists that build the topology, in order.
pub fn ip_commands(host: &str, ext: &str) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<&str>> = vec![
        vec!["netns", "add", host],
        vec!["netns", "add", ext],
        vec![
            "-n", host, "link", "add", "uplink0", "type", "veth", "peer", "name", "ext0", "netns",
            ext,
        ],
        vec!["-n", host, "addr", "add", "198.18.0.1/24", "dev", "uplink0"],
        vec!["-n", ext, "addr", "add", "198.18.0.2/24", "dev", "ext0"],
    ];
    for (ns, dev) in [(host, "lo"), (host, "uplink0"), (ext, "lo"), (ext, "ext0")] {
        cmds.push(vec!["-n", ns, "link", "set", dev, "up"]);
    }
    cmds.push(vec!["-n", host, "route", "add", "default", "via", EXT_IP]);
    cmds.into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect()
}

/// `ip` argument lists that give the topology IPv6: 2001:2::1 on the
/// host's uplink, 2001:2::2 in ext (no duplicate address detection, so
/// both are usable at once), the host's IPv6 default route via ext.
pub fn ip6_commands(host: &str, ext: &str) -> Vec<Vec<String>> {
    let host_addr = format!("{HOST_IP6}/64");
    let ext_addr = format!("{EXT_IP6}/64");
    let cmds: Vec<Vec<&str>> = vec![
        vec![
            "-n", host, "addr", "add", &host_addr, "dev", "uplink0", "nodad",
        ],
        vec!["-n", ext, "addr", "add", &ext_addr, "dev", "ext0", "nodad"],
        vec!["-n", host, "-6", "route", "add", "default", "via", EXT_IP6],
    ];
    cmds.into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect()
}
