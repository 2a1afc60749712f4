//! `netd exec NAME -- CMD...`: the CLI joins the container's namespace
//! itself (the daemon only tells it where the namespace is) and replaces
//! itself with the command, so signals, stdin and the exit code are the
//! command's own.

use std::{os::unix::process::CommandExt, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Ctx;
use crate::{api::Request, engine::requests::ContainerRef, kernel::netns};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Container name.
    pub name: String,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs, ctx: &Ctx) -> Result<i32> {
    let container = ctx.call(&Request::ContainerInspect {
        container: ContainerRef::Name(args.name.clone()),
    })?;
    let Some(path) = container["netns"].as_str().map(PathBuf::from) else {
        bail!("the daemon did not report a namespace for {}", args.name);
    };
    netns::enter(&path)?;
    let Some((program, rest)) = args.command.split_first() else {
        bail!("no command given: use `netd exec NAME -- CMD [ARGS...]`");
    };
    let err = Command::new(program).args(rest).exec();
    Err(err).with_context(|| format!("running {program} in container {}", args.name))
}
