//! Parsing and rewriting IPv4 packets through the skb helpers: every load
//! and store is bounds-checked by the kernel, so the verifier has nothing
//! to prove about packet pointers and IP options need no special casing.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netd_common::{CtKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

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
    /// The flow tuple (network order); see `CtKey` for ICMP.
    pub tuple: CtKey,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
    /// ICMP type (0 for other protocols).
    pub icmp_type: u8,
    pub len: u32,
}

/// Why a packet is not for the NAT path.
pub enum Skip {
    /// Not IPv4, a fragment, or a protocol netd does not translate.
    NotNat,
    /// Truncated or inconsistent headers.
    Malformed,
}

#[inline(always)]
fn load<T>(ctx: &TcContext, off: usize) -> Result<T, Skip> {
    ctx.load::<T>(off).map_err(|_| Skip::Malformed)
}

/// Parses Ethernet + IPv4 + TCP/UDP/ICMP.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Packet, Skip> {
    let eth_proto: u16 = ctx.load(12).map_err(|_| Skip::NotNat)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Err(Skip::NotNat);
    }
    let ver_ihl: u8 = load(ctx, ETH_HLEN)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(Skip::Malformed);
    }
    // Fragments carry no (or only a partial) L4 header: left to the stack.
    let frag: u16 = load(ctx, ETH_HLEN + 6)?;
    if u16::from_be(frag) & 0x3fff != 0 {
        return Err(Skip::NotNat);
    }
    let proto: u8 = load(ctx, ETH_HLEN + 9)?;
    let mut pkt = Packet {
        l4: ETH_HLEN + ihl,
        tuple: CtKey {
            src_ip: load(ctx, IP_SRC_OFF)?,
            dst_ip: load(ctx, IP_DST_OFF)?,
            proto,
            ..CtKey::default()
        },
        tcp_flags: 0,
        icmp_type: 0,
        len: ctx.len(),
    };
    parse_l4(ctx, &mut pkt)?;
    Ok(pkt)
}

#[inline(always)]
fn parse_l4(ctx: &TcContext, pkt: &mut Packet) -> Result<(), Skip> {
    match pkt.tuple.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            pkt.tuple.src_port = load(ctx, pkt.l4)?;
            pkt.tuple.dst_port = load(ctx, pkt.l4 + 2)?;
            if pkt.tuple.proto == IPPROTO_TCP {
                pkt.tcp_flags = load(ctx, pkt.l4 + 13)?;
            }
            Ok(())
        }
        IPPROTO_ICMP => {
            pkt.icmp_type = load(ctx, pkt.l4)?;
            let id: u16 = load(ctx, pkt.l4 + 4)?;
            match pkt.icmp_type {
                ICMP_ECHO_REQUEST => pkt.tuple.src_port = id,
                ICMP_ECHO_REPLY => pkt.tuple.dst_port = id,
                _ => {} // an error message: handled through its inner header
            }
            Ok(())
        }
        _ => Err(Skip::NotNat),
    }
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
pub fn set_ip(ctx: &mut TcContext, pkt: &Packet, off: usize, old: u32, new: u32) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    let (csum_off, flags) = l4_csum(pkt);
    if pkt.tuple.proto != IPPROTO_ICMP {
        ctx.l4_csum_replace(
            csum_off,
            u64::from(old),
            u64::from(new),
            flags | u64::from(BPF_F_PSEUDO_HDR) | 4,
        )
        .map_err(|_| ())?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)
        .map_err(|_| ())?;
    ctx.store(off, &new, 0).map_err(|_| ())
}

/// Rewrites a port (or the ICMP echo id) and the L4 checksum. `dst` picks
/// the destination port; ICMP has one id field for both roles.
#[inline(always)]
pub fn set_port(
    ctx: &mut TcContext,
    pkt: &Packet,
    dst: bool,
    old: u16,
    new: u16,
) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    let off = match (pkt.tuple.proto, dst) {
        (IPPROTO_ICMP, _) => pkt.l4 + 4,
        (_, false) => pkt.l4,
        (_, true) => pkt.l4 + 2,
    };
    let (csum_off, flags) = l4_csum(pkt);
    ctx.l4_csum_replace(csum_off, u64::from(old), u64::from(new), flags | 2)
        .map_err(|_| ())?;
    ctx.store(off, &new, 0).map_err(|_| ())
}

/// Sets the Ethernet destination and source.
#[inline(always)]
pub fn set_macs(ctx: &mut TcContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), ()> {
    ctx.store(0, dst, 0).map_err(|_| ())?;
    ctx.store(6, src, 0).map_err(|_| ())
}
