//! `ekube token`: kubeadm's bootstrap-token commands. `create` stores a token as the Secret
//! `kube-system/bootstrap-token-<id>` exactly as kubeadm writes it (and can print the
//! `ekube join` command that uses it), `list` and `delete` manage them, `generate` prints a
//! random token without touching a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use ekube_api::bootstrap::{self, NAMESPACE, Token};
use ekube_api::time::{self, SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

/// `token list`'s columns, kubeadm's.
const COLUMNS: [&str; 6] = [
    "TOKEN",
    "TTL",
    "EXPIRES",
    "USAGES",
    "DESCRIPTION",
    "EXTRA GROUPS",
];

/// The group kubeadm's node-joining tokens carry.
const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

#[derive(Args)]
pub struct TokenArgs {
    /// The kubeconfig of a cluster administrator.
    #[arg(long, global = true, default_value = "/etc/kubernetes/admin.conf")]
    kubeconfig: PathBuf,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token on the server (a random one unless TOKEN is given).
    Create(CreateArgs),
    /// List the bootstrap tokens on the server.
    List,
    /// Delete bootstrap tokens, named by id or by the whole token.
    Delete {
        #[arg(required = true, value_name = "TOKEN_ID or TOKEN")]
        tokens: Vec<String>,
    },
    /// Print a random bootstrap token; nothing is stored.
    Generate,
}

#[derive(Args)]
struct CreateArgs {
    /// The token (`[a-z0-9]{6}.[a-z0-9]{16}`); a random one when left out.
    token: Option<String>,
    /// How long the token is valid; `0` for ever.
    #[arg(long, default_value = "24h0m0s", value_parser = ekube_api::flags::parse_duration)]
    ttl: Duration,
    /// A human-readable note on what the token is for.
    #[arg(long)]
    description: Option<String>,
    /// What the token may be used for.
    #[arg(long, value_delimiter = ',', default_value = "signing,authentication")]
    usages: Vec<String>,
    /// Extra groups the token authenticates in (`system:bootstrappers:...`).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_GROUP)]
    groups: Vec<String>,
    /// Print the `ekube join` command that joins a node with this token.
    #[arg(long)]
    print_join_command: bool,
}

/// Runs one `ekube token` command; a failure is printed here (`error: …`, its causes on the
/// same line) and returned only to set the exit status.
pub async fn run(args: TokenArgs) -> Result<()> {
    let result = execute(args).await;
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    result
}

async fn execute(args: TokenArgs) -> Result<()> {
    match args.command {
        TokenCommand::Generate => {
            println!("{}", Token::generate());
            Ok(())
        }
        TokenCommand::Create(create) => {
            let (token, secret) = new_token(&create, Timestamp::now())?;
            let cluster = Cluster::connect(&args.kubeconfig).await?;
            cluster.create(&token, secret).await?;
            if create.print_join_command {
                println!("{}", cluster.join_command(&token)?);
            } else {
                println!("{token}");
            }
            Ok(())
        }
        TokenCommand::List => {
            let cluster = Cluster::connect(&args.kubeconfig).await?;
            print!("{}", cluster.list(Timestamp::now()).await?);
            Ok(())
        }
        TokenCommand::Delete { tokens } => {
            // Checked before anything is deleted.
            let ids = tokens
                .iter()
                .map(|t| token_id(t))
                .collect::<Result<Vec<_>>>()?;
            let cluster = Cluster::connect(&args.kubeconfig).await?;
            for id in ids {
                cluster.delete(id).await?;
                println!("bootstrap token {id:?} deleted");
            }
            Ok(())
        }
    }
}

/// Makes sure the token `ekube server --token` names is stored, with kubeadm's defaults for
/// the token `kubeadm init` creates; a restart finds it there and leaves it alone.
pub async fn ensure(kubeconfig: &Path, token: &str, ttl: Duration) -> Result<()> {
    let args = CreateArgs {
        token: Some(token.to_string()),
        ttl,
        description: Some("The bootstrap token created by 'ekube server'.".into()),
        usages: bootstrap::USAGES.iter().map(|u| u.to_string()).collect(),
        groups: vec![DEFAULT_GROUP.into()],
        print_join_command: false,
    };
    let (token, secret) = new_token(&args, Timestamp::now())?;
    let cluster = Cluster::connect(kubeconfig).await?;
    let existing = cluster
        .secrets
        .get_opt(&bootstrap::secret_name(&token.id))
        .await
        .with_context(|| format!("reading bootstrap token {:?}", token.id))?;
    match existing {
        None => cluster.create(&token, secret).await.map(drop),
        Some(obj) => {
            let data = bootstrap::secret_data(&serde_json::to_value(obj)?);
            if data.get("token-secret") != Some(&token.secret) {
                bail!(
                    "a bootstrap token with id {:?} exists with another secret",
                    token.id
                );
            }
            Ok(())
        }
    }
}

/// Creates a random token that authenticates no one and lasts `ttl`, only to own other
/// objects the garbage collector removes with it (kubeadm's proxy for the uploaded
/// certificates' lifetime); returns its Secret's name and uid.
pub async fn create_proxy(
    kubeconfig: &Path,
    ttl: Duration,
    description: &str,
) -> Result<(String, String)> {
    let args = CreateArgs {
        token: None,
        ttl,
        description: Some(description.into()),
        usages: Vec::new(),
        groups: Vec::new(),
        print_join_command: false,
    };
    let (token, secret) = new_token(&args, Timestamp::now())?;
    let cluster = Cluster::connect(kubeconfig).await?;
    let created = cluster.create(&token, secret).await?;
    let uid = created
        .metadata
        .uid
        .context("the created token Secret has no uid")?;
    Ok((bootstrap::secret_name(&token.id), uid))
}

/// The token to create and its Secret, kubeadm's `BootstrapTokenToSecret`.
fn new_token(args: &CreateArgs, now: Timestamp) -> Result<(Token, Value)> {
    let token = match &args.token {
        Some(t) => Token::parse(t).map_err(anyhow::Error::msg)?,
        None => Token::generate(),
    };
    // `--groups ""` (or `--usages ""`) means none, as in kubeadm.
    let usages: Vec<&String> = args.usages.iter().filter(|u| !u.is_empty()).collect();
    let groups: Vec<&str> = args
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| !g.is_empty())
        .collect();
    for usage in &usages {
        if !bootstrap::USAGES.contains(&usage.as_str()) {
            bail!(
                "--usages: {usage:?} is not a bootstrap token usage; valid usages: {}",
                bootstrap::USAGES.join(",")
            );
        }
    }
    for group in &groups {
        if !bootstrap::is_extra_group(group) {
            bail!(
                "--groups: {group:?} is not a bootstrap group (must match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9])"
            );
        }
    }
    let mut data = BTreeMap::from([
        ("token-id".to_string(), token.id.clone()),
        ("token-secret".to_string(), token.secret.clone()),
    ]);
    if let Some(d) = args.description.as_ref().filter(|d| !d.is_empty()) {
        data.insert("description".into(), d.clone());
    }
    if !args.ttl.is_zero() {
        let expires = SignedDuration::try_from(args.ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl).ok())
            .context("--ttl is too long")?;
        data.insert("expiration".into(), time::rfc3339(expires));
    }
    for usage in &usages {
        data.insert(format!("usage-bootstrap-{usage}"), "true".into());
    }
    if !groups.is_empty() {
        data.insert("auth-extra-groups".into(), groups.join(","));
    }
    let b64 = |v: &String| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": bootstrap::secret_name(&token.id), "namespace": NAMESPACE},
        "type": bootstrap::SECRET_TYPE,
        "data": data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect::<serde_json::Map<_, _>>(),
    });
    Ok((token, secret))
}

/// The token id `arg` names: an id, or a whole token.
fn token_id(arg: &str) -> Result<&str> {
    if bootstrap::is_token_id(arg) {
        return Ok(arg);
    }
    match Token::parse(arg) {
        Ok(_) => Ok(&arg[..6]),
        Err(_) => bail!(
            "{:?} is neither a token id ([a-z0-9]{{6}}) nor a token ([a-z0-9]{{6}}.[a-z0-9]{{16}})",
            arg.split_once('.').map_or(arg, |(id, _)| id)
        ),
    }
}

/// The cluster a kubeconfig names, and the Secrets of its bootstrap tokens.
struct Cluster {
    secrets: Api<DynamicObject>,
    config: kube::Config,
    kubeconfig: PathBuf,
}

impl Cluster {
    async fn connect(kubeconfig: &Path) -> Result<Self> {
        let shown = kubeconfig.display();
        let file = kube::config::Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("reading kubeconfig {shown} (pass --kubeconfig)"))?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .with_context(|| format!("kubeconfig {shown} is unusable"))?;
        let client = ekube_api::client::from_config(config.clone())
            .with_context(|| format!("building a client from {shown}"))?;
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
        };
        Ok(Self {
            secrets: Api::namespaced_with(client, NAMESPACE, &resource),
            config,
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    async fn create(&self, token: &Token, secret: Value) -> Result<DynamicObject> {
        let obj: DynamicObject = serde_json::from_value(secret)?;
        match self.secrets.create(&PostParams::default(), &obj).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                bail!("a token with id {:?} already exists", token.id)
            }
            Err(e) => Err(e).with_context(|| format!("creating bootstrap token {:?}", token.id)),
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        match self
            .secrets
            .delete(&bootstrap::secret_name(id), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => bail!("bootstrap token {id:?} not found"),
            Err(e) => Err(e).with_context(|| format!("deleting bootstrap token {id:?}")),
        }
    }

    /// `ekube token list`'s table.
    async fn list(&self, now: Timestamp) -> Result<String> {
        let params = ListParams::default().fields(&format!("type={}", bootstrap::SECRET_TYPE));
        let secrets = self
            .secrets
            .list(&params)
            .await
            .context("listing bootstrap tokens")?;
        let mut rows = vec![COLUMNS.map(String::from)];
        for secret in &secrets.items {
            match row(&serde_json::to_value(secret)?, now) {
                Ok(r) => rows.push(r),
                // As kubeadm: a malformed Secret is reported and the others listed.
                Err(why) => eprintln!(
                    "ignoring secret {:?}: {why}",
                    secret.metadata.name.as_deref().unwrap_or_default()
                ),
            }
        }
        // As kubeadm: no tokens, no table.
        Ok(if rows.len() > 1 {
            table(&rows)
        } else {
            String::new()
        })
    }

    /// `ekube join <host:port> --token … --discovery-token-ca-cert-hash sha256:…` for the
    /// cluster and CA of the kubeconfig.
    fn join_command(&self, token: &Token) -> Result<String> {
        let url = &self.config.cluster_url;
        let host = url
            .host()
            .with_context(|| format!("the server {url} has no host"))?;
        let port = url.port_u16().unwrap_or(443);
        let endpoint = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let ca = self
            .config
            .root_cert
            .as_ref()
            .and_then(|c| c.first())
            .with_context(|| {
                format!(
                    "kubeconfig {} names no cluster CA to pin in the join command",
                    self.kubeconfig.display()
                )
            })?;
        let hash = bootstrap::ca_cert_hash_der(ca).map_err(anyhow::Error::msg)?;
        Ok(format!(
            "ekube join {endpoint} --token {token} --discovery-token-ca-cert-hash {hash}"
        ))
    }
}

/// A row of `token list` for a bootstrap-token Secret, or why it is not one.
fn row(secret: &Value, now: Timestamp) -> Result<[String; 6], String> {
    let data = bootstrap::secret_data(secret);
    let field = |k: &str| data.get(k).cloned().unwrap_or_default();
    let token = Token::parse(&format!("{}.{}", field("token-id"), field("token-secret")))?;
    let (ttl, expires) = match data.get("expiration") {
        None => ("<forever>".to_string(), "<never>".to_string()),
        Some(e) => {
            let at = time::parse(e)
                .ok_or_else(|| format!("its expiration {e:?} is not an RFC 3339 time"))?;
            (
                ekube_api::display::short_human_duration(at.duration_since(now).as_secs()),
                time::rfc3339(at),
            )
        }
    };
    let usages: Vec<&str> = data
        .iter()
        .filter(|(_, v)| *v == "true")
        .filter_map(|(k, _)| k.strip_prefix("usage-bootstrap-"))
        .collect();
    let or_none = |s: String| if s.is_empty() { "<none>".into() } else { s };
    Ok([
        token.to_string(),
        ttl,
        expires,
        or_none(usages.join(",")),
        or_none(field("description")),
        or_none(field("auth-extra-groups")),
    ])
}

/// Columns padded to their widest cell plus three spaces, as kubeadm's tabwriter pads them.
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}   "))
            .collect();
        out.push_str(line.concat().trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_args(extra: &[&str]) -> CreateArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            create: CreateArgs,
        }
        let argv = std::iter::once("create").chain(extra.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().create
    }

    fn now() -> Timestamp {
        time::parse("2030-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn secrets_are_written_as_kubeadm_writes_them() {
        let args = create_args(&["abcdef.0123456789abcdef", "--description", "for n2"]);
        let (token, secret) = new_token(&args, now()).unwrap();
        assert_eq!(token.to_string(), "abcdef.0123456789abcdef");
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(secret["metadata"]["namespace"], "kube-system");
        assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
        let data = bootstrap::secret_data(&secret);
        let want: BTreeMap<String, String> = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("description", "for n2"),
            ("expiration", "2030-01-02T00:00:00Z"),
            ("usage-bootstrap-signing", "true"),
            ("usage-bootstrap-authentication", "true"),
            ("auth-extra-groups", DEFAULT_GROUP),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(data, want);

        let argv = ["--ttl", "0", "--usages", "signing", "--groups", ""];
        let (_, forever) = new_token(&create_args(&argv), now()).unwrap();
        let data = bootstrap::secret_data(&forever);
        assert!(!data.contains_key("expiration"));
        assert!(!data.contains_key("usage-bootstrap-authentication"));
        assert!(!data.contains_key("auth-extra-groups"));
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        for (argv, wanted) in [
            (&["abcdef"][..], "was not of the form"),
            (
                &["--usages", "signing,everything"],
                "\"everything\" is not a bootstrap token usage",
            ),
            (
                &["--groups", "system:masters"],
                "\"system:masters\" is not a bootstrap group",
            ),
        ] {
            let err = new_token(&create_args(argv), now())
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{argv:?}: {err}");
        }
        assert_eq!(token_id("abcdef").unwrap(), "abcdef");
        assert_eq!(token_id("abcdef.0123456789abcdef").unwrap(), "abcdef");
        let err = token_id("abcdef.secret").unwrap_err().to_string();
        assert!(
            err.contains("neither a token id") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn list_rows_read_like_kubeadm() {
        let args = create_args(&["abcdef.0123456789abcdef"]);
        let (_, secret) = new_token(&args, now()).unwrap();
        let later = now() + SignedDuration::from_secs(3601);
        let r = row(&secret, later).unwrap();
        assert_eq!(
            r,
            [
                "abcdef.0123456789abcdef",
                "22h",
                "2030-01-02T00:00:00Z",
                "authentication,signing",
                "<none>",
                DEFAULT_GROUP
            ]
        );
        let text = table(&[COLUMNS.map(String::from), r]);
        let header = text.lines().next().unwrap();
        assert!(
            header.starts_with("TOKEN                     TTL   EXPIRES"),
            "{text}"
        );
        assert!(row(&json!({"data": {}}), now()).is_err());
    }
}
