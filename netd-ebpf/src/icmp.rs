//! ICMP errors (destination unreachable, time exceeded, parameter problem)
//! about a translated flow: the embedded header is translated too, so
//! the sender of the original packet recognises the error (traceroute,
//! path-MTU discovery, UDP port unreachable all keep working).
//!
//! The embedded packet I travelled the other way, so the error belongs to
//! the flow whose tracked tuple is I reversed (R). With R's translation
//! T: the error goes to T's destination; it comes from T's source if it
//! was sent by R's source itself (else, e.g. from a router on the path,
//! it keeps its source); and I becomes T reversed.

use core::{mem::MaybeUninit, ptr};

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_SHOT},
    helpers::generated::{bpf_redirect, bpf_skb_change_tail, bpf_skb_store_bytes},
    programs::TcContext,
};
use netd_common::{CtKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use crate::{
    conntrack,
    ctx::PacketCtx,
    packet::{ETH_HLEN, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, Packet},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
/// Outer ICMP header length: the embedded IP header follows it.
const ICMP_HLEN: usize = 8;

pub fn is_error(pkt: &Packet) -> bool {
    pkt.tuple.proto == IPPROTO_ICMP
        && matches!(
            pkt.icmp_type,
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB
        )
}

/// Where the embedded packet's fields are.
struct Inner {
    ip: usize,
    l4: usize,
    tuple: CtKey,
}

fn parse_inner<C: PacketCtx>(ctx: &C, pkt: &Packet) -> Option<Inner> {
    let ip = pkt.l4 + ICMP_HLEN;
    let ver_ihl: u8 = ctx.load(ip).ok()?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let proto: u8 = ctx.load(ip + 9).ok()?;
    let l4 = ip + ihl;
    let mut tuple = CtKey {
        src_ip: ctx.load(ip + 12).ok()?,
        dst_ip: ctx.load(ip + 16).ok()?,
        proto,
        ..CtKey::default()
    };
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            tuple.src_port = ctx.load(l4).ok()?;
            tuple.dst_port = ctx.load(l4 + 2).ok()?;
        }
        IPPROTO_ICMP => {
            // An echo request we translated (its reply would be the flow's).
            let kind: u8 = ctx.load(l4).ok()?;
            let id: u16 = ctx.load(l4 + 4).ok()?;
            match kind {
                8 => tuple.src_port = id,
                0 => tuple.dst_port = id,
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(Inner { ip, l4, tuple })
}

/// Translates an ICMP error about a tracked flow. Returns the new outer
/// destination to deliver to, or None when the error is not about a flow
/// netd translates (the packet is left untouched). `receiver`, unless 0:
/// the error comes from this container, which may only report on packets
/// it received itself (not forge errors about another container's flow).
pub fn translate_error<C: PacketCtx>(ctx: &mut C, pkt: &Packet, receiver: u32) -> Option<u32> {
    let inner = parse_inner(ctx, pkt)?;
    if receiver != 0 && receiver != inner.tuple.dst_ip {
        return None;
    }
    let r = inner.tuple.reversed();
    let ct = conntrack::lookup::<conntrack::V4>(&r)?;
    // SAFETY: map value pointer, valid for this run.
    let t = unsafe { (*ct.value).translated(r.proto) };
    let outer_src = if pkt.tuple.src_ip == r.src_ip {
        t.src_ip
    } else {
        pkt.tuple.src_ip
    };
    rewrite_inner(ctx, pkt, &inner, &t.reversed()).ok()?;
    rewrite_outer_ip(ctx, IP_SRC_OFF, pkt.tuple.src_ip, outer_src).ok()?;
    rewrite_outer_ip(ctx, IP_DST_OFF, pkt.tuple.dst_ip, t.dst_ip).ok()?;
    Some(t.dst_ip)
}

/// Outer address: only the IP checksum covers it (ICMP has no pseudo-header).
fn rewrite_outer_ip<C: PacketCtx>(ctx: &mut C, off: usize, old: u32, new: u32) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)?;
    ctx.store(off, &new, 0)
}

/// Rewrites the embedded header to `want`, keeping the embedded IP
/// checksum and the outer ICMP checksum (which covers it all) right. The
/// embedded L4 checksum is left alone: it may be truncated away, and no
/// receiver checks it.
fn rewrite_inner<C: PacketCtx>(
    ctx: &mut C,
    pkt: &Packet,
    inner: &Inner,
    want: &CtKey,
) -> Result<(), ()> {
    let icmp_csum = pkt.l4 + 2;
    let old_ip_csum: u16 = ctx.load(inner.ip + 10)?;
    for (off, old, new) in [
        (inner.ip + 12, inner.tuple.src_ip, want.src_ip),
        (inner.ip + 16, inner.tuple.dst_ip, want.dst_ip),
    ] {
        if old != new {
            ctx.l3_csum_replace(inner.ip + 10, u64::from(old), u64::from(new), 4)?;
            ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), 4)?;
            ctx.store(off, &new, 0)?;
        }
    }
    let new_ip_csum: u16 = ctx.load(inner.ip + 10)?;
    ctx.l4_csum_replace(icmp_csum, u64::from(old_ip_csum), u64::from(new_ip_csum), 2)?;
    let (src_off, dst_off) = match inner.tuple.proto {
        IPPROTO_ICMP => (inner.l4 + 4, inner.l4 + 4),
        _ => (inner.l4, inner.l4 + 2),
    };
    for (off, old, new) in [
        (src_off, inner.tuple.src_port, want.src_port),
        (dst_off, inner.tuple.dst_port, want.dst_port),
    ] {
        if old != new {
            ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), 2)?;
            ctx.store(off, &new, 0)?;
        }
    }
    Ok(())
}

/// ICMP time exceeded in transit (RFC 792): what a router sends back for a
/// packet whose TTL runs out on it.
const ICMP_TIME_EXCEEDED_CODE_TTL: u8 = 0;
/// What the answer quotes: the IP header (20 bytes) and 8 bytes beyond it.
const QUOTE: usize = 28;
/// Ethernet + IP + ICMP + quote.
const ANSWER_LEN: usize = ETH_HLEN + 20 + ICMP_HLEN + QUOTE;
/// The answer's room, in whole 8-byte words.
const ANSWER_ROOM: usize = ANSWER_LEN.div_ceil(8) * 8;

/// The answer's room on the stack, 8-byte aligned so that it is zeroed
/// word by word: a zeroed byte array became a call to a byte-at-a-time
/// `memset`.
#[repr(C, align(8))]
struct AnswerRoom([u8; ANSWER_ROOM]);

/// Turns the packet in `ctx` (arrived from outside with a TTL that runs out
/// here) into the ICMP time exceeded answer from `host` (the address it was
/// sent to) and sends it back out of the interface it came in on, as a
/// router does. The quote is the packet as it arrived, before any
/// translation. Not inlined: its buffers stay out of the programs' frame.
#[inline(never)]
pub fn time_exceeded(ctx: &mut TcContext, client: u32, host: u32) -> i32 {
    // Fixed-size loads: the helper's length must be a known constant.
    let (Ok(quote), Ok(macs)) = (ctx.load::<[u8; QUOTE]>(ETH_HLEN), ctx.load::<[u8; 12]>(0)) else {
        return TC_ACT_SHOT;
    };
    // SAFETY: the skb pointer the kernel handed us.
    let resized = unsafe { bpf_skb_change_tail(ctx.skb.skb, ANSWER_LEN as u32, 0) };
    if resized != 0 {
        return TC_ACT_SHOT;
    }
    let mut room = MaybeUninit::<AnswerRoom>::uninit();
    let words = room.as_mut_ptr().cast::<u64>();
    for i in 0..ANSWER_ROOM / 8 {
        // SAFETY: within the room, 8-byte aligned.
        unsafe { ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte was written just above.
    let answer = unsafe { &mut room.assume_init_mut().0 };
    // Ethernet: back where it came from.
    answer[..6].copy_from_slice(&macs[6..12]);
    answer[6..12].copy_from_slice(&macs[..6]);
    answer[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4 header.
    let ip = ETH_HLEN;
    answer[ip] = 0x45;
    answer[ip + 2..ip + 4].copy_from_slice(&((ANSWER_LEN - ETH_HLEN) as u16).to_be_bytes());
    answer[ip + 8] = 64; // TTL
    answer[ip + 9] = IPPROTO_ICMP;
    answer[ip + 12..ip + 16].copy_from_slice(&host.to_ne_bytes());
    answer[ip + 16..ip + 20].copy_from_slice(&client.to_ne_bytes());
    let ip_sum = checksum(&answer[ip..ip + 20]);
    answer[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // ICMP header and quote.
    let icmp = ip + 20;
    answer[icmp] = ICMP_TIME_EXCEEDED;
    answer[icmp + 1] = ICMP_TIME_EXCEEDED_CODE_TTL;
    answer[icmp + ICMP_HLEN..ANSWER_LEN].copy_from_slice(&quote);
    let icmp_sum = checksum(&answer[icmp..ANSWER_LEN]);
    answer[icmp + 2..icmp + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    // SAFETY: the skb the kernel handed us; `answer` holds the frame.
    let stored = unsafe {
        bpf_skb_store_bytes(
            ctx.skb.skb.cast(),
            0,
            answer.as_ptr().cast(),
            ANSWER_LEN as u32,
            u64::from(BPF_F_RECOMPUTE_CSUM),
        )
    };
    if stored != 0 {
        return TC_ACT_SHOT;
    }
    // SAFETY: the skb pointer the kernel handed us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// The Internet checksum of `bytes` (even length), big-endian.
#[inline(always)]
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
