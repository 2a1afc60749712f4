//! `netd cni`: the CNI plugin's chores.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cni::install;

#[derive(Subcommand, Debug)]
pub enum CniCommand {
    /// Install the CNI plugin (netd-cni) as `netd` in a CNI bin dir.
    Install(InstallArgs),
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The runtime's CNI plugin dir.
    #[arg(long, default_value = install::DEFAULT_BIN_DIR)]
    pub dir: PathBuf,
    /// The plugin binary; default: netd-cni next to this netd.
    #[arg(long)]
    pub from: Option<PathBuf>,
}

pub fn run(cmd: CniCommand) -> Result<()> {
    match cmd {
        CniCommand::Install(args) => {
            let source = match args.from {
                Some(path) => path,
                None => install::default_source()?,
            };
            let target = install::install(&source, &args.dir)?;
            println!("{}", target.display());
            Ok(())
        }
    }
}
