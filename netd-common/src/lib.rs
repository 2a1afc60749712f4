//! Map keys and values shared by the eBPF datapath (`netd-ebpf`) and the
//! control plane (`netd-user`). One definition for both sides: every type is
//! `#[repr(C)]`, has explicit padding, and carries BTF through the `btf_map`
//! declarations so `bpftool map dump` prints field names.
//!
//! Addresses and ports are stored in network byte order, exactly as they sit
//! in the packet, so the datapath compares them without swapping.
#![no_std]

/// Names of the maps and programs, one list for both sides: the eBPF
/// statics and functions carry these names (a map's BTF name is its
/// static's identifier, a program's its function's), which `netd-ebpf`
/// checks at compile time against the lists here, and `netd-user` loads,
/// pins and attaches by them.
pub mod names {
    /// Names of the maps, pinned under the bpffs dir.
    pub mod maps {
        pub const STATS: &str = "NETD_STATS";
        pub const ENDPOINTS: &str = "NETD_ENDPOINTS";
        pub const PORTMAPS: &str = "NETD_PORTMAPS";
        pub const CONNTRACK: &str = "NETD_CONNTRACK";
        pub const CONFIG: &str = "NETD_CONFIG";
        pub const BRIDGES: &str = "NETD_BRIDGES";
        pub const HOST_ADDRS: &str = "NETD_HOST_ADDRS";
        pub const VETHS: &str = "NETD_VETHS";
        pub const CT_ASSURED: &str = "NETD_CT_ASSURED";
        pub const FRAGS: &str = "NETD_FRAGS";
        pub const SERVICES: &str = "NETD_SERVICES";
        pub const SOCK_ORIGIN: &str = "NETD_SOCK_ORIGIN";
        pub const ENDPOINTS6: &str = "NETD_ENDPOINTS6";
        pub const CT6: &str = "NETD_CT6";
        pub const CT6_ASSURED: &str = "NETD_CT6_ASSURED";
        pub const SERVICES6: &str = "NETD_SERVICES6";
        pub const PORTMAPS6: &str = "NETD_PORTMAPS6";
        pub const HOST_ADDRS6: &str = "NETD_HOST_ADDRS6";
        pub const SOCK_ORIGIN6: &str = "NETD_SOCK_ORIGIN6";
        pub const FRAGS6: &str = "NETD_FRAGS6";
        /// Per-CPU scratch room of the IPv6 path (eBPF-internal).
        pub const SCRATCH6: &str = "NETD_SCRATCH6";
        /// Every map of the object, all pinned by the daemon. A map the
        /// eBPF side declares must be in it (checked when `netd-ebpf`
        /// compiles).
        pub const ALL: [&str; 21] = [
            STATS,
            ENDPOINTS,
            PORTMAPS,
            CONNTRACK,
            CONFIG,
            BRIDGES,
            HOST_ADDRS,
            VETHS,
            CT_ASSURED,
            FRAGS,
            SERVICES,
            SOCK_ORIGIN,
            ENDPOINTS6,
            CT6,
            CT6_ASSURED,
            SERVICES6,
            SCRATCH6,
            PORTMAPS6,
            HOST_ADDRS6,
            SOCK_ORIGIN6,
            FRAGS6,
        ];
        /// The two conntrack tables: assured flows (never evicted) and new
        /// flows (LRU). An assured flow may still have (stale) copies in the
        /// LRU: the assured entry wins, so it comes first.
        pub const CT_TABLES: [&str; 2] = [CT_ASSURED, CONNTRACK];
        /// The IPv6 twins of `CT_TABLES`, in the same order.
        pub const CT6_TABLES: [&str; 2] = [CT6_ASSURED, CT6];
    }

    /// Names of the programs, by attach point.
    pub mod programs {
        /// tcx ingress of the uplink(s).
        pub const UPLINK_INGRESS: &str = "netd_uplink_ingress";
        /// tcx ingress of a container's host-side veth.
        pub const FROM_CONTAINER: &str = "netd_from_container";
        /// The tc classifiers.
        pub const CLASSIFIERS: [&str; 2] = [UPLINK_INGRESS, FROM_CONTAINER];
        /// cgroup socket hooks (host-local access to published ports).
        pub const CONNECT4: &str = "netd_connect4";
        pub const SENDMSG4: &str = "netd_sendmsg4";
        pub const GETPEERNAME4: &str = "netd_getpeername4";
        pub const RECVMSG4: &str = "netd_recvmsg4";
        pub const CONNECT6: &str = "netd_connect6";
        pub const SENDMSG6: &str = "netd_sendmsg6";
        pub const GETPEERNAME6: &str = "netd_getpeername6";
        pub const RECVMSG6: &str = "netd_recvmsg6";
        pub const SOCK_HOOKS: [&str; 8] = [
            CONNECT4,
            SENDMSG4,
            GETPEERNAME4,
            RECVMSG4,
            CONNECT6,
            SENDMSG6,
            GETPEERNAME6,
            RECVMSG6,
        ];
        /// Every program of the object.
        pub const ALL: [&str; 10] = [
            UPLINK_INGRESS,
            FROM_CONTAINER,
            CONNECT4,
            SENDMSG4,
            GETPEERNAME4,
            RECVMSG4,
            CONNECT6,
            SENDMSG6,
            GETPEERNAME6,
            RECVMSG6,
        ];
    }

    /// `a == b`, usable in constants (the eBPF side's name checks).
    pub const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// `name` is one of `list`, usable in constants.
    pub const fn listed(name: &str, list: &[&str]) -> bool {
        let mut i = 0;
        while i < list.len() {
            if same(name, list[i]) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// The map names under their former path (`names::maps`).
pub use names::maps as map_names;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Connection-tracking key: a flow's tuple as seen on the wire in one
/// direction. For ICMP echo the identifier takes the place of the source
/// port in requests and of the destination port in replies, so the reply
/// tuple is the reversed request tuple, as for TCP and UDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Padding, zero: a byte and a 16-bit word, not `[u8; 3]`, whose
    /// zeroing becomes a call to a byte-at-a-time `memset` in BPF code.
    pub pad: u8,
    pub pad2: u16,
}

impl CtKey {
    /// The tuple of packets flowing the other way.
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            pad: 0,
            pad2: 0,
        }
    }
}

/// `CtValue::kind`: which NAT created the entry.
pub mod ct_kind {
    /// Published port: outside client -> host port -> container.
    pub const DNAT: u8 = 1;
    /// MASQUERADE: container -> outside, source rewritten to the host's.
    pub const SNAT: u8 = 2;
    /// A container reaching a published port through the host address.
    pub const HAIRPIN: u8 = 3;
}

/// `CtValue::direction`.
pub mod ct_dir {
    pub const ORIGINAL: u8 = 0;
    pub const REPLY: u8 = 1;
}

/// `CtValue::tcp_flags`: TCP flags seen on this direction (sticky bits).
pub mod ct_tcp {
    pub const SYN: u8 = 1;
    pub const FIN: u8 = 2;
    pub const RST: u8 = 4;
    /// How far from the tracked sequence number an RST or FIN may be and
    /// still count: a forged one with a random sequence number passes with
    /// a probability of 2^17 / 2^32.
    pub const WINDOW: u32 = 65536;
}

/// Connection-tracking value: the rewrite to apply to packets whose tuple
/// is the key, and the bookkeeping the userspace GC expires entries by.
/// Each flow has two entries, ORIGINAL and REPLY; the REPLY key is the
/// reversed translated ORIGINAL tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// Rewritten tuple (network order); equal to the key where unchanged.
    pub nat_src_ip: u32,
    pub nat_dst_ip: u32,
    pub nat_src_port: u16,
    pub nat_dst_port: u16,
    pub kind: u8,
    pub direction: u8,
    pub tcp_flags: u8,
    pub pad: u8,
    /// TCP: the sequence number just past the last segment sent in this
    /// entry's direction (host order), 0 until known. An RST or FIN counts
    /// for the flow's state only near it (within `ct_tcp::WINDOW`), so a
    /// forged one with a guessed sequence number does not close the flow.
    pub tcp_seq_end: u32,
    pub pad2: u32,
    /// bpf_ktime_get_ns() of the last packet (CLOCK_MONOTONIC).
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl CtValue {
    /// The tuple after translation.
    pub const fn translated(&self, proto: u8) -> CtKey {
        CtKey {
            src_ip: self.nat_src_ip,
            dst_ip: self.nat_dst_ip,
            src_port: self.nat_src_port,
            dst_port: self.nat_dst_port,
            proto,
            pad: 0,
            pad2: 0,
        }
    }
}

/// Bits of `BridgeValue::flags`, `EndpointValue::flags` and
/// `VethValue::flags`: the network's exposure rules.
pub mod net_flags {
    /// `--internal`: no MASQUERADE, nothing outside is reachable.
    pub const INTERNAL: u32 = 1;
    /// `--gateway-mode routed`: no MASQUERADE, and hosts outside may reach
    /// the containers' addresses directly (Docker's
    /// `gateway_mode_ipv4=routed`). Off by default: from outside only
    /// published ports and replies get in.
    pub const ROUTED: u32 = 2;
    /// `BridgeValue` only, for the control plane: the bridge existed before
    /// netd and was adopted, so a cleanup from the kernel objects alone
    /// (`netd down` with an unreadable database) never deletes it.
    pub const ADOPTED: u32 = 4;
}

/// A network's bridge, keyed by the bridge's ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeValue {
    pub network_id: u32,
    /// Gateway address (network order): source of hairpin SNAT.
    pub gateway: u32,
    /// `net_flags` bits.
    pub flags: u32,
}

/// The endpoint bound to a container's host-side veth, keyed by the veth's
/// ifindex: what every packet entering from that veth must carry (its
/// source address and MAC) and what it may reach. Isolation is decided by
/// this entry, never by the addresses a packet claims (anti-spoofing).
/// Both families in one entry: one lookup per packet, whichever it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VethValue {
    /// The endpoint's IPv4 address (network order).
    pub ip: u32,
    /// The endpoint's network id.
    pub network_id: u32,
    /// The network's gateway (network order): hairpin SNAT source.
    pub gateway: u32,
    /// `net_flags` bits of the endpoint's network.
    pub flags: u32,
    /// The endpoint's MAC: the only Ethernet source allowed.
    pub mac: [u8; 6],
    pub pad: [u8; 2],
    /// The endpoint's IPv6 address on a dual-stack network, as it sits in
    /// the packet; all zeroes for none. The only global IPv6 source
    /// allowed in from the veth (link-local fe80::/10 and, for duplicate
    /// address detection, the unspecified address are always allowed).
    pub ip6: [u8; 16],
}

/// `NETD_ENDPOINTS6`: a dual-stack endpoint by its IPv6 address (the key,
/// 16 bytes as in the packet): where the datapath delivers to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint6Value {
    /// The host-side veth's ifindex (bpf_redirect_peer target).
    pub ifindex: u32,
    pub network_id: u32,
    /// `net_flags` bits of its network.
    pub flags: u32,
    pub mac: [u8; 6],
    /// The bridge's MAC (the Ethernet source of delivered packets).
    pub gw_mac: [u8; 6],
}

/// `NETD_PORTMAPS6` key: a published port on the host's IPv6 addresses
/// (`host_ip` all zeroes: every one of them, the form `-p` on a
/// dual-stack network publishes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortMap6Key {
    pub host_ip: [u8; 16],
    /// Network order.
    pub host_port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `NETD_PORTMAPS6` value: the container's IPv6 address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMap6Value {
    pub container_ip: [u8; 16],
    /// Network order.
    pub container_port: u16,
    pub pad: u16,
}

/// `NETD_CT6` key: an IPv6 flow's tuple, as `CtKey` (ICMPv6 echo: the
/// identifier is the source port of requests and the destination port of
/// replies).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ct6Key {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Padding, zero: a byte and a 16-bit word, not `[u8; 3]`, whose
    /// zeroing becomes a call to a byte-at-a-time `memset` in BPF code.
    pub pad: u8,
    pub pad2: u16,
}

impl Ct6Key {
    /// The tuple of the other direction.
    pub const fn reversed(&self) -> Ct6Key {
        Ct6Key {
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            pad: 0,
            pad2: 0,
        }
    }
}

/// `NETD_CT6`/`NETD_CT6_ASSURED` value: the tuple a packet of this entry
/// is rewritten to and its bookkeeping, field for field as `CtValue`
/// (two entries per flow, ORIGINAL and REPLY; the same TCP state).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct6Value {
    pub nat_src_ip: [u8; 16],
    pub nat_dst_ip: [u8; 16],
    pub nat_src_port: u16,
    pub nat_dst_port: u16,
    /// `ct_kind`.
    pub kind: u8,
    /// `ct_dir`.
    pub direction: u8,
    /// `ct_tcp`, as `CtValue::tcp_flags`.
    pub tcp_flags: u8,
    pub pad: u8,
    /// As `CtValue::tcp_seq_end`.
    pub tcp_seq_end: u32,
    pub pad2: u32,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl Ct6Value {
    /// The tuple after translation.
    pub const fn translated(&self, proto: u8) -> Ct6Key {
        Ct6Key {
            src_ip: self.nat_src_ip,
            dst_ip: self.nat_dst_ip,
            src_port: self.nat_src_port,
            dst_port: self.nat_dst_port,
            proto,
            pad: 0,
            pad2: 0,
        }
    }
}

/// A fragmented IPv4 datagram, as its fragments carry it: only the first
/// fragment has the ports, so they are remembered by the IP id (Cilium's
/// fragment map) and every later fragment is translated like the first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    /// The IP identification (network order).
    pub id: u16,
    pub proto: u8,
    pub pad: u8,
}

/// A fragmented IPv6 datagram, by its fragment header's identification
/// (network order): as `FragKey`, for `NETD_FRAGS6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub id: u32,
    pub proto: u8,
    /// Padding, zero: a byte and a 16-bit word, not `[u8; 3]`, whose
    /// zeroing becomes a call to a byte-at-a-time `memset` in BPF code.
    pub pad: u8,
    pub pad2: u16,
}

/// The ports of a fragmented datagram (network order; ICMP echo: the id in
/// the tuple's position).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    pub src_port: u16,
    pub dst_port: u16,
}

/// Per-socket storage of a host socket the connect/sendmsg hooks pointed at
/// a container: what the application asked for, so getpeername() and
/// recvmsg() can show it that address rather than the container's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOrigin {
    /// The address the application used (network order).
    pub orig_ip: u32,
    /// The container it was translated to (network order).
    pub nat_ip: u32,
    pub orig_port: u16,
    pub nat_port: u16,
}

/// `NETD_SOCK_ORIGIN6`: what a host IPv6 socket the hooks redirected
/// asked for (`connect6`, `sendmsg6`), shown back by `getpeername6` and
/// `recvmsg6`. Addresses as the socket address carries them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOrigin6 {
    pub orig_ip: [u32; 4],
    pub nat_ip: [u32; 4],
    pub orig_port: u16,
    pub nat_port: u16,
}

/// Global datapath settings (one-element array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// Cookie of the host network namespace; the socket hooks act only there.
    pub host_netns_cookie: u64,
    /// Start and end (inclusive, host order) of the MASQUERADE port range.
    pub nat_port_min: u32,
    pub nat_port_max: u32,
}

/// Index into the per-CPU `NETD_STATS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatIndex {
    /// Packets seen leaving containers (host-side veth ingress).
    FromContainer = 0,
    /// Packets delivered into containers by eBPF (bpf_redirect_peer).
    ToContainer = 1,
    /// Packets forwarded container to container by eBPF (bridge bypassed).
    Forwarded = 2,
    /// Inbound packets DNAT-ed to a published port.
    Dnat = 3,
    /// Outbound packets MASQUERADE-d to the uplink address.
    Snat = 4,
    /// Reply packets reverse-translated.
    ReverseNat = 5,
    /// Dropped: malformed or truncated headers.
    DropMalformed = 6,
    /// Dropped: network isolation policy.
    DropPolicy = 7,
    /// Dropped: no free source port for MASQUERADE.
    DropNoPort = 8,
    /// Packets seen on the uplink.
    Uplink = 9,
    /// Dropped: a container sent a source address or MAC that is not its
    /// endpoint's (anti-spoofing), or from a veth with no endpoint.
    DropSpoofed = 10,
    /// Dropped: from outside to a container address, not a published port
    /// nor a reply (the network is not `routed`).
    DropUnpublished = 11,
    /// An answered flow could not move to `NETD_CT_ASSURED` because that
    /// table is full: it works, but stays evictable (the operator should
    /// raise the table size).
    DropCtFull = 12,
    /// Dropped: a packet no tracked flow explains and that may not start
    /// one (a TCP segment other than SYN from a container, a new flow
    /// clashing with another flow's reply tuple).
    DropInvalid = 13,
    /// Dropped: a packet from a container netd cannot translate (another
    /// IP protocol, a fragment) that would leave with a private address.
    DropUntranslatable = 14,
    /// Dropped: TTL expired on a path eBPF routes (the host answers with
    /// ICMP time exceeded where the stack can).
    DropTtl = 15,
    /// Dropped: a router advertisement from a container (only the host
    /// routes for containers).
    DropRouterAdvert = 16,
    /// Passed to the stack untranslated: IPv6 from outside whose
    /// extension headers netd does not walk (more than 4, cut short) or
    /// that is source-routed (a routing header with segments left).
    PassUnparsed = 17,
}

impl StatIndex {
    pub const COUNT: u32 = 18;
    pub const ALL: [StatIndex; Self::COUNT as usize] = [
        StatIndex::FromContainer,
        StatIndex::ToContainer,
        StatIndex::Forwarded,
        StatIndex::Dnat,
        StatIndex::Snat,
        StatIndex::ReverseNat,
        StatIndex::DropMalformed,
        StatIndex::DropPolicy,
        StatIndex::DropNoPort,
        StatIndex::Uplink,
        StatIndex::DropSpoofed,
        StatIndex::DropUnpublished,
        StatIndex::DropCtFull,
        StatIndex::DropInvalid,
        StatIndex::DropUntranslatable,
        StatIndex::DropTtl,
        StatIndex::DropRouterAdvert,
        StatIndex::PassUnparsed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            StatIndex::FromContainer => "from_container",
            StatIndex::ToContainer => "to_container",
            StatIndex::Forwarded => "forwarded",
            StatIndex::Dnat => "dnat",
            StatIndex::Snat => "snat",
            StatIndex::ReverseNat => "reverse_nat",
            StatIndex::DropMalformed => "drop_malformed",
            StatIndex::DropPolicy => "drop_policy",
            StatIndex::DropNoPort => "drop_no_port",
            StatIndex::Uplink => "uplink",
            StatIndex::DropSpoofed => "drop_spoofed",
            StatIndex::DropUnpublished => "drop_unpublished",
            StatIndex::DropCtFull => "drop_ct_full",
            StatIndex::DropInvalid => "drop_invalid",
            StatIndex::DropUntranslatable => "drop_untranslatable",
            StatIndex::DropTtl => "drop_ttl",
            StatIndex::DropRouterAdvert => "drop_ra",
            StatIndex::PassUnparsed => "pass_unparsed",
        }
    }
}

/// One counter slot: packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// A container endpoint, keyed by its IPv4 address (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointValue {
    /// ifindex of the host-side veth (target of bpf_redirect_peer/redirect).
    pub ifindex: u32,
    /// Network id: containers may talk directly only within one network.
    pub network_id: u32,
    /// The container's MAC, to rewrite L2 when forwarding directly.
    pub mac: [u8; 6],
    /// The gateway (bridge) MAC, used as source MAC when forwarding.
    pub gw_mac: [u8; 6],
    /// The network's gateway address (network order): hairpin SNAT source.
    pub gateway: u32,
    /// `net_flags` bits of the endpoint's network.
    pub flags: u32,
}

/// Published-port lookup key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortMapKey {
    /// Host address (network order); 0 means "any host address".
    pub host_ip: u32,
    /// Host port (network order).
    pub host_port: u16,
    /// IP protocol number (6 tcp, 17 udp).
    pub proto: u8,
    pub pad: u8,
}

/// A container's published port (what some `PortMapValue` points at):
/// datagrams from it without a flow are replies whose flow is gone, never
/// new MASQUERADE flows (that would send them out from the container's own
/// port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Container address (network order).
    pub container_ip: u32,
    /// Container port (network order).
    pub container_port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `NETD_SERVICES6`: the IPv6 twin of `ServiceKey` (a dual-stack
/// container's published port, on its IPv6 address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Service6Key {
    /// Container address (network order).
    pub container_ip: [u8; 16],
    /// Container port (network order).
    pub container_port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// Published-port target.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMapValue {
    /// Container address (network order).
    pub container_ip: u32,
    /// Container port (network order).
    pub container_port: u16,
    pub pad: u16,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are repr(C), Copy, with explicit padding fields and
    // no pointers, so any byte pattern of the right size is a valid value.
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for EndpointValue {}
    unsafe impl aya::Pod for PortMapKey {}
    unsafe impl aya::Pod for PortMapValue {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for BridgeValue {}
    unsafe impl aya::Pod for VethValue {}
    unsafe impl aya::Pod for Endpoint6Value {}
    unsafe impl aya::Pod for Ct6Key {}
    unsafe impl aya::Pod for Ct6Value {}
    unsafe impl aya::Pod for PortMap6Key {}
    unsafe impl aya::Pod for SockOrigin6 {}
    unsafe impl aya::Pod for PortMap6Value {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service6Key {}
    unsafe impl aya::Pod for FragValue {}
    unsafe impl aya::Pod for Frag6Key {}
    unsafe impl aya::Pod for DatapathConfig {}
    unsafe impl aya::Pod for SockOrigin {}
}
