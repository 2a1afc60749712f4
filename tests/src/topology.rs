//! The standard testbed topology (docs/testbed.md) as `ip` commands, one
//! definition for the integration tests and `cargo xtask bench`: `<p>-ext`
//! (198.18.0.2) and `<p>-host` (198.18.0.1) joined by a veth, the host's
//! default route via ext. Each caller runs the commands its own way.

pub const HOST_IP: &str = "198.18.0.1";
pub const EXT_IP: &str = "198.18.0.2";

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
