//! A [`Storage`] wrapper that encrypts values on their way to disk and decrypts them on the
//! way back, per `--encryption-provider-config` ([`crate::encryption`]). Revisions, keys and
//! the event log's shape are the inner backend's; only values change, so every backend gets
//! encryption at rest the same way (upstream's value transformers sit at the same place).

use std::sync::Arc;

use futures::StreamExt;

use super::{Error, Event, KeyValue, ListResult, Result, Storage, WatchStream};
use crate::encryption::Encryption;

pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    encryption: Arc<Encryption>,
}

impl EncryptedStorage {
    pub fn new(inner: Arc<dyn Storage>, encryption: Encryption) -> Self {
        Self {
            inner,
            encryption: Arc::new(encryption),
        }
    }

    fn encrypt(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.encryption
            .encrypt(key, value)
            .map_err(|e| Error::Backend(e.to_string()))
    }
}

fn decrypt_kv(encryption: &Encryption, mut kv: KeyValue) -> Result<KeyValue> {
    kv.value = encryption
        .decrypt(&kv.key, &kv.value)
        .map_err(|e| Error::Backend(e.to_string()))?;
    Ok(kv)
}

fn decrypt_event(encryption: &Encryption, event: &Event) -> Result<Event> {
    Ok(Event {
        kind: event.kind,
        revision: event.revision,
        kv: decrypt_kv(encryption, event.kv.clone())?,
        prev: event
            .prev
            .clone()
            .map(|p| decrypt_kv(encryption, p))
            .transpose()?,
        seen: Default::default(),
    })
}

#[async_trait::async_trait]
impl Storage for EncryptedStorage {
    fn current_revision(&self) -> u64 {
        self.inner.current_revision()
    }

    fn compacted_revision(&self) -> u64 {
        self.inner.compacted_revision()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| decrypt_kv(&self.encryption, kv))
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let mut page = self.inner.list(prefix, start_after, limit).await?;
        page.items = page
            .items
            .into_iter()
            .map(|kv| decrypt_kv(&self.encryption, kv))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let stored = self.encrypt(key, &value)?;
        let kv = self.inner.create(key, stored).await?;
        Ok(KeyValue { value, ..kv })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: u64) -> Result<KeyValue> {
        let stored = self.encrypt(key, &value)?;
        let kv = self.inner.update(key, stored, expected).await?;
        Ok(KeyValue { value, ..kv })
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<KeyValue> {
        decrypt_kv(&self.encryption, self.inner.delete(key, expected).await?)
    }

    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        let encryption = self.encryption.clone();
        let events = self.inner.watch(prefix, after)?;
        // A value that no longer decrypts ends the stream (the client re-lists and gets the
        // error) rather than leaving a silent hole in it.
        Ok(events
            .map(move |e| match decrypt_event(&encryption, &e) {
                Ok(plain) => Some(Arc::new(plain)),
                Err(err) => {
                    tracing::error!(error = %err, "ending a watch");
                    None
                }
            })
            .take_while(|e| futures::future::ready(e.is_some()))
            .filter_map(futures::future::ready)
            .boxed())
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        self.inner.compact(revision).await
    }
}
