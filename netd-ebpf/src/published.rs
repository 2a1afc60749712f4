//! Published ports: what a (host address, port, protocol) maps to, for
//! both the tc programs (packets to a host address) and the socket hooks
//! (host processes connecting to one).

use netd_common::{IPPROTO_TCP, IPPROTO_UDP, PortMap6Key, PortMap6Value, PortMapKey, PortMapValue};

use crate::{
    ipv6,
    maps::{NETD_HOST_ADDRS, NETD_HOST_ADDRS6, NETD_PORTMAPS, NETD_PORTMAPS6},
    packet::{Packet, is_loopback},
};

/// Who asks: a host process through the socket hooks, or a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A host process: a loopback address reaches the mappings bound to
    /// it and the wildcard ones (`-p 8080:80` answers on 127.0.0.1 too).
    HostSocket,
    /// A packet from another host or a container: a mapping bound to a
    /// loopback address is for the host's own sockets only, never for
    /// packets (moby#45610).
    Packet,
}

/// The published port `ip:port/proto` is, if any: an exact (host ip,
/// port) mapping, or a wildcard one when `ip` is one of the host's own
/// addresses (or, for a host socket, a loopback one).
#[inline(always)]
pub fn lookup(ip: u32, port: u16, proto: u8, asker: Asker) -> Option<PortMapValue> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let loopback = is_loopback(ip);
    if loopback && asker == Asker::Packet {
        return None;
    }
    let mut key = PortMapKey {
        host_ip: ip,
        host_port: port,
        proto,
        pad: 0,
    };
    if let Some(v) = NETD_PORTMAPS.get_ptr(key) {
        // SAFETY: map value pointer, valid for this run.
        return Some(unsafe { *v });
    }
    if !loopback {
        NETD_HOST_ADDRS.get_ptr(ip)?;
    }
    key.host_ip = 0;
    // SAFETY: as above.
    NETD_PORTMAPS.get_ptr(key).map(|v| unsafe { *v })
}

/// The IPv6 published port `ip:port/proto` is, if any, as `lookup` for
/// IPv4: a mapping bound to `ip` itself, or a wildcard (`::`) one when
/// `ip` is one of the host's own addresses (`NETD_HOST_ADDRS6`: traffic
/// routed through the host to another address keeps its port), or ::1
/// for a host socket. A mapping bound to ::1 is the host's sockets' only.
/// The map's value itself, not a copy: the IPv6 tc paths have little
/// stack to spare.
#[inline(always)]
pub fn lookup6(
    ip: &[u8; 16],
    port: u16,
    proto: u8,
    asker: Asker,
) -> Option<&'static PortMap6Value> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let loopback = is_loopback6(ip);
    if loopback && asker == Asker::Packet {
        return None;
    }
    let mut key = PortMap6Key {
        host_ip: *ip,
        host_port: port,
        proto,
        pad: 0,
    };
    if let Some(v) = NETD_PORTMAPS6.get_ptr(&key) {
        // SAFETY: map value pointer, valid for this program run.
        return Some(unsafe { &*v });
    }
    if !loopback {
        NETD_HOST_ADDRS6.get_ptr(ip)?;
    }
    ipv6::zero_addr(&mut key.host_ip);
    // SAFETY: as above.
    NETD_PORTMAPS6.get_ptr(&key).map(|v| unsafe { &*v })
}

/// ::1.
#[inline(always)]
fn is_loopback6(ip: &[u8; 16]) -> bool {
    let mut loopback = true;
    let mut i = 0;
    while i < 16 {
        let want = if i == 15 { 1 } else { 0 };
        if ip[i] != want {
            loopback = false;
        }
        i += 1;
    }
    loopback
}

/// The published port a new TCP/UDP flow is addressed to, if any.
#[inline(always)]
pub fn of_packet(pkt: &Packet) -> Option<PortMapValue> {
    let t = &pkt.tuple;
    lookup(t.dst_ip, t.dst_port, t.proto, Asker::Packet)
}
