//! `create`: from files (`-f`), or the generators `namespace`, `configmap` and `secret generic`
//! with kubectl's `--from-literal`, `--from-file [key=]path` and `--from-env-file` sources.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Ctx;
use super::output::format_objects;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    /// Filename, directory, or URL to files to use to create the resource (- for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(subcommand)]
    pub what: Option<Generator>,
}

#[derive(Subcommand, Debug)]
pub enum Generator {
    /// Create a namespace with the specified name.
    #[command(alias = "ns")]
    Namespace {
        name: String,
        #[command(flatten)]
        out: OutputFlags,
    },
    /// Create a config map from a local file, directory or literal value.
    #[command(alias = "cm")]
    Configmap(DataArgs),
    /// Create a secret.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretKind {
    /// Create a secret from a local file, directory, or literal value.
    Generic {
        #[command(flatten)]
        data: DataArgs,
        /// The type of secret to create.
        #[arg(long = "type", default_value = "Opaque")]
        secret_type: String,
    },
}

#[derive(Args, Debug)]
pub struct OutputFlags {
    /// Must be "none", "server", or "client". With "client", only print the object.
    #[arg(long, default_missing_value = "client", num_args = 0..=1, require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format: yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    pub name: String,
    /// Specify a key and literal value to insert (i.e. mykey=somevalue).
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
    /// Key files: a file path (key = its basename), `key=path`, or a directory (each regular file).
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// Specify the path to a file to read lines of key=val pairs.
    #[arg(long = "from-env-file")]
    pub from_env_file: Vec<String>,
    #[command(flatten)]
    pub out: OutputFlags,
}

pub async fn run(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let Some(what) = args.what else {
        if args.filename.is_empty() {
            bail!("must specify one of -f and -k");
        }
        return super::apply::create_from_files(ctx, &args.filename, args.recursive).await;
    };
    let (object, out) = match what {
        Generator::Namespace { name, out } => (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            out,
        ),
        Generator::Configmap(d) => {
            let (data, binary) = collect_data(&d)?;
            let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": d.name, "namespace": ctx.namespace}});
            if !data.is_empty() {
                cm["data"] = json!(data);
            }
            if !binary.is_empty() {
                cm["binaryData"] = json!(
                    binary
                        .iter()
                        .map(|(k, v)| (k.clone(), b64(v)))
                        .collect::<BTreeMap<_, _>>()
                );
            }
            (cm, d.out)
        }
        Generator::Secret {
            kind:
                SecretKind::Generic {
                    data: d,
                    secret_type,
                },
        } => {
            let (data, binary) = collect_data(&d)?;
            let mut all: BTreeMap<String, String> = data
                .into_iter()
                .map(|(k, v)| (k, b64(v.as_bytes())))
                .collect();
            all.extend(binary.iter().map(|(k, v)| (k.clone(), b64(v))));
            let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": d.name, "namespace": ctx.namespace}, "type": secret_type});
            if !all.is_empty() {
                secret["data"] = json!(all);
            }
            (secret, d.out)
        }
    };
    create_object(ctx, object, &out).await
}

async fn create_object(ctx: &Ctx, object: Value, out: &OutputFlags) -> Result<()> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let resource = ctx.resolve_kind("v1", &kind).await?;
    let result = match out.dry_run.as_deref() {
        None | Some("none") => {
            let ns = object["metadata"]["namespace"].as_str().map(String::from);
            ctx.request(
                http::Method::POST,
                &resource.collection_path(ns.as_deref()),
                Some(&object),
                None,
            )
            .await?
        }
        Some("client") => object,
        Some("server") => {
            let ns = object["metadata"]["namespace"].as_str().map(String::from);
            ctx.request(
                http::Method::POST,
                &format!("{}?dryRun=All", resource.collection_path(ns.as_deref())),
                Some(&object),
                None,
            )
            .await?
        }
        Some(other) => {
            bail!("Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\".")
        }
    };
    let name = result["metadata"]["name"].as_str().unwrap_or_default();
    match out.output.as_deref() {
        Some(f @ ("yaml" | "json")) => print!(
            "{}",
            format_objects(std::slice::from_ref(&result), f, false)?
        ),
        Some("name") => println!("{}/{name}", resource.kind_prefix()),
        Some(other) => bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,yaml"
        ),
        None => {
            let suffix = match out.dry_run.as_deref() {
                Some("client") => " (dry run)",
                Some("server") => " (server dry run)",
                _ => "",
            };
            println!("{}/{name} created{suffix}", resource.kind_prefix());
        }
    }
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Text values and binary (non-UTF-8) values by key.
type Data = (BTreeMap<String, String>, BTreeMap<String, Vec<u8>>);

/// Gathers the keys of a configmap/secret: text values and binary (non-UTF-8) file contents.
pub fn collect_data(d: &DataArgs) -> Result<Data> {
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    let mut binary: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut insert = |key: String, value: Vec<u8>| -> Result<()> {
        validate_key(&key)?;
        if text.contains_key(&key) || binary.contains_key(&key) {
            bail!(
                "cannot add key {key}, another key by that name already exists in Data for ConfigMap \"{}\"",
                d.name
            );
        }
        match String::from_utf8(value) {
            Ok(s) => {
                text.insert(key, s);
            }
            Err(e) => {
                binary.insert(key, e.into_bytes());
            }
        }
        Ok(())
    };
    for lit in &d.from_literal {
        let (k, v) = parse_literal(lit)?;
        insert(k, v.into_bytes())?;
    }
    for spec in &d.from_file {
        for (k, path) in file_sources(spec)? {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("error reading {}", path.display()))?;
            insert(k, bytes)?;
        }
    }
    for env_file in &d.from_env_file {
        let content = std::fs::read_to_string(env_file)
            .with_context(|| format!("error reading {env_file}"))?;
        for (k, v) in parse_env_file(&content, |k| std::env::var(k).ok())
            .with_context(|| format!("in env file {env_file}"))?
        {
            insert(k, v.into_bytes())?;
        }
    }
    Ok((text, binary))
}

/// `key=value` (the value may contain `=` and be empty).
pub fn parse_literal(lit: &str) -> Result<(String, String)> {
    match lit.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("invalid literal source {lit}, expected key=value"),
    }
}

/// Expands one `--from-file` argument into `(key, path)` pairs.
fn file_sources(spec: &str) -> Result<Vec<(String, std::path::PathBuf)>> {
    let (key, path) = match spec.split_once('=') {
        Some((k, p)) if !k.is_empty() && !p.is_empty() => (Some(k.to_string()), Path::new(p)),
        Some(_) => bail!("key names or file paths cannot be empty: {spec}"),
        None => (None, Path::new(spec)),
    };
    let meta =
        std::fs::metadata(path).with_context(|| format!("error reading {}", path.display()))?;
    if meta.is_dir() {
        if key.is_some() {
            bail!("cannot give a key name for a directory path");
        }
        let mut out = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries.into_iter().filter(|e| e.is_file()) {
            let name = e
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            out.push((name, e));
        }
        return Ok(out);
    }
    let key = key.unwrap_or_else(|| {
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    });
    Ok(vec![(key, path.to_path_buf())])
}

/// Parses an env file like kubectl: `KEY=VALUE` lines (value verbatim, may be empty), blank
/// lines and `#` comments skipped, leading whitespace ignored, a bare `KEY` takes the value from
/// the environment (skipped when unset).
pub fn parse_env_file(
    content: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, raw) in content.lines().enumerate() {
        let line = raw.trim_start();
        let line = if n == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                validate_env_name(k).with_context(|| format!("line {}", n + 1))?;
                out.push((k.to_string(), v.to_string()));
            }
            None => {
                validate_env_name(line).with_context(|| format!("line {}", n + 1))?;
                if let Some(v) = env(line) {
                    out.push((line.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}

fn validate_env_name(k: &str) -> Result<()> {
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !ok {
        bail!(
            "invalid env var name \"{k}\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
        );
    }
    Ok(())
}

/// ConfigMap/Secret keys: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn validate_key(k: &str) -> Result<()> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if !ok {
        bail!(
            "\"{k}\" is not a valid key name: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(parse_literal("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(
            parse_literal("url=http://x?y=1").unwrap(),
            ("url".into(), "http://x?y=1".into())
        );
        assert_eq!(
            parse_literal("empty=").unwrap(),
            ("empty".into(), "".into())
        );
        assert!(parse_literal("noequals").is_err());
        assert!(parse_literal("=v").is_err());
    }

    #[test]
    fn env_files() {
        let text = "\u{feff}# comment\n\nA=1\n  B=two words \nC=\nD==x\nFROM_ENV\nMISSING\n";
        let env = |k: &str| (k == "FROM_ENV").then(|| "env-value".to_string());
        let got = parse_env_file(text, env).unwrap();
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "two words "),
            ("C", ""),
            ("D", "=x"),
            ("FROM_ENV", "env-value"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(parse_env_file("1BAD=x\n", |_| None).is_err());
        assert!(parse_env_file("a b=x\n", |_| None).is_err());
    }

    #[test]
    fn data_sources() {
        let dir = std::env::temp_dir().join(format!("ekubectl-data-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("app.conf"), "x=1\n").unwrap();
        std::fs::write(dir.join("d/one"), "1").unwrap();
        std::fs::write(dir.join("d/bin"), [0xff, 0x00, 0xfe]).unwrap();
        std::fs::write(dir.join("vars.env"), "K=V\n").unwrap();
        let p = |s: &str| dir.join(s).display().to_string();
        let args = DataArgs {
            name: "c".into(),
            from_literal: vec!["lit=v".into()],
            from_file: vec![p("app.conf"), format!("renamed={}", p("app.conf")), p("d")],
            from_env_file: vec![p("vars.env")],
            out: OutputFlags {
                dry_run: None,
                output: None,
            },
        };
        let (text, binary) = collect_data(&args).unwrap();
        let dup = DataArgs {
            from_literal: vec!["a=1".into(), "a=2".into()],
            from_file: vec![],
            from_env_file: vec![],
            ..args
        };
        let dup_err = collect_data(&dup).is_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            text.keys().map(String::as_str).collect::<Vec<_>>(),
            ["K", "app.conf", "lit", "one", "renamed"]
        );
        assert_eq!(text["renamed"], "x=1\n");
        assert_eq!(binary["bin"], vec![0xff, 0x00, 0xfe]);
        assert_eq!(b64(&binary["bin"]), "/wD+");
        assert!(dup_err);
        assert!(validate_key("bad/key").is_err());
    }
}
