//! The kubelet API's serving certificate: the files given by `--tls-cert-file` and
//! `--tls-private-key-file`, or else a self-signed certificate for the node's name and IP,
//! kept under the certificate directory so it survives restarts (as the upstream kubelet's
//! `kubelet.crt`). The apiserver does not verify it, as kubeadm clusters without
//! `--kubelet-certificate-authority` do not. Clients are asked for a certificate, judged by
//! [`super::auth`].

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Config, Error, Node};

pub fn server_config(
    config: &Config,
    node: &Node,
    client_auth: Arc<super::auth::ClientAuth>,
) -> Result<rustls::ServerConfig, Error> {
    let (cert_pem, key_pem) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => self_signed(node)?,
        _ => {
            return Err(Error::Tls(
                "--tls-cert-file and --tls-private-key-file go together".into(),
            ));
        }
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("key: {e}")))?
        .ok_or_else(|| Error::Tls("no private key found".into()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_client_cert_verifier(client_auth)
    .with_single_cert(certs, key)
    .map_err(|e| Error::Tls(e.to_string()))?;
    // Upgrades (exec, attach, port-forward) need HTTP/1.1.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))
}

fn self_signed(node: &Node) -> Result<(String, String), Error> {
    let (cert_path, key_path) = (
        node.cert_dir.join("kubelet.crt"),
        node.cert_dir.join("kubelet.key"),
    );
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok((c, k));
    }
    let mut names = vec![node.name.clone()];
    names.extend(node.ip.map(|ip| ip.to_string()));
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| Error::Tls(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{}@kubelet", node.name));
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Tls(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    std::fs::create_dir_all(&node.cert_dir)
        .map_err(|e| Error::Tls(format!("creating {}: {e}", node.cert_dir.display())))?;
    std::fs::write(&cert_path, &cert_pem)
        .map_err(|e| Error::Tls(format!("writing {}: {e}", cert_path.display())))?;
    write_private(&key_path, &key_pem)?;
    Ok((cert_pem, key_pem))
}

fn write_private(path: &Path, pem: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .map_err(|e| Error::Tls(format!("writing {}: {e}", path.display())))
}
