//! The cluster's certificates: a CA, the apiserver's serving certificate, and client
//! certificates (the admin's, the controller-manager's and the scheduler's), plus the
//! kubeconfig files that carry them.
//!
//! On first start the apiserver creates what is missing under its PKI directory and leaves
//! existing files alone, so a restart (or an operator's own CA) keeps working.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A loaded certificate authority able to sign.
pub struct Ca {
    pub cert_pem: String,
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    /// Loads `ca.crt`/`ca.key` from `dir`, creating nothing.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_named(dir, "ca")
    }

    /// Loads the authority `<name>.crt`/`<name>.key` from `dir`.
    pub fn load_named(dir: &Path, name: &str) -> Result<Self> {
        let cert_pem = read(&dir.join(format!("{name}.crt")))?;
        let key = KeyPair::from_pem(&read(&dir.join(format!("{name}.key")))?)
            .map_err(|source| gen_err(name, source))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|source| gen_err(name, source))?;
        // Re-signing the same parameters with the same key yields an issuer with the same
        // subject and key identifier, which is all signing needs.
        let cert = params
            .self_signed(&key)
            .map_err(|source| gen_err(name, source))?;
        Ok(Self {
            cert_pem,
            cert,
            key,
        })
    }

    /// Loads `ca.crt`/`ca.key` from `dir`, creating them when absent.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            return Self::load(dir);
        }
        let ca_key = KeyPair::generate().map_err(|source| gen_err("ca", source))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("ekube-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = params
            .self_signed(&ca_key)
            .map_err(|source| gen_err("ca", source))?;
        let cert_pem = cert.pem();
        create_dir(dir)?;
        write(&crt, &cert_pem, 0o600)?;
        write(&key, &ca_key.serialize_pem(), 0o600)?;
        Ok(Self {
            cert_pem,
            cert,
            key: ca_key,
        })
    }

    /// Issues a certificate signed by this CA. `hosts` become SANs (serving certificates);
    /// `organizations` become the subject's O (group membership for client certificates).
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        hosts: &[String],
        server: bool,
    ) -> Result<Issued> {
        let key = KeyPair::generate().map_err(|source| gen_err(common_name, source))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, organizations);
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(|source| gen_err(common_name, source))?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        set_leaf_validity(&mut params);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|source| gen_err(common_name, source))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Whether this CA issued `cert_pem`: its issuer is this CA's subject and its signature
    /// verifies with this CA's key.
    pub fn issued(&self, cert_pem: &str) -> bool {
        let (Ok((_, ours)), Ok((_, theirs))) = (
            x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes()),
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()),
        ) else {
            return false;
        };
        let (Ok(ours), Ok(theirs)) = (ours.parse_x509(), theirs.parse_x509()) else {
            return false;
        };
        theirs.issuer() == ours.subject()
            && theirs.verify_signature(Some(ours.public_key())).is_ok()
    }

    /// Issues `cert_pem` again for the same key (`key_pem`), as `kubeadm certs renew` does:
    /// the same subject, SANs and usages, a new serial number and a year's validity from now.
    pub fn renew(&self, cert_pem: &str, key_pem: &str) -> Result<String> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| gen_err("renewed key", source))?;
        let mut params = CertificateParams::from_ca_cert_pem(cert_pem)
            .map_err(|source| gen_err("certificate to renew", source))?;
        // A random serial: left unset, the serial is derived from the key, which is kept.
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        set_leaf_validity(&mut params);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|source| gen_err("renewed certificate", source))?;
        Ok(cert.pem())
    }
}

/// A leaf certificate's validity as the PKI issues them: a year, backdated an hour for clocks
/// slightly behind.
fn set_leaf_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
}

impl Ca {
    /// Signs a PKCS#10 request (PEM) as a client or serving certificate valid for `life`,
    /// keeping the subject and subject alternative names it asks for.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        server: bool,
        life: std::time::Duration,
    ) -> Result<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|source| gen_err("certificate request", source))?;
        let params = &mut csr.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        // Backdated as upstream's signer backdates, for clocks slightly behind; a short-lived
        // certificate by a tenth of its life at most, since its holder renews it at 70–90% of
        // notBefore..notAfter and a long backdate would make that moment already past.
        let now = time::OffsetDateTime::now_utc();
        let life = time::Duration::seconds(life.as_secs() as i64);
        let backdate: time::Duration = life / 10;
        params.not_before = now - backdate.min(time::Duration::minutes(5));
        params.not_after = now + life;
        let cert = csr
            .signed_by(&self.cert, &self.key)
            .map_err(|source| gen_err("certificate request", source))?;
        Ok(cert.pem())
    }
}

/// A freshly issued certificate and its private key, PEM encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Loads `<dir>/<name>.crt` and `.key`, issuing them with `issue` when absent.
    pub fn load_or_issue(
        dir: &Path,
        name: &str,
        issue: impl FnOnce() -> Result<Issued>,
    ) -> Result<Issued> {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        if crt.exists() && key.exists() {
            return Ok(Issued {
                cert_pem: read(&crt)?,
                key_pem: read(&key)?,
            });
        }
        let issued = issue()?;
        write(&crt, &issued.cert_pem, 0o600)?;
        write(&key, &issued.key_pem, 0o600)?;
        Ok(issued)
    }
}

/// Writes a kubeconfig with embedded certificates, usable by kubectl, kube-rs and the Python client.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    client: &Issued,
) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let credentials = format!(
        "client-certificate-data: {}\n    client-key-data: {}",
        b64(&client.cert_pem),
        b64(&client.key_pem)
    );
    write_kubeconfig_with(path, server, ca_pem, user, &credentials)
}

/// Writes a kubeconfig whose client certificate and key are read from `pem` (both in one
/// file), as a kubelet's `kubelet.conf` names `kubelet-client-current.pem`, which rotation
/// replaces.
pub fn write_kubeconfig_for_file(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    pem: &Path,
) -> Result<()> {
    let pem = pem.display();
    let credentials = format!("client-certificate: {pem}\n    client-key: {pem}");
    write_kubeconfig_with(path, server, ca_pem, user, &credentials)
}

fn write_kubeconfig_with(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &str,
) -> Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ekube\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {user}@ekube\n  context:\n    cluster: ekube\n    user: {user}\ncurrent-context: {user}@ekube\nusers:\n- name: {user}\n  user:\n    {credentials}\n",
    );
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    write(path, &doc, 0o600)
}

/// Issues (once) the client certificate of a control-plane component and writes its
/// kubeconfig, as kubeadm writes `controller-manager.conf` and `scheduler.conf`: the
/// certificate's CN is `user` and it has no group, so only the bootstrap policy's bindings for
/// that user apply (never `system:masters`). The certificate is kept as
/// `<cert_dir>/<user without "system:">.crt` so a restart reuses it.
pub fn write_component_kubeconfig(
    ca: &Ca,
    cert_dir: &Path,
    kubeconfig: &Path,
    server: &str,
    user: &str,
) -> Result<()> {
    let stem = user.trim_start_matches("system:");
    let client = Issued::load_or_issue(cert_dir, stem, || ca.issue(user, &[], &[], false))?;
    write_kubeconfig(kubeconfig, server, &ca.cert_pem, user, &client)
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn gen_err(what: &str, source: rcgen::Error) -> Error {
    Error::Generate {
        what: what.to_string(),
        source,
    }
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    create_private_dir(dir)
}

/// Creates `dir` (and missing parents) readable by its owner only, as everything under the
/// data and certificate directories is: keys, tokens and the database.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Makes `dir` and everything in it owner-only (directories 0700, files 0600), for files a
/// library created with the default umask.
pub fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path, source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let is_dir = path.is_dir();
        let mode = if is_dir { 0o700 } else { 0o600 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(&path, e))?;
        if is_dir {
            make_private(&path)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(dir, e))
}

pub(crate) fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    ekube_api::files::write_atomic(path, contents, mode).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user a kubeconfig's client certificate authenticates as.
    fn kubeconfig_user(path: &Path) -> crate::auth::User {
        let doc = read(path).unwrap();
        let data = doc
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
            .expect("client-certificate-data");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .expect("a certificate")
            .unwrap();
        crate::auth::User::from_certificate(&der).expect("a client certificate")
    }

    #[test]
    fn component_kubeconfigs_carry_their_own_identity_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let conf = dir.path().join("scheduler.conf");
        let server = "https://127.0.0.1:6443";
        write_component_kubeconfig(&ca, dir.path(), &conf, server, "system:kube-scheduler")
            .unwrap();
        let user = kubeconfig_user(&conf);
        assert_eq!(user.name, "system:kube-scheduler");
        assert!(
            user.groups.is_empty(),
            "no group, least of all system:masters: {user:?}"
        );
        assert!(read(&conf).unwrap().contains(server));
        let first = read(&dir.path().join("kube-scheduler.crt")).unwrap();

        // A restart writes the kubeconfig again with the certificate it already issued.
        write_component_kubeconfig(&ca, dir.path(), &conf, server, "system:kube-scheduler")
            .unwrap();
        assert_eq!(read(&dir.path().join("kube-scheduler.crt")).unwrap(), first);
        assert_eq!(kubeconfig_user(&conf).name, "system:kube-scheduler");
    }
}
