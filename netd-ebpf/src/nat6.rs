//! IPv6: MASQUERADE (NAT66) of containers' flows to the outside and their
//! replies, container isolation by network, and exposure, in their own
//! functions and maps (`NETD_ENDPOINTS6`, ...). Flows are tracked by
//! `conntrack`, the IPv4 rules over the IPv6 tables (`V6`: `NETD_CT6`,
//! `NETD_CT6_ASSURED`). Out of line (`#[inline(never)]`): 16-byte
//! addresses and 40-byte tuples would otherwise weigh on the stack and the
//! paths of the IPv4 programs.
//!
//! What is translated: TCP, UDP and ICMPv6 echo, right after the fixed
//! header (the common case, at a constant offset) or behind up to 4
//! hop-by-hop, routing and destination-options headers (`ipv6`; the
//! transport header's offset `Seg::l4` is then variable), fragments of
//! them (as IPv4's: `frag`), and ICMPv6 errors about them. Anything else
//! (source-routed packets, other protocols, a later fragment whose first
//! was not seen) is never translated: from a container it goes where no
//! translation is needed (its own network, the host, a routed network)
//! or is dropped and counted (`drop_untranslatable`); from outside it
//! goes to the stack, which does not forward IPv6 (`all.forwarding` stays
//! 0).

use aya_ebpf::{
    bindings::{
        BPF_F_PSEUDO_HDR, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, TC_ACT_SHOT, TC_ACT_UNSPEC,
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
    Service6Key, StatIndex, ct_dir, ct_kind, net_flags,
};

use crate::{
    conntrack::{self, Entry, Refused, Seg, Tier, V6},
    frag, icmp6,
    ipv6::{self, DST_OFF, ETH_P_IPV6, HOP_OFF, IPPROTO_ICMPV6, NEXT_OFF, PAYLOAD_OFF, SRC_OFF},
    maps::{
        NETD_BRIDGES, NETD_ENDPOINTS6, NETD_SCRATCH6, NETD_SERVICES6, Scratch6, Scratch6Slot,
        nat_ports,
    },
    packet::{ETH_HLEN, fetch, put, read, set_macs},
    published::{self, Asker},
    stats::{count, drop},
};

/// The transport header of a packet without extension headers.
const L4: usize = PAYLOAD_OFF;
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
    NETD_SCRATCH6
        .get_ptr_mut(0)
        .map(|p| unsafe { &mut (*p).room })
}

/// The packet's tuple and segment, parsed into the per-CPU slot (not the
/// stack: the IPv4 program calling in has most of it). None: not a
/// packet `tuple` parses.
#[inline(always)]
fn packet(ctx: &TcContext) -> Option<(&'static Ct6Key, &'static Seg)> {
    let p = NETD_SCRATCH6.get_ptr_mut(0)?;
    if !parse(ctx, p) {
        return None;
    }
    // SAFETY: per-CPU slot, only this program run uses it; these fields
    // are apart from the room `scratch` hands out.
    unsafe { Some((&(*p).tuple, &(*p).seg)) }
}

/// Fills in the slot's tuple and segment; false: not a packet `tuple`
/// parses. Out of line: a frame of its own, beside the paths'.
#[inline(never)]
fn parse(ctx: &TcContext, p: *mut Scratch6Slot) -> bool {
    // SAFETY: the per-CPU slot, as in `packet`.
    let (k, seg) = unsafe { (&mut (*p).tuple, &mut (*p).seg) };
    let Some(l4) = tuple(ctx, k) else {
        return false;
    };
    segment(ctx, k, seg, l4);
    true
}

/// Zeroes a key's padding: two volatile stores, which LLVM never merges
/// into a call to a byte-at-a-time `memset`.
#[inline(always)]
fn zero_pad(pad: &mut u8, pad2: &mut u16) {
    // SAFETY: two fields of the caller's key.
    unsafe {
        ptr::write_volatile(pad, 0);
        ptr::write_volatile(pad2, 0);
    }
}

/// Copies the address at `off` straight into `dst` (map memory): no
/// 16-byte copy on the stack.
#[inline(always)]
fn load_addr(ctx: &TcContext, off: usize, dst: &mut [u8; 16]) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + off + 16 <= end {
        // SAFETY: in bounds, checked just above; `dst` is map memory, not
        // the packet, so a copy (two 8-byte moves), where assigning a
        // `read` made LLVM call a byte-at-a-time memmove.
        unsafe { ptr::copy_nonoverlapping((start + off) as *const u8, dst.as_mut_ptr(), 16) };
        return Some(());
    }
    // SAFETY: the skb the kernel handed us; `dst` holds 16 bytes.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            off as u32,
            dst.as_mut_ptr().cast(),
            16,
        )
    };
    (rc == 0).then_some(())
}

/// A packet from a container (`network_id`, `flags`: its endpoint's,
/// already checked by anti-spoofing).
///
/// Its paths are calls of their own (`#[inline(never)]`), siblings under
/// this small frame rather than one big one: the IPv4 program calling in
/// leaves the IPv6 path about 200 of the verifier's 512 bytes of stack.
#[inline(never)]
pub fn from_container(ctx: &mut TcContext, network_id: u32, flags: u32) -> i32 {
    match container_paths(ctx, network_id, flags) {
        // Answered here, under this small frame: the paths' own are deep.
        HOP_LIMIT_EXPIRED => expired_from_container(ctx),
        verdict => verdict,
    }
}

/// What a path from a container returns for a packet whose hop limit runs
/// out at the host: `from_container` answers it. Not a tc verdict.
const HOP_LIMIT_EXPIRED: i32 = i32::MIN;

#[inline(always)]
fn container_paths(ctx: &mut TcContext, network_id: u32, flags: u32) -> i32 {
    let Some((k, seg)) = packet(ctx) else {
        // An error about a packet the container received: translated
        // back to what its sender sent. Anything else: `untranslatable`.
        return not_a_flow(ctx, true, network_id, flags);
    };
    if is_local_scope(&k.dst_ip) {
        return TC_ACT_UNSPEC;
    }
    if let Some(entry) = conntrack::lookup::<V6>(k) {
        return tracked_from_container(ctx, k, seg, entry.value, entry.tier);
    }
    new_from_container(ctx, k, seg, network_id, flags)
}

/// A packet of a tracked flow from a container: a hairpin flow's go to a
/// container, the rest out.
#[inline(never)]
fn tracked_from_container(
    ctx: &mut TcContext,
    k: &Ct6Key,
    seg: &Seg,
    v: *mut Ct6Value,
    tier: Tier,
) -> i32 {
    record(k, &Entry { value: v, tier }, seg);
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    // SAFETY: map value pointer, valid for this run.
    let v = unsafe { &*v };
    if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&v.nat_dst_ip) {
        if hop(ctx).is_err() {
            return HOP_LIMIT_EXPIRED;
        }
        if rewrite(ctx, k, v, seg).is_err() {
            return drop(StatIndex::DropMalformed, ctx.len());
        }
        // SAFETY: map value pointer, valid for this run.
        return to_endpoint(ctx, unsafe { &*ep });
    }
    out(ctx, k, v, seg, &mut s.fib)
}

/// A packet of no flow from a container: its own network is bridged,
/// another is not for it; a published port on a host address is a
/// hairpin; the rest leaves MASQUERADE-d, unless its network is
/// `--internal` or routed.
#[inline(never)]
fn new_from_container(
    ctx: &mut TcContext,
    k: &Ct6Key,
    seg: &Seg,
    network_id: u32,
    flags: u32,
) -> i32 {
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&k.dst_ip) {
        // Its own network is bridged; another network is not for it.
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*ep).network_id } == network_id {
            return TC_ACT_UNSPEC;
        }
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    let rc = match fib_with_source(ctx, &k.src_ip, &k.dst_ip, k, &mut s.fib) {
        Ok(rc) => rc,
        // To the host itself (the gateway, the uplink's address): a
        // published port there is a hairpin; the rest is the stack's.
        Err(BPF_FIB_LKUP_RET_NOT_FWDED) => return hairpin(ctx, k, seg, network_id, flags, s),
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
        return forward(ctx, rc, &s.fib);
    }
    if !may_start(ctx, k, seg) || from_published_port(k) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if NETD_BRIDGES.get_ptr(s.fib.ifindex).is_some() {
        // Routed towards another netd network.
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    // One that expires here makes no flow.
    if expires_here(ctx) {
        return HOP_LIMIT_EXPIRED;
    }
    // SAFETY: the helper filled in the IPv6 source (BPF_FIB_LOOKUP_SRC).
    let src: [u8; 16] = unsafe { mem::transmute(s.fib.__bindgen_anon_3.ipv6_src) };
    if let Err(why) = masquerade(k, &src, seg, s) {
        return refused(ctx, why);
    }
    count(StatIndex::Snat, ctx.len());
    out(ctx, k, &s.value, seg, &mut s.fib)
}

/// A packet from the uplink: a reply of a MASQUERADE-d flow goes to its
/// container; anything else addressed to a container is dropped
/// (exposure); the rest is the stack's. Paths out of line as in
/// `from_container`.
#[inline(never)]
pub fn from_outside(ctx: &mut TcContext) -> i32 {
    let Some((k, seg)) = packet(ctx) else {
        return not_a_flow(ctx, false, 0, 0);
    };
    let Some(entry) = conntrack::lookup::<V6>(k) else {
        if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&k.dst_ip) {
            // SAFETY: map value pointer, valid for this run.
            return routed_in(ctx, unsafe { &*ep });
        }
        return dnat(ctx, k, seg);
    };
    tracked_from_outside(ctx, k, seg, entry.value, entry.tier)
}

/// A packet of a tracked flow from outside: to its container.
#[inline(never)]
fn tracked_from_outside(
    ctx: &mut TcContext,
    k: &Ct6Key,
    seg: &Seg,
    v: *mut Ct6Value,
    tier: Tier,
) -> i32 {
    // SAFETY: map value pointer, valid for this run.
    let t = unsafe { &*v };
    let Some(ep) = NETD_ENDPOINTS6.get_ptr(&t.nat_dst_ip) else {
        return TC_ACT_UNSPEC;
    };
    // One hop on, as a router forwards it (and as IPv4's `translate`
    // takes one from the TTL): an expiring packet is not the flow's.
    if hop(ctx).is_err() {
        return expired_from_outside(ctx);
    }
    record(k, &Entry { value: v, tier }, seg);
    if rewrite(ctx, k, t, seg).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    count(StatIndex::ReverseNat, ctx.len());
    // SAFETY: map value pointer, valid for this run.
    to_endpoint(ctx, unsafe { &*ep })
}

/// A packet `tuple` does not parse: an ICMPv6 error about a tracked flow
/// is translated and delivered; anything else from a container (its
/// endpoint's `network_id` and `flags`) is `untranslatable`, from outside
/// it goes to the stack after the exposure check, counted if netd could
/// not tell what it carries (`pass_unparsed`).
#[inline(never)]
fn not_a_flow(ctx: &mut TcContext, from_container: bool, network_id: u32, flags: u32) -> i32 {
    if let Some(verdict) = icmp_error(ctx, from_container) {
        return verdict;
    }
    if from_container {
        return untranslatable(ctx, network_id, flags);
    }
    let verdict = exposure(ctx);
    if verdict == TC_ACT_UNSPEC && ipv6::next_header(ctx).is_none_or(|n| n.source_routed) {
        count(StatIndex::PassUnparsed, ctx.len());
    }
    verdict
}

/// A container's packet netd cannot translate (a source-routed packet,
/// another protocol, a later fragment whose first was not seen): as
/// IPv4's, it may go where no translation is needed, its own network or
/// the host (the stack: bridged or local), or out of a routed network;
/// else it is dropped and counted, never sent out with its private
/// address (the stack would not route it either, silently).
#[inline(always)]
fn untranslatable(ctx: &mut TcContext, network_id: u32, flags: u32) -> i32 {
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    // The addresses, straight into the room (ports do not matter to
    // this route: zeroes).
    if load_addr(ctx, SRC_OFF, &mut s.key.src_ip).is_none()
        || load_addr(ctx, DST_OFF, &mut s.key.dst_ip).is_none()
    {
        return TC_ACT_UNSPEC;
    }
    if is_local_scope(&s.key.dst_ip) {
        return TC_ACT_UNSPEC;
    }
    if let Some(ep) = NETD_ENDPOINTS6.get_ptr(&s.key.dst_ip) {
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*ep).network_id } == network_id {
            return TC_ACT_UNSPEC;
        }
        return drop(StatIndex::DropPolicy, ctx.len());
    }
    s.key.src_port = 0;
    s.key.dst_port = 0;
    s.key.proto = 0;
    let rc = match fib(ctx, &s.key.src_ip, &s.key.dst_ip, &s.key, &mut s.fib) {
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
        return forward(ctx, rc, &s.fib);
    }
    drop(StatIndex::DropUntranslatable, ctx.len())
}

/// A new flow from outside to a published port on one of the host's
/// addresses (`published::lookup6`: bound to that address, or to `::`):
/// DNAT to the container, whose reply goes out through its REPLY entry.
/// The client's address is kept.
#[inline(never)]
fn dnat(ctx: &mut TcContext, k: &Ct6Key, seg: &Seg) -> i32 {
    let Some(target) = published::lookup6(&k.dst_ip, k.dst_port, k.proto, Asker::Packet) else {
        return TC_ACT_UNSPEC;
    };
    if !may_start(ctx, k, seg) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if expires_here(ctx) {
        return expired_from_outside(ctx);
    }
    let Some(s) = scratch() else {
        return TC_ACT_SHOT;
    };
    dnat_flow(ctx, k, seg, target, &k.src_ip, s)
}

/// A packet from outside whose hop limit runs out at the host, on a path
/// netd routes: counted, and answered as a router does (the stack would
/// take it for the host's own).
#[inline(always)]
fn expired_from_outside(ctx: &mut TcContext) -> i32 {
    count(StatIndex::DropTtl, ctx.len());
    let Some(slot) = NETD_SCRATCH6.get_ptr_mut(0) else {
        return TC_ACT_SHOT;
    };
    // SAFETY: per-CPU slot, only this program run uses it; `answer` is
    // apart from the tuple and room the paths hold.
    icmp6::time_exceeded(ctx, unsafe { &mut (*slot).answer }, None)
}

/// A packet from a container whose hop limit runs out at the host:
/// counted, and answered from the host's address on the container's link
/// (the source the FIB picks towards the sender: the network's gateway),
/// as the stack answers IPv4 (traceroute from a container shows the
/// host). Called by `from_container` only (the paths return
/// `HOP_LIMIT_EXPIRED`): under theirs, its frame and the answer's would
/// push the deepest chain past the verifier's 512 bytes.
#[inline(never)]
fn expired_from_container(ctx: &mut TcContext) -> i32 {
    count(StatIndex::DropTtl, ctx.len());
    let Some(slot) = NETD_SCRATCH6.get_ptr_mut(0) else {
        return TC_ACT_SHOT;
    };
    // SAFETY: per-CPU slot, only this program run uses it; the packet's
    // tuple is not needed any more, the room and the answer are apart.
    let (s, answer) = unsafe { (&mut (*slot).room, &mut (*slot).answer) };
    if load_addr(ctx, SRC_OFF, &mut s.key.dst_ip).is_none() {
        return TC_ACT_SHOT;
    }
    // Any source: the FIB picks one.
    ipv6::zero_addr(&mut s.key.src_ip);
    s.key.src_port = 0;
    s.key.dst_port = 0;
    s.key.proto = IPPROTO_ICMPV6;
    if fib_with_source(ctx, &s.key.src_ip, &s.key.dst_ip, &s.key, &mut s.fib).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: the helper filled in the IPv6 source (BPF_FIB_LOOKUP_SRC).
    let gateway: &[u8; 16] = unsafe { &*ptr::addr_of!(s.fib.__bindgen_anon_3.ipv6_src).cast() };
    icmp6::time_exceeded(ctx, answer, Some(gateway))
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
    seg: &Seg,
    network_id: u32,
    flags: u32,
    s: &mut Scratch6,
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
    // A late datagram from a published UDP port starts nothing here
    // either (as IPv4's `policy::may_start` for hairpins).
    if !may_start(ctx, k, seg) || from_published_port(k) {
        return drop(StatIndex::DropInvalid, ctx.len());
    }
    if same(&target.container_ip, &k.src_ip) {
        return dnat_flow(ctx, k, seg, target, &k.dst_ip, s);
    }
    dnat_flow(ctx, k, seg, target, &k.src_ip, s)
}

/// Creates a DNAT flow from `k` to `target` (REPLY entry first, NOEXIST),
/// with `src` as the source the target sees, and delivers the packet into
/// the target container.
#[inline(always)]
fn dnat_flow(
    ctx: &mut TcContext,
    k: &Ct6Key,
    seg: &Seg,
    target: &PortMap6Value,
    src: &[u8; 16],
    s: &mut Scratch6,
) -> i32 {
    let Ok(hops) = fetch::<u8>(ctx, HOP_OFF) else {
        return TC_ACT_UNSPEC;
    };
    if hops <= 1 {
        return TC_ACT_UNSPEC;
    }
    let Some(ep) = NETD_ENDPOINTS6.get_ptr(&target.container_ip) else {
        return TC_ACT_UNSPEC;
    };
    // REPLY: container:port -> client (as translated), back to
    // host:port -> client.
    s.key.src_ip = target.container_ip;
    s.key.dst_ip = *src;
    s.key.src_port = target.container_port;
    s.key.dst_port = k.src_port;
    s.key.proto = k.proto;
    zero_pad(&mut s.key.pad, &mut s.key.pad2);
    translate_to_reversed(&mut s.value, k);
    new_entry(&mut s.value, ct_kind::DNAT, ct_dir::REPLY, seg);
    if let Err(why) = conntrack::insert_new::<V6>(&s.key, &s.value) {
        return refused(ctx, why);
    }
    s.value.nat_src_ip = *src;
    s.value.nat_dst_ip = target.container_ip;
    s.value.nat_src_port = k.src_port;
    s.value.nat_dst_port = target.container_port;
    new_entry(&mut s.value, ct_kind::DNAT, ct_dir::ORIGINAL, seg);
    if let Err(why) = conntrack::insert_original_of::<V6>(k, &s.value, &s.key) {
        return refused(ctx, why);
    }
    if rewrite(ctx, k, &s.value, seg).is_err() || put(ctx, HOP_OFF, &(hops - 1)).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    count(StatIndex::Dnat, ctx.len());
    // SAFETY: map value pointer, valid for this run.
    to_endpoint(ctx, unsafe { &*ep })
}

/// An ICMPv6 error (destination unreachable, packet too big, time
/// exceeded, parameter problem) about a packet of a tracked flow, as
/// `icmp::translate_error` for IPv4: the embedded packet I travelled the
/// other way, so the error is the flow's whose entry is keyed by I
/// reversed (R), translating to T. The error goes to T's destination,
/// from T's source if R's source sent it (else, a router on the path, it
/// keeps its source), and I becomes T reversed; the ICMPv6 checksum
/// follows. From outside this brings Packet Too Big to the container
/// (IPv6 routers never fragment, path MTU discovery depends on it); from
/// a container (`from_container`), its errors about what it received (a
/// closed port of a published UDP service) reach the peer as the host's.
/// A container reports only on packets sent to it (I's destination is
/// the error's own, anti-spoofed, source), never on another's flows. The
/// embedded transport checksum is left as it is (no receiver checks it).
/// None: not such an error, or about no flow of ours.
#[inline(always)]
fn icmp_error(ctx: &mut TcContext, from_container: bool) -> Option<i32> {
    if fetch::<u8>(ctx, NEXT_OFF).ok()? != IPPROTO_ICMPV6 {
        return None;
    }
    let ty = fetch::<u8>(ctx, L4).ok()?;
    if ty == 0 || ty > ICMP6_PARAM_PROBLEM {
        return None;
    }
    let proto = fetch::<u8>(ctx, INNER + 6).ok()?;
    // I's ports (an echo request: its identifier as source port) and
    // where they are.
    let (sport_off, sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (
            INNER_L4,
            fetch::<u16>(ctx, INNER_L4).ok()?,
            fetch::<u16>(ctx, INNER_L4 + 2).ok()?,
        ),
        IPPROTO_ICMPV6 if fetch::<u8>(ctx, INNER_L4).ok()? == ECHO_REQUEST => {
            (INNER_L4 + 4, fetch::<u16>(ctx, INNER_L4 + 4).ok()?, 0)
        }
        _ => return None,
    };
    let s = scratch()?;
    // R, and the outer addresses (kept in the scratch value's fields).
    load_addr(ctx, INNER + 24, &mut s.key.src_ip)?;
    load_addr(ctx, INNER + 8, &mut s.key.dst_ip)?;
    s.key.src_port = dport;
    s.key.dst_port = sport;
    s.key.proto = proto;
    zero_pad(&mut s.key.pad, &mut s.key.pad2);
    load_addr(ctx, SRC_OFF, &mut s.value.nat_src_ip)?;
    load_addr(ctx, DST_OFF, &mut s.value.nat_dst_ip)?;
    let from_r = same(&s.value.nat_src_ip, &s.key.src_ip);
    if from_container && !from_r {
        return None;
    }
    let entry = conntrack::lookup::<V6>(&s.key)?;
    // SAFETY: map value pointer, valid for this run.
    let t = unsafe { &*entry.value };
    // Where it goes: a container, or (from a container) out.
    let ep = NETD_ENDPOINTS6.get_ptr(&t.nat_dst_ip);
    if ep.is_none() && !from_container {
        return None;
    }
    // Forwarded one hop on, like any packet; an error is never answered
    // with another, so an expiring one is only dropped.
    if hop(ctx).is_err() {
        return Some(drop(StatIndex::DropTtl, ctx.len()));
    }
    // Every address is written, changed or not: comparing 16-byte
    // addresses costs more registers than the programs' stack can spill
    // (and these are rare packets).
    let csum = L4 + 2;
    let outer_src = if from_r {
        &t.nat_src_ip
    } else {
        &s.value.nat_src_ip
    };
    let rewritten = set_addr(ctx, SRC_OFF, &s.value.nat_src_ip, outer_src, csum)
        .and_then(|()| set_addr(ctx, DST_OFF, &s.value.nat_dst_ip, &t.nat_dst_ip, csum))
        .and_then(|()| set_payload_addr(ctx, INNER + 8, &s.key.dst_ip, &t.nat_dst_ip, csum))
        .and_then(|()| set_payload_addr(ctx, INNER + 24, &s.key.src_ip, &t.nat_src_ip, csum))
        .and_then(|()| set_port(ctx, sport_off, sport, t.nat_dst_port, csum))
        .and_then(|()| match proto {
            IPPROTO_ICMPV6 => Ok(()),
            _ => set_port(ctx, INNER_L4 + 2, dport, t.nat_src_port, csum),
        });
    if rewritten.is_err() {
        return Some(drop(StatIndex::DropMalformed, ctx.len()));
    }
    count(StatIndex::ReverseNat, ctx.len());
    if let Some(ep) = ep {
        // SAFETY: map value pointer, valid for this run.
        return Some(to_endpoint(ctx, unsafe { &*ep }));
    }
    // Out, routed from its (new) source to the peer.
    load_addr(ctx, SRC_OFF, &mut s.key.src_ip)?;
    // SAFETY: two map values' fields, apart (copied, not assigned: see
    // `fib_lookup`).
    unsafe { ptr::copy_nonoverlapping(t.nat_dst_ip.as_ptr(), s.key.dst_ip.as_mut_ptr(), 16) };
    s.key.src_port = 0;
    s.key.dst_port = 0;
    s.key.proto = IPPROTO_ICMPV6;
    Some(
        match fib(ctx, &s.key.src_ip, &s.key.dst_ip, &s.key, &mut s.fib) {
            Ok(rc) => send(ctx, rc, &s.fib),
            Err(_) => drop(StatIndex::DropUntranslatable, ctx.len()),
        },
    )
}

/// IPv6 netd does not translate, from outside: nothing of it reaches a
/// container address but on a routed network.
#[inline(always)]
fn exposure(ctx: &mut TcContext) -> i32 {
    let Ok(dst) = fetch::<[u8; 16]>(ctx, DST_OFF) else {
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

/// Whether the packet's hop limit runs out here (or cannot be read): it
/// may not be routed on.
#[inline(always)]
fn expires_here(ctx: &TcContext) -> bool {
    fetch::<u8>(ctx, HOP_OFF).map_or(true, |hops| hops <= 1)
}

/// Takes one from the hop limit of a packet being routed; Err if it
/// would expire (or cannot be read).
#[inline(always)]
fn hop(ctx: &mut TcContext) -> Result<(), ()> {
    let hops = fetch::<u8>(ctx, HOP_OFF).map_err(|_| ())?;
    if hops <= 1 {
        return Err(());
    }
    put(ctx, HOP_OFF, &(hops - 1)).map_err(|_| ())
}

/// A routed network's packet out, untranslated, where the FIB said.
#[inline(always)]
fn forward(ctx: &mut TcContext, rc: u32, params: &FibParams) -> i32 {
    if hop(ctx).is_err() {
        return HOP_LIMIT_EXPIRED;
    }
    send(ctx, rc, params)
}

/// The packet of tuple `k`, rewritten to `v`'s tuple, out through the FIB.
#[inline(always)]
fn out(ctx: &mut TcContext, k: &Ct6Key, v: &Ct6Value, seg: &Seg, params: &mut FibParams) -> i32 {
    let Ok(hops) = fetch::<u8>(ctx, HOP_OFF) else {
        return TC_ACT_UNSPEC;
    };
    if hops <= 1 {
        return HOP_LIMIT_EXPIRED;
    }
    let t = Ct6Key {
        src_port: v.nat_src_port,
        dst_port: v.nat_dst_port,
        ..*k
    };
    let Ok(rc) = fib(ctx, &v.nat_src_ip, &v.nat_dst_ip, &t, params) else {
        return TC_ACT_UNSPEC;
    };
    if rewrite(ctx, k, v, seg).is_err() || put(ctx, HOP_OFF, &(hops - 1)).is_err() {
        return drop(StatIndex::DropMalformed, ctx.len());
    }
    send(ctx, rc, params)
}

/// Out through the FIB's answer `params` (`rc`: its code).
#[inline(always)]
fn send(ctx: &mut TcContext, rc: u32, params: &FibParams) -> i32 {
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
/// (source-routed packets included).
#[inline(always)]
fn tuple(ctx: &TcContext, k: &mut Ct6Key) -> Option<usize> {
    if let Some(l4) = tuple_linear(ctx, k) {
        return Some(l4);
    }
    let mut proto = fetch::<u8>(ctx, NEXT_OFF).ok()?;
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
    load_addr(ctx, SRC_OFF, &mut k.src_ip)?;
    load_addr(ctx, DST_OFF, &mut k.dst_ip)?;
    zero_pad(&mut k.pad, &mut k.pad2);
    Some(l4)
}

/// `tuple` of the common packet, by direct packet access (no helper
/// call per field): TCP or UDP right after the fixed header, the headers
/// in the linear part. None: anything else, for the general path.
#[inline(always)]
fn tuple_linear(ctx: &TcContext, k: &mut Ct6Key) -> Option<usize> {
    let hdr = read::<Ip6Head>(ctx, ETH_HLEN)?;
    if hdr.next != IPPROTO_TCP && hdr.next != IPPROTO_UDP {
        return None;
    }
    let ports = read::<[u16; 2]>(ctx, L4)?;
    k.proto = hdr.next;
    k.src_port = ports[0];
    k.dst_port = ports[1];
    k.src_ip = hdr.src;
    k.dst_ip = hdr.dst;
    zero_pad(&mut k.pad, &mut k.pad2);
    Some(L4)
}

/// The fixed IPv6 header (RFC 8200) as it sits in the packet.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ip6Head {
    vtc_flow: u32,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The ports of `k` from a TCP or UDP header at `l4`, or an ICMPv6
/// echo's identifier in the tuple's position.
#[inline(always)]
fn ports(ctx: &TcContext, l4: usize, k: &mut Ct6Key) -> Option<()> {
    match k.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            k.src_port = fetch::<u16>(ctx, l4).ok()?;
            k.dst_port = fetch::<u16>(ctx, l4 + 2).ok()?;
        }
        IPPROTO_ICMPV6 => {
            let id = fetch::<u16>(ctx, l4 + 4).ok()?;
            (k.src_port, k.dst_port) = match fetch::<u8>(ctx, l4).ok()? {
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
    let head = fetch::<[u8; 8]>(ctx, off).ok()?;
    k.proto = head[0];
    load_addr(ctx, SRC_OFF, &mut k.src_ip)?;
    load_addr(ctx, DST_OFF, &mut k.dst_ip)?;
    zero_pad(&mut k.pad, &mut k.pad2);
    let s = scratch()?;
    // SAFETY: two fields of the per-CPU slot, apart (copied, not
    // assigned: see `fib_lookup`).
    unsafe {
        ptr::copy_nonoverlapping(k.src_ip.as_ptr(), s.frag.src_ip.as_mut_ptr(), 16);
        ptr::copy_nonoverlapping(k.dst_ip.as_ptr(), s.frag.dst_ip.as_mut_ptr(), 16);
    }
    s.frag.id = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    s.frag.proto = k.proto;
    zero_pad(&mut s.frag.pad, &mut s.frag.pad2);
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

/// New flows start with a TCP SYN, a UDP datagram or an echo request;
/// never with a later fragment (no transport header).
#[inline(always)]
fn may_start(ctx: &TcContext, k: &Ct6Key, seg: &Seg) -> bool {
    let l4 = usize::from(seg.l4);
    if l4 == 0 {
        return false;
    }
    match k.proto {
        IPPROTO_TCP => match fetch::<u8>(ctx, l4 + 13) {
            Ok(f) => f & TCP_SYN != 0 && f & TCP_ACK == 0,
            Err(_) => false,
        },
        IPPROTO_ICMPV6 => k.dst_port == 0,
        _ => true,
    }
}

/// What conntrack needs of a packet of flow `k` whose transport header
/// is at `l4` (0: a later fragment), into `seg`: its length and, for TCP,
/// flags, sequence number and payload length (the IPv6 payload less what
/// precedes the TCP payload).
#[inline(always)]
fn segment(ctx: &TcContext, k: &Ct6Key, seg: &mut Seg, l4: usize) {
    seg.proto = k.proto;
    seg.len = ctx.len();
    seg.l4 = l4 as u16;
    seg.tcp_flags = 0;
    seg.tcp_seq = 0;
    seg.tcp_payload = 0;
    if k.proto == IPPROTO_TCP && l4 == L4 {
        if let (Some(payload), Some(tcp)) =
            (read::<u16>(ctx, ETH_HLEN + 4), read::<[u8; 14]>(ctx, L4))
        {
            let doff = u32::from(tcp[12] >> 4) * 4;
            seg.tcp_flags = tcp[13];
            seg.tcp_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            seg.tcp_payload = u32::from(u16::from_be(payload)).saturating_sub(doff);
            return;
        }
    }
    if k.proto == IPPROTO_TCP && l4 != 0 {
        // Each field only where it was read: a value computed from a
        // failed read, even when discarded, is a register the verifier
        // sees read uninitialised.
        let (Ok(payload), Ok(off), Ok(flags), Ok(sequence)) = (
            fetch::<u16>(ctx, ETH_HLEN + 4),
            fetch::<u8>(ctx, l4 + 12),
            fetch::<u8>(ctx, l4 + 13),
            fetch::<u32>(ctx, l4 + 4),
        ) else {
            return;
        };
        let doff = u32::from(off >> 4) * 4;
        let ext = (l4 - L4) as u32;
        seg.tcp_flags = flags;
        seg.tcp_seq = u32::from_be(sequence);
        seg.tcp_payload = u32::from(u16::from_be(payload)).saturating_sub(doff + ext);
    }
}

/// A packet of a tracked flow, recorded on its entry (`conntrack::record`:
/// TCP state, promotion); a flow that cannot become assured is counted.
#[inline(always)]
fn record(k: &Ct6Key, entry: &Entry<V6>, seg: &Seg) {
    if conntrack::record::<V6, Seg>(k, entry, seg).is_err() {
        count(StatIndex::DropCtFull, seg.len);
    }
}

/// A new flow that could not be tracked is dropped, counted by why (as
/// `nat::refused`).
#[inline(always)]
fn refused(ctx: &TcContext, why: Refused) -> i32 {
    let stat = match why {
        Refused::Full => StatIndex::DropCtFull,
        Refused::Clash => StatIndex::DropInvalid,
        Refused::NoPort => StatIndex::DropNoPort,
    };
    drop(stat, ctx.len())
}

/// Completes the entry `v` (its tuple already set) of a new flow for
/// `direction`, as `conntrack::new_entry` (field by field, zeroes
/// volatile: LLVM would merge them into a memset call the verifier
/// refuses on map memory).
/// A REPLY entry's translation: back to the flow's first tuple, `k`,
/// reversed. Field by field into the per-CPU room, no copy on the stack.
#[inline(always)]
fn translate_to_reversed(v: &mut Ct6Value, k: &Ct6Key) {
    v.nat_src_ip = k.dst_ip;
    v.nat_dst_ip = k.src_ip;
    v.nat_src_port = k.dst_port;
    v.nat_dst_port = k.src_port;
}

#[inline(always)]
fn new_entry(v: &mut Ct6Value, kind: u8, direction: u8, seg: &Seg) {
    let original = direction == ct_dir::ORIGINAL;
    v.kind = kind;
    v.direction = direction;
    v.last_seen_ns = unsafe { bpf_ktime_get_coarse_ns() };
    unsafe {
        ptr::write_volatile(&mut v.pad, 0);
        ptr::write_volatile(&mut v.pad2, 0);
        ptr::write_volatile(&mut v.packets, u64::from(original));
        ptr::write_volatile(&mut v.bytes, if original { u64::from(seg.len) } else { 0 });
    }
    (v.tcp_flags, v.tcp_seq_end) = conntrack::start_tcp(direction, seg);
}

/// A datagram from a container's published UDP port (`NETD_SERVICES6`):
/// the reply of a flow whose entry is gone, never a new flow (as
/// `policy::from_published_port`).
#[inline(always)]
fn from_published_port(k: &Ct6Key) -> bool {
    if k.proto != IPPROTO_UDP {
        return false;
    }
    let key = Service6Key {
        container_ip: k.src_ip,
        container_port: k.src_port,
        proto: k.proto,
        pad: 0,
    };
    NETD_SERVICES6.get_ptr(&key).is_some()
}

/// Creates the two entries of a MASQUERADE-d flow from `k` with the
/// source `src`: the flow's own port if its reply tuple is free, else
/// random ones of `--nat-ports`. The REPLY entry goes in first, never
/// over another flow's in either table (it is what makes a port taken).
/// On success `s.value` is the ORIGINAL entry: the translated tuple.
#[inline(always)]
fn masquerade(k: &Ct6Key, src: &[u8; 16], seg: &Seg, s: &mut Scratch6) -> Result<(), Refused> {
    let (min, max) = nat_ports();
    // Never zero, and LLVM can see it (no division-by-zero panic path).
    let span = (max.wrapping_sub(min) & 0xffff) + 1;
    s.key.src_ip = k.dst_ip;
    s.key.dst_ip = *src;
    s.key.src_port = k.dst_port;
    s.key.dst_port = k.src_port;
    s.key.proto = k.proto;
    zero_pad(&mut s.key.pad, &mut s.key.pad2);
    translate_to_reversed(&mut s.value, k);
    new_entry(&mut s.value, ct_kind::SNAT, ct_dir::REPLY, seg);
    let mut tries = 0;
    while tries <= PORT_TRIES {
        match conntrack::insert_new::<V6>(&s.key, &s.value) {
            Ok(()) => {
                s.value.nat_src_ip = *src;
                s.value.nat_dst_ip = k.dst_ip;
                s.value.nat_src_port = s.key.dst_port;
                s.value.nat_dst_port = k.dst_port;
                new_entry(&mut s.value, ct_kind::SNAT, ct_dir::ORIGINAL, seg);
                return conntrack::insert_original_of::<V6>(k, &s.value, &s.key);
            }
            Err(Refused::Clash) => {}
            Err(why) => return Err(why),
        }
        tries += 1;
        let random = unsafe { bpf_get_prandom_u32() };
        s.key.dst_port = ((min + random % span) as u16).to_be();
    }
    Err(Refused::NoPort)
}

/// Rewrites the packet of tuple `k` to `v`'s tuple: addresses (the
/// pseudo-header part of the L4 checksum), ports or the echo identifier,
/// in the transport header at `seg.l4`; a later fragment's addresses only.
#[inline(always)]
fn rewrite(ctx: &mut TcContext, k: &Ct6Key, v: &Ct6Value, seg: &Seg) -> Result<(), ()> {
    let l4 = usize::from(seg.l4);
    if l4 == 0 {
        // A later fragment: the transport header and its checksum are in
        // the first fragment.
        if !same(&k.src_ip, &v.nat_src_ip) {
            put(ctx, SRC_OFF, &v.nat_src_ip).map_err(|_| ())?;
        }
        if !same(&k.dst_ip, &v.nat_dst_ip) {
            put(ctx, DST_OFF, &v.nat_dst_ip).map_err(|_| ())?;
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
    put(ctx, off, &new).map_err(|_| ())?;
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
    put(ctx, off, new)?;
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
    fib_lookup(ctx, src, dst, t, params, 0)
}

/// `fib`, and the source address the host would pick for `dst` in
/// `params.ipv6_src`: what a new MASQUERADE-d flow leaves with. Only
/// then: IPv6 source selection (`ipv6_dev_get_saddr`, unless the route
/// names a preferred source) weighs every address of the device, and
/// made each tracked packet cost about three times what IPv4's does.
#[inline(always)]
fn fib_with_source(
    ctx: &TcContext,
    src: &[u8; 16],
    dst: &[u8; 16],
    t: &Ct6Key,
    params: &mut FibParams,
) -> Result<u32, u32> {
    fib_lookup(ctx, src, dst, t, params, BPF_FIB_LOOKUP_SRC)
}

#[inline(always)]
fn fib_lookup(
    ctx: &TcContext,
    src: &[u8; 16],
    dst: &[u8; 16],
    t: &Ct6Key,
    params: &mut FibParams,
    flags: u32,
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
    // SAFETY: both are 16 bytes, and apart (map memory of their own):
    // copied, not assigned, which LLVM made a call to a byte-at-a-time
    // memmove.
    unsafe {
        let to_src = ptr::addr_of_mut!(params.__bindgen_anon_3.ipv6_src).cast::<u8>();
        let to_dst = ptr::addr_of_mut!(params.__bindgen_anon_4.ipv6_dst).cast::<u8>();
        ptr::copy_nonoverlapping(src.as_ptr(), to_src, 16);
        ptr::copy_nonoverlapping(dst.as_ptr(), to_dst, 16);
    }
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb.cast(),
            params,
            mem::size_of::<FibParams>() as i32,
            flags,
        )
    } as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return Err(rc);
    }
    Ok(rc)
}
