//! The IPv6 part: netd, Docker's ip6tables rules and nftables (NAT66) on a
//! dual-stack testbed, each test run over IPv4 and over IPv6 on the same
//! testbed, so that netd's IPv6 can be set against its own IPv4 (target:
//! within 5 %) and against ip6tables (target: ahead by at least netd's
//! IPv4 margin over iptables), with the drift between runs cancelled by
//! same-repeat ratios.

use std::{fmt::Write as _, path::Path, time::Instant};

use anyhow::{Context, Result};

use super::{
    Plan,
    datapath::{Bed, Family, Kind},
    interrupt,
    measure::{self, Http, HttpMode, Servers},
    report::{cell_text, verdict},
    results::{Metric, Samples},
    stats::median,
};

/// The datapaths with an IPv6 equivalent of their IPv4 rules, and the
/// host itself (no forwarding, no NAT): the kernel's own IPv6/IPv4 ratio,
/// which the clients and servers of every datapath pay too.
const KINDS: [Kind; 5] = [
    Kind::Netd,
    Kind::Iptables,
    Kind::Nftables,
    Kind::Host,
    Kind::NetdBaseline,
];

/// netd IPv6 against netd IPv4: at least this fraction.
const SAME_AS_V4: f64 = 0.95;

/// The datapaths among `kinds` this part measures.
pub fn kinds_of(kinds: &[Kind]) -> Vec<Kind> {
    KINDS.into_iter().filter(|k| kinds.contains(k)).collect()
}

/// Every repeat measures every datapath, the order rotating.
pub fn run(netd_bin: &Path, plan: &Plan) -> Result<Samples> {
    let kinds = kinds_of(&plan.kinds);
    let mut out = Samples::default();
    for r in 0..plan.repeats {
        for i in 0..kinds.len() {
            interrupt::check()?;
            let kind = kinds[(i + r as usize) % kinds.len()];
            println!("==> ipv6 {}/{}: {kind}", r + 1, plan.repeats);
            let t = Instant::now();
            bed_run(kind, plan.bin_for(kind, netd_bin)?, plan, r, &mut out)
                .with_context(|| format!("the IPv6 part on {kind}"))?;
            println!("    ({:.1} s)", t.elapsed().as_secs_f64());
        }
    }
    Ok(out)
}

/// One dual-stack testbed: the connection rate (two runs per family, in
/// the order v4 v6 v6 v4, or its mirror on odd repeats), then TCP in and
/// out per family.
fn bed_run(kind: Kind, bin: &Path, plan: &Plan, repeat: u32, out: &mut Samples) -> Result<()> {
    let mut bed = Bed::up_dual(kind, bin)?;
    let _servers = Servers::start(&bed)?;
    let (a, b) = if repeat.is_multiple_of(2) {
        (Family::V4, Family::V6)
    } else {
        (Family::V6, Family::V4)
    };
    let mut runs: Vec<(Family, Http)> = Vec::new();
    for family in [a, b, b, a] {
        interrupt::check()?;
        bed.fresh_source()?;
        let http = measure::wrk(
            &bed.topo().ext(),
            &bed.http_in(family),
            HttpMode::Close,
            plan.conn_secs(),
        )?;
        println!(
            "    {:<11} {} new conn/s {:>9.0}",
            kind.name(),
            family.name(),
            http.rate
        );
        runs.push((family, http));
    }
    for family in [a, b] {
        let parts: Vec<Http> = runs
            .iter()
            .filter(|(f, _)| *f == family)
            .map(|(_, h)| h.clone())
            .collect();
        let all = Http::combine(&parts);
        out.push(repeat, kind, Metric::FamilyConn(family), all.rate);
        out.push(
            repeat,
            kind,
            Metric::FamilyConnCpu(family),
            all.cpu_us_per_req,
        );
    }
    for family in [a, b] {
        interrupt::check()?;
        let inbound = iperf(&bed, &bed.topo().ext(), family, true, plan)?;
        out.push(repeat, kind, Metric::FamilyTcpIn(family), inbound);
        interrupt::check()?;
        let client = bed.outbound_client_ns();
        let outbound = iperf(&bed, &client, family, false, plan)?;
        out.push(repeat, kind, Metric::FamilyTcpOut(family), outbound);
    }
    Ok(())
}

/// Gbit/s of one iperf3 run: inbound (ext to the published port) or
/// outbound (the container to ext).
fn iperf(bed: &Bed, client: &str, family: Family, inbound: bool, plan: &Plan) -> Result<f64> {
    let to = if inbound {
        bed.iperf_in_family(family)
    } else {
        Bed::ext_server_in(family)
    };
    let tcp = measure::iperf(client, &to, plan.iperf_secs)?;
    println!(
        "    {:<11} {} iperf3 {:<8} {:>6.2} Gbit/s",
        bed.kind.name(),
        family.name(),
        if inbound { "inbound" } else { "outbound" },
        tcp.gbps
    );
    Ok(tcp.gbps)
}

/// The report's section: the figures per family, then the targets.
pub fn markdown(kinds: &[Kind], s: &Samples, md: &mut String) {
    let n = s.repeats().len();
    let _ = writeln!(
        md,
        "### IPv6 against IPv4, ip6tables and nftables (dual-stack testbed)\n\n\
         Each datapath on a dual-stack testbed (2001:2::/64 between ext and host, \
         containers in fd00:172:17::/64 and 172.17.0.0/16), every test over both \
         families on the same testbed; median over {n} repeat(s), min–max in \
         brackets. ip6tables: Docker's rules with `ip6tables: true` (DNAT in DOCKER, \
         MASQUERADE); nftables: the same in `table ip6 nat` with a port map.\n"
    );
    md.push_str("| metric | family | unit |");
    for k in kinds {
        let _ = write!(md, " {k} |");
    }
    md.push_str("\n| --- | --- | --- |");
    md.push_str(&" ---: |".repeat(kinds.len()));
    md.push('\n');
    for test in Metric::family_tests() {
        for family in [Family::V4, Family::V6] {
            let metric = test(family);
            let spec = metric.spec();
            let arrow = if spec.higher_is_better { "↑" } else { "↓" };
            let _ = write!(
                md,
                "| {} | {} | {} {arrow} |",
                spec.label,
                family.name(),
                spec.unit
            );
            for &k in kinds {
                let cell = s
                    .summary(k, metric)
                    .map_or("-".into(), |c| cell_text(&c, spec.decimals));
                let _ = write!(md, " {cell} |");
            }
            md.push('\n');
        }
    }
    md.push('\n');
    targets(s, md);
}

fn targets(s: &Samples, md: &mut String) {
    md.push_str("| target | measured (median of same-run ratios) | |\n| --- | --- | --- |\n");
    let netd = |m| (Kind::Netd, m);
    for (test, what) in [
        (Metric::FamilyConn as fn(Family) -> Metric, "new conn/s"),
        (Metric::FamilyTcpIn, "TCP inbound"),
        (Metric::FamilyTcpOut, "TCP outbound"),
    ] {
        let v6_v4 = |k: Kind| median(&s.ratios((k, test(Family::V6)), (k, test(Family::V4))));
        let (ours, kernel) = (v6_v4(Kind::Netd), v6_v4(Kind::Host));
        let _ = writeln!(
            md,
            "| netd IPv6 {what} within 5 % of netd IPv4 | {}{} | {} |",
            ours.map_or("-".into(), |r| format!("{r:.3}×")),
            kernel.map_or(String::new(), |r| format!(" (the host itself: {r:.3}×)")),
            verdict(ours.map(|r| r >= SAME_AS_V4))
        );
        // The target is against ip6tables; nftables is reported.
        for (v4_other, v6_other, is_target) in [
            (Kind::Iptables, "ip6tables", true),
            (Kind::Nftables, "nftables", false),
        ] {
            let margin = |f: Family| median(&s.ratios(netd(test(f)), (v4_other, test(f))));
            let (m4, m6) = (margin(Family::V4), margin(Family::V6));
            let v4_name = v4_other.name();
            let _ = writeln!(
                md,
                "| {what}: netd/{v6_other} (IPv6) ≥ netd/{v4_name} (IPv4) | {} | {} |",
                match (m6, m4) {
                    (Some(m6), Some(m4)) => format!("{m6:.2}× against {m4:.2}×"),
                    _ => "-".into(),
                },
                if is_target {
                    verdict(m6.zip(m4).map(|(m6, m4)| m6 >= m4))
                } else {
                    "(reported)"
                }
            );
        }
    }
    md.push('\n');
}
