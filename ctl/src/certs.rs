//! `ekube certs check-expiration` and `ekube certs renew all`, as kubeadm's `certs` commands:
//! the certificates of the certificate directory (kubeadm's `/etc/kubernetes/pki`) and the
//! client certificates embedded in the kubeconfigs of the kubeconfig directory, listed with
//! their expiry, and re-issued by the cluster CA (same subject, SANs, usages and key; a new
//! serial and a year's validity). Authorities are listed and never renewed; a certificate the
//! CA in the directory did not sign is externally managed and left alone. The control plane
//! reads its certificates when it starts, so it has to be restarted to use renewed ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekube_apiserver::pki::Ca;

/// `ekube certs`.
#[derive(clap::Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(clap::Subcommand)]
enum CertsCommand {
    /// Print when each certificate, and each kubeconfig's client certificate, expires.
    CheckExpiration(Dirs),
    /// Renew certificates signed by the cluster CA.
    Renew {
        #[command(subcommand)]
        what: RenewWhat,
    },
}

#[derive(clap::Subcommand)]
enum RenewWhat {
    /// Renew every certificate signed by the cluster CA and every kubeconfig's embedded one.
    All(Dirs),
}

/// Where the certificates and kubeconfigs are, named as `ekube init` names them.
#[derive(clap::Args)]
struct Dirs {
    /// The directory of the certificates.
    #[arg(long, default_value = "/etc/kubernetes/pki")]
    cert_dir: PathBuf,
    /// The directory of the kubeconfig files.
    #[arg(long, default_value = "/etc/kubernetes")]
    kubeconfig_dir: PathBuf,
}

pub fn run(args: CertsArgs) -> Result<()> {
    match args.command {
        CertsCommand::CheckExpiration(dirs) => {
            print!("{}", check_expiration(&dirs, std::time::SystemTime::now())?);
            Ok(())
        }
        CertsCommand::Renew {
            what: RenewWhat::All(dirs),
        } => renew_all(&dirs),
    }
}

/// Where a certificate lives, and so how it is renewed.
enum Source {
    /// `<name>.crt` (its key is `<name>.key`).
    Files(PathBuf),
    /// A kubeconfig whose user embeds its certificate and key.
    Kubeconfig(PathBuf),
}

/// One certificate found.
struct Found {
    /// `apiserver` for `apiserver.crt`, `admin.conf` for a kubeconfig.
    name: String,
    source: Source,
    cert_pem: String,
    /// The key beside it, when there is one (an authority without it cannot sign).
    key_pem: Option<String>,
    not_after: std::time::SystemTime,
    is_ca: bool,
}

/// Every certificate of the two directories, the `.crt` files and the kubeconfigs with an
/// embedded client certificate, in name order as kubeadm lists them.
fn inventory(dirs: &Dirs) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for crt in files_ending(&dirs.cert_dir, ".crt")? {
        let key_pem = std::fs::read_to_string(crt.with_extension("key")).ok();
        let cert_pem = read(&crt)?;
        let name = stem(&crt, ".crt");
        found.push(Found::parse(name, cert_pem, key_pem, Source::Files(crt))?);
    }
    for conf in files_ending(&dirs.kubeconfig_dir, ".conf")? {
        let text = read(&conf)?;
        let Some((cert_pem, key_pem)) = embedded_pair(&text) else {
            continue;
        };
        let name = stem(&conf, "");
        found.push(Found::parse(
            name,
            cert_pem,
            Some(key_pem),
            Source::Kubeconfig(conf),
        )?);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

impl Found {
    fn parse(
        name: String,
        cert_pem: String,
        key_pem: Option<String>,
        source: Source,
    ) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("{name}: not a PEM certificate: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("{name}: not an X.509 certificate: {e}"))?;
        let (_, not_after) = ekube_api::client_cert::validity(&pem.contents)
            .with_context(|| format!("{name}: no validity period"))?;
        let is_ca = cert.is_ca();
        Ok(Self {
            name,
            source,
            not_after,
            is_ca,
            cert_pem,
            key_pem,
        })
    }
}

/// kubeadm's two tables: the certificates with their authority, then the authorities.
fn check_expiration(dirs: &Dirs, now: std::time::SystemTime) -> Result<String> {
    let found = inventory(dirs)?;
    if found.is_empty() {
        bail!(
            "no certificate in {} and no kubeconfig with an embedded one in {}; give \
             --cert-dir and --kubeconfig-dir as `ekube init` was given them",
            dirs.cert_dir.display(),
            dirs.kubeconfig_dir.display()
        );
    }
    // The authorities that can sign (their key is here), by name.
    let signers: Vec<(&str, Option<Ca>)> = found
        .iter()
        .filter(|f| f.is_ca)
        .map(|f| (f.name.as_str(), authority(f)))
        .collect();
    let expires = |f: &Found| {
        let residual = f
            .not_after
            .duration_since(now)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(-2);
        (
            ekube_api::time::Timestamp::try_from(f.not_after)
                .unwrap_or(ekube_api::time::Timestamp::UNIX_EPOCH)
                .strftime("%b %d, %Y %H:%M UTC")
                .to_string(),
            ekube_api::display::short_human_duration(residual),
        )
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut leaves = vec![[
        "CERTIFICATE".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for f in found.iter().filter(|f| !f.is_ca) {
        let (at, residual) = expires(f);
        let issuer = signers
            .iter()
            .find(|(_, ca)| ca.as_ref().is_some_and(|ca| ca.issued(&f.cert_pem)));
        let authority = issuer.map_or(String::new(), |(name, _)| name.to_string());
        leaves.push([
            f.name.clone(),
            at,
            residual,
            authority,
            yes_no(issuer.is_none()),
        ]);
    }
    let mut authorities = vec![[
        "CERTIFICATE AUTHORITY".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for (f, (_, ca)) in found.iter().filter(|f| f.is_ca).zip(&signers) {
        let (at, residual) = expires(f);
        authorities.push([f.name.clone(), at, residual, yes_no(ca.is_none())]);
    }
    Ok(format!(
        "{}\n{}",
        crate::token::table(&leaves),
        crate::token::table(&authorities)
    ))
}

/// The authority `f` as a signer, when its key is beside it.
fn authority(f: &Found) -> Option<Ca> {
    match &f.source {
        Source::Files(crt) if f.key_pem.is_some() => Ca::load_named(crt.parent()?, &f.name).ok(),
        _ => None,
    }
}

/// Re-issues every leaf certificate the cluster CA (`<cert-dir>/ca.crt`) signed.
fn renew_all(dirs: &Dirs) -> Result<()> {
    let ca = Ca::load(&dirs.cert_dir).with_context(|| {
        format!(
            "loading the cluster CA (ca.crt and ca.key) from {}; renewal signs with it",
            dirs.cert_dir.display()
        )
    })?;
    for f in inventory(dirs)?.iter().filter(|f| !f.is_ca) {
        let Some(key_pem) = f.key_pem.as_deref().filter(|_| ca.issued(&f.cert_pem)) else {
            println!(
                "certificate {} skipped: not signed by the cluster CA with a key beside it \
                 (externally managed)",
                f.name
            );
            continue;
        };
        let renewed = ca
            .renew(&f.cert_pem, key_pem)
            .with_context(|| format!("renewing {}", f.name))?;
        match &f.source {
            Source::Files(crt) => {
                write(crt, &renewed)?;
                println!("certificate {} renewed", f.name);
            }
            Source::Kubeconfig(path) => {
                let text = read(path)?;
                let text = text.replace(&STANDARD.encode(&f.cert_pem), &STANDARD.encode(&renewed));
                write(path, &text)?;
                println!(
                    "certificate embedded in the kubeconfig file {} renewed",
                    f.name
                );
            }
        }
    }
    println!(
        "\nDone renewing certificates. You must restart the control plane (ekube server: the \
         kube-apiserver, kube-controller-manager and kube-scheduler), so that it can use the new \
         certificates."
    );
    Ok(())
}

/// The client certificate and key the kubeconfig `text` embeds (its first user that does).
fn embedded_pair(text: &str) -> Option<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    doc.get("users")?.as_sequence()?.iter().find_map(|named| {
        let user = named.get("user")?;
        let decode = |field: &str| {
            let b64 = user.get(field)?.as_str()?;
            String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()
        };
        Some((
            decode("client-certificate-data")?,
            decode("client-key-data")?,
        ))
    })
}

/// The files of `dir` whose names end with `suffix`, sorted; none when `dir` is missing.
fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(path: &Path, suffix: &str) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(suffix).unwrap_or(&name).to_string()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, contents: &str) -> Result<()> {
    ekube_api::files::write_atomic(path, contents, 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekube_apiserver::pki;

    /// A PKI as `ekube init` lays it out: the CA, a serving and a client certificate, a
    /// kubeconfig embedding a client certificate, and one whose certificate is a file.
    fn pki() -> (tempfile::TempDir, Dirs) {
        let root = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            cert_dir: root.path().join("pki"),
            kubeconfig_dir: root.path().to_path_buf(),
        };
        let ca = Ca::load_or_create(&dirs.cert_dir).unwrap();
        let hosts = ["kubernetes".to_string(), "10.96.0.1".to_string()];
        pki::Issued::load_or_issue(&dirs.cert_dir, "apiserver", || {
            ca.issue("kube-apiserver", &[], &hosts, true)
        })
        .unwrap();
        pki::write_component_kubeconfig(
            &ca,
            &dirs.cert_dir,
            &dirs.kubeconfig_dir.join("scheduler.conf"),
            "https://10.0.0.1:6443",
            "system:kube-scheduler",
        )
        .unwrap();
        std::fs::write(
            dirs.kubeconfig_dir.join("kubelet.conf"),
            "apiVersion: v1\nkind: Config\nusers:\n- name: n\n  user:\n    client-certificate: /x.pem\n",
        )
        .unwrap();
        (root, dirs)
    }

    fn parsed(pem: &str) -> (String, Vec<String>, Vec<u8>, i64) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default();
        (
            cert.subject().to_string(),
            sans,
            cert.raw_serial().to_vec(),
            cert.validity().not_after.timestamp(),
        )
    }

    #[test]
    fn check_expiration_lists_every_certificate_and_kubeconfig_then_the_authority() {
        let (_root, dirs) = pki();
        let out = check_expiration(&dirs, std::time::SystemTime::now()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("CERTIFICATE ") && lines[0].ends_with("EXTERNALLY MANAGED"),
            "{out}"
        );
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no row {name}: {out}"))
                .split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        };
        for name in ["apiserver", "kube-scheduler", "scheduler.conf"] {
            let r = row(name);
            assert_eq!(r[2], "364d", "{out}");
            assert_eq!(&r[3..], ["ca", "no"], "{out}");
        }
        let ca = row("ca");
        assert_eq!((ca[2], ca[3]), ("9y", "no"), "{out}");
        assert!(
            !out.contains("kubelet.conf"),
            "no embedded certificate: {out}"
        );
        assert!(out.contains("\nCERTIFICATE AUTHORITY   EXPIRES"), "{out}");
    }

    #[test]
    fn renew_all_reissues_leaves_and_kubeconfigs_and_leaves_the_ca_alone() {
        let (_root, dirs) = pki();
        let crt = dirs.cert_dir.join("apiserver.crt");
        let conf = dirs.kubeconfig_dir.join("scheduler.conf");
        let ca_before = read(&dirs.cert_dir.join("ca.crt")).unwrap();
        let before = parsed(&read(&crt).unwrap());
        let conf_before = embedded_pair(&read(&conf).unwrap()).unwrap();
        // A second later, so the new notAfter is later.
        std::thread::sleep(std::time::Duration::from_millis(1100));

        renew_all(&dirs).unwrap();

        let after = parsed(&read(&crt).unwrap());
        assert_eq!(
            (&after.0, &after.1),
            (&before.0, &before.1),
            "subject and SANs kept"
        );
        assert_ne!(after.2, before.2, "a new serial");
        assert!(after.3 > before.3, "a later notAfter");
        let ca = Ca::load(&dirs.cert_dir).unwrap();
        assert!(ca.issued(&read(&crt).unwrap()));
        let conf_after = embedded_pair(&read(&conf).unwrap()).unwrap();
        assert_eq!(conf_after.1, conf_before.1, "the key is kept");
        let (a, b) = (parsed(&conf_after.0), parsed(&conf_before.0));
        assert_eq!(a.0, b.0);
        assert!(a.2 != b.2 && a.3 > b.3);
        assert!(ca.issued(&conf_after.0));
        assert_eq!(read(&dirs.cert_dir.join("ca.crt")).unwrap(), ca_before);
    }

    #[test]
    fn renewal_without_the_ca_key_says_what_is_missing() {
        let (_root, dirs) = pki();
        std::fs::remove_file(dirs.cert_dir.join("ca.key")).unwrap();
        let err = format!("{:#}", renew_all(&dirs).unwrap_err());
        assert!(
            err.contains("cluster CA") && err.contains("ca.key"),
            "{err}"
        );
        let out = check_expiration(&dirs, std::time::SystemTime::now()).unwrap();
        assert!(out.contains("apiserver"), "{out}");
    }
}
