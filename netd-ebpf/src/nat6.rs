//! IPv6: MASQUERADE (NAT66) of containers' flows to the outside and their
//! replies, container isolation by network, and exposure, in their own
//! functions and maps (`NETD_CT6`, `NETD_ENDPOINTS6`). Out of line
//! (`#[inline(never)]`): 16-byte addresses and 40-byte tuples would
//! otherwise weigh on the stack and the paths of the IPv4 programs.
//!
//! What is translated: TCP, UDP and ICMPv6 echo, right after the fixed
//! header (the common case, at a constant offset) or behind up to 4
//! hop-by-hop, routing and destination-options headers (`ipv6`; the
//! transport header's offset `l4` is then variable). Anything else
//! (fragments, source-routed packets, other protocols, ICMPv6 errors but
//! those about tracked flows from outside) is never translated: from a
//! container it goes where no translation is needed (its own network, the
//! host, a routed network) or is dropped and counted
//! (`drop_untranslatable`); from outside it goes to the stack, which does
//! not forward IPv6 (`all.forwarding` stays 0).

use aya_ebpf::{
    bindings::{
        BPF_F_PSEUDO_HDR, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, BPF_NOEXIST, TC_ACT_SHOT, TC_ACT_UNSPEC,
        bpf_fib_lookup as FibParams,
    },
    helpers::{
        bpf_csum_diff, bpf_get_prandom_u32, bpf_ktime_get_coarse_ns,
        generated::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    },
    programs::TcContext,
};
use core::{mem, ptr};
use netd_common::{
    Ct6Key, Ct6Value, Endpoint6Value, FragValue, IPPROTO_TCP, IPPROTO_UDP, PortMap6Value,
    StatIndex, ct_dir, ct_kind, net_flags,
};

use crate::{
    frag, ipv6,
    maps::{NETD_BRIDGES, NETD_CT6, NETD_ENDPOINTS6, NETD_SCRATCH6, Scratch6, config},
    packet::{ETH_HLEN, read, set_macs},
    published::{self, Asker},
    stats::{count, drop},
};

pub const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_ICMPV6: u8 = 58;
const NEXT_OFF: usize = ETH_HLEN + 6;
const HOP_OFF: usize = ETH_HLEN + 7;
const SRC_OFF: usize = ETH_HLEN + 8;
const DST_OFF: usize = ETH_HLEN + 24;
const L4: usize = ETH_HLEN + 40;
const ECHO_REQUEST: u8 = 128;
/// ICMPv6 errors are types 1 to 4 (RFC 4443).
const ICMP6_PARAM_PROBLEM: u8 = 4;
/// An ICMPv6 error's embedded packet, and its transport header.
const INNER: usize = L4 + 8;
const INNER_L4: usize = INNER + 40;
const ECHO_REPLY: u8 = 129;
const AF_INET6: u8 = 10;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Random ports tried when a flow's own source port is taken.
const PORT_TRIES: u32 = 16;

/// Whether the frame is IPv6.
#[inline(always)]
pub fn is_ipv6(ctx: &TcContext) -> bool {
    read::<u16>(ctx, 12).map(u16::from_be) == Some(ETH_P_IPV6)
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch6> {
    // SAFETY: per-CPU slot, only this program run uses it.
    NETD_SCRATCH6.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// A packet from a container (`network_id`, `flags`: its endpoint's,
/// already checked by anti-spoofing).
#[inline(never)]
pub fn from_container(ctx: &mut TcContext, network_id: u32, flags: u32) -> i32 {
    let mut k = Ct6Key::default();
    let Some(l4) = tuple(ctx, &mut k) else {
        return untranslatable(ctx, network_id, flags);
    };
    if is_local_scope(&k.dst_ip) {
        return TC_ACT_UNSPEC;
    }
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    if let Some(v) = NETD_CT6.get_ptr_mut(&k) {
        // SAFETY: map value pointer, valid for this run.
        let v = unsafe { &mut *v };
        touch(v, ctx.len());
        // A hairpin flow's packets go to a container, the rest out.
        if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&v.nat_dst_ip) {
            if rewrite(ctx, &k, v, l4).is_err() {
                return drop(StatIndex::DropMalformed, ctx.len());
            }
            // SAFETY: map value pointer, valid for this run.
            return to_endpoint(ctx, unsafe { &*ep });
        }
        return out(ctx, &k, v, &mut s.fib, l4);
    }
    if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&k.dst_ip) {
        // Its own network is bridged; another network is not for it.
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*ep).network_id } == network_id {
            return TC_ACT_UNSPEC;
        }
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    let rc = match fib(ctx, &k.src_ip, &k.dst_ip, &k, &mut s.fib) {
        Ok(rc) => rc,
        // To the host itself (the gateway, the uplink's address): a
        // published port there is a hairpin; the rest is the stack's.
        Err(BPF_FIB_LKUP_RET_NOT_FWDED) => return hairpin(ctx, &k, network_id, flags, s, l4),
        Err(_) => return TC_ACT_UNSPEC,
    };
    if flags & net_flags::INTERNAL != 0 {
        // Not translated: the stack does not forward it.
        return TC_ACT_UNSPEC;
    }
    if flags & net_flags::ROUTED != 0 {
        if NETD_BRIDGES.get_ptr(s.fib.ifindex).is_some() {
            return drop(StatIndex::DropPolicy, ctx.len());
        }
        // --gateway-mode routed: out with its own address, as the
        // stack routes IPv4 (it does not route IPv6).
        return forward(ctx, &s.fib, rc);
    }
    if !may_start(ctx, &k, l4) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if NETD_BRIDGES.get_ptr(s.fib.ifindex).is_some() {
        // Routed towards another netd network.
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    // SAFETY: the helper filled in the IPv6 source (BPF_FIB_LOOKUP_SRC).
    let src: [u8; 16] = unsafe { mem::transmute(s.fib.__bindgen_anon_3.ipv6_src) };
    if !masquerade(&k, &src, s) {
        return drop(StatIndex::DropNoPort, ctx.len());
    }
    count(StatIndex::Snat, ctx.len());
    out(ctx, &k, &s.value, &mut s.fib, l4)
}

/// A container's packet netd cannot translate (a fragment, a
/// source-routed packet, another protocol, an ICMPv6 error): as IPv4 does,
/// it may go where no translation is needed, its own network or the host
/// (the stack: bridged or local), or out of a routed network; else it is
/// dropped and counted, never sent out with its private address (the
/// stack would not route it either, silently).
#[inline(always)]
fn untranslatable(ctx: &mut TcContext, network_id: u32, flags: u32) -> i32 {
    let (Ok(src), Ok(dst)) = (ctx.load::<[u8; 16]>(SRC_OFF), ctx.load::<[u8; 16]>(DST_OFF)) else {
        return TC_ACT_UNSPEC;
    };
    if is_local_scope(&dst) {
        return TC_ACT_UNSPEC;
    }
    if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&dst) {
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*ep).network_id } == network_id {
            return TC_ACT_UNSPEC;
        }
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    // Ports do not matter to this route: zeroes.
    s.key.src_ip = src;
    s.key.dst_ip = dst;
    s.key.src_port = 0;
    s.key.dst_port = 0;
    s.key.proto = 0;
    let rc = match fib(ctx, &src, &dst, &s.key, &mut s.fib) {
        Ok(rc) => rc,
        Err(BPF_FIB_LKUP_RET_NOT_FWDED) => return TC_ACT_UNSPEC,
        Err(_) => return drop(StatIndex::DropUntranslatable, ctx.len()),
    };
    if let Some(bridge) = NETD_BRIDGES.get_ptr(s.fib.ifindex) {
        // On its own bridge (an address no endpoint holds): bridged.
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*bridge).network_id } == network_id {
            return TC_ACT_UNSPEC;
        }
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    if flags & net_flags::ROUTED != 0 && flags & net_flags::INTERNAL == 0 {
        return forward(ctx, &s.fib, rc);
    }
    drop(StatIndex::DropUntranslatable, ctx.len())
}

/// A packet from the uplink: a reply of a MASQUERADE-d flow goes to its
/// container; anything else addressed to a container is dropped
/// (exposure); the rest is the stack's.
#[inline(never)]
pub fn from_outside(ctx: &mut TcContext) -> i32 {
    let mut k = Ct6Key::default();
    let Some(l4) = tuple(ctx, &mut k) else {
        if let Some(verdict) = icmp_error(ctx) {
            return verdict;
        }
        return exposure(ctx);
    };
    let Some(v) = NETD_CT6.get_ptr_mut(&k) else {
        if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&k.dst_ip) {
            // SAFETY: map value pointer, valid for this run.
            return routed_in(ctx, unsafe { &*ep });
        }
        return dnat(ctx, &k, l4);
    };
    // SAFETY: map value pointer, valid for this run.
    let v = unsafe { &mut *v };
    touch(v, ctx.len());
    let Some(ep) = NETD_ENDPOINTS6.get_ptr(&v.nat_dst_ip) else {
        return TC_ACT_UNSPEC;
    };
    if rewrite(ctx, &k, v, l4).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    count(StatIndex::ReverseNat, ctx.len());
    // SAFETY: map value pointer, valid for this run.
    let ep = unsafe { &*ep };
    if set_macs(ctx, &ep.mac, &ep.gw_mac).is_err() {
        return TC_ACT_SHOT;
    }
    count(StatIndex::ToContainer, ctx.len());
    unsafe { bpf_redirect_peer(ep.ifindex, 0) as i32 }
}

/// A new flow from outside to a published port on one of the host's
/// addresses (`published::lookup6`: bound to that address, or to `::`):
/// DNAT to the container, whose reply goes out through its REPLY entry.
/// The client's address is kept.
#[inline(always)]
fn dnat(ctx: &mut TcContext, k: &Ct6Key, l4: usize) -> i32 {
    let Some(target) = published::lookup6(&k.dst_ip, k.dst_port, k.proto, Asker::Packet) else {
        return TC_ACT_UNSPEC;
    };
    if !may_start(ctx, k, l4) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    dnat_flow(ctx, k, &target, &k.src_ip, s, l4)
}

/// A container's new flow to a published port on a host address (its
/// gateway, the uplink's address): DNAT to the target container, which
/// sees the client's own address; from an `--internal` network only to
/// its own network. A container reaching itself gets its source
/// translated too, to the address it asked for, as IPv4 does to its
/// gateway: its own address would make it answer itself directly,
/// bypassing the translation back.
#[inline(always)]
fn hairpin(
    ctx: &mut TcContext,
    k: &Ct6Key,
    network_id: u32,
    flags: u32,
    s: &mut Scratch6,
    l4: usize,
) -> i32 {
    let Some(target) = published::lookup6(&k.dst_ip, k.dst_port, k.proto, Asker::Packet) else {
        return TC_ACT_UNSPEC;
    };
    let Some(ep) = NETD_ENDPOINTS6.get_ptr(&target.container_ip) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: map value pointer, valid for this run.
    if flags & net_flags::INTERNAL != 0 && unsafe { (*ep).network_id } != network_id {
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    if !may_start(ctx, k, l4) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if same(&target.container_ip, &k.src_ip) {
        return dnat_flow(ctx, k, &target, &k.dst_ip, s, l4);
    }
    dnat_flow(ctx, k, &target, &k.src_ip, s, l4)
}

/// Creates a DNAT flow from `k` to `target` (REPLY entry first, NOEXIST),
/// with `src` as the source the target sees, and delivers the packet into
/// the target container.
#[inline(always)]
fn dnat_flow(
    ctx: &mut TcContext,
    k: &Ct6Key,
    target: &PortMap6Value,
    src: &[u8; 16],
    s: &mut Scratch6,
    l4: usize,
) -> i32 {
    let Ok(hops) = ctx.load::<u8>(HOP_OFF) else {
        return TC_ACT_UNSPEC;
    };
    if hops <= 1 {
        return TC_ACT_UNSPEC;
    }
    let Some(ep) = NETD_ENDPOINTS6.get_ptr(&target.container_ip) else {
        return TC_ACT_UNSPEC;
    };
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // REPLY: container:port -> client (as translated), back to
    // host:port -> client.
    s.key.src_ip = target.container_ip;
    s.key.dst_ip = *src;
    s.key.src_port = target.container_port;
    s.key.dst_port = k.src_port;
    s.key.proto = k.proto;
    unsafe { ptr::write_volatile(&mut s.key.pad, [0; 3]) };
    s.value.nat_src_ip = k.dst_ip;
    s.value.nat_dst_ip = k.src_ip;
    s.value.nat_src_port = k.dst_port;
    s.value.nat_dst_port = k.src_port;
    s.value.kind = ct_kind::DNAT;
    s.value.direction = ct_dir::REPLY;
    s.value.last_seen_ns = now;
    unsafe {
        ptr::write_volatile(&mut s.value.pad, [0; 2]);
        ptr::write_volatile(&mut s.value.packets, 0);
        ptr::write_volatile(&mut s.value.bytes, 0);
    }
    if NETD_CT6
        .insert(&s.key, &s.value, u64::from(BPF_NOEXIST))
        .is_err()
    {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    s.value.nat_src_ip = *src;
    s.value.nat_dst_ip = target.container_ip;
    s.value.nat_src_port = k.src_port;
    s.value.nat_dst_port = target.container_port;
    s.value.direction = ct_dir::ORIGINAL;
    if NETD_CT6
        .insert(k, &s.value, u64::from(BPF_NOEXIST))
        .is_err()
    {
        let _ = NETD_CT6.remove(&s.key);
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if rewrite(ctx, k, &s.value, l4).is_err() || ctx.store(HOP_OFF, &(hops - 1), 0).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    count(StatIndex::Dnat, ctx.len());
    // SAFETY: map value pointer, valid for this run.
    let ep = unsafe { &*ep };
    if set_macs(ctx, &ep.mac, &ep.gw_mac).is_err() {
        return TC_ACT_SHOT;
    }
    count(StatIndex::ToContainer, ctx.len());
    unsafe { bpf_redirect_peer(ep.ifindex, 0) as i32 }
}

/// An ICMPv6 error (destination unreachable, packet too big, time
/// exceeded, parameter problem) from outside about a packet of a tracked
/// flow: delivered to the container, the outer destination and the
/// embedded packet's source (address, port or echo identifier) translated
/// back, the ICMPv6 checksum following. Packet Too Big must reach the
/// container: IPv6 routers never fragment, path MTU discovery depends on
/// it. The embedded transport checksum is left as it is (no receiver
/// checks it). None: not such an error, or about no flow of ours.
#[inline(always)]
fn icmp_error(ctx: &mut TcContext) -> Option<i32> {
    if ctx.load::<u8>(NEXT_OFF).ok()? != IPPROTO_ICMPV6 {
        return None;
    }
    let ty = ctx.load::<u8>(L4).ok()?;
    if ty == 0 || ty > ICMP6_PARAM_PROBLEM {
        return None;
    }
    let proto = ctx.load::<u8>(INNER + 6).ok()?;
    let (port_off, sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (
            INNER_L4,
            ctx.load::<u16>(INNER_L4).ok()?,
            ctx.load::<u16>(INNER_L4 + 2).ok()?,
        ),
        IPPROTO_ICMPV6 if ctx.load::<u8>(INNER_L4).ok()? == ECHO_REQUEST => {
            (INNER_L4 + 4, ctx.load::<u16>(INNER_L4 + 4).ok()?, 0)
        }
        _ => return None,
    };
    let s = scratch()?;
    // The embedded packet left the host translated: the flow's entry for
    // the other direction is keyed by its tuple reversed, and names the
    // container (`nat_dst_*`) for MASQUERADE replies and DNAT originals
    // alike.
    s.key.src_ip = ctx.load::<[u8; 16]>(INNER + 24).ok()?;
    s.key.dst_ip = ctx.load::<[u8; 16]>(INNER + 8).ok()?;
    s.key.src_port = dport;
    s.key.dst_port = sport;
    s.key.proto = proto;
    unsafe { ptr::write_volatile(&mut s.key.pad, [0; 3]) };
    let v = NETD_CT6.get_ptr(&s.key)?;
    // SAFETY: map value pointer, valid for this run.
    let v = unsafe { &*v };
    let ep = NETD_ENDPOINTS6.get_ptr(&v.nat_dst_ip)?;
    // The outer destination (in the pseudo header), then the embedded
    // source (in the ICMPv6 payload).
    s.value.nat_src_ip = ctx.load::<[u8; 16]>(DST_OFF).ok()?;
    let csum = L4 + 2;
    let rewritten = set_addr(ctx, DST_OFF, &s.value.nat_src_ip, &v.nat_dst_ip, csum)
        .and_then(|()| set_payload_addr(ctx, INNER + 8, &s.key.dst_ip, &v.nat_dst_ip, csum))
        .and_then(|()| set_port(ctx, port_off, sport, v.nat_dst_port, csum));
    if rewritten.is_err() {
        return Some(drop(StatIndex::DropMalformed, ctx.len()));
    }
    count(StatIndex::ReverseNat, ctx.len());
    // SAFETY: map value pointer, valid for this run.
    let ep = unsafe { &*ep };
    if set_macs(ctx, &ep.mac, &ep.gw_mac).is_err() {
        return Some(TC_ACT_SHOT);
    }
    count(StatIndex::ToContainer, ctx.len());
    Some(unsafe { bpf_redirect_peer(ep.ifindex, 0) as i32 })
}

/// IPv6 netd does not translate, from outside: nothing of it reaches a
/// container address but on a routed network.
#[inline(always)]
fn exposure(ctx: &mut TcContext) -> i32 {
    let Ok(dst) = ctx.load::<[u8; 16]>(DST_OFF) else {
        return TC_ACT_UNSPEC;
    };
    match NETD_ENDPOINTS6.get_ptr(&dst) {
        // SAFETY: map value pointer, valid for this run.
        Some(ep) => routed_in(ctx, unsafe { &*ep }),
        None => TC_ACT_UNSPEC,
    }
}

/// A packet from outside to a container address that no flow or
/// published port claims: delivered as is (a hop) if its network is
/// `--gateway-mode routed`, else dropped (exposure).
#[inline(always)]
fn routed_in(ctx: &mut TcContext, ep: &Endpoint6Value) -> i32 {
    if ep.flags & net_flags::ROUTED == 0 {
        return drop(StatIndex::DropUnpublished, ctx.len());
    }
    if hop(ctx).is_err() {
        return drop(StatIndex::DropTtl, ctx.len());
    }
    to_endpoint(ctx, ep)
}

/// Takes one from the hop limit of a packet being routed; Err if it
/// would expire (or cannot be read).
#[inline(always)]
fn hop(ctx: &mut TcContext) -> Result<(), ()> {
    let hops = ctx.load::<u8>(HOP_OFF).map_err(|_| ())?;
    if hops <= 1 {
        return Err(());
    }
    ctx.store(HOP_OFF, &(hops - 1), 0).map_err(|_| ())
}

/// A routed network's packet out, untranslated, where the FIB said.
#[inline(always)]
fn forward(ctx: &mut TcContext, params: &FibParams, rc: u32) -> i32 {
    if hop(ctx).is_err() {
        return drop(StatIndex::DropTtl, ctx.len());
    }
    send(ctx, params, rc)
}

/// The packet of tuple `k`, rewritten to `v`'s tuple, out through the FIB.
#[inline(always)]
fn out(ctx: &mut TcContext, k: &Ct6Key, v: &Ct6Value, params: &mut FibParams, l4: usize) -> i32 {
    let Ok(hops) = ctx.load::<u8>(HOP_OFF) else {
        return TC_ACT_UNSPEC;
    };
    if hops <= 1 {
        return drop(StatIndex::DropTtl, ctx.len());
    }
    let t = Ct6Key {
        src_port: v.nat_src_port,
        dst_port: v.nat_dst_port,
        ..*k
    };
    let Ok(rc) = fib(ctx, &v.nat_src_ip, &v.nat_dst_ip, &t, params) else {
        return TC_ACT_UNSPEC;
    };
    if rewrite(ctx, k, v, l4).is_err() || ctx.store(HOP_OFF, &(hops - 1), 0).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    send(ctx, params, rc)
}

/// Out of the device the FIB picked, to its next hop.
#[inline(always)]
fn send(ctx: &mut TcContext, params: &FibParams, rc: u32) -> i32 {
    let ifindex = params.ifindex;
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return unsafe { bpf_redirect_neigh(ifindex, ptr::null_mut(), 0, 0) as i32 };
    }
    if set_macs(ctx, &params.dmac, &params.smac).is_err() {
        return TC_ACT_SHOT;
    }
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

#[inline(always)]
fn to_endpoint(ctx: &mut TcContext, ep: &Endpoint6Value) -> i32 {
    if set_macs(ctx, &ep.mac, &ep.gw_mac).is_err() {
        return TC_ACT_SHOT;
    }
    count(StatIndex::ToContainer, ctx.len());
    unsafe { bpf_redirect_peer(ep.ifindex, 0) as i32 }
}

/// Fills in `k`, the flow tuple of a TCP, UDP or ICMPv6 echo packet, and
/// returns the offset of its transport header (`l4`): right after the
/// fixed header (checked first, a constant: the common case pays no
/// walk), behind extension headers, or in a fragment (`fragment`; 0 for a
/// later fragment, which has none). None for anything else
/// (source-routed packets included). An out parameter: a returned tuple
/// would cost the stack a second copy.
#[inline(always)]
fn tuple(ctx: &TcContext, k: &mut Ct6Key) -> Option<usize> {
    let mut proto = ctx.load::<u8>(NEXT_OFF).ok()?;
    let mut l4 = L4;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMPV6 {
        let next = ipv6::next_header(ctx)?;
        if next.source_routed {
            return None;
        }
        if next.proto == ipv6::NEXTHDR_FRAGMENT {
            return fragment(ctx, next.off, k);
        }
        proto = next.proto;
        l4 = next.off;
    }
    k.proto = proto;
    ports(ctx, l4, k)?;
    k.src_ip = ctx.load::<[u8; 16]>(SRC_OFF).ok()?;
    k.dst_ip = ctx.load::<[u8; 16]>(DST_OFF).ok()?;
    Some(l4)
}

/// The ports of `k` from a TCP or UDP header at `l4`, or an ICMPv6
/// echo's identifier in the tuple's position.
#[inline(always)]
fn ports(ctx: &TcContext, l4: usize, k: &mut Ct6Key) -> Option<()> {
    match k.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            k.src_port = ctx.load::<u16>(l4).ok()?;
            k.dst_port = ctx.load::<u16>(l4 + 2).ok()?;
        }
        IPPROTO_ICMPV6 => {
            let id = ctx.load::<u16>(l4 + 4).ok()?;
            (k.src_port, k.dst_port) = match ctx.load::<u8>(l4).ok()? {
                ECHO_REQUEST => (id, 0),
                ECHO_REPLY => (0, id),
                _ => return None,
            };
        }
        _ => return None,
    }
    Some(())
}

/// A fragment's tuple, as IPv4's (`frag`): the first fragment's transport
/// header follows its fragment header, and its ports are remembered by
/// the fragment identification; a later fragment takes them from there
/// and has no transport header (`l4` 0: only its addresses are
/// translated, the transport checksum is in the first fragment). None: a
/// later fragment whose first was not seen.
#[inline(always)]
fn fragment(ctx: &TcContext, off: usize, k: &mut Ct6Key) -> Option<usize> {
    let head = ctx.load::<[u8; 8]>(off).ok()?;
    k.proto = head[0];
    k.src_ip = ctx.load::<[u8; 16]>(SRC_OFF).ok()?;
    k.dst_ip = ctx.load::<[u8; 16]>(DST_OFF).ok()?;
    let s = scratch()?;
    s.frag.src_ip = k.src_ip;
    s.frag.dst_ip = k.dst_ip;
    s.frag.id = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    s.frag.proto = k.proto;
    unsafe { ptr::write_volatile(&mut s.frag.pad, [0; 3]) };
    if u16::from_be_bytes([head[2], head[3]]) & 0xfff8 == 0 {
        let l4 = off + 8;
        ports(ctx, l4, k)?;
        let v = FragValue {
            src_port: k.src_port,
            dst_port: k.dst_port,
        };
        frag::remember6(&s.frag, v);
        return Some(l4);
    }
    let v = frag::ports6(&s.frag)?;
    k.src_port = v.src_port;
    k.dst_port = v.dst_port;
    Some(0)
}

/// Link-local (fe80::/10) and multicast (ff00::/8): never routed.
#[inline(always)]
fn is_local_scope(a: &[u8; 16]) -> bool {
    a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
}

/// Two addresses as words (no memcmp in BPF).
#[inline(always)]
fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let w =
        |x: &[u8; 16], i: usize| unsafe { ptr::read_unaligned(x.as_ptr().add(i).cast::<u64>()) };
    w(a, 0) == w(b, 0) && w(a, 8) == w(b, 8)
}

/// New flows start with a TCP SYN, a UDP datagram or an echo request.
#[inline(always)]
fn may_start(ctx: &TcContext, k: &Ct6Key, l4: usize) -> bool {
    // A later fragment (no transport header) starts nothing.
    if l4 == 0 {
        return false;
    }
    match k.proto {
        IPPROTO_TCP => match ctx.load::<u8>(l4 + 13) {
            Ok(f) => f & TCP_SYN != 0 && f & TCP_ACK == 0,
            Err(_) => false,
        },
        IPPROTO_ICMPV6 => k.dst_port == 0,
        _ => true,
    }
}

#[inline(always)]
fn touch(v: &mut Ct6Value, len: u32) {
    v.last_seen_ns = unsafe { bpf_ktime_get_coarse_ns() };
    v.packets += 1;
    v.bytes += u64::from(len);
}

/// Creates the two entries of a MASQUERADE-d flow from `k` with the
/// source `src`: the flow's own port if its reply tuple is free, else
/// random ones of `--nat-ports`. The REPLY entry goes in first with
/// NOEXIST (it is what makes a port taken). On success `s.value` is the
/// ORIGINAL entry: the translated tuple.
#[inline(always)]
fn masquerade(k: &Ct6Key, src: &[u8; 16], s: &mut Scratch6) -> bool {
    let (min, max) = match config() {
        Some(c) if c.nat_port_max >= c.nat_port_min && c.nat_port_min > 0 => {
            (c.nat_port_min, c.nat_port_max)
        }
        _ => (1024, 65535),
    };
    // Never zero, and LLVM can see it (no division-by-zero panic path).
    let span = (max.wrapping_sub(min) & 0xffff) + 1;
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // Field by field, zeroes volatile: LLVM would merge them into a
    // memset call the verifier refuses on map memory.
    s.key.src_ip = k.dst_ip;
    s.key.dst_ip = *src;
    s.key.src_port = k.dst_port;
    s.key.dst_port = k.src_port;
    s.key.proto = k.proto;
    unsafe { ptr::write_volatile(&mut s.key.pad, [0; 3]) };
    s.value.nat_src_ip = k.dst_ip;
    s.value.nat_dst_ip = k.src_ip;
    s.value.nat_src_port = k.dst_port;
    s.value.nat_dst_port = k.src_port;
    s.value.kind = ct_kind::SNAT;
    s.value.direction = ct_dir::REPLY;
    s.value.last_seen_ns = now;
    unsafe {
        ptr::write_volatile(&mut s.value.pad, [0; 2]);
        ptr::write_volatile(&mut s.value.packets, 0);
        ptr::write_volatile(&mut s.value.bytes, 0);
    }
    let mut tries = 0;
    while tries <= PORT_TRIES {
        if NETD_CT6
            .insert(&s.key, &s.value, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            s.value.nat_src_ip = *src;
            s.value.nat_dst_ip = k.dst_ip;
            s.value.nat_src_port = s.key.dst_port;
            s.value.nat_dst_port = k.dst_port;
            s.value.direction = ct_dir::ORIGINAL;
            if NETD_CT6
                .insert(k, &s.value, u64::from(BPF_NOEXIST))
                .is_err()
            {
                let _ = NETD_CT6.remove(&s.key);
                return false;
            }
            return true;
        }
        tries += 1;
        let random = unsafe { bpf_get_prandom_u32() };
        s.key.dst_port = ((min + random % span) as u16).to_be();
    }
    false
}

/// Rewrites the packet of tuple `k` to `v`'s tuple: addresses (the
/// pseudo-header part of the L4 checksum), ports or the echo identifier.
#[inline(always)]
fn rewrite(ctx: &mut TcContext, k: &Ct6Key, v: &Ct6Value, l4: usize) -> Result<(), ()> {
    if l4 == 0 {
        // A later fragment: the addresses only (the transport header and
        // its checksum are in the first fragment).
        if !same(&k.src_ip, &v.nat_src_ip) {
            ctx.store(SRC_OFF, &v.nat_src_ip, 0).map_err(|_| ())?;
        }
        if !same(&k.dst_ip, &v.nat_dst_ip) {
            ctx.store(DST_OFF, &v.nat_dst_ip, 0).map_err(|_| ())?;
        }
        return Ok(());
    }
    let csum = match k.proto {
        IPPROTO_TCP => l4 + 16,
        IPPROTO_UDP => l4 + 6,
        _ => l4 + 2,
    };
    if !same(&k.src_ip, &v.nat_src_ip) {
        set_addr(ctx, SRC_OFF, &k.src_ip, &v.nat_src_ip, csum)?;
    }
    if !same(&k.dst_ip, &v.nat_dst_ip) {
        set_addr(ctx, DST_OFF, &k.dst_ip, &v.nat_dst_ip, csum)?;
    }
    if k.proto == IPPROTO_ICMPV6 {
        // The identifier: the source side of requests, the destination
        // side of replies.
        let (old, new) = if k.dst_port == 0 {
            (k.src_port, v.nat_src_port)
        } else {
            (k.dst_port, v.nat_dst_port)
        };
        return set_port(ctx, l4 + 4, old, new, csum);
    }
    set_port(ctx, l4, k.src_port, v.nat_src_port, csum)?;
    set_port(ctx, l4 + 2, k.dst_port, v.nat_dst_port, csum)
}

#[inline(always)]
fn set_port(ctx: &mut TcContext, off: usize, old: u16, new: u16, csum: usize) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    ctx.store(off, &new, 0).map_err(|_| ())?;
    ctx.l4_csum_replace(csum, u64::from(old), u64::from(new), 2)
        .map_err(|_| ())
}

/// Rewrites the address at `off`: in the IPv6 header, where the transport
/// checksum covers it as pseudo header, or inside the payload (an ICMPv6
/// error's embedded header), where it covers it as data.
#[inline(always)]
fn set_addr(
    ctx: &mut TcContext,
    off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    csum: usize,
) -> Result<(), ()> {
    replace_addr(ctx, off, old, new, csum, u64::from(BPF_F_PSEUDO_HDR))
}

#[inline(always)]
fn set_payload_addr(
    ctx: &mut TcContext,
    off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    csum: usize,
) -> Result<(), ()> {
    replace_addr(ctx, off, old, new, csum, 0)
}

#[inline(always)]
fn replace_addr(
    ctx: &mut TcContext,
    off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    csum: usize,
    flags: u64,
) -> Result<(), ()> {
    let diff = unsafe {
        bpf_csum_diff(
            old.as_ptr() as *mut u32,
            16,
            new.as_ptr() as *mut u32,
            16,
            0,
        )
    };
    if diff < 0 {
        return Err(());
    }
    ctx.store(off, new, 0).map_err(|_| ())?;
    ctx.l4_csum_replace(csum, 0, diff as u64, flags)
        .map_err(|_| ())
}

/// Routes `src` → `dst` (ports and protocol of `t`) like a packet arriving
/// on this device (its IPv6 `forwarding` must be on: the daemon sets it
/// per veth). The answer is in `params`; Err: the helper's code (local:
/// `BPF_FIB_LKUP_RET_NOT_FWDED`, unreachable, not forwarded).
#[inline(always)]
fn fib(
    ctx: &TcContext,
    src: &[u8; 16],
    dst: &[u8; 16],
    t: &Ct6Key,
    params: &mut FibParams,
) -> Result<u32, u32> {
    // Zeroed word by word (a memset call on map memory is refused).
    let words = (params as *mut FibParams).cast::<u64>();
    let mut i = 0;
    while i < mem::size_of::<FibParams>() / 8 {
        // SAFETY: within the struct.
        unsafe { ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    params.family = AF_INET6;
    params.l4_protocol = t.proto;
    params.sport = t.src_port;
    params.dport = t.dst_port;
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: both are 16 bytes.
    params.__bindgen_anon_3.ipv6_src = unsafe { mem::transmute(*src) };
    params.__bindgen_anon_4.ipv6_dst = unsafe { mem::transmute(*dst) };
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb.cast(),
            params,
            mem::size_of::<FibParams>() as i32,
            BPF_FIB_LOOKUP_SRC,
        )
    } as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return Err(rc);
    }
    Ok(rc)
}
