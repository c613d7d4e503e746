//! Certificate authorities of the lab's own, for the services that demand TLS: a CA, and
//! leaf certificates it signs that serve their addresses and identify as clients.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Error, Result, io_err};

/// Writes `ca.crt`/`ca.key` (a CA named `ca_name`) and `<name>.crt`/`<name>.key` for every
/// leaf into `dir`. A leaf is a client certificate, and serves its IP addresses when it has
/// any.
pub(crate) fn issue(
    dir: &Path,
    ca_name: &str,
    leaves: impl IntoIterator<Item = (String, Vec<String>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let gen_err = |what: &str, e: rcgen::Error| Error::Config(format!("{ca_name} {what}: {e}"));
    let ca_key = KeyPair::generate().map_err(|e| gen_err("CA key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(ca_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params.self_signed(&ca_key).map_err(|e| gen_err("CA", e))?;
    write(dir, "ca.crt", &ca.pem())?;
    write(dir, "ca.key", &ca_key.serialize_pem())?;
    for (name, addresses) in leaves {
        let key = KeyPair::generate().map_err(|e| gen_err("key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&name);
        params.subject_alt_names = addresses
            .iter()
            .map(|a| SanType::IpAddress(a.parse().expect("an IP address")))
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !addresses.is_empty() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .map_err(|e| gen_err(&name, e))?;
        write(dir, &format!("{name}.crt"), &cert.pem())?;
        write(dir, &format!("{name}.key"), &key.serialize_pem())?;
    }
    Ok(())
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to `dir/name`, readable by root only.
fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    ekube_api::files::write_atomic(&path, text, 0o600).map_err(io_err("writing", &path))
}
