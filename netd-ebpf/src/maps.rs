//! Every map of the datapath. All are BTF maps (so `bpftool map dump`
//! prints field names), all are pinned by the daemon, and their names are
//! `netd_common::names::maps::ALL`: `maps!` checks at compile time that
//! the statics declared here and that list are the same set.

use crate::segment::Seg;
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, SkStorage},
    macros::btf_map,
};
use netd_common::{
    BridgeValue, Counter, Ct6Key, Ct6Value, CtKey, CtValue, DatapathConfig, Endpoint6Value,
    EndpointValue, Frag6Key, FragKey, FragValue, PortMap6Key, PortMap6Value, PortMapKey,
    PortMapValue, Service6Key, ServiceKey, SockOrigin, SockOrigin6, StatIndex, VethValue,
    names::{self, maps::ALL},
};

/// Declares the maps, and checks that each one's name (its static's
/// identifier, which becomes its BTF name) is in `names::maps::ALL` and
/// that nothing in that list is missing here.
macro_rules! maps {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr;)*) => {
        $(
            $(#[$doc])*
            #[btf_map]
            pub static $name: $ty = $init;
            const _: () = assert!(
                names::listed(stringify!($name), &ALL),
                concat!(stringify!($name), " is missing from netd_common::names::maps::ALL"),
            );
        )*
        /// Declared above; with the checks, the same set as `ALL`.
        const DECLARED: &[&str] = &[$(stringify!($name)),*];
        const _: () = assert!(
            DECLARED.len() == ALL.len(),
            "netd_common::names::maps::ALL and the maps declared here differ in number",
        );
    };
}

maps! {
    /// Per-CPU counters indexed by `StatIndex`.
    NETD_STATS: PerCpuArray<Counter, { StatIndex::COUNT as usize }> = PerCpuArray::new();

    /// Container endpoints by IPv4 address (network order).
    NETD_ENDPOINTS: HashMap<u32, EndpointValue, 65536> = HashMap::new();

    /// The endpoint bound to each container veth, by the veth's ifindex: the
    /// source every packet from that veth must carry (anti-spoofing).
    NETD_VETHS: HashMap<u32, VethValue, 65536> = HashMap::new();

    /// Dual-stack endpoints by IPv6 address: delivery into the container.
    NETD_ENDPOINTS6: HashMap<[u8; 16], Endpoint6Value, 65536> = HashMap::new();

    /// Connection tracking of new and unanswered IPv6 flows (NAT66, DNAT,
    /// hairpin), as `NETD_CONNTRACK` for IPv4. Sized by `--ct6-max` at
    /// load.
    NETD_CT6: LruHashMap<Ct6Key, Ct6Value, 65536> = LruHashMap::new();

    /// Assured IPv6 flows, as `NETD_CT_ASSURED`. Sized by `--ct6-max`.
    NETD_CT6_ASSURED: HashMap<Ct6Key, Ct6Value, 65536> = HashMap::new();

    /// The IPv6 twin of `NETD_SERVICES`: dual-stack containers' published
    /// ports (value: 1).
    NETD_SERVICES6: HashMap<Service6Key, u32, 65536> = HashMap::new();

    /// Published ports on the host's IPv6 addresses -> container ip6:port.
    NETD_PORTMAPS6: HashMap<PortMap6Key, PortMap6Value, 65536> = HashMap::new();

    /// The host's IPv6 addresses, for the IPv6 socket hooks.
    NETD_HOST_ADDRS6: HashMap<[u8; 16], u32, 4096> = HashMap::new();

    /// What each IPv6 host socket the hooks redirected asked for.
    NETD_SOCK_ORIGIN6: SkStorage<SockOrigin6> = SkStorage::new();

    /// Per-CPU room of the IPv6 path for what does not fit its stack.
    NETD_SCRATCH6: PerCpuArray<Scratch6Slot, 1> = PerCpuArray::new();

    /// Published ports: (host ip or 0, host port, proto) -> container ip:port.
    NETD_PORTMAPS: HashMap<PortMapKey, PortMapValue, 65536> = HashMap::new();

    /// Connection tracking of new and unanswered flows, two entries per flow
    /// (original and reply). An LRU: a flood of new flows evicts only its own
    /// kind, never an assured flow, which `NETD_CT_ASSURED` holds (the copies
    /// left here are stale and age out).
    NETD_CONNTRACK: LruHashMap<CtKey, CtValue, 262144> = LruHashMap::new();

    /// Assured flows (the originator spoke again after an answer), until the GC
    /// expires them: a plain hash, so nothing evicts them.
    NETD_CT_ASSURED: HashMap<CtKey, CtValue, 262144> = HashMap::new();

    /// The container side of every published port (value: 1).
    NETD_SERVICES: HashMap<ServiceKey, u32, 65536> = HashMap::new();

    /// The ports of fragmented datagrams in flight, by (addresses, IP id,
    /// protocol). An LRU: entries are needed only until the last fragment.
    NETD_FRAGS: LruHashMap<FragKey, FragValue, 8192> = LruHashMap::new();

    /// The same for IPv6, by (addresses, fragment identification,
    /// protocol).
    NETD_FRAGS6: LruHashMap<Frag6Key, FragValue, 8192> = LruHashMap::new();

    /// Bridges of netd networks by ifindex.
    NETD_BRIDGES: HashMap<u32, BridgeValue, 1024> = HashMap::new();

    /// Addresses of the host (network order), for the socket hooks.
    NETD_HOST_ADDRS: HashMap<u32, u32, 4096> = HashMap::new();

    /// Global settings, one element.
    NETD_CONFIG: Array<DatapathConfig, 1> = Array::new();

    /// What each host socket the socket hooks redirected asked for (see
    /// `SockOrigin`).
    NETD_SOCK_ORIGIN: SkStorage<SockOrigin> = SkStorage::new();
}

/// Room for the ICMPv6 answer `icmp6::time_exceeded` builds (which
/// checks that its frame fits): a constant here keeps this module below
/// `icmp6`.
pub const ICMP6_ANSWER_ROOM: usize = 112;

/// `icmp6::time_exceeded`'s room, 8-byte aligned (it lays the frame out
/// so that the IPv6 addresses and the message are).
#[repr(C, align(8))]
pub struct Icmp6Answer {
    pub bytes: [u8; ICMP6_ANSWER_ROOM],
}

/// Per-CPU room of the IPv6 path (`nat6`) for what is too big for the
/// stack (the verifier's 512 bytes are shared with the IPv4 program that
/// calls in): the packet's tuple and segment, `room`, and the ICMPv6
/// answer `icmp6::time_exceeded` builds.
#[repr(C)]
pub struct Scratch6Slot {
    pub tuple: Ct6Key,
    pub seg: Seg,
    pub room: Scratch6,
    pub answer: Icmp6Answer,
}

/// A conntrack key and value being built (or `conntrack::settle`'s other
/// key), the FIB lookup's parameters.
#[repr(C)]
pub struct Scratch6 {
    pub key: Ct6Key,
    pub value: Ct6Value,
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
    /// A fragment's `NETD_FRAGS6` key.
    pub frag: Frag6Key,
}

#[inline(always)]
pub fn config() -> Option<&'static DatapathConfig> {
    NETD_CONFIG.get(0)
}

/// The MASQUERADE source port range (`--nat-ports`), both families';
/// 1024-65535 until the daemon has set a sane one.
#[inline(always)]
pub fn nat_ports() -> (u32, u32) {
    match config() {
        Some(c) if c.nat_port_max >= c.nat_port_min && c.nat_port_min > 0 => {
            (c.nat_port_min, c.nat_port_max)
        }
        _ => (1024, 65535),
    }
}
