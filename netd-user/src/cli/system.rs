//! `netd status`, `netd stats`, `netd down`.

use anyhow::Result;
use serde_json::Value;

use super::{Ctx, table};
use crate::api::Request;

pub fn status(ctx: &Ctx) -> Result<()> {
    let value = ctx.call(&Request::Status)?;
    ctx.print(&value, |v| {
        format!(
            "netd {} running: {} containers, state in {}, maps in {}",
            super::field(v, "version"),
            super::field(v, "containers"),
            super::field(v, "state_dir"),
            super::field(v, "bpffs"),
        )
    });
    Ok(())
}

pub fn stats(ctx: &Ctx) -> Result<()> {
    let value = ctx.call(&Request::Stats)?;
    ctx.print(&value, |v| {
        let rows = v
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, c)| {
                        vec![
                            name.clone(),
                            c["packets"].to_string(),
                            c["bytes"].to_string(),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(&["COUNTER", "PACKETS", "BYTES"], rows)
    });
    Ok(())
}

pub fn down(ctx: &Ctx) -> Result<()> {
    ctx.call(&Request::Down)?;
    ctx.print(&Value::Bool(true), |_| {
        "netd is down: containers, bridges, pinned maps and state removed".into()
    });
    Ok(())
}
