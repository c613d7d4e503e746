//! A client certificate kept in files that their owner replaces, such as the kubelet's
//! `kubelet-client-current.pem` once it has been rotated, handed to every client built from
//! the kubeconfig naming them, as client-go's certificate manager hands it to the kubelet's
//! clients.
//!
//! Each TLS handshake presents the pair the files hold at that moment ([`FileIdentity`] is
//! the rustls resolver; it re-reads the files when their inode or mtime changed). The apiserver
//! looks at a client certificate only when a connection is made, so a connection made with the
//! old pair would otherwise go on as the old certificate for as long as it lives (a watch, a
//! kept-alive connection). Like client-go's `connrotation` dialer, [`CloseOnRotation`] closes
//! every connection made before a change, and they are made again with the new pair; a request
//! in flight at that moment fails once and is retried by its caller (watchers re-watch).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

/// How often the files are looked at for a change, besides at every handshake.
const POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// The identity of an inode and its last change: a file replaced by rename, or a symlink
/// pointed elsewhere, changes it.
type Stamp = (u64, SystemTime);

/// A client certificate and key read from files, re-read when they change.
#[derive(Debug)]
pub struct FileIdentity {
    cert: PathBuf,
    key: PathBuf,
    /// The pair last read and the stamps of the two files it was read from.
    loaded: Mutex<(Arc<CertifiedKey>, [Option<Stamp>; 2])>,
    /// Bumped whenever the pair changes; connections made before close.
    generation: watch::Sender<u64>,
}

impl FileIdentity {
    /// Reads the pair (`cert` and `key` may be the same file, as the kubelet keeps them).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, Error> {
        let stamps = [stamp(cert), stamp(key)];
        let pair = read_pair(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new((pair, stamps)),
            generation: watch::Sender::new(0),
        }))
    }

    /// Re-reads the pair if either file changed since it was read; whether it did. A pair that
    /// does not read (a writer half way) is kept as it was and looked at again next time.
    pub fn refresh(&self) -> bool {
        let stamps = [stamp(&self.cert), stamp(&self.key)];
        let mut loaded = self.loaded.lock().expect("identity lock");
        if loaded.1 == stamps {
            return false;
        }
        match read_pair(&self.cert, &self.key) {
            Ok(pair) => {
                *loaded = (pair, stamps);
                drop(loaded);
                tracing::info!(cert = %self.cert.display(), "client certificate changed; reconnecting with it");
                self.generation.send_modify(|g| *g += 1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the client certificate changed but does not read yet");
                false
            }
        }
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.loaded.lock().expect("identity lock").0.clone()
    }

    /// Looks at the files every few seconds until no connector is left.
    pub fn watch_files(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                match me.upgrade() {
                    Some(identity) => identity.refresh(),
                    None => return,
                };
            }
        });
    }

    /// Wraps `connector` so the connections it makes close once the pair changes.
    pub fn closing<C>(&self, connector: C) -> CloseOnRotation<C> {
        CloseOnRotation {
            inner: connector,
            rotated: self.generation.subscribe(),
        }
    }
}

impl ResolvesClientCert for FileIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The notBefore and notAfter of a DER certificate.
pub fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
    };
    Some((
        at(cert.validity().not_before)?,
        at(cert.validity().not_after)?,
    ))
}

/// The notBefore and notAfter of the first certificate in `pem`.
pub fn pem_validity(pem: &[u8]) -> Option<(SystemTime, SystemTime)> {
    validity(CertificateDer::pem_slice_iter(pem).next()?.ok()?.as_ref())
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?))
}

fn read_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let parse = |path: &Path, reason: String| Error::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(parse(cert, "no certificate in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| parse(key, e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| parse(key, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A connector whose connections close once the client certificate changed after they were
/// made.
#[derive(Clone)]
pub struct CloseOnRotation<C> {
    inner: C,
    rotated: watch::Receiver<u64>,
}

impl<C> tower::Service<Uri> for CloseOnRotation<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = Closing<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The generation is taken before the handshake: a change during it closes the new
        // connection too, which is the safe side.
        let mut rotated = self.rotated.clone();
        rotated.mark_unchanged();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(Closing {
                io,
                rotated: Box::pin(async move {
                    if rotated.changed().await.is_err() {
                        // The identity is gone with its client; nothing rotates any more.
                        std::future::pending::<()>().await;
                    }
                }),
                closed: false,
            })
        })
    }
}

/// A connection that reads as closed by the server, and refuses writes, once the client
/// certificate changed after it was made: an idle pooled connection is dropped, a response
/// being read ends in an error its caller retries.
pub struct Closing<S> {
    io: S,
    rotated: Pin<Box<dyn Future<Output = ()> + Send>>,
    closed: bool,
}

impl<S> Closing<S> {
    /// Whether the certificate changed; registers the waker for when it does.
    fn rotated(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closed && self.rotated.as_mut().poll(cx).is_ready() {
            self.closed = true;
        }
        self.closed
    }
}

fn rotated_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed: the client certificate was rotated",
    )
}

impl<S: Read + Unpin> Read for Closing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rotated(cx) {
            // End of stream, as when the server closes.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: Write + Unpin> Write for Closing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rotated(cx) {
            return Poll::Ready(Err(rotated_error()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S: Connection> Connection for Closing<S> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(path: &Path, cn: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        crate::files::write_atomic(
            path,
            &format!("{}{}", cert.pem(), key.serialize_pem()),
            0o600,
        )
        .unwrap();
    }

    #[test]
    fn a_replaced_file_is_presented_from_the_next_handshake_and_bumps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("current.pem");
        write_pair(&pem, "first");
        let identity = FileIdentity::load(&pem, &pem).unwrap();
        let first = identity.current().cert[0].clone();
        let rotated = identity.generation.subscribe();
        assert!(!identity.refresh(), "nothing changed yet");

        write_pair(&pem, "second");
        let presented = identity.resolve(&[], &[]).unwrap();
        assert_ne!(presented.cert[0], first);
        assert!(rotated.has_changed().unwrap());
        assert!(!identity.refresh(), "the change is taken once");

        // A file that does not parse (yet) leaves the last good pair in place.
        std::fs::write(&pem, "half").unwrap();
        assert!(!identity.refresh());
        assert_eq!(identity.current().cert[0], presented.cert[0]);
    }
}
