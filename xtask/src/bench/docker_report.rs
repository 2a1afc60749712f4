//! The Docker section of the report: targets, `docker run` times, memory
//! and new connections/s of Docker on netd against Docker with its own
//! iptables rules and docker-proxy.

use std::fmt::Write as _;

use super::{
    docker::Engine,
    docker_suite::{ConnSample, DockerResults, HTTP_PORT, range},
    report::{CONN_RATIO_TARGET, verdict},
    results::ports_label,
    stats::{Summary, median},
};

/// A row of the connection table: name, decimals, the value.
type Row = (&'static str, usize, fn(&ConnSample) -> f64);

const RUN_SPEEDUP_TARGET: f64 = 20.0;
const MEMORY_TARGET: f64 = 100.0;

impl DockerResults {
    fn run_summary(&self, engine: Engine, ports: u32, rm: bool) -> Option<Summary> {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter(|s| s.engine == engine && s.ports == ports)
            .map(|s| if rm { s.rm_ms } else { s.run_ms })
            .collect();
        Summary::of(v).ok()
    }

    /// Median over repeats of iptables / netd `docker run` time.
    fn run_speedup(&self, ports: u32) -> Option<f64> {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .filter(|s| s.engine == Engine::Iptables && s.ports == ports)
            .filter_map(|a| {
                let b = self.runs.iter().find(|b| {
                    b.engine == Engine::Netd && b.ports == ports && b.repeat == a.repeat
                })?;
                (b.run_ms > 0.0).then(|| a.run_ms / b.run_ms)
            })
            .collect();
        median(&ratios)
    }

    fn conn_summary(&self, engine: Engine, f: impl Fn(&ConnSample) -> f64) -> Option<Summary> {
        Summary::of(
            self.conn
                .iter()
                .filter(|s| s.engine == engine)
                .map(f)
                .collect(),
        )
        .ok()
    }

    /// Median over repeats of netd / iptables new connections/s.
    fn conn_ratio(&self) -> Option<f64> {
        let ratios: Vec<f64> = self
            .conn
            .iter()
            .filter(|s| s.engine == Engine::Netd)
            .filter_map(|a| {
                let b = self
                    .conn
                    .iter()
                    .find(|b| b.engine == Engine::Iptables && b.repeat == a.repeat)?;
                (b.rate > 0.0).then(|| a.rate / b.rate)
            })
            .collect();
        median(&ratios)
    }

    /// The docker-proxies' memory against what publishing the same ports
    /// added to netd (RSS and map growth): what `docker run -p` costs on
    /// each. Neither side counts its fixed cost (dockerd; netfilter's
    /// conntrack table on one side, netd's preallocated conntrack maps on
    /// the other), which the report shows beside it.
    fn memory_ratio(&self) -> Option<f64> {
        let netd = self.memory.netd_growth_kib().max(1);
        (self.memory.proxies.processes > 0)
            .then(|| self.memory.proxies.pss_kib as f64 / netd as f64)
    }

    pub fn markdown(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "### Docker on netd against Docker with iptables and docker-proxy\n\n\
             Two dockerds (Debian docker.io) at once, each in its own testbed's host namespace: \
             `--iptables=true --userland-proxy=true` on the default bridge, and \
             `--iptables=false --userland-proxy=false --bridge=none` with the containers on a \
             netd network (`docker network create -d <plugin> --ipam-driver <plugin>`). \
             Plan: {}. Other load before the section: {:.0} % CPU.\n",
            self.plan, self.idle_load
        );
        self.targets(md);
        self.run_table(md);
        self.memory_text(md);
        self.conn_table(md);
    }

    fn targets(&self, md: &mut String) {
        md.push_str("| target | measured | |\n| --- | --- | --- |\n");
        let top = self.port_counts.iter().copied().max().unwrap_or(0);
        let speed = self.run_speedup(top);
        let _ = writeln!(
            md,
            "| `docker run -p` with {} ports ≥ {RUN_SPEEDUP_TARGET}× faster than with docker-proxy | {} | {} |",
            ports_label(top),
            match (
                self.run_summary(Engine::Iptables, top, false),
                self.run_summary(Engine::Netd, top, false),
                speed
            ) {
                (Some(a), Some(b), Some(s)) =>
                    format!("{:.0} ms against {:.0} ms: {s:.1}×", a.median, b.median),
                _ => "-".into(),
            },
            verdict(speed.map(|s| s >= RUN_SPEEDUP_TARGET))
        );
        let mem = self.memory_ratio();
        let m = &self.memory;
        let _ = writeln!(
            md,
            "| host memory the {} ports cost ≥ {MEMORY_TARGET}× less than with docker-proxy | {} | {} |",
            ports_label(m.ports),
            mem.map_or("-".into(), |r| format!(
                "{} docker-proxy processes, PSS {:.1} MiB, against what they added to netd \
                 ({:.1} MiB, RSS + maps): {r:.0}×; against netd's RSS growth plus all its map \
                 memory, the conntrack tables preallocated at start included ({:.1} MiB): {:.0}×",
                m.proxies.processes,
                m.proxies.pss_kib as f64 / 1024.0,
                m.netd_growth_kib() as f64 / 1024.0,
                m.netd_kib() as f64 / 1024.0,
                m.proxies.pss_kib as f64 / m.netd_kib().max(1) as f64
            )),
            verdict(mem.map(|r| r >= MEMORY_TARGET))
        );
        let conn = self.conn_ratio();
        let _ = writeln!(
            md,
            "| new conn/s through a published port with {} other ports ≥ {CONN_RATIO_TARGET}× Docker's iptables (the datapath target) | {} | {} |\n",
            ports_label(self.conn_ports),
            conn.map_or("-".into(), |r| format!("{r:.2}×")),
            verdict(conn.map(|r| r >= CONN_RATIO_TARGET))
        );
    }

    fn run_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "**`docker run -d -p`** (`-p {}` and shorter ranges, busybox `sleep`; whole CLI \
             process, ms, median (min–max) over the repeats; `docker rm -f` after each, also timed):\n",
            range(self.port_counts.iter().copied().max().unwrap_or(1))
        );
        md.push_str(
            "| published ports | run, iptables + docker-proxy | run, netd | speed-up | rm -f, iptables + docker-proxy | rm -f, netd |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        let cell = |s: Option<Summary>| s.map_or("-".into(), |s| summary_text(&s, 0));
        for &ports in &self.port_counts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                ports_label(ports),
                cell(self.run_summary(Engine::Iptables, ports, false)),
                cell(self.run_summary(Engine::Netd, ports, false)),
                self.run_speedup(ports)
                    .map_or("-".into(), |s| format!("{s:.1}×")),
                cell(self.run_summary(Engine::Iptables, ports, true)),
                cell(self.run_summary(Engine::Netd, ports, true)),
            );
        }
        md.push('\n');
    }

    fn memory_text(&self, md: &mut String) {
        let m = &self.memory;
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            md,
            "**Host memory** with {} + 1 ports published (one container, `-p {} -p {HTTP_PORT}:80`):\n\n\
             | | processes | RSS MiB | PSS MiB |\n| --- | ---: | ---: | ---: |\n\
             | docker-proxy (iptables engine) | {} | {:.1} | {:.1} |\n\
             | netd daemon, before any container | 1 | {:.1} | {:.1} |\n\
             | netd daemon, ports published | 1 | {:.1} | {:.1} |\n\
             | netd maps (`bpftool map show` memlock, all of them) | | {:.1} | |\n\
             | dockerd, iptables engine (not counted) | 1 | {:.1} | {:.1} |\n\
             | dockerd, netd engine (not counted) | 1 | {:.1} | {:.1} |\n",
            ports_label(m.ports),
            range(m.ports),
            m.proxies.processes,
            mib(m.proxies.rss_kib),
            mib(m.proxies.pss_kib),
            mib(m.netd_before.rss_kib),
            mib(m.netd_before.pss_kib),
            mib(m.netd_after.rss_kib),
            mib(m.netd_after.pss_kib),
            mib(m.netd_maps_after_kib),
            mib(m.dockerd_iptables.rss_kib),
            mib(m.dockerd_iptables.pss_kib),
            mib(m.dockerd_netd.rss_kib),
            mib(m.dockerd_netd.pss_kib),
        );
        let _ = writeln!(
            md,
            "netd's side of the target is what the ports added: its RSS growth ({:.1} MiB) and \
             its map growth; its maps hold {:.1} MiB in all ({:.1} MiB before any container: the \
             conntrack tables are preallocated at start, a fixed cost like netfilter's conntrack \
             table on the Docker side, which is not counted either). The docker-proxies count \
             with their PSS (their RSS counts the shared binary once per process).\n",
            mib(m.netd_after.rss_kib.saturating_sub(m.netd_before.rss_kib)),
            mib(m.netd_maps_after_kib),
            mib(m.netd_maps_before_kib),
        );
    }

    fn conn_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "**New connections/s** from ext to 198.18.0.1:{HTTP_PORT} (→ nginx on port 80 in the \
             container's namespace, `Connection: close`, 50 connections) with {} other ports \
             published; Docker's nat table held {} DNAT rules, the measured port's at position {} \
             of the DOCKER chain. Median (min–max) over the repeats:\n",
            ports_label(self.conn_ports),
            self.dnat_rules,
            self.http_rule_position
                .map_or("?".into(), |p| p.to_string())
        );
        md.push_str(
            "| metric | iptables + docker-proxy | netd | netd/iptables |\n| --- | ---: | ---: | ---: |\n",
        );
        let cell = |e, d, f: fn(&ConnSample) -> f64| {
            self.conn_summary(e, f)
                .map_or("-".into(), |s| summary_text(&s, d))
        };
        let ratio = |f: fn(&ConnSample) -> f64| match (
            self.conn_summary(Engine::Netd, f),
            self.conn_summary(Engine::Iptables, f),
        ) {
            (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}×", a.median / b.median),
            _ => "-".into(),
        };
        let rows: [Row; 3] = [
            ("new conn/s ↑", 0, |s| s.rate),
            ("p99 latency µs ↓", 0, |s| s.p99_us),
            ("CPU per connection µs ↓", 1, |s| s.cpu_us_per_req),
        ];
        for (name, d, f) in rows {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} |",
                cell(Engine::Iptables, d, f),
                cell(Engine::Netd, d, f),
                if name.starts_with("new") {
                    self.conn_ratio().map_or("-".into(), |r| format!("{r:.2}×"))
                } else {
                    ratio(f)
                }
            );
        }
        let errors = |e: Engine| -> u64 {
            self.conn
                .iter()
                .filter(|s| s.engine == e)
                .map(|s| s.errors)
                .sum()
        };
        let _ = writeln!(
            md,
            "| wrk errors (all runs) | {} | {} | |\n",
            errors(Engine::Iptables),
            errors(Engine::Netd)
        );
    }
}

fn summary_text(s: &Summary, decimals: usize) -> String {
    if s.n < 2 {
        return format!("{:.*}", decimals, s.median);
    }
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, s.median, decimals, s.min, decimals, s.max
    )
}
