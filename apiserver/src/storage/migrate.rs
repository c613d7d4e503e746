//! Copying a whole datastore into another (`ekube datastore migrate`): every key under
//! `/registry/` with its value unchanged, so objects keep their uids, owners and encryption.
//! Revisions are the target's own: every object gets a new `resourceVersion`.

use super::{Error, Result, Storage};

/// Everything the apiserver stores lives under this prefix.
const PREFIX: &str = "/registry/";
const PAGE: usize = 500;

/// Copies every key of `from` into `to`, which must hold none; returns how many were copied.
pub async fn copy(from: &dyn Storage, to: &dyn Storage) -> Result<usize> {
    let present = to.count(PREFIX).await?;
    if present > 0 {
        return Err(Error::Backend(format!(
            "the target already holds {present} keys under {PREFIX}; migrate only into an \
             empty datastore"
        )));
    }
    let mut copied = 0;
    let mut after: Option<String> = None;
    loop {
        let page = from.list(PREFIX, after.as_deref(), PAGE).await?;
        for kv in &page.items {
            to.create(&kv.key, kv.value.clone()).await?;
        }
        copied += page.items.len();
        match page.items.last() {
            Some(last) if page.more => after = Some(last.key.clone()),
            _ => return Ok(copied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sled::SledStorage;

    #[tokio::test]
    async fn copies_every_key_and_refuses_a_populated_target() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = SledStorage::open(a.path(), 64).unwrap();
        let to = SledStorage::open(b.path(), 64).unwrap();
        for i in 0..1234 {
            from.create(
                &format!("/registry/core/configmaps/ns/c{i:04}"),
                vec![i as u8],
            )
            .await
            .unwrap();
        }
        from.create("/registry/apps/deployments/ns/web", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(copy(&from, &to).await.unwrap(), 1235);
        let got = to.list(PREFIX, None, 0).await.unwrap();
        let want = from.list(PREFIX, None, 0).await.unwrap();
        let pairs = |l: &super::super::ListResult| {
            l.items
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&got), pairs(&want));
        let err = copy(&from, &to).await.unwrap_err().to_string();
        assert!(err.contains("already holds 1235 keys"), "{err}");
    }
}
