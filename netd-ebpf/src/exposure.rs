//! What hosts outside may reach. Docker 28 in NAT mode drops packets
//! addressed to a container that arrive from anywhere but the container's
//! bridge; netd does the same on the uplink: only published ports (DNAT)
//! and replies to tracked flows get through to a container, unless its
//! network is routed (`net_flags::ROUTED`, Docker's
//! `gateway_mode_ipv4=routed`).

use netd_common::net_flags;

use crate::{ctx::PacketCtx, maps::NETD_ENDPOINTS, packet::ipv4_dst};

/// True for an IPv4 packet (any protocol, fragments included) addressed to
/// a container whose network does not accept direct access.
#[inline(always)]
pub fn to_unexposed_container<C: PacketCtx>(ctx: &mut C) -> bool {
    let Some(dst) = ipv4_dst(ctx) else {
        return false;
    };
    match NETD_ENDPOINTS.get_ptr(dst) {
        Some(ep) => {
            // SAFETY: map value pointer, valid for this run.
            let flags = unsafe { (*ep).flags };
            flags & net_flags::ROUTED == 0
        }
        None => false,
    }
}
