//! Docker's port syntax, parsed at the front door into the engine's typed
//! mappings: `-p [HOSTIP:]HOSTPORT[-END]:CPORT[-END][/proto]`, and
//! `portmap add` with the container address in the middle. An IPv6 host
//! address goes in brackets, as Docker writes it: `[2001:db8::1]:8080:80`.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context, Result, anyhow, bail};

use crate::engine::{
    model::{ANY_V4, PortMapping, PortRange, Proto},
    requests::Publish,
};

fn split_proto(spec: &str) -> Result<(&str, Proto)> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Proto::Tcp)),
        Some((rest, "tcp")) => Ok((rest, Proto::Tcp)),
        Some((rest, "udp")) => Ok((rest, Proto::Udp)),
        Some((_, other)) => bail!("invalid protocol {other:?}: use tcp or udp"),
    }
}

/// A host side's address: IPv4, or IPv6 in brackets. 0.0.0.0 written
/// out is IPv4 only (the second value); no address is both families.
fn parse_host_ip(s: &str) -> Result<(IpAddr, bool)> {
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        let ip = parse_ip(s)?;
        return Ok((ip, ip.is_unspecified()));
    };
    let ip: Ipv6Addr = inner
        .parse()
        .map_err(|_| anyhow!("invalid IPv6 address {inner:?}"))?;
    if let Some(v4) = ip.to_ipv4_mapped() {
        bail!("host address {ip} is IPv4-mapped: write it as {v4}");
    }
    Ok((IpAddr::V6(ip), false))
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    if s.contains('[') || s.contains(']') {
        bail!(
            "invalid address {s:?}: only the host address may be IPv6 (in brackets); the container's is its IPv4 address"
        );
    }
    s.parse::<std::net::Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| anyhow!("invalid IPv4 address {s:?} (write an IPv6 host address in brackets)"))
}

/// The ':'-separated fields of a spec, a bracketed IPv6 address being one.
fn fields(addr: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = addr;
    loop {
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else {
                bail!("unclosed '[' in {addr:?}");
            };
            let (field, after) = rest.split_at(end + 1);
            out.push(field);
            match after.strip_prefix(':') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(out),
                None => bail!("expected ':' after {field}"),
            }
            continue;
        }
        match rest.split_once(':') {
            Some((field, next)) => {
                out.push(field);
                rest = next;
            }
            None => {
                out.push(rest);
                return Ok(out);
            }
        }
    }
}

/// `START[-END]`, ports 1-65535.
pub fn parse_range(s: &str) -> Result<PortRange> {
    let port = |p: &str| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => bail!("invalid port {p:?}: use a number from 1 to 65535"),
            Ok(n) => Ok(n),
        }
    };
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(s)?, port(s)?),
    };
    if end < start {
        bail!("invalid port range {s}: the end is below the start");
    }
    Ok(PortRange { start, end })
}

fn check_lengths(host: PortRange, container: PortRange) -> Result<()> {
    if host.count() != container.count() {
        bail!("host ports {host} and container ports {container} are ranges of different lengths");
    }
    Ok(())
}

/// `[HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:CPORT[-END][/tcp|/udp]`.
pub fn parse_mapping(spec: &str) -> Result<PortMapping> {
    let parsed = (|| -> Result<PortMapping> {
        let (addr, proto) = split_proto(spec)?;
        let parts = fields(addr)?;
        let ((host_ip, ipv4_only), hp, cip, cp) = match parts.as_slice() {
            [hp, cip, cp] => ((ANY_V4, false), *hp, *cip, *cp),
            [hip, hp, cip, cp] => (parse_host_ip(hip)?, *hp, *cip, *cp),
            _ => bail!(
                "wrong number of ':'-separated fields (write an IPv6 host address in brackets)"
            ),
        };
        let host_ports = parse_range(hp)?;
        let container_ip = parse_ip(cip)?;
        let container_ports = parse_range(cp)?;
        check_lengths(host_ports, container_ports)?;
        Ok(PortMapping {
            host_ip,
            host_ports,
            container_ip,
            container_ports,
            proto,
            ipv4_only,
        })
    })();
    parsed.with_context(|| format!("bad port mapping {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:PORT[-END][/tcp|/udp])"))
}

/// Docker's `-p [[HOSTIP:]HOSTPORT[-END]:]CPORT[-END][/tcp|/udp]`; no (or
/// an empty) host port leaves it to netd (host port 0).
pub fn parse_publish(spec: &str) -> Result<Publish> {
    let parsed = (|| -> Result<Publish> {
        let (addr, proto) = split_proto(spec)?;
        let parts = fields(addr)?;
        let ((host_ip, ipv4_only), hp, cp) = match parts.as_slice() {
            [cp] => ((ANY_V4, false), "", *cp),
            [hp, cp] => ((ANY_V4, false), *hp, *cp),
            [hip, hp, cp] => (parse_host_ip(hip)?, *hp, *cp),
            _ => bail!(
                "wrong number of ':'-separated fields (write an IPv6 host address in brackets)"
            ),
        };
        let container_ports = parse_range(cp)?;
        // No host port: netd picks free ones (Docker's `-p 80`).
        let host_ports = if hp.is_empty() {
            PortRange { start: 0, end: 0 }
        } else {
            parse_range(hp)?
        };
        if host_ports.start != 0 {
            check_lengths(host_ports, container_ports)?;
        }
        Ok(Publish {
            host_ip,
            host_ports,
            container_ports,
            proto,
            ipv4_only,
        })
    })();
    parsed.with_context(|| {
        format!("bad -p {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp])")
    })
}

/// What `portmap rm` names: a full mapping (which must match exactly) or
/// just its host side, `[HOSTIP:]HOSTPORT[-END][/proto]`.
pub fn parse_selector(spec: &str) -> Result<crate::engine::requests::PortSelector> {
    use crate::engine::requests::PortSelector;
    if let Ok(mapping) = parse_mapping(spec) {
        return Ok(PortSelector::Exact(mapping));
    }
    let parsed = (|| -> Result<PortMapping> {
        let (addr, proto) = split_proto(spec)?;
        let ((host_ip, ipv4_only), ports) = match addr.rsplit_once(':') {
            Some((ip, ports)) => (parse_host_ip(ip)?, ports),
            None => ((ANY_V4, false), addr),
        };
        let host_ports = parse_range(ports)?;
        Ok(PortMapping {
            host_ip,
            host_ports,
            container_ip: ANY_V4,
            container_ports: host_ports,
            proto,
            ipv4_only,
        })
    })();
    parsed
        .map(|m| PortSelector::HostSide(m.host_side()))
        .with_context(|| format!("bad port mapping {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:PORT[-END][/tcp|/udp] or [HOSTIP:]HOSTPORT[-END][/tcp|/udp])"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_the_readme_example() {
        let m = parse_mapping("8088:172.17.0.2:80").unwrap();
        assert_eq!(m.host_ip, ANY_V4);
        assert_eq!(m.host_ports, PortRange::single(8088));
        assert_eq!(m.container_ip, IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2)));
        assert_eq!(m.container_ports, PortRange::single(80));
        assert_eq!(m.proto, Proto::Tcp);
        assert_eq!(m.to_string(), "8088:172.17.0.2:80/tcp");
    }

    #[test]
    fn parses_host_ip_ranges_and_udp() {
        let m = parse_mapping("198.18.0.1:5000-5002:172.17.0.3:6000-6002/udp").unwrap();
        assert_eq!(m.host_ip, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(m.proto, Proto::Udp);
        assert_eq!(
            m.host_ports,
            PortRange {
                start: 5000,
                end: 5002
            }
        );
    }

    #[test]
    fn parses_docker_publish() {
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(p.proto, Proto::Udp);
        assert!(parse_publish("8080:80").is_ok());
        let open = parse_publish("127.0.0.1::80-81").unwrap();
        assert_eq!(open.host_ports.start, 0);
        assert_eq!(
            parse_publish("80").unwrap().container_ports,
            PortRange::single(80)
        );
        assert!(parse_publish("80:").is_err());
    }

    #[test]
    fn parses_v6_host_addresses_and_families() {
        let p = parse_publish("[2001:2::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, "2001:2::1".parse::<IpAddr>().unwrap());
        assert!(!p.ipv4_only);
        let any6 = parse_publish("[::]:8080:80/udp").unwrap();
        assert_eq!(any6.host_ip, "::".parse::<IpAddr>().unwrap());
        assert_eq!(any6.proto, Proto::Udp);
        assert!(parse_publish("0.0.0.0:8080:80").unwrap().ipv4_only);
        assert!(!parse_publish("8080:80").unwrap().ipv4_only);
        assert!(!parse_publish("198.18.0.1:8080:80").unwrap().ipv4_only);
        let open = parse_publish("[::1]::80").unwrap();
        assert_eq!(open.host_ports.start, 0);
        let m = parse_mapping("[2001:2::1]:8080:172.17.0.2:80").unwrap();
        assert_eq!(m.to_string(), "[2001:2::1]:8080:172.17.0.2:80/tcp");
        assert_eq!(parse_mapping(&m.to_string()).unwrap(), m);
        let v4 = parse_mapping("0.0.0.0:8080:172.17.0.2:80").unwrap();
        assert_eq!(parse_mapping(&v4.to_string()).unwrap(), v4);
        assert_eq!(
            parse_selector("[::]:8080/udp").unwrap(),
            crate::engine::requests::PortSelector::HostSide("[::]:8080/udp".into())
        );
        for bad in [
            "2001:2::1:8080:80",
            "[2001:2::1:8080:80",
            "[2001:2::zz]:8080:80",
            "[::ffff:198.18.0.1]:8080:80",
            "[2001:2::1]x:8080:80",
            "[198.18.0.1]:8080:80",
        ] {
            let err = format!("{:#}", parse_publish(bad).unwrap_err());
            assert!(err.starts_with("bad -p"), "{bad}: {err}");
        }
        assert!(parse_mapping("8080:[fd00::2]:80").is_err());
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "8088",
            "8088:80",
            "0:172.17.0.2:80",
            "70000:172.17.0.2:80",
            "8088:172.17.0.2:80/sctp",
            "8088-8090:172.17.0.2:80",
            "8090-8088:172.17.0.2:80-82",
            "x:172.17.0.2:80",
            "8088:1.2.3:80",
        ] {
            assert!(parse_mapping(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_take_a_host_side_or_a_full_mapping() {
        use crate::engine::requests::PortSelector;
        assert_eq!(
            parse_selector("8088/udp").unwrap(),
            PortSelector::HostSide("8088/udp".into())
        );
        assert!(matches!(
            parse_selector("8088:172.17.0.2:80").unwrap(),
            PortSelector::Exact(_)
        ));
        assert!(parse_selector("x").is_err());
    }
}
