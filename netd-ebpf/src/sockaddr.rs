//! Redirecting host sockets to published ports' containers, and showing
//! the application the address it asked for: what the socket hooks do.
//! The original destination is kept in socket storage
//! (`NETD_SOCK_ORIGIN`).

use core::ptr;

use aya_ebpf::{helpers::generated::bpf_get_netns_cookie, programs::SockAddrContext};
use netd_common::{SockOrigin, SockOrigin6};

use crate::{
    maps::{NETD_SOCK_ORIGIN, NETD_SOCK_ORIGIN6, config},
    published::{self, Asker},
};

/// getpeername()/recvmsg() of a redirected socket: the container's address
/// becomes the one the application used.
#[inline(always)]
pub fn show_original(ctx: &SockAddrContext) {
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

/// connect()/sendmsg() from the host's namespace to a published port:
/// the socket's destination becomes the container's, and the original is
/// noted in the socket's storage.
#[inline(always)]
pub fn redirect_to_container(ctx: &SockAddrContext) {
    let Some(cfg) = config() else { return };
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    if cfg.host_netns_cookie == 0 || cookie != cfg.host_netns_cookie {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context pointer the kernel handed us.
    let (ip, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16, (*sa).protocol) };
    let Some(target) = published::lookup(ip, port, proto as u8, Asker::HostSocket) else {
        return;
    };
    let mut origin = SockOrigin {
        orig_ip: ip,
        nat_ip: target.container_ip,
        orig_port: port,
        nat_port: target.container_port,
    };
    // SAFETY: the storage helper takes the context's socket as is; the
    // slot it returns is checked for null; `sa` is the kernel's context.
    unsafe {
        let slot = NETD_SOCK_ORIGIN.get_or_insert_ptr_mut(ctx, Some(&mut origin));
        if !slot.is_null() {
            // Copied, not assigned: LLVM made the assignment a call to a
            // byte-at-a-time memmove (it cannot tell the two apart).
            ptr::copy_nonoverlapping(&origin, slot, 1);
        }
        (*sa).user_ip4 = target.container_ip;
        (*sa).user_port = u32::from(target.container_port);
    }
}

/// The IPv6 socket address of a hook's context.
#[inline(always)]
fn user_ip6(ctx: &SockAddrContext) -> [u32; 4] {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel's context pointer; 4-byte loads, as it wants.
    unsafe {
        [
            (*sa).user_ip6[0],
            (*sa).user_ip6[1],
            (*sa).user_ip6[2],
            (*sa).user_ip6[3],
        ]
    }
}

#[inline(always)]
fn set_user_ip6(ctx: &SockAddrContext, ip: &[u32; 4]) {
    let sa = ctx.sock_addr;
    // SAFETY: as above, 4-byte stores.
    unsafe {
        (*sa).user_ip6[0] = ip[0];
        (*sa).user_ip6[1] = ip[1];
        (*sa).user_ip6[2] = ip[2];
        (*sa).user_ip6[3] = ip[3];
    }
}

/// The second word of an IPv4-mapped address (::ffff:a.b.c.d), as the
/// context holds it (network order in memory).
const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The published port an IPv6 socket address names, and the container
/// address (in the socket's family) it goes to: for ::ffff:a.b.c.d, the
/// IPv4 mapping of a.b.c.d (the socket speaks IPv4 to the container's
/// IPv4 address, mapped), else the IPv6 one.
#[inline(always)]
fn target6(ip: &[u32; 4], port: u16, proto: u8) -> Option<([u32; 4], u16)> {
    if ip[0] == 0 && ip[1] == 0 && ip[2] == V4_MAPPED {
        let t = published::lookup(ip[3], port, proto, Asker::HostSocket)?;
        return Some(([0, 0, V4_MAPPED, t.container_ip], t.container_port));
    }
    // SAFETY: 16 bytes either way.
    let bytes: [u8; 16] = unsafe { core::mem::transmute(*ip) };
    let t = published::lookup6(&bytes, port, proto, Asker::HostSocket)?;
    // SAFETY: as above.
    let nat: [u32; 4] = unsafe { core::mem::transmute(t.container_ip) };
    Some((nat, t.container_port))
}

/// connect6()/sendmsg6() from the host's namespace to a published port on
/// ::1, a host IPv6 address or an IPv4-mapped one: the socket goes to the
/// container's address, the original noted in `NETD_SOCK_ORIGIN6`.
#[inline(always)]
pub fn redirect_to_container6(ctx: &SockAddrContext) {
    let Some(cfg) = config() else { return };
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    if cfg.host_netns_cookie == 0 || cookie != cfg.host_netns_cookie {
        return;
    }
    let sa = ctx.sock_addr;
    let ip = user_ip6(ctx);
    // SAFETY: the context pointer the kernel handed us.
    let (port, proto) = unsafe { ((*sa).user_port as u16, (*sa).protocol) };
    let Some((nat, nat_port)) = target6(&ip, port, proto as u8) else {
        return;
    };
    let mut origin = SockOrigin6 {
        orig_ip: ip,
        nat_ip: nat,
        orig_port: port,
        nat_port,
    };
    // SAFETY: the storage helper takes the context's socket as is; the
    // slot it returns is checked for null.
    unsafe {
        let slot = NETD_SOCK_ORIGIN6.get_or_insert_ptr_mut(ctx, Some(&mut origin));
        if !slot.is_null() {
            // Copied, not assigned: LLVM made the assignment a call to a
            // byte-at-a-time memmove (it cannot tell the two apart).
            ptr::copy_nonoverlapping(&origin, slot, 1);
        }
        (*sa).user_port = u32::from(nat_port);
    }
    set_user_ip6(ctx, &nat);
}

/// getpeername6()/recvmsg6() of a redirected IPv6 socket: the address the
/// application used. A UDP datagram to an IPv4-mapped address was sent
/// by the IPv4 path (`udp_sendmsg`, so `sendmsg4` noted it in
/// `NETD_SOCK_ORIGIN`); its answers arrive here, mapped.
#[inline(always)]
pub fn show_original6(ctx: &SockAddrContext) {
    let sa = ctx.sock_addr;
    let ip = user_ip6(ctx);
    // SAFETY: the storage helper takes the context's socket as is.
    let origin = unsafe { NETD_SOCK_ORIGIN6.get_ptr_mut(ctx) };
    if !origin.is_null() {
        // SAFETY: non-null storage pointer and the kernel's context pointer.
        unsafe {
            if ip == (*origin).nat_ip && (*sa).user_port as u16 == (*origin).nat_port {
                let orig = (*origin).orig_ip;
                (*sa).user_port = u32::from((*origin).orig_port);
                set_user_ip6(ctx, &orig);
                return;
            }
        }
    }
    if ip[0] != 0 || ip[1] != 0 || ip[2] != V4_MAPPED {
        return;
    }
    // SAFETY: as above.
    let origin = unsafe { NETD_SOCK_ORIGIN.get_ptr_mut(ctx) };
    if origin.is_null() {
        return;
    }
    // SAFETY: non-null storage pointer and the kernel's context pointer.
    unsafe {
        if ip[3] == (*origin).nat_ip && (*sa).user_port as u16 == (*origin).nat_port {
            let orig = [0, 0, V4_MAPPED, (*origin).orig_ip];
            (*sa).user_port = u32::from((*origin).orig_port);
            set_user_ip6(ctx, &orig);
        }
    }
}
