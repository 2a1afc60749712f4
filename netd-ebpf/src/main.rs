//! netd's eBPF datapath. Built for `bpfel-unknown-none` by netd-user's
//! build.rs. See docs/ARCHITECTURE.md for the packet paths.
#![no_std]
#![no_main]

mod antispoof;
mod conntrack;
mod exposure;
mod frag;
mod icmp;
mod maps;
mod packet;
mod route;
mod sock;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};
use netd_common::{
    CtKey, IPPROTO_TCP, IPPROTO_UDP, PortMapKey, PortMapValue, ServiceKey, StatIndex, VethValue,
    ct_dir, ct_kind, net_flags,
};

use crate::{
    conntrack::{Entry, Refused, Tier},
    maps::{NETD_ENDPOINTS, NETD_HOST_ADDRS, NETD_PORTMAPS, NETD_VETHS, config, count},
    packet::{IP_DST_OFF, IP_SRC_OFF, Packet, Skip, decrement_ttl, parse, set_ip, set_port},
    route::{Route, deliver, fib_lookup},
};

/// Where a packet entered: from a host outside (the uplink), or from a
/// container (its veth's endpoint). Decides what an expiring TTL means and
/// what may leave.
#[derive(Clone, Copy)]
enum From<'a> {
    Outside,
    Container(&'a VethValue),
}

/// tcx ingress of the uplink: published ports (DNAT) and replies to
/// MASQUERADE-d flows. Anything else addressed to a container (a host
/// outside that routes a container subnet via this host) is dropped unless
/// the container's network is routed; the rest goes on to the host stack.
#[classifier]
pub fn netd_uplink_ingress(mut ctx: TcContext) -> i32 {
    count(StatIndex::Uplink, ctx.len());
    let verdict = from_outside(&mut ctx);
    if verdict == TC_ACT_UNSPEC && exposure::to_unexposed_container(&mut ctx) {
        count(StatIndex::DropUnpublished, ctx.len());
        return TC_ACT_SHOT;
    }
    verdict
}

#[inline(always)]
fn from_outside(ctx: &mut TcContext) -> i32 {
    let pkt = match tracked_or_parsed(ctx, From::Outside) {
        Ok(pkt) => pkt,
        Err(verdict) => return verdict,
    };
    match published(&pkt) {
        Some(target) => dnat(ctx, &pkt, &target),
        None => TC_ACT_UNSPEC,
    }
}

/// tcx ingress of a container's host-side veth: packets leaving the
/// container. The veth's endpoint is checked first (anti-spoofing); then
/// tracked flows, hairpin to published ports, direct container-to-container
/// forwarding, MASQUERADE.
#[classifier]
pub fn netd_from_container(mut ctx: TcContext) -> i32 {
    count(StatIndex::FromContainer, ctx.len());
    // SAFETY: the skb pointer the kernel handed us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: map value pointer, valid for this run. A reference, not a
    // copy: the verifier tracks it as a map value.
    let Some(me) = NETD_VETHS.get_ptr(ifindex).map(|p| unsafe { &*p }) else {
        return drop_spoofed(&ctx);
    };
    if !antispoof::source_is_own(&mut ctx, me) {
        return drop_spoofed(&ctx);
    }
    let pkt = match tracked_or_parsed(&mut ctx, From::Container(me)) {
        Ok(pkt) => pkt,
        Err(verdict) => return verdict,
    };
    if let Some(target) = published(&pkt) {
        return hairpin(&mut ctx, &pkt, &target, me);
    }
    // The sender's network decides what it may reach (isolation).
    if let Some(peer) = NETD_ENDPOINTS.get_ptr(pkt.tuple.dst_ip) {
        // SAFETY: map value pointer, valid for this run.
        let peer = unsafe { &*peer };
        if me.network_id != peer.network_id {
            return drop(StatIndex::DropPolicy, pkt.len);
        }
        // Bridged, not routed (as on Docker's bridge): the TTL stays.
        count(StatIndex::Forwarded, pkt.len);
        return route::to_endpoint(&mut ctx, peer);
    }
    masquerade(&mut ctx, &pkt, me)
}

#[inline(always)]
fn drop(stat: StatIndex, len: u32) -> i32 {
    count(stat, len);
    TC_ACT_SHOT
}

#[inline(always)]
fn drop_spoofed(ctx: &TcContext) -> i32 {
    drop(StatIndex::DropSpoofed, ctx.len())
}

/// What both ingress programs do first: parse, then handle ICMP errors and
/// packets of tracked flows. Err is the verdict for packets that are done;
/// Ok is a packet of no known flow, for the program's own policy.
#[inline(always)]
fn tracked_or_parsed(ctx: &mut TcContext, from: From) -> Result<Packet, i32> {
    let pkt = match parse(ctx) {
        Ok(pkt) => pkt,
        Err(Skip::NotNat) => return Err(TC_ACT_UNSPEC),
        Err(Skip::Malformed) => return Err(drop(StatIndex::DropMalformed, ctx.len())),
        Err(Skip::Untranslatable { src_ip, dst_ip }) => {
            let t = CtKey {
                src_ip,
                dst_ip,
                ..CtKey::default()
            };
            return Err(untranslatable(ctx, &t, from));
        }
    };
    if icmp::is_error(&pkt) {
        return Err(icmp_error(ctx, &pkt, from));
    }
    match conntrack::lookup(&pkt.tuple) {
        Some(ct) => Err(forward_tracked(ctx, &pkt, ct, from)),
        None => Ok(pkt),
    }
}

/// A packet netd cannot translate: from outside it is the stack's (the
/// exposure check still applies); from a container it may go where no
/// translation is needed (its own network, the host), never out with its
/// private address.
#[inline(always)]
fn untranslatable(ctx: &mut TcContext, t: &CtKey, from: From) -> i32 {
    match from {
        From::Outside => TC_ACT_UNSPEC,
        From::Container(me) => match route_out(ctx, t, me, ctx.len()) {
            Ok(_) => drop(StatIndex::DropUntranslatable, ctx.len()),
            Err(verdict) => verdict,
        },
    }
}

/// An ICMP error: translated and delivered if it is about one of our
/// flows (and, from a container, about a packet that container received),
/// otherwise what an untranslatable packet gets.
#[inline(always)]
fn icmp_error(ctx: &mut TcContext, pkt: &Packet, from: From) -> i32 {
    let receiver = match from {
        From::Outside => 0,
        From::Container(me) => me.ip,
    };
    match icmp::translate_error(ctx, pkt, receiver) {
        Some(dst_ip) => {
            count(StatIndex::ReverseNat, pkt.len);
            let t = CtKey {
                dst_ip,
                ..pkt.tuple
            };
            deliver(ctx, &t)
        }
        None => untranslatable(ctx, &pkt.tuple, from),
    }
}

/// The published port a new TCP/UDP flow is addressed to, if any: an exact
/// (host ip, port) mapping, or a wildcard one when the destination is one
/// of the host's own addresses.
#[inline(always)]
fn published(pkt: &Packet) -> Option<PortMapValue> {
    let t = &pkt.tuple;
    if t.proto != IPPROTO_TCP && t.proto != IPPROTO_UDP {
        return None;
    }
    // A mapping bound to a loopback address is for the host's own sockets
    // (the socket hooks), never for packets from another host (moby#45610).
    if packet::is_loopback(t.dst_ip) {
        return None;
    }
    let mut key = PortMapKey {
        host_ip: t.dst_ip,
        host_port: t.dst_port,
        proto: t.proto,
        pad: 0,
    };
    if let Some(v) = NETD_PORTMAPS.get_ptr(key) {
        return Some(unsafe { *v });
    }
    NETD_HOST_ADDRS.get_ptr(t.dst_ip)?;
    key.host_ip = 0;
    NETD_PORTMAPS.get_ptr(key).map(|v| unsafe { *v })
}

/// Rewrites the packet to the tuple `t`, one hop on (TTL - 1).
#[inline(always)]
fn translate(ctx: &mut TcContext, pkt: &Packet, t: &CtKey) -> Result<(), ()> {
    let o = &pkt.tuple;
    set_ip(ctx, pkt, IP_SRC_OFF, o.src_ip, t.src_ip)?;
    set_ip(ctx, pkt, IP_DST_OFF, o.dst_ip, t.dst_ip)?;
    set_port(ctx, pkt, false, o.src_port, t.src_port)?;
    set_port(ctx, pkt, true, o.dst_port, t.dst_port)?;
    decrement_ttl(ctx, pkt)
}

#[inline(always)]
fn rewrite_failed() -> i32 {
    drop(StatIndex::DropMalformed, 0)
}

/// A packet whose TTL runs out on a path netd routes: the host answers
/// with ICMP time exceeded, as a router does. From a container, the stack
/// gets the packet as it is and answers (traceroute from a container shows
/// the host); from outside, eBPF answers (the stack would take the packet
/// for the host itself). Counted either way as `drop_ttl`.
#[inline(always)]
fn ttl_expired(ctx: &mut TcContext, pkt: &Packet, from: From) -> i32 {
    count(StatIndex::DropTtl, pkt.len);
    match from {
        From::Container(_) => TC_ACT_UNSPEC,
        From::Outside => icmp::time_exceeded(ctx, pkt.tuple.src_ip, pkt.tuple.dst_ip),
    }
}

/// A new flow that could not be tracked is dropped, counted by why.
#[inline(always)]
fn refused(pkt: &Packet, why: Refused) -> i32 {
    let stat = match why {
        Refused::Full => StatIndex::DropCtFull,
        Refused::Clash => StatIndex::DropInvalid,
        Refused::NoPort => StatIndex::DropNoPort,
    };
    drop(stat, pkt.len)
}

/// Checks every new flow passes: a TCP flow starts with a SYN (anything
/// else without a flow is a leftover, e.g. a reply whose entry expired,
/// which must not become a new flow and leave with the container's
/// port), and the TTL allows one more hop. Err is the verdict.
#[inline(always)]
fn may_start(ctx: &mut TcContext, pkt: &Packet, from: From) -> Result<(), i32> {
    // A later fragment belongs to its first fragment's flow or to none.
    if !pkt.has_l4 {
        return Err(drop(StatIndex::DropUntranslatable, pkt.len));
    }
    if pkt.tuple.proto == IPPROTO_TCP && !conntrack::is_syn(pkt) {
        return Err(drop(StatIndex::DropInvalid, pkt.len));
    }
    if let From::Container(_) = from
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
    maps::NETD_SERVICES.get_ptr(&key).is_some()
}

/// A packet of a known flow: apply the flow's translation and deliver.
#[inline(always)]
fn forward_tracked(ctx: &mut TcContext, pkt: &Packet, entry: Entry, from: From) -> i32 {
    if pkt.ttl <= 1 {
        return ttl_expired(ctx, pkt, from);
    }
    let ct = entry.value;
    // SAFETY: map value pointer, valid for this run.
    let t = unsafe { (*ct).translated(pkt.tuple.proto) };
    if conntrack::touch(ct, pkt) {
        conntrack::reset_tcp(&t.reversed());
    }
    // Only a new flow's packets can make it assured: assured flows (most
    // packets) skip the out-of-line call.
    if entry.tier == Tier::New && conntrack::settle(&pkt.tuple, &entry, pkt).is_err() {
        count(StatIndex::DropCtFull, pkt.len);
    }
    if translate(ctx, pkt, &t).is_err() {
        return rewrite_failed();
    }
    // SAFETY: as above.
    let (direction, kind) = unsafe { ((*ct).direction, (*ct).kind) };
    let stat = match (direction, kind) {
        (ct_dir::REPLY, _) => StatIndex::ReverseNat,
        (_, ct_kind::SNAT) => StatIndex::Snat,
        _ => StatIndex::Dnat,
    };
    count(stat, pkt.len);
    deliver(ctx, &t)
}

/// First packet to a published port from outside.
#[inline(always)]
fn dnat(ctx: &mut TcContext, pkt: &Packet, target: &PortMapValue) -> i32 {
    if let Err(verdict) = may_start(ctx, pkt, From::Outside) {
        return verdict;
    }
    let t = CtKey {
        dst_ip: target.container_ip,
        dst_port: target.container_port,
        ..pkt.tuple
    };
    if let Err(why) = conntrack::create(pkt, &t, ct_kind::DNAT) {
        return refused(pkt, why);
    }
    if translate(ctx, pkt, &t).is_err() {
        return rewrite_failed();
    }
    count(StatIndex::Dnat, pkt.len);
    deliver(ctx, &t)
}

/// A container reaching a published port through a host address: DNAT to
/// the target. The target sees the client's own address, as with Docker;
/// its replies come back through this program on its veth, where the
/// REPLY entry restores the host address. A container reaching itself is
/// also SNAT-ed to its gateway, since a packet from its own address would
/// be dropped as martian. An `--internal` network's container reaches only
/// targets on its own network this way.
#[inline(always)]
fn hairpin(ctx: &mut TcContext, pkt: &Packet, target: &PortMapValue, me: &VethValue) -> i32 {
    if me.flags & net_flags::INTERNAL != 0 {
        let same_net = NETD_ENDPOINTS
            .get_ptr(target.container_ip)
            // SAFETY: map value pointer, valid for this run.
            .is_some_and(|p| unsafe { (*p).network_id } == me.network_id);
        if !same_net {
            return drop(StatIndex::DropPolicy, pkt.len);
        }
    }
    if let Err(verdict) = may_start(ctx, pkt, From::Container(me)) {
        return verdict;
    }
    let mut t = CtKey {
        dst_ip: target.container_ip,
        dst_port: target.container_port,
        ..pkt.tuple
    };
    if target.container_ip != pkt.tuple.src_ip {
        if let Err(why) = conntrack::create(pkt, &t, ct_kind::HAIRPIN) {
            return refused(pkt, why);
        }
        if translate(ctx, pkt, &t).is_err() {
            return rewrite_failed();
        }
        count(StatIndex::Dnat, pkt.len);
        return deliver(ctx, &t);
    }
    t.src_ip = me.gateway;
    snat_and_deliver(ctx, pkt, &t, ct_kind::HAIRPIN, None)
}

/// Where a packet from a container would be routed: Ok with the route when
/// it leaves the host through a non-bridge device from a network that
/// MASQUERADEs; otherwise Err with the verdict: the stack's for the host
/// itself, the sender's own network and routed networks, a policy drop for
/// another netd network and for anything outside an `--internal` network.
#[inline(always)]
fn route_out(ctx: &TcContext, t: &CtKey, me: &VethValue, len: u32) -> Result<Route, i32> {
    let Some(route) = fib_lookup(ctx, t) else {
        return Err(TC_ACT_UNSPEC);
    };
    if let Some(bridge) = maps::NETD_BRIDGES.get_ptr(route.ifindex) {
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

/// MASQUERADE: traffic to anything that is not the host itself and not a
/// netd network leaves with the address the route's interface would use.
/// Another network's subnet is off limits (isolation); so is everything
/// outside for an `--internal` network. A routed network's containers
/// leave with their own addresses.
#[inline(always)]
fn masquerade(ctx: &mut TcContext, pkt: &Packet, me: &VethValue) -> i32 {
    let route = match route_out(ctx, &pkt.tuple, me, pkt.len) {
        Ok(route) => route,
        Err(verdict) => return verdict,
    };
    if let Err(verdict) = may_start(ctx, pkt, From::Container(me)) {
        return verdict;
    }
    let t = CtKey {
        src_ip: route.src,
        ..pkt.tuple
    };
    snat_and_deliver(ctx, pkt, &t, ct_kind::SNAT, Some(&route))
}

#[inline(always)]
fn snat_and_deliver(
    ctx: &mut TcContext,
    pkt: &Packet,
    t: &CtKey,
    kind: u8,
    route: Option<&Route>,
) -> i32 {
    let (min, max) = match config() {
        Some(c) if c.nat_port_max >= c.nat_port_min && c.nat_port_min > 0 => {
            (c.nat_port_min, c.nat_port_max)
        }
        _ => (1024, 65535),
    };
    let t = match conntrack::create_with_port(pkt, t, kind, min, max) {
        Ok(t) => t,
        Err(why) => return refused(pkt, why),
    };
    if translate(ctx, pkt, &t).is_err() {
        return rewrite_failed();
    }
    match route {
        Some(route) => {
            count(StatIndex::Snat, pkt.len);
            route::redirect(ctx, route)
        }
        None => {
            count(StatIndex::Dnat, pkt.len);
            deliver(ctx, &t)
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
