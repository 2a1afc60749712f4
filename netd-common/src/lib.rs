//! Map keys and values shared by the eBPF datapath (`netd-ebpf`) and the
//! control plane (`netd-user`). One definition for both sides: every type is
//! `#[repr(C)]`, has explicit padding, and carries BTF through the `btf_map`
//! declarations so `bpftool map dump` prints field names.
//!
//! Addresses and ports are stored in network byte order, exactly as they sit
//! in the packet, so the datapath compares them without swapping.
#![no_std]

/// Names of the pinned maps under the bpffs dir. The eBPF statics carry the
/// same names (BTF map names are the static's identifier).
pub mod map_names {
    pub const STATS: &str = "NETD_STATS";
    pub const ENDPOINTS: &str = "NETD_ENDPOINTS";
    pub const PORTMAPS: &str = "NETD_PORTMAPS";
    pub const CONNTRACK: &str = "NETD_CONNTRACK";
    pub const CONFIG: &str = "NETD_CONFIG";
}

/// Index into the per-CPU `NETD_STATS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatIndex {
    /// Packets seen leaving containers (host-side veth ingress).
    FromContainer = 0,
    /// Packets seen entering containers (host-side veth egress).
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
}

impl StatIndex {
    pub const COUNT: u32 = 10;
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
}
