//! Redirecting host sockets to published ports' containers, and showing
//! the application the address it asked for: what the socket hooks do.
//! The original destination is kept in socket storage
//! (`NETD_SOCK_ORIGIN`).

use aya_ebpf::{helpers::generated::bpf_get_netns_cookie, programs::SockAddrContext};
use netd_common::SockOrigin;

use crate::{
    maps::{NETD_SOCK_ORIGIN, config},
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
            *slot = origin;
        }
        (*sa).user_ip4 = target.container_ip;
        (*sa).user_port = u32::from(target.container_port);
    }
}
