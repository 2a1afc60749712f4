//! Per-endpoint anti-spoofing (as Cilium does): a frame entering from a
//! container's veth must come from the MAC of the endpoint bound to that
//! veth, an IPv4 packet from its address, and an ARP message must announce
//! that address and MAC. Containers have CAP_NET_RAW by default, so a raw
//! socket is all it takes to claim another source; isolation and
//! MASQUERADE are then decided by the veth's endpoint alone.

use netd_common::VethValue;

use crate::{
    ctx::PacketCtx,
    maps::NETD_VETHS,
    packet::{ETH_HLEN, read},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
/// Offsets in an Ethernet/IPv4 ARP message (RFC 826).
const ARP_SHA_OFF: usize = ETH_HLEN + 8;
const ARP_SPA_OFF: usize = ETH_HLEN + 14;
const CHECKED_LEN: usize = ETH_HLEN + 28;

/// The endpoint bound to the veth the frame entered from, if the frame
/// carries that endpoint's own source; None (a drop) for a veth without an
/// endpoint and for a forged source.
#[inline(always)]
pub fn sender<C: PacketCtx>(ctx: &mut C) -> Option<&'static VethValue> {
    // SAFETY: map value pointer, valid for this run. A reference, not a
    // copy: the verifier tracks it as a map value.
    let me = NETD_VETHS.get_ptr(ctx.ifindex()).map(|p| unsafe { &*p })?;
    source_is_own(ctx, me).then_some(me)
}

/// True when the frame carries the veth endpoint's own source. Other
/// ethertypes (IPv6 link-local, LLDP) are judged by their MAC only: netd
/// routes nothing but IPv4 and ARP for containers.
#[inline(always)]
fn source_is_own<C: PacketCtx>(ctx: &mut C, me: &VethValue) -> bool {
    // The fields checked lie within the first 42 bytes (an ARP message's
    // end); make them linear if they are not (they nearly always are).
    if ctx.data_end() - ctx.data() < CHECKED_LEN {
        let _ = ctx.pull(CHECKED_LEN.min(ctx.len() as usize) as u32);
    }
    let Some(src_mac) = read::<[u8; 6]>(ctx, 6) else {
        return false;
    };
    if src_mac != me.mac {
        return false;
    }
    let Some(proto) = read::<u16>(ctx, 12) else {
        return false;
    };
    match u16::from_be(proto) {
        ETH_P_IP => read::<u32>(ctx, ETH_HLEN + 12) == Some(me.ip),
        ETH_P_ARP => arp_is_own(ctx, me),
        _ => true,
    }
}

/// The sender fields of an ARP message: the endpoint's MAC, and its
/// address (or 0.0.0.0, an address probe, RFC 5227).
#[inline(always)]
fn arp_is_own<C: PacketCtx>(ctx: &C, me: &VethValue) -> bool {
    let sha = read::<[u8; 6]>(ctx, ARP_SHA_OFF);
    let spa = read::<u32>(ctx, ARP_SPA_OFF);
    match (sha, spa) {
        (Some(sha), Some(spa)) => sha == me.mac && (spa == me.ip || spa == 0),
        _ => false,
    }
}
