//! Component flags parsed from argv, so `ekube server` and `ekube agent` configure the
//! components they embed exactly as the components' own subcommands would: defaults live in
//! one place, and `--<component>-arg name=value` reaches any flag a component has.

use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Parses a component's flags exactly as its own subcommand would; a flag given again (a
/// `--<component>-arg` pass-through after the one the embedding command sets) wins, as in k3s.
#[derive(Parser)]
#[command(no_binary_name = true, args_override_self = true)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args, Debug)]
    struct Demo {
        #[arg(long, default_value = "a")]
        dir: String,
        #[arg(long = "label")]
        labels: Vec<String>,
    }

    #[test]
    fn pass_through_flags_override_and_repeatable_ones_append() {
        let argv = vec!["--dir".into(), "set".into(), "--label".into(), "x".into()];
        let extra = ["dir=override".to_string(), "label=y".to_string()];
        let demo: Demo = component("demo", argv, &extra).unwrap();
        assert_eq!(demo.dir, "override");
        assert_eq!(demo.labels, ["x", "y"]);
        let err = component::<Demo>("demo", vec![], &["dir".to_string()]).unwrap_err();
        assert!(err.to_string().contains("not name=value"), "{err}");
    }
}
