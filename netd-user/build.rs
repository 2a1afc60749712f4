//! Builds the eBPF object with aya-build, using the toolchain linked by
//! `cargo xtask` (Debian's rustc with matching library sources; see
//! docs/ARCHITECTURE.md, "Building").
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../netd-common/src");
    let toolchain = std::env::var("NETD_BPF_TOOLCHAIN").unwrap_or_else(|_| "netd-bpf".into());
    println!("cargo:rerun-if-env-changed=NETD_BPF_TOOLCHAIN");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir: "../netd-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
