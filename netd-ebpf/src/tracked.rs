//! What both tc programs do first: parse, then handle ICMP errors and the
//! packets of tracked flows (one lookup, the flow's rewrite, delivery);
//! what netd cannot translate is decided here too. Whatever is left is a
//! packet of no known flow, for the attach point's own policy.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, programs::TcContext};
use netd_common::{CtKey, StatIndex, ct_dir, ct_kind};

use crate::{
    conntrack::{self, Entry, V4},
    icmp,
    nat::translate,
    packet::{Packet, Skip, decrement_ttl, parse},
    policy::{Ingress, route_out, ttl_expired},
    route::deliver,
    stats::{count, drop, rewrite_failed},
};

/// Err is the verdict for packets that are done; Ok is a packet of no
/// known flow.
#[inline(always)]
pub fn tracked_or_parsed(ctx: &mut TcContext, from: Ingress) -> Result<Packet, i32> {
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
    match conntrack::lookup::<V4>(&pkt.tuple) {
        Some(ct) => Err(forward_tracked(ctx, &pkt, ct, from)),
        None => Ok(pkt),
    }
}

/// A packet netd cannot translate: from outside it is the stack's (the
/// exposure check still applies); from a container it may go where no
/// translation is needed (its own network, the host), never out with its
/// private address.
#[inline(always)]
fn untranslatable(ctx: &mut TcContext, t: &CtKey, from: Ingress) -> i32 {
    match from {
        Ingress::Outside => TC_ACT_UNSPEC,
        Ingress::Container(me) => match route_out(ctx, t, me, ctx.len()) {
            Ok(_) => drop(StatIndex::DropUntranslatable, ctx.len()),
            Err(verdict) => verdict,
        },
    }
}

/// An ICMP error: translated and delivered if it is about one of our
/// flows (and, from a container, about a packet that container received),
/// otherwise what an untranslatable packet gets.
#[inline(always)]
fn icmp_error(ctx: &mut TcContext, pkt: &Packet, from: Ingress) -> i32 {
    let receiver = match from {
        Ingress::Outside => 0,
        Ingress::Container(me) => me.ip,
    };
    match icmp::translate_error(ctx, pkt, receiver) {
        Some(dst_ip) => {
            // Forwarded one hop on, like any packet; an error is never
            // answered with another, so an expiring one is only dropped.
            if pkt.ttl <= 1 {
                return drop(StatIndex::DropTtl, pkt.len);
            }
            if decrement_ttl(ctx, pkt).is_err() {
                return rewrite_failed();
            }
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

/// A packet of a known flow: apply the flow's translation and deliver.
#[inline(always)]
fn forward_tracked(ctx: &mut TcContext, pkt: &Packet, entry: Entry<V4>, from: Ingress) -> i32 {
    if pkt.ttl <= 1 {
        return ttl_expired(ctx, pkt, from);
    }
    let ct = entry.value;
    // SAFETY: map value pointer, valid for this run.
    let t = unsafe { (*ct).translated(pkt.tuple.proto) };
    if conntrack::record(&pkt.tuple, &entry, pkt).is_err() {
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
