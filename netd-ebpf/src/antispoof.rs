//! Per-endpoint anti-spoofing (as Cilium does): a frame entering from a
//! container's veth must come from the MAC of the endpoint bound to that
//! veth, an IPv4 packet from its address, and an ARP message must announce
//! that address and MAC. Containers have CAP_NET_RAW by default, so a raw
//! socket is all it takes to claim another source; isolation and
//! MASQUERADE are then decided by the veth's endpoint alone.
//!
//! IPv6: the source must be the endpoint's IPv6 address (`ip6` of its
//! `NETD_VETHS` entry),
//! a link-local address (fe80::/10), or, for ICMPv6 (duplicate address
//! detection, MLD), the unspecified address. Neighbour discovery must
//! carry the endpoint's MAC in its link-layer address option and a
//! neighbour advertisement may only announce the endpoint's own (or a
//! link-local) address; router advertisements are dropped
//! (`drop_ra`): only the host routes for containers.

use netd_common::{StatIndex, VethValue};

use crate::{
    ctx::PacketCtx,
    ipv6::{self, ETH_P_IPV6, IPPROTO_ICMPV6, SRC_OFF},
    maps::NETD_VETHS,
    packet::{ETH_HLEN, fetch, read},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOUR_SOLICIT: u8 = 135;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
const ND_OPT_SOURCE_LL: u8 = 1;
const ND_OPT_TARGET_LL: u8 = 2;

/// `ipv6_verdict`'s answers.
const V6_OWN: u32 = 0;
const V6_SPOOFED: u32 = 1;
const V6_ROUTER_ADVERT: u32 = 2;
const V6_UNPARSED: u32 = 3;
/// Offsets in an Ethernet/IPv4 ARP message (RFC 826).
const ARP_SHA_OFF: usize = ETH_HLEN + 8;
const ARP_SPA_OFF: usize = ETH_HLEN + 14;
const CHECKED_LEN: usize = ETH_HLEN + 28;

/// The endpoint bound to the veth the frame entered from, if the frame
/// carries that endpoint's own source; else the counter of the drop:
/// `DropSpoofed` for a veth without an endpoint and a forged source,
/// `DropRouterAdvert` for a router advertisement, `DropMalformed` for
/// IPv6 whose headers cannot be walked.
#[inline(always)]
pub fn sender<C: PacketCtx>(ctx: &mut C) -> Result<&'static VethValue, StatIndex> {
    // SAFETY: map value pointer, valid for this run. A reference, not a
    // copy: the verifier tracks it as a map value.
    let me = NETD_VETHS
        .get_ptr(ctx.ifindex())
        .map(|p| unsafe { &*p })
        .ok_or(StatIndex::DropSpoofed)?;
    source_is_own(ctx, me).map(|()| me)
}

/// Ok when the frame carries the veth endpoint's own source. Other
/// ethertypes (LLDP, ...) are judged by their MAC only.
#[inline(always)]
fn source_is_own<C: PacketCtx>(ctx: &mut C, me: &VethValue) -> Result<(), StatIndex> {
    // The fields checked lie within the first 42 bytes (an ARP message's
    // end); make them linear if they are not (they nearly always are).
    if ctx.data_end() - ctx.data() < CHECKED_LEN {
        let _ = ctx.pull(CHECKED_LEN.min(ctx.len() as usize) as u32);
    }
    let spoofed = Err(StatIndex::DropSpoofed);
    let Some(src_mac) = read::<[u8; 6]>(ctx, 6) else {
        return spoofed;
    };
    if src_mac != me.mac {
        return spoofed;
    }
    let Some(proto) = read::<u16>(ctx, 12) else {
        return spoofed;
    };
    let own = match u16::from_be(proto) {
        ETH_P_IP => read::<u32>(ctx, ETH_HLEN + 12) == Some(me.ip),
        ETH_P_ARP => arp_is_own(ctx, me),
        ETH_P_IPV6 => {
            return match ipv6_verdict(ctx, me) {
                V6_OWN => Ok(()),
                V6_ROUTER_ADVERT => Err(StatIndex::DropRouterAdvert),
                V6_UNPARSED => Err(StatIndex::DropMalformed),
                _ => spoofed,
            };
        }
        _ => true,
    };
    if own { Ok(()) } else { spoofed }
}

/// A MAC as one word, to pass by value to a BPF-to-BPF call.
#[inline(always)]
fn mac_word(mac: &[u8; 6]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 6 {
        w = (w << 8) | u64::from(mac[i]);
        i += 1;
    }
    w
}

#[inline(always)]
fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && (a[1] & 0xc0) == 0x80
}

/// An address as two words (BPF has no 128-bit compare).
#[inline(always)]
fn words(a: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&a[..8]);
    lo.copy_from_slice(&a[8..]);
    (u64::from_ne_bytes(hi), u64::from_ne_bytes(lo))
}

#[inline(always)]
fn is_unspecified(a: &[u8; 16]) -> bool {
    words(a) == (0, 0)
}

/// The IPv6 check, out of line: it holds 16-byte addresses and walks
/// extension headers at variable offsets, which would otherwise weigh on
/// every path of the program. `me`: the veth's endpoint (map memory).
#[inline(never)]
fn ipv6_verdict<C: PacketCtx>(ctx: &C, me: &VethValue) -> u32 {
    let Ok(src) = fetch::<[u8; 16]>(ctx, SRC_OFF) else {
        return V6_UNPARSED;
    };
    let own = &me.ip6;
    let unspecified = is_unspecified(&src);
    let src_ok = is_link_local(&src) || src_eq(&src, own) || unspecified;
    if !src_ok {
        return V6_SPOOFED;
    }
    // Find the ICMPv6 header behind the extension headers. A fragment
    // header or any other protocol ends the walk: neighbour discovery is
    // never fragmented (RFC 6980; Linux drops fragmented ND), so what
    // follows cannot be ND.
    let Some(ipv6::Next {
        proto: next, off, ..
    }) = ipv6::next_header(ctx)
    else {
        return V6_UNPARSED;
    };
    if next != IPPROTO_ICMPV6 {
        // The unspecified source is for DAD and MLD only.
        return if unspecified { V6_SPOOFED } else { V6_OWN };
    }
    let Ok(icmp_type) = fetch::<u8>(ctx, off) else {
        return V6_UNPARSED;
    };
    let opt_off = match icmp_type {
        ND_ROUTER_ADVERT => return V6_ROUTER_ADVERT,
        ND_ROUTER_SOLICIT => off + 8,
        ND_NEIGHBOUR_SOLICIT => off + 24,
        ND_NEIGHBOUR_ADVERT => {
            // It may only announce the endpoint's own addresses.
            let Ok(target) = fetch::<[u8; 16]>(ctx, off + 8) else {
                return V6_UNPARSED;
            };
            if !is_link_local(&target) && !src_eq(&target, own) {
                return V6_SPOOFED;
            }
            off + 24
        }
        _ => return V6_OWN,
    };
    // The first option, if it is a link-local address one, must carry
    // the endpoint's MAC (a message without options has nothing to lie
    // about: the Ethernet source was checked).
    let Ok(opt) = fetch::<[u8; 8]>(ctx, opt_off) else {
        return V6_OWN;
    };
    if (opt[0] == ND_OPT_SOURCE_LL || opt[0] == ND_OPT_TARGET_LL) && opt[1] == 1 {
        let carried = mac_word(&[opt[2], opt[3], opt[4], opt[5], opt[6], opt[7]]);
        if carried != mac_word(&me.mac) {
            return V6_SPOOFED;
        }
    }
    V6_OWN
}

/// `a` is the endpoint's own IPv6 address (`own`: all zeroes for none,
/// which matches nothing a source check lets through: `::` is judged on
/// its own).
#[inline(always)]
fn src_eq(a: &[u8; 16], own: &[u8; 16]) -> bool {
    !is_unspecified(own) && words(a) == words(own)
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
