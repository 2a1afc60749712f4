//! bpftool queries about netd's pinned objects, and BPF run-time stats
//! enabled through BPF_ENABLE_STATS: the kernel keeps them on only while
//! the returned fd is open, so they switch off even if we are killed (no
//! global sysctl to restore).

use std::{
    fs,
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{procs, results::MapMem};

const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;
const LIMIT: Duration = Duration::from_secs(60);

/// Run-time stats are on while this lives.
pub struct StatsGuard {
    _fd: OwnedFd,
}

pub fn enable_stats() -> Result<StatsGuard> {
    #[repr(C)]
    struct Attr {
        kind: u32,
    }
    let attr = Attr {
        kind: BPF_STATS_RUN_TIME,
    };
    // SAFETY: bpf(2) reads `size_of::<Attr>()` bytes from a live struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if fd < 0 {
        bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).context("BPF_ENABLE_STATS returned a bad fd")?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(StatsGuard {
        _fd: unsafe { OwnedFd::from_raw_fd(fd) },
    })
}

fn bpftool(args: &[&str], path: &Path) -> Result<Value> {
    let mut c = procs::command("bpftool");
    c.arg("-j").args(args).arg(path);
    let out = procs::run_within(&mut c, LIMIT)?;
    serde_json::from_str(&out).with_context(|| format!("bpftool {args:?}: not JSON"))
}

/// Counters of one program, found through its pinned links.
pub struct ProgRun {
    pub id: u64,
    pub links: Vec<String>,
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// The programs behind the links pinned under `<bpffs>/links`, once each
/// (one program serves every container's veth).
pub fn link_progs(bpffs: &Path) -> Result<Vec<ProgRun>> {
    let mut runs: Vec<ProgRun> = Vec::new();
    for pin in pins(&bpffs.join("links"))? {
        let link = bpftool(&["link", "show", "pinned"], &pin)?;
        let Some(id) = link["prog_id"].as_u64() else {
            continue;
        };
        if let Some(known) = runs.iter_mut().find(|r| r.id == id) {
            known.links.push(file_name(&pin));
            continue;
        }
        let mut c = procs::command("bpftool");
        c.args(["-j", "prog", "show", "id", &id.to_string()]);
        let prog: Value = serde_json::from_str(&procs::run_within(&mut c, LIMIT)?)?;
        runs.push(ProgRun {
            id,
            links: vec![file_name(&pin)],
            name: prog["name"].as_str().unwrap_or("?").to_owned(),
            run_cnt: prog["run_cnt"].as_u64().unwrap_or(0),
            run_time_ns: prog["run_time_ns"].as_u64().unwrap_or(0),
        });
    }
    Ok(runs)
}

/// Every map pinned directly in `bpffs`.
pub fn maps(bpffs: &Path) -> Result<Vec<MapMem>> {
    let mut maps = Vec::new();
    for pin in pins(bpffs)? {
        let map = bpftool(&["map", "show", "pinned"], &pin)?;
        maps.push(MapMem {
            name: file_name(&pin),
            kind: map["type"].as_str().unwrap_or("?").to_owned(),
            max_entries: map["max_entries"].as_u64().unwrap_or(0),
            bytes_memlock: map["bytes_memlock"].as_u64().unwrap_or(0),
        });
    }
    Ok(maps)
}

/// Number of entries of a pinned map (one `bpftool map dump`).
pub fn count_entries(pin: &Path) -> Result<u64> {
    let dump = bpftool(&["map", "dump", "pinned"], pin)?;
    match dump.as_array() {
        Some(entries) => Ok(entries.len() as u64),
        None => bail!("bpftool map dump of {} is not a list", pin.display()),
    }
}

/// Regular files (pins) directly in `dir`, sorted.
fn pins(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut pins: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    pins.sort();
    Ok(pins)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
