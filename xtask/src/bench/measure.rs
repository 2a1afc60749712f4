//! The servers (nginx, iperf3) and the clients (wrk, iperf3) of the data
//! plane tests, with CPU accounting from /proc/stat.

use std::{
    fs,
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{
    datapath::{Bed, Family, Target},
    procs::{self, Background, Cpu},
};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
/// Slack on top of a client's own duration before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(20);

/// nginx and the iperf3 servers of one datapath; stopped on drop.
pub struct Servers {
    _nginx: Background,
    _iperf: Background,
    _iperf_ext: Background,
}

impl Servers {
    /// Starts the servers and waits until they answer through the datapath.
    pub fn start(bed: &Bed) -> Result<Self> {
        let ns = bed.server_ns();
        let nginx = nginx(bed, &ns)?;
        let iperf = iperf_server(&ns)?;
        let ext = bed.topo().ext();
        let iperf_ext = iperf_server(&ext)?;
        wait_listening(&ns, 5201)?;
        wait_listening(&ext, 5201)?;
        wait_http(&ext, &bed.http())?;
        if bed.dual() {
            wait_http(&ext, &bed.http_in(Family::V6))?;
        }
        Ok(Servers {
            _nginx: nginx,
            _iperf: iperf,
            _iperf_ext: iperf_ext,
        })
    }
}

fn nginx(bed: &Bed, ns: &str) -> Result<Background> {
    let dir = bed.topo().tmp().join("nginx");
    nginx_in(&dir, ns, bed.http_listen_port(), bed.dual())
}

/// nginx (see `nginx_conf`) in namespace `ns` on `port` (`dual`: IPv6
/// too), its files in `dir`.
pub fn nginx_in(dir: &Path, ns: &str, port: u16, dual: bool) -> Result<Background> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(&dir.to_string_lossy(), port, dual))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let mut c = procs::in_ns_on(ns, Cpu::Server, "nginx");
    c.arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Background::spawn("nginx", &mut c)
}

/// One process (no master), small fixed body, no logs: the server should
/// cost as little as possible so the datapath's share shows. The IPv6
/// socket only on dual-stack beds: the IPv4 figures stay comparable with
/// earlier runs.
fn nginx_conf(dir: &str, port: u16, dual: bool) -> String {
    let listen6 = if dual {
        format!("\n    listen [::]:{port} ipv6only=on backlog=4096;")
    } else {
        String::new()
    };
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen {port} backlog=4096;{listen6}
    location / {{ return 200 \"ok\\n\"; }}
  }}
}}
"
    )
}

fn iperf_server(ns: &str) -> Result<Background> {
    let mut c = procs::in_ns_on(ns, Cpu::Server, "iperf3");
    c.args(["-s", "-p", "5201"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Background::spawn("iperf3 server", &mut c)
}

fn wait_listening(ns: &str, port: u16) -> Result<()> {
    let filter = format!("sport = :{port}");
    poll(READY_TIMEOUT, || {
        let out = procs::run_within(
            procs::in_ns(ns, "ss").args(["-Hltn", &filter]),
            READY_TIMEOUT,
        )?;
        Ok(!out.trim().is_empty())
    })
    .with_context(|| format!("nothing listens on port {port} in {ns}"))
}

pub fn wait_http(ns: &str, target: &Target) -> Result<()> {
    let url = target.url();
    poll(READY_TIMEOUT, || {
        let mut curl = procs::in_ns(ns, "curl");
        curl.args(["-s", "-g", "-m", "1", &url]);
        let out = procs::output_within(&mut curl, Duration::from_secs(5))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "ok")
    })
    .with_context(|| format!("{url} does not answer from {ns}"))
}

/// Calls `ready` until it returns true or `limit` passes.
fn poll(limit: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready()? {
            return Ok(());
        }
        thread::sleep(POLL);
    }
    bail!("not ready after {limit:?}")
}

/// Busy and total CPU time of the machine (all CPUs), in seconds.
#[derive(Clone, Copy)]
pub struct CpuTimes {
    busy: f64,
}

impl CpuTimes {
    pub fn now() -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let line = stat.lines().next().unwrap_or_default();
        let fields: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() < 8 {
            bail!("unexpected /proc/stat line: {line}");
        }
        // user nice system idle iowait irq softirq steal: all but idle+iowait.
        let busy = fields[..8].iter().sum::<f64>() - fields[3] - fields[4];
        Ok(CpuTimes {
            busy: busy / clock_ticks(),
        })
    }

    /// Busy CPU seconds since `self`.
    pub fn busy_since(self) -> Result<f64> {
        Ok(CpuTimes::now()?.busy - self.busy)
    }
}

/// Busy share of all CPUs over one second, %, while the benchmark idles:
/// what other work on the machine takes.
pub fn idle_load() -> Result<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let start = CpuTimes::now()?;
    thread::sleep(Duration::from_secs(1));
    Ok(start.busy_since()? * 100.0 / cpus)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Result of one iperf3 run.
pub struct Tcp {
    pub gbps: f64,
    pub cpu_s_per_gb: f64,
}

/// `iperf3 -c` from `client_ns` to `to` for `secs`.
pub fn iperf(client_ns: &str, to: &Target, secs: u32) -> Result<Tcp> {
    let mut c = procs::in_ns_on(client_ns, Cpu::Client, "iperf3");
    c.args(["-c", to.ip, "-p", &to.port.to_string(), "-J"])
        .args(["-t", &secs.to_string(), "--connect-timeout", "3000"]);
    let cpu = CpuTimes::now()?;
    let out = procs::output_within(&mut c, Duration::from_secs(secs.into()) + CLIENT_SLACK)?;
    let busy = cpu.busy_since()?;
    let json: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = json.get("error").and_then(Value::as_str) {
        bail!("iperf3 from {client_ns} to {}:{}: {err}", to.ip, to.port);
    }
    let received = &json["end"]["sum_received"];
    let (Some(bytes), Some(bps)) = (
        received["bytes"].as_f64(),
        received["bits_per_second"].as_f64(),
    ) else {
        bail!("iperf3 JSON without end.sum_received");
    };
    if bytes <= 0.0 {
        bail!("iperf3 from {client_ns} moved no data");
    }
    Ok(Tcp {
        gbps: bps / 1e9,
        cpu_s_per_gb: busy / (bytes / 1e9),
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HttpMode {
    /// One keep-alive connection: latency.
    Latency,
    /// 50 keep-alive connections: requests/s.
    KeepAlive,
    /// 50 connections, `Connection: close`: new connections/s.
    Close,
}

/// Result of one wrk run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Http {
    pub rate: f64,
    pub requests: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
    pub cpu_us_per_req: f64,
}

impl Http {
    /// Several runs as one: total requests over total time; latencies and
    /// CPU weighted by requests.
    pub fn combine(parts: &[Http]) -> Http {
        let requests: f64 = parts.iter().map(|p| p.requests).sum();
        let secs: f64 = parts.iter().map(|p| p.requests / p.rate.max(1e-9)).sum();
        let weighted = |f: fn(&Http) -> f64| {
            parts.iter().map(|p| f(p) * p.requests).sum::<f64>() / requests.max(1e-9)
        };
        Http {
            rate: requests / secs.max(1e-9),
            requests,
            p50_us: weighted(|p| p.p50_us),
            p99_us: weighted(|p| p.p99_us),
            errors: parts.iter().map(|p| p.errors).sum(),
            cpu_us_per_req: weighted(|p| p.cpu_us_per_req),
        }
    }
}

/// wrk from `ns` against `to` for `secs`.
pub fn wrk(ns: &str, to: &Target, mode: HttpMode, secs: u32) -> Result<Http> {
    let conns = if mode == HttpMode::Latency { "1" } else { "50" };
    let mut c = procs::in_ns_on(ns, Cpu::Client, "wrk");
    c.args([
        "-t1",
        "-c",
        conns,
        "-d",
        &format!("{secs}s"),
        "--latency",
        "--timeout",
        "2s",
    ]);
    if mode == HttpMode::Close {
        c.args(["-H", "Connection: close"]);
    }
    c.arg(to.url());
    let cpu = CpuTimes::now()?;
    let out = procs::output_within(&mut c, Duration::from_secs(secs.into()) + CLIENT_SLACK)?;
    let busy = cpu.busy_since()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut http = parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    if http.requests == 0.0 {
        bail!("wrk completed no request:\n{text}");
    }
    http.cpu_us_per_req = busy * 1e6 / http.requests;
    Ok(http)
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Result<Http> {
    let mut http = Http::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => http.p50_us = duration_us(v)?,
            ["99%", v] => http.p99_us = duration_us(v)?,
            ["Requests/sec:", v] => http.rate = v.parse()?,
            [n, "requests", "in", ..] => http.requests = n.parse()?,
            ["Socket", "errors:", rest @ ..] => http.errors += count_errors(rest),
            ["Non-2xx", "or", "3xx", "responses:", n] => http.errors += n.parse::<u64>()?,
            _ => {}
        }
    }
    if http.rate == 0.0 || http.p50_us == 0.0 {
        bail!("no Requests/sec or latency distribution");
    }
    Ok(http)
}

/// `connect 0, read 3, write 0, timeout 1` → 4.
fn count_errors(words: &[&str]) -> u64 {
    words
        .iter()
        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
        .sum()
}

/// wrk's `45.00us`, `1.02ms`, `2.00s` → µs.
fn duration_us(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration {v}")
    };
    Ok(num.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ http://198.18.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    47.11us   13.97us   1.02ms   94.60%
    Req/Sec    20.49k     1.03k   21.90k    78.43%
  Latency Distribution
     50%   45.00us
     75%   48.00us
     90%   54.00us
     99%    1.50ms
  102004 requests in 5.10s, 15.67MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  20000.70
Transfer/sec:      3.07MB
";

    #[test]
    fn parses_wrk_latency_report() -> Result<()> {
        let http = parse_wrk(WRK)?;
        assert_eq!(http.rate, 20000.70);
        assert_eq!(http.requests, 102004.0);
        assert_eq!(http.p50_us, 45.0);
        assert_eq!(http.p99_us, 1500.0);
        assert_eq!(http.errors, 9);
        Ok(())
    }

    #[test]
    fn combined_runs_weigh_by_requests() {
        let run = |rate: f64, requests: f64, p50_us: f64| Http {
            rate,
            requests,
            p50_us,
            p99_us: p50_us,
            errors: 1,
            cpu_us_per_req: 10.0,
        };
        let all = Http::combine(&[run(100.0, 100.0, 10.0), run(300.0, 300.0, 30.0)]);
        assert_eq!(all.rate, 200.0);
        assert_eq!(all.requests, 400.0);
        assert_eq!(all.p50_us, 25.0);
        assert_eq!(all.errors, 2);
        assert_eq!(all.cpu_us_per_req, 10.0);
    }

    #[test]
    fn wrk_report_without_numbers_is_an_error() {
        assert!(parse_wrk("unable to connect to 198.18.0.1:8080").is_err());
    }

    #[test]
    fn nginx_conf_listens_and_logs_nowhere_global() {
        let conf = nginx_conf("/tmp/x", 80, false);
        assert!(conf.contains("listen 80 backlog=4096;"));
        assert!(!conf.contains("[::]"));
        assert!(nginx_conf("/tmp/x", 80, true).contains("listen [::]:80 ipv6only=on"));
        assert!(conf.contains("return 200 \"ok\\n\";"));
        assert!(conf.contains("pid /tmp/x/nginx.pid;"));
    }
}
