//! Host-local access to published ports: a process in the host's network
//! namespace connecting to 127.0.0.1:PORT or HOSTIP:PORT gets its socket
//! pointed at the container directly (no userland proxy, no per-packet
//! NAT). The hooks attach to the cgroup v2 root, so they check the netns
//! cookie first and leave every other namespace alone.

use aya_ebpf::{
    btf_maps::SkStorage,
    helpers::generated::bpf_get_netns_cookie,
    macros::{btf_map, cgroup_sock_addr},
    programs::SockAddrContext,
};
use netd_common::{IPPROTO_TCP, IPPROTO_UDP, PortMapKey, SockOrigin};

use crate::{
    maps::{NETD_HOST_ADDRS, NETD_PORTMAPS, config},
    packet::is_loopback,
};

/// What each redirected socket asked for (see `SockOrigin`).
#[btf_map]
static NETD_SOCK_ORIGIN: SkStorage<SockOrigin> = SkStorage::new();

/// Allow the syscall (the hooks never refuse one).
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn netd_connect4(ctx: SockAddrContext) -> i32 {
    redirect_to_container(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn netd_sendmsg4(ctx: SockAddrContext) -> i32 {
    redirect_to_container(&ctx);
    ALLOW
}

/// getpeername() of a redirected socket: the address the application
/// connected to, not the container's.
#[cgroup_sock_addr(getpeername4)]
pub fn netd_getpeername4(ctx: SockAddrContext) -> i32 {
    show_original(&ctx);
    ALLOW
}

/// recvmsg() on a redirected UDP socket: datagrams from the container look
/// like they come from the address the application sent to.
#[cgroup_sock_addr(recvmsg4)]
pub fn netd_recvmsg4(ctx: SockAddrContext) -> i32 {
    show_original(&ctx);
    ALLOW
}

#[inline(always)]
fn show_original(ctx: &SockAddrContext) {
    // SAFETY: the storage helper takes the context's socket as is.
    let origin = unsafe { NETD_SOCK_ORIGIN.get_ptr_mut(ctx) };
    if origin.is_null() {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: non-null storage pointer and the kernel's context pointer.
    unsafe {
        if (*sa).user_ip4 == (*origin).nat_ip && (*sa).user_port as u16 == (*origin).nat_port {
            (*sa).user_ip4 = (*origin).orig_ip;
            (*sa).user_port = u32::from((*origin).orig_port);
        }
    }
}

#[inline(always)]
fn redirect_to_container(ctx: &SockAddrContext) {
    let Some(cfg) = config() else { return };
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    if cfg.host_netns_cookie == 0 || cookie != cfg.host_netns_cookie {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context pointer the kernel handed us.
    let (ip, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16, (*sa).protocol) };
    let proto = proto as u8;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return;
    }
    let mut key = PortMapKey {
        host_ip: ip,
        host_port: port,
        proto,
        pad: 0,
    };
    let mut target = NETD_PORTMAPS.get_ptr(key);
    if target.is_none() && (is_loopback(ip) || NETD_HOST_ADDRS.get_ptr(ip).is_some()) {
        key.host_ip = 0;
        target = NETD_PORTMAPS.get_ptr(key);
    }
    if let Some(target) = target {
        let (nat_ip, nat_port) = unsafe { ((*target).container_ip, (*target).container_port) };
        let mut origin = SockOrigin {
            orig_ip: ip,
            nat_ip,
            orig_port: port,
            nat_port,
        };
        unsafe {
            let slot = NETD_SOCK_ORIGIN.get_or_insert_ptr_mut(ctx, Some(&mut origin));
            if !slot.is_null() {
                *slot = origin;
            }
            (*sa).user_ip4 = nat_ip;
            (*sa).user_port = u32::from(nat_port);
        }
    }
}
