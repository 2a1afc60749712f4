//! Fragments. Only the first fragment of a datagram carries the L4
//! header; the ports it has are remembered by (addresses, IP id, protocol)
//! in `NETD_FRAGS`, so later fragments find the same flow and get the same
//! address translation (Cilium's fragment map is the model). A later
//! fragment whose first was not seen (reordered, or lost) cannot be
//! translated. IPv6 the same, by the fragment header's identification,
//! in `NETD_FRAGS6`.

use aya_ebpf::bindings::BPF_ANY;
use netd_common::{Frag6Key, FragKey, FragValue};

use crate::maps::{NETD_FRAGS, NETD_FRAGS6};

#[inline(always)]
fn key(src_ip: u32, dst_ip: u32, id: u16, proto: u8) -> FragKey {
    FragKey {
        src_ip,
        dst_ip,
        id,
        proto,
        pad: 0,
    }
}

/// Remembers the ports of a datagram whose first fragment this is.
#[inline(always)]
pub fn remember(src_ip: u32, dst_ip: u32, id: u16, proto: u8, ports: FragValue) {
    let _ = NETD_FRAGS.insert(&key(src_ip, dst_ip, id, proto), &ports, u64::from(BPF_ANY));
}

/// The ports of the datagram a later fragment belongs to.
#[inline(always)]
pub fn ports(src_ip: u32, dst_ip: u32, id: u16, proto: u8) -> Option<FragValue> {
    // SAFETY: map value pointer, valid for this program run.
    NETD_FRAGS
        .get_ptr(&key(src_ip, dst_ip, id, proto))
        .map(|v| unsafe { *v })
}

/// Remembers the ports of an IPv6 datagram whose first fragment this is.
#[inline(always)]
pub fn remember6(key: &Frag6Key, ports: FragValue) {
    let _ = NETD_FRAGS6.insert(key, &ports, u64::from(BPF_ANY));
}

/// The ports of the IPv6 datagram a later fragment belongs to.
#[inline(always)]
pub fn ports6(key: &Frag6Key) -> Option<FragValue> {
    // SAFETY: map value pointer, valid for this program run.
    NETD_FRAGS6.get_ptr(key).map(|v| unsafe { *v })
}
