//! Component flags parsed from argv, so `ekube server` and `ekube agent` configure the
//! components they embed exactly as the components' own subcommands would: defaults live in
//! one place, and `--<component>-arg name=value` reaches any flag a component has.

use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Parses a component's flags exactly as its own subcommand would.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Flags<T: clap::Args> {
    #[command(flatten)]
    inner: T,
}

/// `--name value` pairs plus the `name=value` pass-through ones, parsed as component `T`.
pub fn component<T: clap::Args>(
    what: &str,
    mut argv: Vec<OsString>,
    extra: &[String],
) -> Result<T> {
    for arg in extra {
        let (name, value) = arg
            .split_once('=')
            .with_context(|| format!("{what} flag {arg:?} is not name=value"))?;
        argv.push(format!("--{}", name.trim_start_matches('-')).into());
        argv.push(value.into());
    }
    match Flags::<T>::try_parse_from(&argv) {
        Ok(flags) => Ok(flags.inner),
        Err(err) => bail!("{what} flags: {}", err.render().to_string().trim()),
    }
}
