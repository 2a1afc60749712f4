//! Delivery after translation: straight into a container's namespace with
//! `bpf_redirect_peer`, or out of the host through the FIB and the
//! neighbour table (`bpf_redirect` / `bpf_redirect_neigh`). The FIB lookup
//! works on any packet context; the redirects are tc's.

use core::{mem, ptr};

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, TC_ACT_OK,
        TC_ACT_SHOT, bpf_fib_lookup as FibParams,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{CtKey, EndpointValue, StatIndex};

use crate::{ctx::PacketCtx, maps::NETD_ENDPOINTS, packet::set_macs, stats::count};

const AF_INET: u8 = 2;

/// The FIB's answer for a destination outside the host.
pub struct Route {
    pub ifindex: u32,
    /// Preferred source address on that route (MASQUERADE address).
    pub src: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// The neighbour is not resolved yet: let the kernel resolve it.
    pub needs_neigh: bool,
}

/// Delivers a translated packet to its (new) destination.
#[inline(always)]
pub fn deliver(ctx: &mut TcContext, t: &CtKey) -> i32 {
    if let Some(ep) = NETD_ENDPOINTS.get_ptr(t.dst_ip) {
        // SAFETY: map value pointer, valid for this run.
        return to_endpoint(ctx, unsafe { &*ep });
    }
    match fib_lookup(ctx, t) {
        Some(route) => redirect(ctx, &route),
        None => TC_ACT_OK,
    }
}

/// Into a container: its MAC, from the gateway's, onto its eth0's ingress.
#[inline(always)]
pub fn to_endpoint(ctx: &mut TcContext, ep: &EndpointValue) -> i32 {
    if set_macs(ctx, &ep.mac, &ep.gw_mac).is_err() {
        return TC_ACT_SHOT;
    }
    count(StatIndex::ToContainer, ctx.len());
    unsafe { bpf_redirect_peer(ep.ifindex, 0) as i32 }
}

/// Routes `t` like a forwarded packet arriving on this device would be.
/// None: the destination is local, unreachable, or forwarding is off.
#[inline(always)]
pub fn fib_lookup<C: PacketCtx>(ctx: &C, t: &CtKey) -> Option<Route> {
    let mut room = mem::MaybeUninit::<FibParams>::uninit();
    let params = zeroed(&mut room);
    params.family = AF_INET;
    params.l4_protocol = t.proto;
    params.sport = t.src_port;
    params.dport = t.dst_port;
    params.ifindex = ctx.ifindex();
    params.__bindgen_anon_3.ipv4_src = t.src_ip;
    params.__bindgen_anon_4.ipv4_dst = t.dst_ip;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            params,
            mem::size_of::<FibParams>() as i32,
            u32::from(BPF_FIB_LOOKUP_SRC),
        )
    };
    let rc = rc as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return None;
    }
    Some(Route {
        ifindex: params.ifindex,
        src: unsafe { params.__bindgen_anon_3.ipv4_src },
        smac: params.smac,
        dmac: params.dmac,
        needs_neigh: rc == BPF_FIB_LKUP_RET_NO_NEIGH,
    })
}

/// The helper's parameters, all zero, zeroed in place word by word:
/// `mem::zeroed()` (with the fields set after it) became a call to a
/// byte-at-a-time memset of 52 bytes on every routed packet. 32-bit
/// words: the struct is 4-byte aligned on the stack, where the verifier
/// wants aligned access.
#[inline(always)]
fn zeroed(room: &mut mem::MaybeUninit<FibParams>) -> &mut FibParams {
    let words = room.as_mut_ptr().cast::<u32>();
    let mut i = 0;
    while i < mem::size_of::<FibParams>() / 4 {
        // SAFETY: within the struct, 4-byte aligned.
        unsafe { ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    // SAFETY: every byte was written; all zeroes is a valid FibParams.
    unsafe { room.assume_init_mut() }
}

#[inline(always)]
pub fn redirect(ctx: &mut TcContext, route: &Route) -> i32 {
    if route.needs_neigh {
        return unsafe { bpf_redirect_neigh(route.ifindex, ptr::null_mut(), 0, 0) as i32 };
    }
    if set_macs(ctx, &route.dmac, &route.smac).is_err() {
        return TC_ACT_SHOT;
    }
    unsafe { bpf_redirect(route.ifindex, 0) as i32 }
}
