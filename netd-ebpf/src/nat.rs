//! Address translation: rewriting a packet to its flow's tuple, creating
//! flows (DNAT to a published port, hairpin, MASQUERADE with its port
//! choice), and the three new-flow paths that use them.

use core::mem::MaybeUninit;

use aya_ebpf::{helpers::bpf_get_prandom_u32, programs::TcContext};
use netd_common::{CtKey, PortMapValue, StatIndex, VethValue, ct_dir, ct_kind};

use crate::{
    conntrack::{self, Refused, V4},
    ctx::PacketCtx,
    maps::nat_ports,
    packet::{IP_DST_OFF, IP_SRC_OFF, Packet, decrement_ttl, set_ip, set_port},
    policy::{self, Ingress},
    route::{self, Route, deliver},
    stats::{count, drop, rewrite_failed},
};

/// Attempts at finding a free MASQUERADE port before giving up.
const PORT_TRIES: u32 = 32;

/// Rewrites the packet to the tuple `t`, one hop on (TTL - 1).
#[inline(always)]
pub fn translate<C: PacketCtx>(ctx: &mut C, pkt: &Packet, t: &CtKey) -> Result<(), ()> {
    let o = &pkt.tuple;
    set_ip(ctx, pkt, IP_SRC_OFF, o.src_ip, t.src_ip)?;
    set_ip(ctx, pkt, IP_DST_OFF, o.dst_ip, t.dst_ip)?;
    set_port(ctx, pkt, false, o.src_port, t.src_port)?;
    set_port(ctx, pkt, true, o.dst_port, t.dst_port)?;
    decrement_ttl(ctx, pkt)
}

/// Creates a flow whose translation is fully known (DNAT).
#[inline(always)]
pub fn create(pkt: &Packet, t: &CtKey, kind: u8) -> Result<(), Refused> {
    let mut room = MaybeUninit::uninit();
    let reply = conntrack::new_entry(&mut room, &pkt.tuple.reversed(), kind, ct_dir::REPLY, pkt);
    conntrack::insert_new::<V4>(&t.reversed(), reply)?;
    conntrack::insert_original(pkt, t, kind)
}

/// Creates a flow whose source port (ICMP: echo id) is to be chosen: the
/// original port if its REPLY tuple is free, else a random one in
/// [min, max]. The REPLY entry is inserted with NOEXIST, which is what
/// makes the choice collision-free, also between CPUs racing for a port.
/// Returns the translated tuple.
#[inline(always)]
pub fn create_with_port(
    pkt: &Packet,
    t: &CtKey,
    kind: u8,
    min: u32,
    max: u32,
) -> Result<CtKey, Refused> {
    let mut room = MaybeUninit::uninit();
    let reply = conntrack::new_entry(&mut room, &pkt.tuple.reversed(), kind, ct_dir::REPLY, pkt);
    let span = max.saturating_sub(min) + 1;
    let mut port = u16::from_be(pkt.tuple.src_port);
    let mut chosen = *t;
    for _ in 0..PORT_TRIES {
        chosen.src_port = port.to_be();
        match conntrack::insert_new::<V4>(&chosen.reversed(), reply) {
            Ok(()) => {
                conntrack::insert_original(pkt, &chosen, kind)?;
                return Ok(chosen);
            }
            Err(Refused::Clash) => {}
            Err(other) => return Err(other),
        }
        let random = unsafe { bpf_get_prandom_u32() };
        port = (min + random % span) as u16;
    }
    Err(Refused::NoPort)
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

/// First packet to a published port from outside.
#[inline(always)]
pub fn dnat(ctx: &mut TcContext, pkt: &Packet, target: &PortMapValue) -> i32 {
    if let Err(verdict) = policy::may_start(ctx, pkt, Ingress::Outside) {
        return verdict;
    }
    let t = CtKey {
        dst_ip: target.container_ip,
        dst_port: target.container_port,
        ..pkt.tuple
    };
    if let Err(why) = create(pkt, &t, ct_kind::DNAT) {
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
/// its replies come back through its veth's program, where the REPLY
/// entry restores the host address. A container reaching itself is also
/// SNAT-ed to its gateway, since a packet from its own address would be
/// dropped as martian. An `--internal` network's container reaches only
/// targets on its own network this way.
#[inline(always)]
pub fn hairpin(ctx: &mut TcContext, pkt: &Packet, target: &PortMapValue, me: &VethValue) -> i32 {
    if !policy::may_hairpin(me, target) {
        return drop(StatIndex::DropPolicy, pkt.len);
    }
    if let Err(verdict) = policy::may_start(ctx, pkt, Ingress::Container(me)) {
        return verdict;
    }
    let mut t = CtKey {
        dst_ip: target.container_ip,
        dst_port: target.container_port,
        ..pkt.tuple
    };
    if target.container_ip != pkt.tuple.src_ip {
        if let Err(why) = create(pkt, &t, ct_kind::HAIRPIN) {
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

/// MASQUERADE: traffic to anything that is not the host itself and not a
/// netd network leaves with the address the route's interface would use.
/// Another network's subnet is off limits (isolation); so is everything
/// outside for an `--internal` network. A routed network's containers
/// leave with their own addresses.
#[inline(always)]
pub fn masquerade(ctx: &mut TcContext, pkt: &Packet, me: &VethValue) -> i32 {
    let route = match policy::route_out(ctx, &pkt.tuple, me, pkt.len) {
        Ok(route) => route,
        Err(verdict) => return verdict,
    };
    if let Err(verdict) = policy::may_start(ctx, pkt, Ingress::Container(me)) {
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
    let (min, max) = nat_ports();
    let t = match create_with_port(pkt, t, kind, min, max) {
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
