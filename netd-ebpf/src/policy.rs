//! Who may reach what. A packet from a container is judged by the endpoint
//! bound to its veth (`Ingress::Container`), never by the addresses it
//! carries: its network decides which containers it reaches (isolation),
//! whether it leaves the host (`--internal`) and with which address
//! (MASQUERADE unless routed). A new flow must start like one.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, programs::TcContext};
use netd_common::{
    CtKey, IPPROTO_TCP, IPPROTO_UDP, PortMapValue, ServiceKey, StatIndex, VethValue, net_flags,
};

use crate::{
    conntrack, icmp,
    maps::{NETD_BRIDGES, NETD_ENDPOINTS, NETD_SERVICES},
    packet::Packet,
    route::{self, Route, fib_lookup},
    stats::{count, drop},
};

/// Where a packet entered: from a host outside (the uplink), or from a
/// container (its veth's endpoint). Decides what an expiring TTL means and
/// what may leave.
#[derive(Clone, Copy)]
pub enum Ingress<'a> {
    Outside,
    Container(&'a VethValue),
}

/// Where a packet from a container would be routed: Ok with the route when
/// it leaves the host through a non-bridge device from a network that
/// MASQUERADEs; otherwise Err with the verdict: the stack's for the host
/// itself, the sender's own network and routed networks, a policy drop for
/// another netd network and for anything outside an `--internal` network.
#[inline(always)]
pub fn route_out(ctx: &TcContext, t: &CtKey, me: &VethValue, len: u32) -> Result<Route, i32> {
    let Some(route) = fib_lookup(ctx, t) else {
        return Err(TC_ACT_UNSPEC);
    };
    if let Some(bridge) = NETD_BRIDGES.get_ptr(route.ifindex) {
        // SAFETY: map value pointer, valid for this run.
        let bridge_net = unsafe { (*bridge).network_id };
        if me.network_id != bridge_net {
            return Err(drop(StatIndex::DropPolicy, len));
        }
        return Err(TC_ACT_UNSPEC);
    }
    if me.flags & net_flags::INTERNAL != 0 {
        return Err(drop(StatIndex::DropPolicy, len));
    }
    if me.flags & net_flags::ROUTED != 0 || route.src == 0 {
        return Err(TC_ACT_UNSPEC);
    }
    Ok(route)
}

/// A packet from a container to another container's address: forwarded
/// within the sender's network (bridged, not routed, as on Docker's
/// bridge: the TTL stays), dropped towards another network. None when the
/// destination is no container.
#[inline(always)]
pub fn to_container(ctx: &mut TcContext, pkt: &Packet, me: &VethValue) -> Option<i32> {
    let peer = NETD_ENDPOINTS.get_ptr(pkt.tuple.dst_ip)?;
    // SAFETY: map value pointer, valid for this run.
    let peer = unsafe { &*peer };
    if me.network_id != peer.network_id {
        return Some(drop(StatIndex::DropPolicy, pkt.len));
    }
    count(StatIndex::Forwarded, pkt.len);
    Some(route::to_endpoint(ctx, peer))
}

/// A container may reach a published port's target through a host
/// address: from an `--internal` network only on its own network.
#[inline(always)]
pub fn may_hairpin(me: &VethValue, target: &PortMapValue) -> bool {
    me.flags & net_flags::INTERNAL == 0
        || NETD_ENDPOINTS
            .get_ptr(target.container_ip)
            // SAFETY: map value pointer, valid for this run.
            .is_some_and(|p| unsafe { (*p).network_id } == me.network_id)
}

/// Checks every new flow passes: a TCP flow starts with a SYN (anything
/// else without a flow is a leftover, e.g. a reply whose entry expired,
/// which must not become a new flow and leave with the container's
/// port), and the TTL allows one more hop. Err is the verdict.
#[inline(always)]
pub fn may_start(ctx: &mut TcContext, pkt: &Packet, from: Ingress) -> Result<(), i32> {
    // A later fragment belongs to its first fragment's flow or to none.
    if !pkt.has_l4 {
        return Err(drop(StatIndex::DropUntranslatable, pkt.len));
    }
    if pkt.tuple.proto == IPPROTO_TCP && !conntrack::is_syn(pkt) {
        return Err(drop(StatIndex::DropInvalid, pkt.len));
    }
    if let Ingress::Container(_) = from
        && pkt.tuple.proto == IPPROTO_UDP
        && from_published_port(pkt)
    {
        return Err(drop(StatIndex::DropInvalid, pkt.len));
    }
    if pkt.ttl <= 1 {
        return Err(ttl_expired(ctx, pkt, from));
    }
    Ok(())
}

/// A datagram from a container's published UDP port: the reply of a flow
/// whose entry is gone (it expired while the service took its time).
#[inline(always)]
fn from_published_port(pkt: &Packet) -> bool {
    let key = ServiceKey {
        container_ip: pkt.tuple.src_ip,
        container_port: pkt.tuple.src_port,
        proto: pkt.tuple.proto,
        pad: 0,
    };
    NETD_SERVICES.get_ptr(&key).is_some()
}

/// A packet whose TTL runs out on a path netd routes: the host answers
/// with ICMP time exceeded, as a router does. From a container, the stack
/// gets the packet as it is and answers (traceroute from a container shows
/// the host); from outside, eBPF answers (the stack would take the packet
/// for the host itself). Counted either way as `drop_ttl`.
#[inline(always)]
pub fn ttl_expired(ctx: &mut TcContext, pkt: &Packet, from: Ingress) -> i32 {
    count(StatIndex::DropTtl, pkt.len);
    match from {
        Ingress::Container(_) => TC_ACT_UNSPEC,
        Ingress::Outside => icmp::time_exceeded(ctx, pkt.tuple.src_ip, pkt.tuple.dst_ip),
    }
}
