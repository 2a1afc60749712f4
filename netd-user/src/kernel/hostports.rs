//! Ports that processes of the host (the daemon's network namespace) hold.
//! Publishing such a port would silently take it away from the host
//! service: the datapath translates packets before any socket sees them.
//! Docker's proxy notices by failing to bind; netd reads the kernel's
//! socket tables (`/proc/self/net/{tcp,tcp6,udp,udp6}`) at publish time and
//! refuses. netd's own sockets (its DNS responders) are not counted.

use std::{
    collections::HashSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context, Result};

use crate::engine::model::{HostSocket, PortRange, Proto};

/// `TCP_LISTEN` and `TCP_CLOSE` (an unconnected, bound UDP socket) in the
/// `st` column.
const TCP_LISTEN: u8 = 0x0a;
const UDP_UNCONNECTED: u8 = 0x07;

/// `net.ipv4.ip_local_port_range`: where Docker takes a host port that
/// `-p CONTAINERPORT` leaves open.
pub fn ephemeral_range() -> Result<PortRange> {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next()) {
        (Some(Ok(start)), Some(Ok(end))) if start > 0 && start <= end => {
            Ok(PortRange { start, end })
        }
        _ => anyhow::bail!("{path} holds {text:?}, not two ports"),
    }
}

/// The host's listening sockets, netd's own left out.
pub fn listening() -> Result<Vec<HostSocket>> {
    let own = own_socket_inodes();
    let mut out = Vec::new();
    for (file, proto, state) in [
        ("tcp", Proto::Tcp, TCP_LISTEN),
        ("tcp6", Proto::Tcp, TCP_LISTEN),
        ("udp", Proto::Udp, UDP_UNCONNECTED),
        ("udp6", Proto::Udp, UDP_UNCONNECTED),
    ] {
        let path = format!("/proc/self/net/{file}");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            // No IPv6 in this kernel: no tcp6/udp6 tables.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        out.extend(parse_table(&text, proto, state, &own));
    }
    Ok(out)
}

/// Rows of one table in state `state`, minus the inodes in `own`.
fn parse_table(text: &str, proto: Proto, state: u8, own: &HashSet<u64>) -> Vec<HostSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, st, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if u8::from_str_radix(st, 16).ok()? != state || own.contains(&inode.parse().ok()?) {
                return None;
            }
            let (addr, port) = parse_endpoint(local)?;
            Some(HostSocket { addr, port, proto })
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel
/// prints each 32-bit word of the address as a native-endian number.
fn parse_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let addr = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((addr, port))
}

/// Inodes of the sockets this process has open.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn reads_listeners_and_skips_connections_and_own_sockets() {
        let own = HashSet::from([1002]);
        let rows = parse_table(TCP, Proto::Tcp, TCP_LISTEN, &own);
        assert_eq!(
            rows,
            vec![HostSocket {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 22,
                proto: Proto::Tcp
            }]
        );
        let rows = parse_table(TCP6, Proto::Tcp, TCP_LISTEN, &HashSet::new());
        assert_eq!(rows[0].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(rows[0].port, 80);
    }
}
