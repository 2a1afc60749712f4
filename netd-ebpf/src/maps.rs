//! The datapath's maps. Names match `netd_common::map_names`; all are BTF
//! maps so `bpftool map dump` prints field names.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use netd_common::{
    BridgeValue, Counter, CtKey, CtValue, DatapathConfig, EndpointValue, FragKey, FragValue,
    PortMapKey, PortMapValue, ServiceKey, StatIndex, VethValue,
};

/// Per-CPU counters indexed by `StatIndex`.
#[btf_map]
pub static NETD_STATS: PerCpuArray<Counter, { StatIndex::COUNT as usize }> = PerCpuArray::new();

/// Container endpoints by IPv4 address (network order).
#[btf_map]
pub static NETD_ENDPOINTS: HashMap<u32, EndpointValue, 65536> = HashMap::new();

/// The endpoint bound to each container veth, by the veth's ifindex: the
/// source every packet from that veth must carry (anti-spoofing).
#[btf_map]
pub static NETD_VETHS: HashMap<u32, VethValue, 65536> = HashMap::new();

/// Published ports: (host ip or 0, host port, proto) -> container ip:port.
#[btf_map]
pub static NETD_PORTMAPS: HashMap<PortMapKey, PortMapValue, 65536> = HashMap::new();

/// Connection tracking of new and unanswered flows, two entries per flow
/// (original and reply). An LRU: a flood of new flows evicts only its own
/// kind, never an assured flow, which `NETD_CT_ASSURED` holds (the copies
/// left here are stale and age out).
#[btf_map]
pub static NETD_CONNTRACK: LruHashMap<CtKey, CtValue, 262144> = LruHashMap::new();

/// Assured flows (the originator spoke again after an answer), until the GC
/// expires them: a plain hash, so nothing evicts them.
#[btf_map]
pub static NETD_CT_ASSURED: HashMap<CtKey, CtValue, 262144> = HashMap::new();

/// The container side of every published port (value: 1).
#[btf_map]
pub static NETD_SERVICES: HashMap<ServiceKey, u32, 65536> = HashMap::new();

/// The ports of fragmented datagrams in flight, by (addresses, IP id,
/// protocol). An LRU: entries are needed only until the last fragment.
#[btf_map]
pub static NETD_FRAGS: LruHashMap<FragKey, FragValue, 8192> = LruHashMap::new();

/// Bridges of netd networks by ifindex.
#[btf_map]
pub static NETD_BRIDGES: HashMap<u32, BridgeValue, 1024> = HashMap::new();

/// Addresses of the host (network order), for the socket hooks.
#[btf_map]
pub static NETD_HOST_ADDRS: HashMap<u32, u32, 4096> = HashMap::new();

/// Global settings, one element.
#[btf_map]
pub static NETD_CONFIG: Array<DatapathConfig, 1> = Array::new();

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

#[inline(always)]
pub fn config() -> Option<&'static DatapathConfig> {
    NETD_CONFIG.get(0)
}
