//! IPv6 headers: the walk over extension headers to the header behind
//! them, for anti-spoofing (neighbour discovery behind options headers)
//! and nat6 (the transport header at a variable offset). Bounded: at most
//! `MAX_EXT_HEADERS` hop-by-hop, routing and destination-options headers;
//! more, or one cut short, is "cannot tell" (None), which each caller
//! drops or passes and counts.

use core::ptr;

use crate::{
    ctx::PacketCtx,
    packet::{ETH_HLEN, fetch},
};

/// The Ethernet type of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// Fields of the fixed header (RFC 8200) in the frame.
pub const NEXT_OFF: usize = ETH_HLEN + 6;
pub const HOP_OFF: usize = ETH_HLEN + 7;
pub const SRC_OFF: usize = ETH_HLEN + 8;
pub const DST_OFF: usize = ETH_HLEN + 24;
/// The fixed header's end: where a transport header without extension
/// headers begins.
pub const PAYLOAD_OFF: usize = ETH_HLEN + 40;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_DEST: u8 = 60;
/// Extension headers walked before the answer is "cannot tell".
pub const MAX_EXT_HEADERS: usize = 4;

/// The first header that is not hop-by-hop, routing or destination
/// options (a transport header, a fragment header, ...): its protocol
/// number and its offset in the frame.
#[derive(Clone, Copy)]
pub struct Next {
    pub proto: u8,
    pub off: usize,
    /// A routing header with segments left was walked: the destination
    /// in the fixed header is not the final one (which the transport
    /// checksum covers), so the packet cannot be translated.
    pub source_routed: bool,
}

/// Sets an address to `::` with eight volatile 16-bit stores (the
/// address's own alignment): `= [0; 16]` becomes a call to a
/// byte-at-a-time `memset` in BPF code.
#[inline(always)]
pub fn zero_addr(a: &mut [u8; 16]) {
    let words = a.as_mut_ptr().cast::<u16>();
    for i in 0..8 {
        // SAFETY: within the 16 bytes; the keys that hold addresses are
        // 2-byte aligned.
        unsafe { ptr::write_volatile(words.add(i), 0) };
    }
}

#[inline(always)]
fn is_options(next: u8) -> bool {
    next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST
}

/// Walks the extension headers behind the fixed header (all three kinds
/// share the layout: next header, length in 8-byte units beyond the
/// first 8). None: truncated, or more than `MAX_EXT_HEADERS` of them.
#[inline(always)]
pub fn next_header<C: PacketCtx>(ctx: &C) -> Option<Next> {
    let mut proto = fetch::<u8>(ctx, NEXT_OFF).ok()?;
    let mut off = PAYLOAD_OFF;
    let mut source_routed = false;
    let mut walked = 0;
    while walked < MAX_EXT_HEADERS {
        if !is_options(proto) {
            break;
        }
        let head = fetch::<[u8; 4]>(ctx, off).ok()?;
        if proto == NEXTHDR_ROUTING && head[3] != 0 {
            source_routed = true;
        }
        proto = head[0];
        off += (usize::from(head[1]) + 1) * 8;
        walked += 1;
    }
    if is_options(proto) {
        return None;
    }
    Some(Next {
        proto,
        off,
        source_routed,
    })
}
