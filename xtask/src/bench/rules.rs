//! The netfilter rule sets of the comparison datapaths, as text for
//! `iptables-restore` and `nft -f`: Docker's rules for the same mappings.
//!
//! Extra published ports (the scaling test) come first and the measured
//! container's rules last, as for the most recently started container:
//! iptables walks its chains in order, so this is the lookup Docker users
//! get for a new container on a busy host.

use std::fmt::Write as _;

/// The bridge of the netfilter datapaths (Docker's name).
pub const BRIDGE: &str = "docker0";
pub const SUBNET: &str = "172.17.0.0/16";
pub const CONTAINER_IP: &str = "172.17.0.2";
/// The dual-stack bed's IPv6 subnet (a ULA, as Docker users pick for
/// `--ipv6`), its gateway on the bridge, and c1's address.
pub const SUBNET6: &str = "fd00:172:17::/64";
pub const GATEWAY6: &str = "fd00:172:17::1";
pub const CONTAINER_IP6: &str = "fd00:172:17::2";
/// Published TCP ports of the measured container: (host port, container port).
pub const PUBLISHED: [(u16, u16); 2] = [(8080, 80), (5201, 5201)];
/// First host (and container) port of the extra mappings.
pub const EXTRA_BASE: u16 = 10000;

/// Which iptables rule set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Style {
    /// The rules that do the NAT: DNAT in DOCKER from PREROUTING for local
    /// addresses, MASQUERADE, FORWARD accepts.
    Minimal,
    /// Docker's full set: DOCKER-USER and isolation chains, a filter ACCEPT
    /// and a hairpin MASQUERADE per published port, FORWARD policy DROP.
    DockerFull,
}

/// `(host port, container port)` of every mapping, extras first.
pub fn mappings(extra: u32) -> Vec<(u16, u16)> {
    let extra = (0..extra).filter_map(|i| {
        let port = u16::try_from(u32::from(EXTRA_BASE) + i).ok()?;
        Some((port, port))
    });
    extra.chain(PUBLISHED).collect()
}

/// A complete `iptables-restore` input (tables nat and filter).
pub fn iptables(style: Style, extra: u32) -> String {
    let maps = mappings(extra);
    let mut out = String::new();
    nat_table(&mut out, style, &maps);
    filter_table(&mut out, style, &maps);
    out
}

fn nat_table(out: &mut String, style: Style, maps: &[(u16, u16)]) {
    out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n");
    out.push_str(":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n");
    out.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n");
    if style == Style::DockerFull {
        out.push_str("-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n");
    }
    let _ = writeln!(
        out,
        "-A POSTROUTING -s {SUBNET} ! -o {BRIDGE} -j MASQUERADE"
    );
    if style == Style::DockerFull {
        for (_, cport) in maps {
            let _ = writeln!(
                out,
                "-A POSTROUTING -s {CONTAINER_IP}/32 -d {CONTAINER_IP}/32 -p tcp -m tcp --dport {cport} -j MASQUERADE"
            );
        }
    }
    let _ = writeln!(out, "-A DOCKER -i {BRIDGE} -j RETURN");
    for (hport, cport) in maps {
        let _ = writeln!(
            out,
            "-A DOCKER ! -i {BRIDGE} -p tcp -m tcp --dport {hport} -j DNAT --to-destination {CONTAINER_IP}:{cport}"
        );
    }
    out.push_str("COMMIT\n");
}

fn filter_table(out: &mut String, style: Style, maps: &[(u16, u16)]) {
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if style == Style::Minimal {
        let _ = writeln!(
            out,
            "-A FORWARD -o {BRIDGE} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        let _ = writeln!(out, "-A FORWARD -o {BRIDGE} -j ACCEPT");
        let _ = writeln!(out, "-A FORWARD -i {BRIDGE} -j ACCEPT");
        out.push_str("COMMIT\n");
        return;
    }
    out.push_str(":DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n");
    out.push_str(":DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n");
    out.push_str("-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n");
    let b = BRIDGE;
    let _ = writeln!(
        out,
        "-A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let _ = writeln!(out, "-A FORWARD -o {b} -j DOCKER");
    let _ = writeln!(out, "-A FORWARD -i {b} ! -o {b} -j ACCEPT");
    let _ = writeln!(out, "-A FORWARD -i {b} -o {b} -j ACCEPT");
    for (_, cport) in maps {
        let _ = writeln!(
            out,
            "-A DOCKER -d {CONTAINER_IP}/32 ! -i {b} -o {b} -p tcp -m tcp --dport {cport} -j ACCEPT"
        );
    }
    let _ = writeln!(
        out,
        "-A DOCKER-ISOLATION-STAGE-1 -i {b} ! -o {b} -j DOCKER-ISOLATION-STAGE-2"
    );
    out.push_str("-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n");
    let _ = writeln!(out, "-A DOCKER-ISOLATION-STAGE-2 -o {b} -j DROP");
    out.push_str("-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n");
}

/// The nftables equivalent of `Style::Minimal`, with one map lookup for
/// the published port instead of a rule per port.
pub fn nftables(extra: u32) -> String {
    format!(
        "flush ruleset\n{}",
        nft_family(NftFamily::V4, &mappings(extra))
    )
}

/// `nftables`' tables for one address family.
#[derive(Clone, Copy)]
enum NftFamily {
    V4,
    V6,
}

fn nft_family(family: NftFamily, maps: &[(u16, u16)]) -> String {
    let (table, addr_type, container, subnet) = match family {
        NftFamily::V4 => ("ip", "ipv4_addr", CONTAINER_IP, SUBNET),
        NftFamily::V6 => ("ip6", "ipv6_addr", CONTAINER_IP6, SUBNET6),
    };
    let elements: Vec<String> = maps
        .iter()
        .map(|(hport, cport)| format!("{hport} : {container} . {cport}"))
        .collect();
    let b = BRIDGE;
    format!(
        "table {table} nat {{
  map ports {{
    type inet_service : {addr_type} . inet_service
    elements = {{ {elements} }}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname != \"{b}\" fib daddr type local dnat {table} addr . port to tcp dport map @ports
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    {table} saddr {subnet} oifname != \"{b}\" masquerade
  }}
}}
table {table} filter {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    oifname \"{b}\" ct state related,established accept
    oifname \"{b}\" accept
    iifname \"{b}\" accept
  }}
}}
",
        elements = elements.join(", ")
    )
}

/// Docker's IPv6 rules with `ip6tables: true` (NAT66), the measured
/// mappings only, as `Style::Minimal`: an `ip6tables-restore` input.
pub fn ip6tables() -> String {
    let b = BRIDGE;
    let mut out = String::new();
    out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n");
    out.push_str(":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n");
    out.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n");
    let _ = writeln!(out, "-A POSTROUTING -s {SUBNET6} ! -o {b} -j MASQUERADE");
    let _ = writeln!(out, "-A DOCKER -i {b} -j RETURN");
    for (hport, cport) in PUBLISHED {
        let _ = writeln!(
            out,
            "-A DOCKER ! -i {b} -p tcp -m tcp --dport {hport} -j DNAT --to-destination [{CONTAINER_IP6}]:{cport}"
        );
    }
    out.push_str("COMMIT\n");
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let _ = writeln!(
        out,
        "-A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let _ = writeln!(out, "-A FORWARD -o {b} -j ACCEPT");
    let _ = writeln!(out, "-A FORWARD -i {b} -j ACCEPT");
    out.push_str("COMMIT\n");
    out
}

/// The nftables IPv6 tables beside `nftables`'s IPv4 ones (loaded after
/// them, so no `flush ruleset`): the same map lookup, NAT66.
pub fn nftables6() -> String {
    nft_family(NftFamily::V6, &PUBLISHED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_mapping_comes_last() {
        let maps = mappings(3);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0], (10000, 10000));
        assert_eq!(maps[4], (5201, 5201));
    }

    #[test]
    fn minimal_rules_have_one_dnat_per_port() {
        let rules = iptables(Style::Minimal, 1000);
        assert_eq!(rules.matches("-j DNAT").count(), 1002);
        assert_eq!(rules.matches("-j MASQUERADE").count(), 1);
        assert!(rules.contains("--dport 8080 -j DNAT --to-destination 172.17.0.2:80"));
    }

    #[test]
    fn docker_full_rules_have_three_rules_per_port() {
        let rules = iptables(Style::DockerFull, 10);
        assert_eq!(rules.matches("-j DNAT").count(), 12);
        assert_eq!(rules.matches("-j MASQUERADE").count(), 13);
        assert_eq!(
            rules.matches("-o docker0 -p tcp -m tcp --dport").count(),
            12
        );
        assert!(rules.contains(
            "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
        ));
    }

    #[test]
    fn ipv6_rules_translate_to_the_containers_v6_address() {
        let rules = ip6tables();
        assert!(rules.contains("--dport 8080 -j DNAT --to-destination [fd00:172:17::2]:80"));
        assert_eq!(rules.matches("-j MASQUERADE").count(), 1);
        let nft = nftables6();
        assert!(nft.contains("8080 : fd00:172:17::2 . 80"));
        assert!(!nft.contains("flush ruleset"));
    }

    #[test]
    fn nftables_uses_one_map() {
        let rules = nftables(2);
        assert!(rules.contains("10001 : 172.17.0.2 . 10001, 8080 : 172.17.0.2 . 80"));
        assert_eq!(rules.matches("dnat").count(), 1);
    }
}
