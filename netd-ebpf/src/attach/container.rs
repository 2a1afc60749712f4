//! tcx ingress of a container's host-side veth: what leaves the container.

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{StatIndex, names::programs};

use crate::{
    antispoof, nat, nat6,
    policy::{self, Ingress},
    published,
    stats::{count, drop},
    tracked::tracked_or_parsed,
};

/// The veth's endpoint is checked first (anti-spoofing); then tracked
/// flows, hairpin to published ports, direct container-to-container
/// forwarding, MASQUERADE.
#[classifier]
pub fn netd_from_container(mut ctx: TcContext) -> i32 {
    count(StatIndex::FromContainer, ctx.len());
    let me = match antispoof::sender(&mut ctx) {
        Ok(me) => me,
        Err(stat) => return drop(stat, ctx.len()),
    };
    if nat6::is_ipv6(&ctx) {
        return nat6::from_container(&mut ctx, me.network_id, me.flags);
    }
    let pkt = match tracked_or_parsed(&mut ctx, Ingress::Container(me)) {
        Ok(pkt) => pkt,
        Err(verdict) => return verdict,
    };
    if let Some(target) = published::of_packet(&pkt) {
        return nat::hairpin(&mut ctx, &pkt, &target, me);
    }
    if let Some(verdict) = policy::to_container(&mut ctx, &pkt, me) {
        return verdict;
    }
    nat::masquerade(&mut ctx, &pkt, me)
}
named_as!(netd_from_container, programs::FROM_CONTAINER);
