//! The generic object store: every verb on every resource, over [`Storage`].
//!
//! Objects are JSON. On the way in they are defaulted, validated, round-tripped through their
//! typed form and stored without `resourceVersion`; on the way out the key's `mod_revision`
//! becomes their `resourceVersion`. Writes that read first (update, patch, binding, graceful
//! delete) go through [`Registry::guaranteed_update`], which retries on a lost race unless the
//! client pinned a `resourceVersion`, in which case the race is the client's 409.

use std::sync::Arc;

use ekube_api::ResourceInfo;
use ekube_api::selector::{FieldSelector, LabelSelector};
use serde_json::{Value, json};
use tokio::sync::Mutex;

mod codec;
mod members;
pub(crate) use codec::encode;
pub use codec::{MAX_OBJECT_BYTES, decode, decode_json, selected, write_json};

use crate::admission::{self, Attributes, Operation};
use crate::alloc::claims::{self, Claims, Refused};
use crate::alloc::{Allocator, Holdings};
use crate::auth::User;
use crate::errors::{ApiError, Cause, Result};
use crate::storage::{self, KeyValue, Storage};
use crate::strategy::Kind;
use crate::{defaults, typed, validation};

/// How unknown fields are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// The `resourceVersion` the client pinned (a PUT body's, or one a patch sets): a race
    /// against it is the client's 409, never retried.
    pub precondition: Option<u64>,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    /// Who writes, for admission; the default (nobody) is the apiserver's own writes.
    pub user: Arc<User>,
}

/// What a list asks for, upstream's `ListOptions` as a registry reads them.
#[derive(Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Items per page; 0 for all.
    pub limit: usize,
    /// Where the page starts: the token the page before ended with.
    pub continue_token: Option<String>,
}

impl ListOptions {
    /// Every object the selectors match, in one page.
    pub fn selecting(labels: LabelSelector, fields: FieldSelector) -> Self {
        Self {
            labels,
            fields,
            ..Self::default()
        }
    }
}

/// What a write produced besides the object: warnings for the `Warning` header.
#[derive(Debug, Default)]
pub struct Warnings(pub Vec<String>);

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    /// The deprecated `orphanDependents`: `true` is the `Orphan` policy; an explicit `false`
    /// makes the answer for an object that stays 202 Accepted.
    pub orphan_dependents: Option<bool>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// Who deletes, for admission; the default (nobody) is the apiserver's own deletes.
    pub user: Arc<User>,
}

pub enum Deleted {
    /// Gone from storage; the last state.
    Gone(Value),
    /// Still present, waiting for finalizers or a kubelet's confirmation.
    Pending(Value),
}

pub struct Registry {
    pub store: Arc<dyn Storage>,
    /// Service writes take this lock so cluster IP and node port allocation cannot race in
    /// this server; the stored claims settle races between servers.
    pub alloc: Mutex<Allocator>,
    pub claims: Claims,
    /// `--service-node-port-range`, for validation without taking the allocator lock.
    node_ports: (u16, u16),
}

/// Now, as a `Time` field holds it.
pub use ekube_api::time::now_rfc3339 as now;

/// The storage key of an object.
pub fn key(r: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
    match (r.namespaced, ns) {
        (true, Some(ns)) => format!("{}{ns}/{name}", r.key_prefix()),
        _ => format!("{}{name}", r.key_prefix()),
    }
}

/// The key prefix of a collection (one namespace, or all).
pub fn collection_prefix(r: &ResourceInfo, ns: Option<&str>) -> String {
    match (r.namespaced, ns) {
        (true, Some(ns)) => format!("{}{ns}/", r.key_prefix()),
        _ => r.key_prefix(),
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn parse_rv(rv: &str) -> Result<u64> {
    rv.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// Round-trips `obj` through the typed form of `r`: the normalised object and its unknown
/// fields, or a 400 naming the field of the wrong type.
fn normalize(r: &ResourceInfo, obj: Value) -> Result<(Value, Vec<String>)> {
    typed::normalize(r.group, r.version, r.kind, obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {path}: {msg}",
            kind = r.kind,
            v = r.version,
            path = e.path,
            msg = e.message
        ))
    })
}

impl Registry {
    pub fn new(store: Arc<dyn Storage>, alloc: Allocator) -> Self {
        let node_ports = alloc.ports;
        Self {
            claims: Claims::new(store.clone()),
            store,
            alloc: Mutex::new(alloc),
            node_ports,
        }
    }

    pub async fn get(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        self.get_kv(r, ns, name).await.map(|kv| decode(r, &kv))
    }

    async fn get_kv(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<KeyValue> {
        self.store
            .get(&key(r, ns, name))
            .await?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))
    }

    /// Lists a collection, filtered, in pages. Returns the items, the list's resource version
    /// and the continue token of the next page.
    pub async fn list(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<Value>, u64, Option<String>)> {
        let mut items = Vec::new();
        let (rv, next) = self
            .list_each(r, ns, opts, |kv| items.push(decode(r, kv)))
            .await?;
        Ok((items, rv, next))
    }

    /// [`Self::list`] with the items appended to `out` as JSON text ([`write_json`]),
    /// separated by commas: the items are never built as objects, and with selectors only the
    /// members they read are.
    pub async fn list_json(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        out: &mut String,
    ) -> Result<(u64, Option<String>)> {
        let mut first = true;
        self.list_each(r, ns, opts, |kv| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            write_json(r, kv, out)
        })
        .await
    }

    /// Hands `item` each stored object of the page `opts` asks for that passes its selectors.
    /// Returns the list's resource version and the continue token of the next page.
    async fn list_each(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        mut item: impl FnMut(&KeyValue),
    ) -> Result<(u64, Option<String>)> {
        let (page, rv) = self.page(r, ns, opts.continue_token.as_deref()).await?;
        let (labels, fields) = (&opts.labels, &opts.fields);
        let filtered = !labels.is_empty() || !fields.is_empty();
        let mut taken = 0;
        let mut last: Option<&str> = None;
        for kv in &page.items {
            if filtered && !selected(r, kv, labels, fields) {
                continue;
            }
            if opts.limit > 0 && taken == opts.limit {
                return Ok((rv, last.map(|key| encode_continue(key, rv))));
            }
            item(kv);
            taken += 1;
            last = Some(&kv.key);
        }
        Ok((rv, None))
    }

    /// The stored items of a collection from where `continue_token` left off, and the revision
    /// the list answers at (the token's, so that every page of one list shows one revision).
    async fn page(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        continue_token: Option<&str>,
    ) -> Result<(storage::ListResult, u64)> {
        let prefix = collection_prefix(r, ns);
        let (start_after, pinned_rv) = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => decode_continue(t, &prefix)?,
            None => (None, None),
        };
        let page = self.store.list(&prefix, start_after.as_deref(), 0).await?;
        let rv = pinned_rv.unwrap_or(page.revision);
        Ok((page, rv))
    }

    /// Defaults, validates and normalises an object about to be written; `old` is the stored
    /// version on update.
    async fn admit(
        &self,
        r: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
        subresource: Option<&str>,
        opts: &WriteOptions,
        warnings: &mut Warnings,
    ) -> Result<()> {
        // A kind served in several versions is defaulted and validated in its storage version,
        // as upstream does in its internal one; unknown fields are those of the request's.
        let converted = crate::convert::converts(r);
        let request = converted.then(|| obj.clone());
        if converted {
            *obj = crate::convert::to_storage(r, obj);
        }
        let old_stored = old
            .filter(|_| converted)
            .map(|o| crate::convert::to_storage(r, o));
        let old = old_stored.as_ref().or(old);
        let storage = crate::convert::storage_resource(r);
        let strategy = crate::strategy::of(&storage);
        defaults::apply(strategy, obj);
        let mut causes = validation::validate(r.kind, strategy, obj, old, self.node_ports);
        match (old, subresource) {
            // Upstream's ephemeral containers strategy: its own update rules, not the pod's.
            (Some(old), Some("ephemeralcontainers")) => {
                causes.extend(validation::ephemeral_containers_update(old, obj));
            }
            (Some(old), _) => causes.extend(validation::immutable(strategy, old, obj)),
            (None, _) => {}
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, name_of(obj), causes));
        }
        let (normalized, mut unknown) = normalize(&storage, obj.take())?;
        *obj = match request {
            Some(request) => {
                unknown = normalize(r, request)?.1;
                crate::convert::from_storage(r, normalized)
            }
            None => normalized,
        };
        let size = encode(r, obj).len();
        if size > MAX_OBJECT_BYTES {
            return Err(ApiError::object_too_large(size, MAX_OBJECT_BYTES));
        }
        if !unknown.is_empty() {
            match opts.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings
                    .0
                    .extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
                FieldValidation::Ignore => {}
            }
        }
        Ok(())
    }

    pub async fn create(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<(Value, Warnings)> {
        let mut warnings = Warnings::default();
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be an object"));
        }
        let strategy = crate::strategy::of(r);
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(r.kind);
        let meta = defaults::ensure(&mut obj, "metadata");
        match (
            r.namespaced,
            ns,
            meta.get("namespace").and_then(Value::as_str),
        ) {
            (true, Some(ns), Some(body_ns)) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (true, Some(ns), _) => meta["namespace"] = json!(ns),
            (true, None, _) => {
                return Err(ApiError::bad_request(
                    "a namespaced resource must be created in a namespace",
                ));
            }
            (false, _, _) => {
                if let Some(m) = meta.as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            meta["name"] = json!(format!("{prefix}{}", random_suffix()));
        }
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now()));
            if r.status || strategy.is_some_and(|k| k.generation()) {
                m.insert("generation".into(), json!(1));
            }
        }
        // Status is the system's to write, except where the kind says otherwise (a Node's
        // kubelet reports it on create).
        if r.status
            && !strategy.is_some_and(|k| k.creates_with_status())
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let name = name_of(&obj).to_string();
        let attrs = Attributes {
            operation: Operation::Create,
            resource: r,
            subresource: None,
            namespace: ns.filter(|_| r.namespaced),
            name: &name,
            old_object: None,
            user: &opts.user,
            dry_run: opts.dry_run,
        };
        admission::mutate(self, &attrs, Some(&mut obj)).await?;
        self.admit(r, &mut obj, None, None, opts, &mut warnings)
            .await?;
        admission::validate(self, &attrs, Some(&obj), &mut warnings).await?;
        let k = key(r, ns, &name);
        if allocates(strategy) {
            let mut alloc = self.alloc.lock().await;
            if self.store.get(&k).await?.is_some() {
                return Err(ApiError::already_exists(r.group, r.plural, &name));
            }
            let none = Holdings::default();
            let held = self
                .allocate_service(&mut alloc, r, ns, &name, &mut obj, &none, opts.dry_run)
                .await?;
            if opts.dry_run {
                return Ok((obj, warnings));
            }
            return match self.store.create(&k, encode(r, &obj)).await {
                Ok(kv) => Ok((decode(r, &kv), warnings)),
                Err(e) => {
                    alloc.release(&held);
                    let owner = format!("{}/{name}", ns.unwrap_or_default());
                    self.claims.release(&owner, &held).await;
                    Err(self.map_write_error(r, &name, e))
                }
            };
        }
        if opts.dry_run {
            if self.store.get(&k).await?.is_some() {
                return Err(ApiError::already_exists(r.group, r.plural, &name));
            }
            return Ok((obj, warnings));
        }
        let kv = self
            .store
            .create(&k, encode(r, &obj))
            .await
            .map_err(|e| self.map_write_error(r, &name, e))?;
        Ok((decode(r, &kv), warnings))
    }

    fn map_write_error(&self, r: &ResourceInfo, name: &str, e: storage::Error) -> ApiError {
        match e {
            storage::Error::AlreadyExists { .. } => {
                ApiError::already_exists(r.group, r.plural, name)
            }
            storage::Error::NotFound { .. } => ApiError::not_found(r.group, r.plural, name),
            storage::Error::Conflict { .. } => ApiError::stale(r.group, r.plural, name),
            other => other.into(),
        }
    }

    /// Reads, changes and writes one object, retrying on a lost race. `mutate` gets the stored
    /// object and returns the desired one. With `opts.precondition` (a client-supplied
    /// resourceVersion) a race is reported as 409 instead of retried. `subresource` scopes which parts
    /// of the object may change (`status` changes only `.status`; none preserves `.status`).
    pub async fn guaranteed_update<F>(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        opts: &WriteOptions,
        mut mutate: F,
    ) -> Result<(Value, Warnings)>
    where
        F: FnMut(Value) -> Result<Value>,
    {
        let strategy = crate::strategy::of(r);
        for _ in 0..32 {
            let kv = self.get_kv(r, ns, name).await?;
            let current = decode(r, &kv);
            let mut desired = mutate(current.clone())?;
            let precondition = opts.precondition;
            if precondition.is_some_and(|rv| rv != kv.mod_revision) {
                return Err(ApiError::stale(r.group, r.plural, name));
            }
            if let Some(m) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            self.prepare_update(r, strategy, &current, &mut desired, subresource)?;
            let mut warnings = Warnings::default();
            let attrs = Attributes {
                operation: Operation::Update,
                resource: r,
                subresource,
                namespace: ns,
                name,
                old_object: Some(&current),
                user: &opts.user,
                dry_run: opts.dry_run,
            };
            admission::mutate(self, &attrs, Some(&mut desired)).await?;
            self.admit(
                r,
                &mut desired,
                Some(&current),
                subresource,
                opts,
                &mut warnings,
            )
            .await?;
            // As upstream's PrepareForUpdate: after defaulting and mutation, before
            // validating admission sees the object.
            Self::bump_generation(&current, &mut desired);
            admission::validate(self, &attrs, Some(&desired), &mut warnings).await?;
            if desired.pointer("/metadata/deletionTimestamp").is_some()
                && finalizers_done(strategy, &desired)
            {
                let gone = self
                    .store
                    .delete(&key(r, ns, name), Some(kv.mod_revision))
                    .await;
                match gone {
                    Ok(kv) => {
                        self.released(strategy, &current).await;
                        return Ok((decode(r, &kv), warnings));
                    }
                    Err(storage::Error::Conflict { .. }) if precondition.is_none() => continue,
                    Err(e) => return Err(self.map_write_error(r, name, e)),
                }
            }
            if without_rv(&desired) == without_rv(&current) {
                return Ok((current, warnings));
            }
            let write = if allocates(strategy) {
                let mut alloc = self.alloc.lock().await;
                let old = Holdings::of(&current);
                let held = self
                    .allocate_service(&mut alloc, r, ns, name, &mut desired, &old, opts.dry_run)
                    .await?;
                if opts.dry_run {
                    return Ok((desired, warnings));
                }
                let res = self
                    .store
                    .update(&key(r, ns, name), encode(r, &desired), kv.mod_revision)
                    .await;
                let owner = format!("{}/{name}", ns.unwrap_or_default());
                if res.is_err() {
                    alloc.release(&held);
                    alloc.hold(&old);
                    self.claims
                        .release(&owner, &claims::minus(&held, &old))
                        .await;
                } else {
                    self.claims
                        .release(&owner, &claims::minus(&old, &held))
                        .await;
                }
                res
            } else {
                if opts.dry_run {
                    return Ok((desired, warnings));
                }
                self.store
                    .update(&key(r, ns, name), encode(r, &desired), kv.mod_revision)
                    .await
            };
            match write {
                Ok(kv) => return Ok((decode(r, &kv), warnings)),
                Err(storage::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(self.map_write_error(r, name, e)),
            }
        }
        Err(ApiError::conflict(
            r.group,
            r.plural,
            name,
            "too many concurrent writers, try again",
        ))
    }

    /// Keeps what an update may not change.
    fn prepare_update(
        &self,
        r: &ResourceInfo,
        strategy: Option<&dyn Kind>,
        current: &Value,
        desired: &mut Value,
        sub: Option<&str>,
    ) -> Result<()> {
        if !desired.is_object() {
            return Err(ApiError::bad_request("the request body must be an object"));
        }
        let name = current
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or_default();
        let body_name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !body_name.is_empty() && Some(body_name) != name.as_str() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                name.as_str().unwrap_or_default()
            )));
        }
        desired["apiVersion"] = current["apiVersion"].clone();
        desired["kind"] = current["kind"].clone();
        match sub {
            Some("status") => {
                // Only .status moves; everything else is the stored object.
                let status = desired.get("status").cloned();
                let mut next = current.clone();
                match status {
                    Some(s) => next["status"] = s,
                    None => {
                        next.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                // Kubernetes resets metadata on status writes, except where the kind says.
                if strategy.is_some_and(|k| k.status_writes_metadata()) {
                    for field in ["labels", "annotations"] {
                        match desired["metadata"].get(field) {
                            Some(v) => next["metadata"][field] = v.clone(),
                            None => {
                                next["metadata"].as_object_mut().map(|m| m.remove(field));
                            }
                        }
                    }
                }
                *desired = next;
            }
            Some("binding") => {
                // Upstream's binding storage: the node is set and PodScheduled recorded in one
                // write; nothing else moves.
                let mut next = current.clone();
                next["spec"]["nodeName"] = desired["spec"]["nodeName"].take();
                defaults::ensure(&mut next, "status")["conditions"] =
                    desired["status"]["conditions"].take();
                *desired = next;
            }
            Some("ephemeralcontainers") => {
                // Only .spec.ephemeralContainers moves (upstream's
                // dropNonEphemeralContainerUpdates).
                let mut next = current.clone();
                match desired.pointer("/spec/ephemeralContainers").cloned() {
                    Some(list) => next["spec"]["ephemeralContainers"] = list,
                    None => {
                        next["spec"]
                            .as_object_mut()
                            .map(|m| m.remove("ephemeralContainers"));
                    }
                }
                *desired = next;
            }
            _ if r.status => match current.get("status") {
                Some(s) => desired["status"] = s.clone(),
                None => {
                    desired.as_object_mut().map(|m| m.remove("status"));
                }
            },
            _ => {}
        }
        let meta = defaults::ensure(desired, "metadata");
        for keep in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match current["metadata"].get(keep) {
                Some(v) => meta[keep] = v.clone(),
                None => {
                    meta.as_object_mut().map(|m| m.remove(keep));
                }
            }
        }
        if let Some(m) = meta.as_object_mut()
            && m.get("resourceVersion")
                .is_some_and(|v| v.as_str().is_none_or(str::is_empty))
        {
            m.remove("resourceVersion");
        }
        Ok(())
    }

    /// Bumps `generation` when the spec changed; called once `desired` is defaulted and
    /// admitted, so that a body leaving out defaulted fields is not a change.
    fn bump_generation(current: &Value, desired: &mut Value) {
        let spec_of = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        if let Some(generation) = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            && spec_of(current) != spec_of(desired)
        {
            desired["metadata"]["generation"] = json!(generation + 1);
        }
    }

    /// Called after an object left storage, to free what it held.
    async fn released(&self, strategy: Option<&dyn Kind>, obj: &Value) {
        if allocates(strategy) {
            let held = Holdings::of(obj);
            let owner = format!(
                "{}/{}",
                obj["metadata"]["namespace"].as_str().unwrap_or_default(),
                obj["metadata"]["name"].as_str().unwrap_or_default()
            );
            let mut alloc = self.alloc.lock().await;
            alloc.release(&held);
            self.claims.release(&owner, &held).await;
        }
    }

    /// Fills in the cluster IP and node ports `svc` needs (keeping what the stored version
    /// holds, `old`), and claims the new values in the datastore. A value another server
    /// claimed meanwhile is marked held and the choice made again, so a requested value
    /// another Service holds is refused as already allocated, and a chosen one is replaced.
    #[allow(clippy::too_many_arguments)]
    async fn allocate_service(
        &self,
        alloc: &mut Allocator,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        svc: &mut Value,
        old: &Holdings,
        dry_run: bool,
    ) -> Result<Holdings> {
        let owner = format!("{}/{name}", ns.unwrap_or_default());
        // Other servers' allocations are learned one refusal at a time; a range they fill
        // faster than that is reported rather than retried for ever.
        for _ in 0..64 {
            let mut candidate = svc.clone();
            let held = alloc
                .allocate(&mut candidate, old, dry_run)
                .map_err(|causes| ApiError::invalid(r.group, r.kind, name, causes))?;
            if dry_run {
                *svc = candidate;
                return Ok(held);
            }
            match self.claims.claim(&owner, &claims::minus(&held, old)).await {
                Ok(()) => {
                    *svc = candidate;
                    return Ok(held);
                }
                Err(refused) => {
                    alloc.release(&held);
                    alloc.hold(old);
                    match refused {
                        Refused::Taken(taken) => alloc.hold(&taken),
                        Refused::Storage(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(ApiError::internal(format!(
            "allocating addresses for Service {owner}: every value chosen was claimed by \
             another server first"
        )))
    }

    pub async fn delete(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let strategy = crate::strategy::of(r);
        for _ in 0..32 {
            let kv = self.get_kv(r, ns, name).await?;
            let current = decode(r, &kv);
            let attrs = Attributes {
                operation: Operation::Delete,
                resource: r,
                subresource: None,
                namespace: ns,
                name,
                old_object: Some(&current),
                user: &opts.user,
                dry_run: opts.dry_run,
            };
            admission::mutate(self, &attrs, None).await?;
            admission::validate(self, &attrs, None, &mut Warnings::default()).await?;
            if let Some(uid) = &opts.uid {
                let actual = current
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(
                        r.group,
                        r.plural,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.resource_version
                && parse_rv(rv)? != kv.mod_revision
            {
                return Err(ApiError::conflict(
                    r.group,
                    r.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let mut next = current.clone();
            let mut changed = false;
            // Graceful deletion (of pods a kubelet is running).
            if let Some(grace) = strategy.and_then(|k| k.grace_period(&current, opts.grace_period))
            {
                let existing = current
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if grace > 0 {
                    if existing.is_some_and(|g| g <= grace) {
                        return Ok(Deleted::Pending(current));
                    }
                    let when = ekube_api::time::Timestamp::now()
                        .checked_add(ekube_api::time::SignedDuration::from_secs(grace))
                        .unwrap_or(ekube_api::time::Timestamp::MAX);
                    next["metadata"]["deletionTimestamp"] = json!(ekube_api::time::rfc3339(when));
                    next["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                    changed = true;
                } else if existing.is_some() {
                    // The kubelet confirms the pod is gone (or the client forces it).
                    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    changed = true;
                }
            }
            let mut finalizers: Vec<Value> = current
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match opts.propagation.as_deref() {
                Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                    finalizers.push(json!("foregroundDeletion"));
                    changed = true;
                }
                Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                    finalizers.push(json!("orphan"));
                    changed = true;
                }
                _ => {}
            }
            let finalizing = strategy.is_some_and(|k| k.finalizing(&current));
            if let Some(k) = strategy.filter(|_| finalizing) {
                k.mark_finalizing(&mut next);
                changed = true;
            }
            if !finalizers.is_empty() || finalizing {
                next["metadata"]["finalizers"] = json!(finalizers);
                if next.pointer("/metadata/deletionTimestamp").is_none() {
                    next["metadata"]["deletionTimestamp"] = json!(now());
                    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    changed = true;
                }
            }
            let grace_pending = next
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0;
            if finalizers.is_empty() && !finalizing && !grace_pending {
                // Nothing holds it: delete now.
                if opts.dry_run {
                    return Ok(Deleted::Gone(current));
                }
                match self
                    .store
                    .delete(&key(r, ns, name), Some(kv.mod_revision))
                    .await
                {
                    Ok(kv) => {
                        self.released(strategy, &current).await;
                        return Ok(Deleted::Gone(decode(r, &kv)));
                    }
                    Err(storage::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(self.map_write_error(r, name, e)),
                }
            }
            if !changed || opts.dry_run {
                return Ok(Deleted::Pending(if opts.dry_run { next } else { current }));
            }
            match self
                .store
                .update(&key(r, ns, name), encode(r, &next), kv.mod_revision)
                .await
            {
                Ok(kv) => return Ok(Deleted::Pending(decode(r, &kv))),
                Err(storage::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.map_write_error(r, name, e)),
            }
        }
        Err(ApiError::conflict(
            r.group,
            r.plural,
            name,
            "too many concurrent writers, try again",
        ))
    }
}

/// Whether an object marked for deletion may now leave storage.
fn finalizers_done(strategy: Option<&dyn Kind>, obj: &Value) -> bool {
    let meta_done = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    let own_done = !strategy.is_some_and(|k| k.finalizing(obj));
    // A terminating pod leaves only when its kubelet (or a forced delete) says so.
    let grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    meta_done && own_done && grace == 0
}

fn without_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

fn encode_continue(last_key: &str, rv: u64) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Option<String>, Option<u64>)> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((Some(start.to_string()), v["rv"].as_u64()))
}

/// Whether `obj` passes the filters of a list or watch.
pub fn matches(
    obj: &Value,
    name: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    name.is_none_or(|n| name_of(obj) == n)
        && labels.matches_object(obj)
        && fields.matches_object(obj)
}

/// Whether objects of a kind hold a cluster IP and node ports the registry allocates.
fn allocates(strategy: Option<&dyn Kind>) -> bool {
    strategy.is_some_and(|k| k.allocates())
}

/// Turns a `Cause`-free validation into a plain invalid error (used by subresources).
pub fn invalid(r: &ResourceInfo, name: &str, cause: Cause) -> ApiError {
    ApiError::invalid(r.group, r.kind, name, vec![cause])
}
