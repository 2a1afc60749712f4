//! Replacing the program of a pinned bpf link in place (`BPF_LINK_UPDATE`),
//! for the cgroup socket-hook links: aya offers it for tcx and XDP links
//! only. A restart (an upgrade among them) then runs the new hooks without
//! a moment in which host sockets go unredirected.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    os::unix::ffi::OsStrExt,
    path::Path,
};

use anyhow::{Context, Result};
use nix::libc;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// `bpf_attr` for BPF_OBJ_GET. The kernel refuses an attribute whose bytes
/// past the command's fields are not zero: the padding is a field.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// `bpf_attr` for BPF_LINK_UPDATE.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Makes the link pinned at `pin` run `prog` from now on.
pub fn update_pinned(pin: &Path, prog: BorrowedFd<'_>) -> Result<()> {
    let link = open_pinned(pin)?;
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..LinkUpdateAttr::default()
    };
    // SAFETY: attr is a live BPF_LINK_UPDATE attribute of the size passed.
    let rc = unsafe { sys_bpf(BPF_LINK_UPDATE, (&raw mut attr).cast(), size_of_val(&attr)) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("BPF_LINK_UPDATE of {}", pin.display()));
    }
    Ok(())
}

fn open_pinned(pin: &Path) -> Result<OwnedFd> {
    let path = CString::new(pin.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", pin.display()))?;
    let mut attr = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: attr points at `path`, which outlives the call.
    let fd = unsafe { sys_bpf(BPF_OBJ_GET, (&raw mut attr).cast(), size_of_val(&attr)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening the pinned link {}", pin.display()));
    }
    // SAFETY: the kernel just returned this fd to us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// # Safety
/// `attr` must point at a `size`-byte attribute valid for `cmd`.
unsafe fn sys_bpf(cmd: libc::c_long, attr: *mut libc::c_void, size: usize) -> libc::c_long {
    // SAFETY: as the caller promises.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}
