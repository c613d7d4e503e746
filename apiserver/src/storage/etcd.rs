//! etcd v3 as the datastore, laid out as kube-apiserver lays it out.
//!
//! Every trait method is one etcd call: a read is a range, a create is a transaction on
//! `mod_revision == 0`, an update or a guarded delete a transaction on the expected
//! `mod_revision`, a watch an etcd watch from a revision with `prev_kv`. A key's revisions are
//! etcd's own, so an object's `resourceVersion` is the `mod_revision` `etcdctl` shows, and a list's
//! is the response header's revision. Values are the bytes the sled backend stores (the object's
//! JSON, or its encrypted envelope).
//!
//! Keys follow kube-apiserver's layout for most resources (`/registry/pods/default/web`,
//! `/registry/deployments/…`): built-in resources drop the group segment ekube's own keys carry
//! (`/registry/core/pods/…`), and custom resources keep it (`/registry/<group>/<plural>/…`), see
//! [`keys`]. Values are JSON where kube-apiserver writes protobuf, so the two cannot share one
//! etcd; `etcdctl` shows ekube's objects readably.
//!
//! The compacted revision is kept, as kube-apiserver keeps it, under `compact_rev_key`, so every
//! server sharing the store refuses a watch from before it with 410.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    ResponseHeader, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use super::{Error, Event, EventKind, KeyValue, ListResult, Result, Storage, WatchStream};

mod keys;

/// Where the compacted revision is recorded (kube-apiserver's key).
const COMPACT_REV_KEY: &str = "compact_rev_key";
/// The largest answer accepted from etcd (kube-apiserver's `MaxCallRecvMsgSize`).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// How to reach the etcd cluster.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `http://` or `https://` client URLs.
    pub urls: Vec<String>,
    /// The CA that signed the members' serving certificates (PEM).
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and key (PEM), for members that require one.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl Endpoints {
    /// Comma-separated URLs, as `--datastore-endpoint` takes them.
    pub fn parse(list: &str) -> std::result::Result<Vec<String>, String> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        for url in &urls {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("etcd endpoint {url:?} is not an http:// or https:// URL")
                })?;
            if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
                return Err(format!("etcd endpoint {url:?} is not a host:port URL"));
            }
        }
        Ok(urls)
    }

    fn describe(&self) -> String {
        self.urls.join(",")
    }

    fn connect_options(&self, timeout: Duration) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let tls = self.urls.iter().any(|u| u.starts_with("https://"));
        if !tls {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                return Err(Error::Backend(
                    "--datastore-cafile/--datastore-certfile need https:// endpoints".into(),
                ));
            }
            return Ok(options);
        }
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                Error::Backend(format!("cannot read etcd TLS file {}: {e}", path.display()))
            })
        };
        let ca = self.ca_file.as_deref().ok_or_else(|| {
            Error::Backend("https:// etcd endpoints need --datastore-cafile".into())
        })?;
        let mut config = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Backend(
                    "--datastore-certfile and --datastore-keyfile go together".into(),
                ));
            }
        }
        options = options.with_tls(config);
        Ok(options)
    }
}

pub struct EtcdStorage {
    client: Client,
    endpoints: String,
    /// The newest revision any response has shown.
    revision: AtomicU64,
    /// The revision the store is compacted to, as far as this server knows.
    compacted: Arc<AtomicU64>,
    /// How many events a watcher may fall behind before it is dropped.
    watch_buffer: usize,
    /// How long one request may take (`--datastore-timeout`).
    timeout: Duration,
}

impl EtcdStorage {
    /// Connects and reads the current and compacted revisions; an unreachable cluster is an
    /// error naming its endpoints. Each later call fails after `timeout` rather than hang.
    pub async fn connect(
        endpoints: &Endpoints,
        timeout: Duration,
        watch_buffer: usize,
    ) -> Result<Self> {
        let described = endpoints.describe();
        let options = endpoints.connect_options(timeout)?;
        let client = Client::connect(&endpoints.urls, Some(options))
            .await
            .map_err(|e| Error::Backend(format!("etcd at {described}: {}", describe(&e))))?;
        let storage = Self {
            client,
            endpoints: described,
            revision: AtomicU64::new(0),
            compacted: Arc::new(AtomicU64::new(0)),
            watch_buffer: watch_buffer.max(16),
            timeout,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let first = send_until(
            || storage.kv(),
            deadline,
            |mut kv| async move { kv.get(COMPACT_REV_KEY, None).await },
        )
        .await
        .map_err(|failed| {
            let e = match failed {
                Failed::TimedOut => {
                    return Error::Unavailable(format!(
                        "etcd at {} did not answer within {timeout:?}",
                        storage.endpoints
                    ));
                }
                Failed::Etcd(e) => e,
            };
            let tls = match (&endpoints.ca_file, &endpoints.cert_file) {
                (Some(ca), Some(cert)) => format!(
                    " (TLS: server certificate checked against {}, client certificate {})",
                    ca.display(),
                    cert.display()
                ),
                (Some(ca), None) => format!(
                    " (TLS: server certificate checked against {})",
                    ca.display()
                ),
                _ => String::new(),
            };
            Error::Unavailable(format!(
                "etcd at {}: {}{tls}",
                storage.endpoints,
                describe(&e)
            ))
        })?;
        storage.seen(first.header());
        if let Some(kv) = first.kvs().first() {
            storage
                .compacted
                .store(decode_revision(kv.value()), Ordering::SeqCst);
        }
        Ok(storage)
    }

    /// A KV client taking answers of any size: a list of every pod is one range response,
    /// far past gRPC's default 4 MiB (kube-apiserver lifts the limit the same way).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn seen(&self, header: Option<&ResponseHeader>) -> u64 {
        let revision = header.map_or(0, |h| h.revision().max(0) as u64);
        self.revision.fetch_max(revision, Ordering::SeqCst);
        revision
    }

    fn error(&self, e: etcd_client::Error) -> Error {
        classify(&self.endpoints, e)
    }

    /// Sends a request made by `send` (see [`send_until`]), within the request timeout.
    async fn call<T, Fut>(&self, send: impl FnMut(etcd_client::KvClient) -> Fut) -> Result<T>
    where
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        send_until(|| self.kv(), deadline, send)
            .await
            .map_err(|failed| match failed {
                Failed::Etcd(e) => self.error(e),
                Failed::TimedOut => Error::Timeout(format!(
                    "etcd at {}: no answer within {:?}",
                    self.endpoints, self.timeout
                )),
            })
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let response = self
            .call(|mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        self.seen(response.header());
        Ok(response)
    }

    /// The value an `else` branch read, if the key exists.
    fn read_back(response: &etcd_client::TxnResponse) -> Option<etcd_client::KeyValue> {
        response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        })
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStorage {
    fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::SeqCst)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let etcd_key = keys::to_etcd(key);
        let response = self
            .call(|mut kv| {
                let key = etcd_key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        self.seen(response.header());
        Ok(response.kvs().first().map(|kv| stored(key.to_string(), kv)))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let etcd_prefix = keys::to_etcd(prefix);
        let start = match start_after {
            Some(after) => {
                let mut key = keys::to_etcd(after).into_bytes();
                key.push(0);
                key
            }
            None => etcd_prefix.clone().into_bytes(),
        };
        let options = GetOptions::new()
            .with_range(range_end(etcd_prefix.as_bytes()))
            .with_limit(limit as i64);
        let response = self
            .call(|mut kv| {
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
        let revision = self.seen(response.header());
        let items = response
            .kvs()
            .iter()
            .map(|kv| stored(keys::from_etcd(&String::from_utf8_lossy(kv.key())), kv))
            .collect();
        Ok(ListResult {
            items,
            revision,
            more: response.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let prefix = keys::to_etcd(prefix);
        let options = GetOptions::new()
            .with_range(range_end(prefix.as_bytes()))
            .with_count_only();
        let response = self
            .call(|mut kv| {
                let (prefix, options) = (prefix.clone(), options.clone());
                async move { kv.get(prefix, Some(options)).await }
            })
            .await?;
        self.seen(response.header());
        Ok(response.count().max(0) as usize)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let etcd_key = keys::to_etcd(key);
        let response = self
            .txn(
                Txn::new()
                    .when([at_revision(etcd_key.as_str(), 0)])
                    .and_then([TxnOp::put(etcd_key.as_str(), value.clone(), None)]),
            )
            .await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = revision_of(response.header());
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: u64) -> Result<KeyValue> {
        if expected == 0 {
            // Revision 0 is what etcd compares a missing key as: an update of it would create.
            return Err(Error::NotFound {
                key: key.to_string(),
            });
        }
        let etcd_key = keys::to_etcd(key);
        let response = self
            .txn(
                Txn::new()
                    .when([at_revision(etcd_key.as_str(), expected as i64)])
                    .and_then([TxnOp::put(
                        etcd_key.as_str(),
                        value.clone(),
                        Some(PutOptions::new().with_prev_key()),
                    )])
                    .or_else([TxnOp::get(etcd_key.as_str(), None)]),
            )
            .await?;
        if !response.succeeded() {
            return Err(match Self::read_back(&response) {
                Some(found) => Error::Conflict {
                    key: key.to_string(),
                    expected,
                    found: found.mod_revision() as u64,
                },
                None => Error::NotFound {
                    key: key.to_string(),
                },
            });
        }
        let created = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision() as u64),
                _ => None,
            })
            .unwrap_or_default();
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: created,
            mod_revision: revision_of(response.header()),
        })
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<KeyValue> {
        let etcd_key = keys::to_etcd(key);
        let delete = TxnOp::delete(
            etcd_key.as_str(),
            Some(DeleteOptions::new().with_prev_key()),
        );
        let txn = match expected {
            Some(expected) => Txn::new()
                .when([at_revision(etcd_key.as_str(), expected as i64)])
                .and_then([delete])
                .or_else([TxnOp::get(etcd_key.as_str(), None)]),
            None => Txn::new().and_then([delete]),
        };
        let response = self.txn(txn).await?;
        let not_found = || Error::NotFound {
            key: key.to_string(),
        };
        if !response.succeeded() {
            return Err(match Self::read_back(&response) {
                Some(found) => Error::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or_default(),
                    found: found.mod_revision() as u64,
                },
                None => not_found(),
            });
        }
        let deleted = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(not_found)?;
        let mut kv = stored(key.to_string(), &deleted);
        kv.mod_revision = revision_of(response.header());
        Ok(kv)
    }

    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let etcd_prefix = keys::to_etcd(prefix);
        let options = WatchOptions::new()
            .with_range(range_end(etcd_prefix.as_bytes()))
            .with_start_revision(after as i64 + 1)
            .with_prev_key();
        let (tx, rx) = tokio::sync::mpsc::channel(self.watch_buffer);
        let mut client = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let compacted = self.compacted.clone();
        let endpoints = self.endpoints.clone();
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::spawn(async move {
            // Opened again while the balancer picks a member that is down (as `call` does).
            let mut pause = Duration::from_millis(5);
            let mut stream = loop {
                let opened = tokio::time::timeout_at(
                    deadline,
                    client.watch(etcd_prefix.clone(), Some(options.clone())),
                )
                .await;
                let Ok(opened) = opened else {
                    tracing::warn!(etcd = %endpoints, "opening a watch: no answer within the request timeout");
                    return;
                };
                match opened {
                    Ok(stream) => break stream,
                    Err(e) if never_sent(&e) && tokio::time::Instant::now() + pause < deadline => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    Err(e) => {
                        tracing::warn!(etcd = %endpoints, error = %describe(&e), "watch failed");
                        return;
                    }
                }
            };
            loop {
                let response = tokio::select! {
                    _ = tx.closed() => return,
                    message = stream.message() => message,
                };
                let response = match response {
                    Ok(Some(response)) => response,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(etcd = %endpoints, error = %describe(&e), "watch ended");
                        return;
                    }
                };
                if response.canceled() {
                    // A start before the compacted revision: remember it, so the watcher's
                    // retry from the same revision is answered 410.
                    if response.compact_revision() > 0 {
                        compacted
                            .fetch_max(response.compact_revision() as u64 - 1, Ordering::SeqCst);
                    }
                    return;
                }
                for event in response.events() {
                    let Some(event) = translate(event) else {
                        // Its previous value is compacted away: the watcher's retry from its
                        // last revision must be refused (410), so that it lists again.
                        let revision = event.kv().map_or(0, |kv| kv.mod_revision().max(1) - 1);
                        compacted.fetch_max(revision as u64, Ordering::SeqCst);
                        tracing::debug!(etcd = %endpoints, revision, "watch event without its previous value; ending the watch");
                        return;
                    };
                    // A watcher that falls behind is dropped: it re-watches from its last
                    // revision, as with the sled backend.
                    if tx.try_send(Arc::new(event)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        if revision <= self.compacted_revision() {
            return Ok(());
        }
        // The floor moves forward only, whichever server compacts: the record is replaced
        // only if it is what was read and lower (as kube-apiserver guards it by its version).
        let current = self
            .call(|mut kv| async move { kv.get(COMPACT_REV_KEY, None).await })
            .await?;
        let (recorded, recorded_at) = current.kvs().first().map_or((0, 0), |kv| {
            (decode_revision(kv.value()), kv.mod_revision())
        });
        if recorded >= revision {
            self.compacted.fetch_max(recorded, Ordering::SeqCst);
            return Ok(());
        }
        let moved = self
            .txn(
                Txn::new()
                    .when([at_revision(COMPACT_REV_KEY, recorded_at)])
                    .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)]),
            )
            .await?;
        if !moved.succeeded() {
            // Another server recorded a compaction meanwhile; the next round looks again.
            return Ok(());
        }
        // Watches from before the floor are refused from now on, then etcd drops the history.
        self.compacted.fetch_max(revision, Ordering::SeqCst);
        match self
            .call(|mut kv| async move { kv.compact(revision as i64, None).await })
            .await
        {
            Ok(response) => {
                self.seen(response.header());
                Ok(())
            }
            // Another server compacted past it already.
            Err(Error::Backend(message))
                if message.contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// An etcd key-value under ekube's key `key`.
fn stored(key: String, kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision().max(0) as u64,
        mod_revision: kv.mod_revision().max(0) as u64,
    }
}

/// The transaction guard "`key` was last written at `revision`" (0: it does not exist).
fn at_revision(key: &str, revision: i64) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, revision)
}

fn revision_of(header: Option<&ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.revision().max(0) as u64)
}

/// An etcd watch event as the trait reports it: a delete carries the deleted value with the
/// deleting revision. `None` when etcd could not send the value before the change (its
/// revision was compacted while the watch replayed): the event cannot be told right (a delete
/// without the object, an update that looks like a create), so the watch must end instead.
fn translate(event: &etcd_client::Event) -> Option<Event> {
    let kv = event.kv()?;
    let key = keys::from_etcd(&String::from_utf8_lossy(kv.key()));
    let revision = kv.mod_revision().max(0) as u64;
    let prev = event.prev_kv().map(|p| stored(key.clone(), p));
    match event.event_type() {
        EventType::Put => {
            let created = kv.create_revision() == kv.mod_revision();
            if prev.is_none() && !created {
                return None;
            }
            Some(Event {
                kind: EventKind::Put,
                revision,
                kv: stored(key, kv),
                prev,
                seen: Default::default(),
            })
        }
        EventType::Delete => {
            let mut deleted = prev.clone()?;
            deleted.mod_revision = revision;
            Some(Event {
                kind: EventKind::Delete,
                revision,
                kv: deleted,
                prev,
                seen: Default::default(),
            })
        }
    }
}

fn decode_revision(raw: &[u8]) -> u64 {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_default()
}

/// The end of the key range holding every key that starts with `prefix` (etcd's `--prefix`).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

/// An etcd client error as the apiserver reports it: an unreachable cluster, lost quorum or a
/// timed-out request is `Unavailable` (503/504 with a Status), anything else a backend error.
fn classify(endpoints: &str, e: etcd_client::Error) -> Error {
    use tonic::Code;
    match &e {
        // etcd's own deadline, and the client's (`--datastore-timeout`, which tonic reports as
        // cancelled with "Timeout expired").
        etcd_client::Error::GRpcStatus(status)
            if status.code() == Code::DeadlineExceeded
                || status.code() == Code::Cancelled && status.message().contains("Timeout") =>
        {
            Error::Timeout(format!("etcd at {endpoints}: {}", describe(&e)))
        }
        etcd_client::Error::GRpcStatus(status)
            if matches!(status.code(), Code::Unavailable | Code::Cancelled) =>
        {
            Error::Unavailable(format!("etcd at {endpoints}: {}", describe(&e)))
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Error::Unavailable(format!("etcd at {endpoints}: {}", describe(&e)))
        }
        _ => Error::Backend(format!("etcd at {endpoints}: {}", describe(&e))),
    }
}

/// Why a request to etcd failed.
enum Failed {
    Etcd(etcd_client::Error),
    /// No answer by the deadline.
    TimedOut,
}

/// Sends a request made by `send` on a client from `kv`, and again while it fails without
/// having reached any member: the client balances over every endpoint, and one whose member is
/// down refuses the connection, so another attempt goes to a live one. Any other failure is
/// returned at once (a write may have been applied). Every attempt, and the whole, ends by
/// `deadline`.
async fn send_until<T, Fut>(
    kv: impl Fn() -> etcd_client::KvClient,
    deadline: tokio::time::Instant,
    mut send: impl FnMut(etcd_client::KvClient) -> Fut,
) -> Result<T, Failed>
where
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut pause = Duration::from_millis(5);
    loop {
        match tokio::time::timeout_at(deadline, send(kv())).await {
            Err(_) => return Err(Failed::TimedOut),
            Ok(Err(e)) if never_sent(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(error = %describe(&e), "etcd request not sent; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Ok(result) => return result.map_err(Failed::Etcd),
        }
    }
}

/// Whether a request failed before it reached any member: its connection was refused or never
/// made (the member is down), so sending it again cannot apply it twice.
fn never_sent(e: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match e {
        // tonic's status carries the transport error as its source; etcd-client's error
        // does not pass it on.
        etcd_client::Error::GRpcStatus(status) => {
            if status.code() == tonic::Code::Unavailable
                && status.message().starts_with("tcp connect error")
            {
                return true;
            }
            std::error::Error::source(status)
        }
        _ => Some(e),
    };
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        // hyper's connector, under tonic's transport error.
        if c.to_string().starts_with("tcp connect error") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An error with its innermost cause, since a transport error's own text names none
/// ("transport error", for a refused connection).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let (text, mut root) = match e.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(status)) => (
            format!("{}: {}", status.code(), status.message()),
            std::error::Error::source(status),
        ),
        _ => (e.to_string(), e.source()),
    };
    while let Some(cause) = root.and_then(std::error::Error::source) {
        root = Some(cause);
    }
    match root.map(ToString::to_string) {
        Some(cause) if !text.contains(&cause) => format!("{text} ({cause})"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_refused_connections_count_as_never_sent() {
        use etcd_client::Error::GRpcStatus;
        let refused = GRpcStatus(tonic::Status::unavailable("tcp connect error"));
        assert!(super::never_sent(&refused));
        // Reached a member that could not serve it: the request may have been applied.
        for sent in [
            tonic::Status::unavailable("etcdserver: leader changed"),
            tonic::Status::deadline_exceeded("context deadline exceeded"),
            tonic::Status::unknown("transport error"),
        ] {
            assert!(!super::never_sent(&GRpcStatus(sent)));
        }
    }

    use ekube_api::resources::RESOURCES;

    use super::keys::{from_etcd, to_etcd};
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver_and_map_back() {
        assert_eq!(
            to_etcd("/registry/core/pods/default/web"),
            "/registry/pods/default/web"
        );
        assert_eq!(
            to_etcd("/registry/apps/deployments/"),
            "/registry/deployments/"
        );
        assert_eq!(
            to_etcd("/registry/example.com/widgets/ns/w"),
            "/registry/example.com/widgets/ns/w"
        );
        assert_eq!(to_etcd("/registry/health"), "/registry/health");
        assert_eq!(to_etcd("/registry/"), "/registry/");
        for r in RESOURCES {
            let key = format!("{}ns/name", r.key_prefix());
            assert_eq!(from_etcd(&to_etcd(&key)), key, "{}", r.plural);
        }
        for key in [
            "/registry/example.com/widgets/ns/w",
            "/registry/health",
            "compact_rev_key",
        ] {
            assert_eq!(from_etcd(&to_etcd(key)), key);
        }
    }

    #[test]
    fn endpoints_are_urls() {
        assert_eq!(
            Endpoints::parse("https://a:2379, http://b:2379").unwrap(),
            ["https://a:2379", "http://b:2379"]
        );
        for bad in ["", "a:2379", "ftp://a:2379", "http://"] {
            assert!(Endpoints::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn range_end_is_the_next_prefix() {
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), [0]);
    }
}
