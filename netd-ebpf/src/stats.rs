//! The per-CPU counters (`NETD_STATS`, indexed by `StatIndex`), and drops,
//! which are always counted by why.

use aya_ebpf::bindings::TC_ACT_SHOT;
use netd_common::StatIndex;

use crate::maps::NETD_STATS;

#[inline(always)]
pub fn count(index: StatIndex, bytes: u32) {
    if let Some(counter) = NETD_STATS.get_ptr_mut(index as u32) {
        // SAFETY: per-CPU slot; only this CPU writes it while we run.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(bytes);
        }
    }
}

/// Counts a dropped packet of `len` bytes under `stat`: the verdict.
#[inline(always)]
pub fn drop(stat: StatIndex, len: u32) -> i32 {
    count(stat, len);
    TC_ACT_SHOT
}

/// A rewrite helper failed (the packet is not what the parser saw).
#[inline(always)]
pub fn rewrite_failed() -> i32 {
    drop(StatIndex::DropMalformed, 0)
}
