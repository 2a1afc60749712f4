//! Child processes: every command runs in its own process group (so a
//! terminal Ctrl-C reaches only the benchmark, which then cleans up), every
//! wait is bounded, and long-running servers are killed by PID on drop.

use std::{
    io::Read,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::cmd;

const POLL: Duration = Duration::from_millis(20);
const TERM_GRACE: Duration = Duration::from_secs(3);

/// `program` in its own process group.
pub fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    c.process_group(0);
    c
}

/// `ip netns exec NS program` (ip execs the program: same PID).
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = command("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// Which CPU a load-generating process is pinned to.
#[derive(Clone, Copy)]
pub enum Cpu {
    /// Clients (wrk, iperf3 -c).
    Client,
    /// Servers (nginx, iperf3 -s).
    Server,
}

/// `ip netns exec NS nice -n -10 taskset -c CPU program`: clients on CPU 0,
/// servers on CPU 1, so runs do not depend on where the scheduler puts
/// them; at a higher priority than background work (builds) so that other
/// load on the machine disturbs the comparison less. Unpinned on one CPU.
pub fn in_ns_on(ns: &str, cpu: Cpu, program: &str) -> Command {
    let mut c = in_ns(ns, "nice");
    c.args(["-n", "-10"]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let cpu = match cpu {
            Cpu::Client => "0",
            Cpu::Server => "1",
        };
        c.args(["taskset", "-c", cpu]);
    }
    c.arg(program);
    c
}

/// Runs `c` with captured output, killing it after `limit`.
pub fn output_within(c: &mut Command, limit: Duration) -> Result<Output> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::describe(c)))?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = wait_within(&mut child, limit);
    let output = Output {
        status: status.with_context(|| format!("`{}`", cmd::describe(c)))?,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    Ok(output)
}

/// Like `output_within`, failing unless the command exits 0; returns stdout.
pub fn run_within(c: &mut Command, limit: Duration) -> Result<String> {
    let out = output_within(c, limit)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd::describe(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` at most `limit`; kills and reaps it after that.
/// Sleeps on a pidfd, so the exit is seen at once (the control-plane
/// timings depend on it) without busy polling.
fn wait_within(child: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    let pidfd = pidfd_open(child.id());
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {limit:?}, killed");
        }
        match &pidfd {
            Some(fd) => wait_readable(fd, left.min(Duration::from_secs(1))),
            None => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A pidfd of our (not yet reaped) child; `None` on kernels without one.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a PID and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd; we are its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks until `fd` is readable (the process exited) or `timeout`.
fn wait_readable(fd: &OwnedFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe {
        libc::poll(&mut pfd, 1, ms);
    }
}

/// A background process (server, daemon) stopped by PID on drop:
/// SIGTERM, a grace period, then SIGKILL.
pub struct Background {
    name: String,
    child: Option<Child>,
}

impl Background {
    pub fn spawn(name: &str, c: &mut Command) -> Result<Self> {
        let child = c
            .spawn()
            .with_context(|| format!("cannot start {name}: `{}`", cmd::describe(c)))?;
        Ok(Background {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => bail!("{} exited ({status})", self.name),
            Some(Err(e)) => Err(e).with_context(|| format!("cannot wait for {}", self.name)),
            None => bail!("{} was stopped", self.name),
        }
    }

    /// Waits up to `limit` for the process to exit by itself, then stops it.
    pub fn stop_within(&mut self, limit: Duration) {
        if let Some(child) = self.child.as_mut() {
            let deadline = Instant::now() + limit;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.stop_with_grace(TERM_GRACE);
    }

    /// SIGTERM, up to `grace` for the process to exit, then SIGKILL.
    pub fn stop_with_grace(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            terminate(&child);
            let deadline = Instant::now() + grace;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM to our own, not yet reaped child (so the PID cannot be reused).
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a PID we own; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}
