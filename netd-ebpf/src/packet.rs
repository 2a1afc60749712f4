//! Parsing and rewriting IPv4 packets, over any [`PacketCtx`]. Headers
//! are read and written in place (direct packet access, bounds-checked
//! against `data_end`); checksums are updated with the context's
//! incremental helpers, which keep them right for CHECKSUM_PARTIAL
//! packets.

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use netd_common::{CtKey, FragValue, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use crate::{ctx::PacketCtx, frag};

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SRC_OFF: usize = ETH_HLEN + 12;
pub const IP_DST_OFF: usize = ETH_HLEN + 16;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// What the datapath needs of a packet.
pub struct Packet {
    /// Offset of the L4 header.
    pub l4: usize,
    /// Bytes from the L4 header to the end of the IP packet.
    pub l4_len: usize,
    /// False for a later fragment: the ports come from its first fragment
    /// (`frag`), and there is no L4 header to rewrite.
    pub has_l4: bool,
    /// The flow tuple (network order); see `CtKey` for ICMP.
    pub tuple: CtKey,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
    /// TCP sequence number (host order) and payload length.
    pub tcp_seq: u32,
    pub tcp_payload: u32,
    /// IP time to live.
    pub ttl: u8,
    /// ICMP type (0 for other protocols).
    pub icmp_type: u8,
    pub len: u32,
}

/// Why a packet is not for the NAT path.
pub enum Skip {
    /// Not IPv4 (ARP, IPv6, ...).
    NotNat,
    /// IPv4 that netd cannot translate: a fragment, or a protocol other
    /// than TCP, UDP and ICMP. The addresses, for deciding where it may go.
    Untranslatable { src_ip: u32, dst_ip: u32 },
    /// Truncated or inconsistent headers.
    Malformed,
}

/// The fixed part of the IPv4 header (RFC 791), as it sits in the packet.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Hdr {
    ver_ihl: u8,
    tos: u8,
    tot_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    csum: u16,
    src: u32,
    dst: u32,
}

/// The first 14 bytes of TCP/UDP/ICMP headers cover every field we read.
const L4_PEEK: usize = 14;

/// Reads a `T` at `off` by direct packet access: bounds-checked against
/// `data_end`, no helper call. None when the bytes are not in the linear
/// part of the skb (or not there at all).
#[inline(always)]
pub fn read<T: Copy>(ctx: &impl PacketCtx, off: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    // SAFETY: the range was checked against data_end just above.
    Some(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
}

/// Offsets above this are never read or written directly: the verifier
/// needs a bound on a variable offset before adding it to a packet
/// pointer (IPv6 extension headers make offsets variable).
const DIRECT_MAX: usize = 1024;

/// A `T` at `off`: by direct packet access where the bytes are linear
/// (nearly always: the headers), else by the load helper. The IPv6 path
/// reads every field this way: a helper call per field cost it about a
/// fifth of its run time.
#[inline(always)]
pub fn fetch<T: Copy>(ctx: &impl PacketCtx, off: usize) -> Result<T, ()> {
    if let Some(p) = direct::<T>(ctx, off) {
        // SAFETY: `direct` checked the range against data_end.
        return Ok(unsafe { core::ptr::read_unaligned(p as *const T) });
    }
    ctx.load::<T>(off)
}

/// Writes `v` at `off` as `fetch` reads: directly where linear, else by
/// the store helper.
#[inline(always)]
pub fn put<T: Copy>(ctx: &mut impl PacketCtx, off: usize, v: &T) -> Result<(), ()> {
    if let Some(p) = direct::<T>(ctx, off) {
        // SAFETY: `direct` checked the range against data_end; `v` is not
        // in the packet. A plain copy, not `write_unaligned(p, *v)`: that
        // one LLVM turns into a call to a byte-at-a-time memmove for an
        // IPv6 address (it cannot tell the two apart).
        unsafe {
            core::ptr::copy_nonoverlapping(
                (v as *const T).cast::<u8>(),
                p as *mut u8,
                core::mem::size_of::<T>(),
            )
        };
        return Ok(());
    }
    ctx.store(off, v, 0)
}

/// The address of a `T` at `off` if it is in the linear part. At least
/// two bytes are checked: for one, LLVM turns `p + 1 > end` into
/// `p >= end`, from which the verifier learns no range when `off`
/// varies (a transport header behind extension headers).
#[inline(always)]
fn direct<T>(ctx: &impl PacketCtx, off: usize) -> Option<usize> {
    if off > DIRECT_MAX {
        return None;
    }
    let p = ctx.data() + off;
    if p + core::mem::size_of::<T>().max(2) > ctx.data_end() {
        return None;
    }
    Some(p)
}

/// Writes `v` at `off` by direct packet access (bounds-checked). Packet
/// pointers do not survive helpers that may move data (the checksum
/// helpers among them), so each write takes them afresh.
#[inline(always)]
fn write<T: Copy>(ctx: &impl PacketCtx, off: usize, v: T) -> Result<(), ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(());
    }
    // SAFETY: the range was checked against data_end just above.
    unsafe { core::ptr::write_unaligned((start + off) as *mut T, v) };
    Ok(())
}

/// True for 127.0.0.0/8 (`ip` in network order: the first octet is the
/// low byte in memory).
#[inline(always)]
pub fn is_loopback(ip: u32) -> bool {
    ip & 0xff == 127
}

/// The destination of an IPv4 packet, whatever its protocol (fragments
/// included); None for other ethertypes.
#[inline(always)]
pub fn ipv4_dst<C: PacketCtx>(ctx: &mut C) -> Option<u32> {
    let eth_proto: u16 = read(ctx, 12)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return None;
    }
    if let Some(dst) = read(ctx, IP_DST_OFF) {
        return Some(dst);
    }
    let want = (IP_DST_OFF + 4) as u32;
    if ctx.len() < want || ctx.pull(want).is_err() {
        return None;
    }
    read(ctx, IP_DST_OFF)
}

/// The IPv4 header checksum is right: the one's complement sum of the
/// header's 16-bit words folds to 0xffff (in either byte order). The fixed
/// 20 bytes are summed from the copy already read.
#[inline(always)]
fn header_checksum_ok<C: PacketCtx>(ctx: &C, ip: &Ipv4Hdr) -> bool {
    // SAFETY: Ipv4Hdr is 20 bytes of plain integers with no padding.
    let words: [u16; 10] = unsafe { core::mem::transmute(*ip) };
    let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
    // Options, 4 bytes at a time at constant offsets (no loop counter for
    // the verifier to track, and `sum` never needs to be precise). The
    // header length is read afresh for this: branching on the `ihl` the
    // parser goes on using would split every later path by its range.
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 1 > end {
        return false;
    }
    // SAFETY: in bounds, checked just above. Volatile, so that the compiler
    // does not reuse the value it already has.
    let ver_ihl = unsafe { core::ptr::read_volatile((start + ETH_HLEN) as *const u8) };
    let len = usize::from(ver_ihl & 0x0f) * 4;
    macro_rules! option_word {
        ($($at:literal)*) => {$(
            if len > $at {
                match read::<u32>(ctx, ETH_HLEN + $at) {
                    Some(w) => sum += (w & 0xffff) + (w >> 16),
                    None => return false,
                }
            }
        )*};
    }
    option_word!(20 24 28 32 36 40 44 48 52 56);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

/// Parses Ethernet + IPv4 + TCP/UDP/ICMP. Headers are read in place; if
/// they are not all in the linear area, they are pulled in first (one
/// parse, not a retry: a second inlined copy of the parser would double
/// the programs' stack frame, which the verifier limits).
#[inline(always)]
pub fn parse<C: PacketCtx>(ctx: &mut C) -> Result<Packet, Skip> {
    let len = ctx.len() as usize;
    if ctx.data_end() - ctx.data() < headers_len(ctx).min(len) {
        let _ = ctx.pull((ETH_HLEN + 60 + L4_PEEK).min(len) as u32);
    }
    parse_linear(ctx)
}

/// How much of the packet the parser reads: up to the first `L4_PEEK`
/// bytes past the IP header. Only that needs to be linear: pulling more
/// (a TCP segment's payload sits in page fragments, and the skb of a
/// sent segment is a clone) makes `bpf_skb_pull_data` copy the head. The
/// header length is read afresh (volatile), so that this branch does not
/// split the parser's paths by its range (see `header_checksum_ok`).
#[inline(always)]
fn headers_len<C: PacketCtx>(ctx: &C) -> usize {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 1 > end {
        return ETH_HLEN + 60 + L4_PEEK;
    }
    // SAFETY: in bounds, checked just above.
    let ver_ihl = unsafe { core::ptr::read_volatile((start + ETH_HLEN) as *const u8) };
    ETH_HLEN + usize::from(ver_ihl & 0x0f) * 4 + L4_PEEK
}

#[inline(always)]
fn parse_linear<C: PacketCtx>(ctx: &C) -> Result<Packet, Skip> {
    let eth_proto: u16 = read(ctx, 12).ok_or(Skip::NotNat)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Err(Skip::NotNat);
    }
    let ip: Ipv4Hdr = read(ctx, ETH_HLEN).ok_or(Skip::Malformed)?;
    let ihl = usize::from(ip.ver_ihl & 0x0f) * 4;
    if ip.ver_ihl >> 4 != 4 || ihl < 20 || !header_checksum_ok(ctx, &ip) {
        return Err(Skip::Malformed);
    }
    // What the IP header says it carries must be there (Linux drops such
    // packets in ip_rcv, before conntrack). A GSO packet over 64 KiB (BIG
    // TCP) carries 0 instead.
    let frame = ctx.len() as usize - ETH_HLEN;
    let ip_len = match usize::from(u16::from_be(ip.tot_len)) {
        0 if frame > 0xffff => frame,
        n if n < ihl || n > frame => return Err(Skip::Malformed),
        n => n,
    };
    let untranslatable = Skip::Untranslatable {
        src_ip: ip.src,
        dst_ip: ip.dst,
    };
    if !matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP) {
        return Err(untranslatable);
    }
    let frag_off = u16::from_be(ip.frag_off);
    let more_fragments = frag_off & 0x2000 != 0;
    let later_fragment = frag_off & 0x1fff != 0;
    let l4 = ETH_HLEN + ihl;
    let mut pkt = Packet {
        l4,
        l4_len: ip_len - ihl,
        has_l4: !later_fragment,
        tuple: CtKey {
            src_ip: ip.src,
            dst_ip: ip.dst,
            proto: ip.proto,
            ..CtKey::default()
        },
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_payload: 0,
        ttl: ip.ttl,
        icmp_type: 0,
        len: ctx.len(),
    };
    if later_fragment {
        // No L4 header here: the first fragment's ports, if it was seen.
        let ports = frag::ports(ip.src, ip.dst, ip.id, ip.proto).ok_or(untranslatable)?;
        pkt.tuple.src_port = ports.src_port;
        pkt.tuple.dst_port = ports.dst_port;
        return Ok(pkt);
    }
    parse_l4(ctx, &mut pkt, more_fragments)?;
    if more_fragments {
        let ports = FragValue {
            src_port: pkt.tuple.src_port,
            dst_port: pkt.tuple.dst_port,
        };
        frag::remember(ip.src, ip.dst, ip.id, ip.proto, ports);
    }
    Ok(pkt)
}

/// `first_fragment`: the IP payload is only the start of the datagram (the
/// UDP length covers all of it).
#[inline(always)]
fn parse_l4<C: PacketCtx>(ctx: &C, pkt: &mut Packet, first_fragment: bool) -> Result<(), Skip> {
    // UDP and ICMP headers are 8 bytes: read only what each protocol has.
    match pkt.tuple.proto {
        IPPROTO_TCP => {
            let h: [u8; L4_PEEK] = read(ctx, pkt.l4).ok_or(Skip::Malformed)?;
            // The data offset covers at least the fixed header, and no more
            // than the segment.
            let doff = usize::from(h[12] >> 4) * 4;
            if doff < 20 || doff > pkt.l4_len {
                return Err(Skip::Malformed);
            }
            pkt.tuple.src_port = u16::from_ne_bytes([h[0], h[1]]);
            pkt.tuple.dst_port = u16::from_ne_bytes([h[2], h[3]]);
            pkt.tcp_flags = h[13];
            pkt.tcp_seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            pkt.tcp_payload = (pkt.l4_len - doff) as u32;
        }
        IPPROTO_UDP => {
            let h: [u8; 8] = read(ctx, pkt.l4).ok_or(Skip::Malformed)?;
            // The UDP length covers its header and fits the IP payload
            // (the whole datagram's, for a first fragment).
            let udp_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if udp_len < 8 || (udp_len > pkt.l4_len && !first_fragment) {
                return Err(Skip::Malformed);
            }
            pkt.tuple.src_port = u16::from_ne_bytes([h[0], h[1]]);
            pkt.tuple.dst_port = u16::from_ne_bytes([h[2], h[3]]);
        }
        _ => {
            let h: [u8; 8] = read(ctx, pkt.l4).ok_or(Skip::Malformed)?;
            pkt.icmp_type = h[0];
            let id = u16::from_ne_bytes([h[4], h[5]]);
            match pkt.icmp_type {
                ICMP_ECHO_REQUEST => pkt.tuple.src_port = id,
                ICMP_ECHO_REPLY => pkt.tuple.dst_port = id,
                _ => {} // an error message: handled through its inner header
            }
        }
    }
    Ok(())
}

/// Offset of the L4 checksum and the flags for `bpf_l4_csum_replace`.
#[inline(always)]
fn l4_csum(pkt: &Packet) -> (usize, u64) {
    match pkt.tuple.proto {
        IPPROTO_TCP => (pkt.l4 + 16, 0),
        IPPROTO_UDP => (pkt.l4 + 6, u64::from(BPF_F_MARK_MANGLED_0)),
        _ => (pkt.l4 + 2, 0),
    }
}

/// Rewrites the IPv4 address at `off` (IP_SRC_OFF / IP_DST_OFF), fixing the
/// IP checksum and the L4 pseudo-header checksum (ICMP has none).
#[inline(always)]
pub fn set_ip<C: PacketCtx>(
    ctx: &mut C,
    pkt: &Packet,
    off: usize,
    old: u32,
    new: u32,
) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    let (csum_off, flags) = l4_csum(pkt);
    if pkt.tuple.proto != IPPROTO_ICMP && pkt.has_l4 {
        ctx.l4_csum_replace(
            csum_off,
            u64::from(old),
            u64::from(new),
            flags | u64::from(BPF_F_PSEUDO_HDR) | 4,
        )?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)?;
    write(ctx, off, new)
}

/// Rewrites a port (or the ICMP echo id) and the L4 checksum. `dst` picks
/// the destination port; ICMP has one id field for both roles.
#[inline(always)]
pub fn set_port<C: PacketCtx>(
    ctx: &mut C,
    pkt: &Packet,
    dst: bool,
    old: u16,
    new: u16,
) -> Result<(), ()> {
    if old == new || !pkt.has_l4 {
        return Ok(());
    }
    let off = match (pkt.tuple.proto, dst) {
        (IPPROTO_ICMP, _) => pkt.l4 + 4,
        (_, false) => pkt.l4,
        (_, true) => pkt.l4 + 2,
    };
    let (csum_off, flags) = l4_csum(pkt);
    ctx.l4_csum_replace(csum_off, u64::from(old), u64::from(new), flags | 2)?;
    write(ctx, off, new)
}

/// TTL and protocol share a 16-bit word of the header.
const IP_TTL_OFF: usize = ETH_HLEN + 8;

/// Routing: one hop less. The caller checked that the TTL is above 1. The
/// header checksum is updated in place (RFC 1624: the TTL/protocol word
/// drops by 0x0100, so the checksum rises by it, end-around carry), with no
/// helper call: it runs for every routed packet.
#[inline(always)]
pub fn decrement_ttl<C: PacketCtx>(ctx: &mut C, pkt: &Packet) -> Result<(), ()> {
    let csum: u16 = read(ctx, IP_CSUM_OFF).ok_or(())?;
    let mut sum = u32::from(u16::from_be(csum)) + 0x0100;
    sum = (sum & 0xffff) + (sum >> 16);
    write(ctx, IP_TTL_OFF, pkt.ttl.wrapping_sub(1))?;
    write(ctx, IP_CSUM_OFF, (sum as u16).to_be())
}

/// Sets the Ethernet destination and source.
#[inline(always)]
pub fn set_macs<C: PacketCtx>(ctx: &mut C, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), ()> {
    write(ctx, 0, *dst)?;
    write(ctx, 6, *src)
}
