//! netd's eBPF datapath. Built for `bpfel-unknown-none` by netd-user's build.rs.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    btf_maps::{HashMap, PerCpuArray},
    macros::{btf_map, classifier},
    programs::TcContext,
};
use netd_common::{Counter, EndpointValue, StatIndex};

/// Per-CPU counters indexed by `StatIndex`.
#[btf_map]
static NETD_STATS: PerCpuArray<Counter, { StatIndex::COUNT as usize }> = PerCpuArray::new();

/// Container endpoints by IPv4 address (network order).
#[btf_map]
static NETD_ENDPOINTS: HashMap<u32, EndpointValue, 65536> = HashMap::new();

#[inline(always)]
fn count(index: StatIndex, bytes: u32) {
    if let Some(counter) = NETD_STATS.get_ptr_mut(index as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(bytes);
        }
    }
}

/// tcx ingress of a container's host-side veth: packets leaving the container.
#[classifier]
pub fn netd_from_container(ctx: TcContext) -> i32 {
    count(StatIndex::FromContainer, ctx.len());
    let _ = NETD_ENDPOINTS.get_ptr(0u32);
    TC_ACT_UNSPEC
}

/// tcx egress of a container's host-side veth: packets entering the container.
#[classifier]
pub fn netd_to_container(ctx: TcContext) -> i32 {
    count(StatIndex::ToContainer, ctx.len());
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
