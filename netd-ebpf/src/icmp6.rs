//! ICMPv6 answers the datapath gives itself, as a router on the path:
//! time exceeded for a packet whose hop limit runs out at the host on a
//! path netd routes. From outside (a published port, a tracked flow into
//! a container) the stack cannot answer: it would take the packet,
//! addressed to a host address, for the host's own. From a container it
//! does not either: it does not route IPv6. IPv4's twin is
//! `icmp::time_exceeded` (from outside; the stack answers containers).

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_SHOT},
    helpers::generated::{
        bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes,
    },
    programs::TcContext,
};

use crate::{
    ipv6::{DST_OFF, ETH_P_IPV6, IPPROTO_ICMPV6, SRC_OFF},
    maps::Icmp6Answer,
    packet::ETH_HLEN,
};

const ICMP6_TIME_EXCEEDED: u8 = 3;
/// Code 0: hop limit exceeded in transit.
const ICMP6_HOP_LIMIT: u8 = 0;
const IP6_HLEN: usize = 40;
const ICMP6_HLEN: usize = 8;
/// What the answer quotes: the IPv6 header and 8 bytes beyond it (the
/// ports), as IPv4's answer quotes its header and 8 bytes. RFC 4443 asks
/// for as much as fits in 1280 bytes; the quote is what a sender matches
/// the error to its socket by.
const QUOTE: usize = IP6_HLEN + 8;
/// Where the frame starts in `Icmp6Answer::bytes`: two bytes in, so that
/// the IPv6 addresses and the ICMPv6 message sit 8-byte aligned.
const ETH_AT: usize = 2;
const IP_AT: usize = ETH_AT + ETH_HLEN;
const SRC_AT: usize = IP_AT + 8;
const DST_AT: usize = IP_AT + 24;
const ICMP_AT: usize = IP_AT + IP6_HLEN;
const QUOTE_AT: usize = ICMP_AT + ICMP6_HLEN;
/// The frame: Ethernet + IPv6 + ICMPv6 + quote.
const FRAME_LEN: usize = QUOTE_AT + QUOTE - ETH_AT;
/// The ICMPv6 message's length (the payload length and the checksum's).
const MESSAGE_LEN: usize = QUOTE_AT + QUOTE - ICMP_AT;
const _: () = assert!(ETH_AT + FRAME_LEN <= crate::maps::ICMP6_ANSWER_ROOM);

/// Turns the packet in `ctx` (its hop limit running out here) into the
/// ICMPv6 time exceeded answer, and sends it back out of the interface it
/// came in on. From `from`, or else (None) from the address the packet
/// was sent to. The quote is the packet as it arrived, before any
/// translation. Built in `room` (the per-CPU slot's, not the programs'
/// stack), the packet's fields loaded straight to where the answer has
/// them. A packet from a multicast or unspecified source, or an ICMPv6
/// error itself, gets no answer (dropped).
#[inline(never)]
pub fn time_exceeded(ctx: &mut TcContext, room: &mut Icmp6Answer, from: Option<&[u8; 16]>) -> i32 {
    let a = &mut room.bytes;
    // (packet offset, answer offset, length): constant lengths, as the
    // helper needs. Ethernet and IPv6 addresses swap: back where it came
    // from.
    let loads: [(usize, usize, u32); 5] = [
        (0, ETH_AT + 6, 6),
        (6, ETH_AT, 6),
        (DST_OFF, SRC_AT, 16),
        (SRC_OFF, DST_AT, 16),
        (ETH_HLEN, QUOTE_AT, QUOTE as u32),
    ];
    for (from, to, len) in loads {
        // SAFETY: the skb the kernel handed us; `a` holds `to..to + len`.
        let rc = unsafe {
            bpf_skb_load_bytes(
                ctx.skb.skb.cast(),
                from as u32,
                a.as_mut_ptr().add(to).cast(),
                len,
            )
        };
        if rc != 0 {
            return TC_ACT_SHOT;
        }
    }
    if a[DST_AT] == 0xff || word(a, DST_AT) | word(a, DST_AT + 8) == 0 {
        return TC_ACT_SHOT;
    }
    // An error is never answered with another (types below 128).
    if a[QUOTE_AT + 6] == IPPROTO_ICMPV6 && a[QUOTE_AT + IP6_HLEN] < 128 {
        return TC_ACT_SHOT;
    }
    if let Some(from) = from {
        a[SRC_AT..SRC_AT + 16].copy_from_slice(from);
    }
    a[ETH_AT + 12..IP_AT].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    a[IP_AT..IP_AT + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    a[IP_AT + 4..IP_AT + 6].copy_from_slice(&(MESSAGE_LEN as u16).to_be_bytes());
    a[IP_AT + 6] = IPPROTO_ICMPV6;
    a[IP_AT + 7] = 64;
    // Type, code, checksum (0 while it is summed), 4 unused bytes.
    a[ICMP_AT..QUOTE_AT].copy_from_slice(&[ICMP6_TIME_EXCEEDED, ICMP6_HOP_LIMIT, 0, 0, 0, 0, 0, 0]);
    let sum = checksum(a);
    a[ICMP_AT + 2..ICMP_AT + 4].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: the skb pointer the kernel handed us; `a` holds the frame.
    let sent = unsafe {
        bpf_skb_change_tail(ctx.skb.skb, FRAME_LEN as u32, 0) == 0
            && bpf_skb_store_bytes(
                ctx.skb.skb.cast(),
                0,
                a.as_ptr().add(ETH_AT).cast(),
                FRAME_LEN as u32,
                u64::from(BPF_F_RECOMPUTE_CSUM),
            ) == 0
    };
    if !sent {
        return TC_ACT_SHOT;
    }
    // SAFETY: the skb pointer the kernel handed us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// The 8 bytes at `at` (8-byte aligned), as one word.
#[inline(always)]
fn word(a: &[u8; crate::maps::ICMP6_ANSWER_ROOM], at: usize) -> u64 {
    // SAFETY: in bounds (callers' constants) and aligned (see `ETH_AT`).
    unsafe { *a.as_ptr().add(at).cast::<u64>() }
}

/// The ICMPv6 checksum: the pseudo-header (both addresses, the length,
/// the next header) and the message, which lie together from `SRC_AT`
/// on, summed by aligned 32-bit words (network order) and folded.
#[inline(always)]
fn checksum(a: &[u8; crate::maps::ICMP6_ANSWER_ROOM]) -> u16 {
    let mut sum: u64 = MESSAGE_LEN as u64 + u64::from(IPPROTO_ICMPV6);
    let mut at = SRC_AT;
    while at < QUOTE_AT + QUOTE {
        // SAFETY: in bounds and 4-byte aligned (see `ETH_AT`).
        let w = unsafe { *a.as_ptr().add(at).cast::<u32>() };
        sum += u64::from(u32::from_be(w));
        at += 4;
    }
    // At most 24 words of 32 bits: below 2^37, folded to 16 bits in four
    // steps (a fixed count: the verifier cannot bound a loop on the sum).
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
