//! tcx ingress of the uplink(s): what comes from other hosts.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use netd_common::{StatIndex, names::programs};

use crate::{
    exposure, nat, nat6,
    policy::Ingress,
    published,
    stats::{count, drop},
    tracked::tracked_or_parsed,
};

/// Published ports (DNAT) and replies to MASQUERADE-d flows. Anything else
/// addressed to a container (a host outside that routes a container subnet
/// via this host) is dropped unless the container's network is routed; the
/// rest goes on to the host stack.
#[classifier]
pub fn netd_uplink_ingress(mut ctx: TcContext) -> i32 {
    count(StatIndex::Uplink, ctx.len());
    if nat6::is_ipv6(&ctx) {
        return nat6::from_outside(&mut ctx);
    }
    let verdict = from_outside(&mut ctx);
    if verdict == TC_ACT_UNSPEC && exposure::to_unexposed_container(&mut ctx) {
        return drop(StatIndex::DropUnpublished, ctx.len());
    }
    verdict
}
named_as!(netd_uplink_ingress, programs::UPLINK_INGRESS);

#[inline(always)]
fn from_outside(ctx: &mut TcContext) -> i32 {
    let pkt = match tracked_or_parsed(ctx, Ingress::Outside) {
        Ok(pkt) => pkt,
        Err(verdict) => return verdict,
    };
    match published::of_packet(&pkt) {
        Some(target) => nat::dnat(ctx, &pkt, &target),
        None => TC_ACT_UNSPEC,
    }
}
