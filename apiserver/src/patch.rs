//! The four patch types: JSON patch, JSON merge patch, strategic merge patch, and (in
//! [`crate::apply`]) server-side apply.
//!
//! Strategic merge differs from merge patch in lists: a list whose field declares a merge key
//! (containers by `name`, container ports by `containerPort`, conditions by `type`…) is merged
//! item by item instead of replaced, and the patch may carry the directives `kubectl apply`
//! emits: `$patch` (merge / replace / delete), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`. The merge keys are the ones the core types declare; any
//! other list is atomic.

use serde_json::{Map, Value};

use crate::strategy::Kind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced as a whole.
    Atomic,
    /// Merged by the named keys of its items: the first, always present, is the strategic
    /// merge key; all of them (the others defaulted when absent, see [`identity`]) are the
    /// list-map keys server-side apply merges by. Ports are keyed by number and protocol
    /// there, so a Service's 53/UDP and 53/TCP applied together stay two items.
    MergeKey(&'static [&'static str]),
    /// A set of primitives, merged by union.
    MergePrimitives,
}

/// What identifies a list item under merge keys `keys`: each key's value, `protocol`
/// defaulting to `TCP` as the API defaults it; `None` when the first key is absent.
pub fn identity(item: &Value, keys: &[&str]) -> Option<Map<String, Value>> {
    let (first, rest) = keys.split_first()?;
    let mut id = Map::new();
    id.insert((*first).to_owned(), item.get(*first)?.clone());
    for key in rest {
        // A patch's `null` (removing the field) stands for the default too.
        let value = match item.get(*key).filter(|v| !v.is_null()) {
            Some(v) => v.clone(),
            None if *key == "protocol" => Value::from("TCP"),
            None => Value::Null,
        };
        id.insert((*key).to_owned(), value);
    }
    Some(id)
}

/// The strategy of the list at `path` (field names from the object root, indices omitted).
pub(crate) fn list_strategy(kind: Option<&dyn Kind>, path: &[String]) -> ListStrategy {
    use ListStrategy::*;
    let Some(last) = path.last().map(String::as_str) else {
        return Atomic;
    };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    let in_container = path[..path.len() - 1].iter().any(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match (last, parent) {
        ("conditions", _) => MergeKey(&["type"]),
        ("finalizers", Some("metadata")) => MergePrimitives,
        ("ownerReferences", Some("metadata")) => MergeKey(&["uid"]),
        ("containers" | "initContainers" | "ephemeralContainers", _) => MergeKey(&["name"]),
        ("env", _) if in_container => MergeKey(&["name"]),
        ("ports", _) if in_container => MergeKey(&["containerPort", "protocol"]),
        ("volumeMounts", _) if in_container => MergeKey(&["mountPath"]),
        ("volumeDevices", _) if in_container => MergeKey(&["devicePath"]),
        ("resizePolicy", _) if in_container => MergeKey(&["resourceName"]),
        ("volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims", Some("spec")) => {
            MergeKey(&["name"])
        }
        ("hostAliases", Some("spec")) => MergeKey(&["ip"]),
        ("topologySpreadConstraints", Some("spec")) => MergeKey(&["topologyKey"]),
        ("podIPs" | "hostIPs", Some("status")) => MergeKey(&["ip"]),
        _ => kind
            .and_then(|k| k.merge_keys_at(path))
            .map_or(Atomic, MergeKey),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops)
        .map_err(|e| PatchError(format!("the JSON patch could not be applied: {e}")))
}

/// How lists merge: by their strategic merge key alone (`patchMergeKey`, as a strategic
/// merge patch does), or by all their list-map keys (as server-side apply does).
struct Merge<'a> {
    kind: Option<&'a dyn Kind>,
    list_map_keys: bool,
}

impl Merge<'_> {
    fn strategy(&self, path: &[String]) -> ListStrategy {
        match list_strategy(self.kind, path) {
            ListStrategy::MergeKey(keys) if !self.list_map_keys => {
                ListStrategy::MergeKey(&keys[..1])
            }
            other => other,
        }
    }

    fn run(&self, target: &mut Value, patch: &Value) -> Result<(), PatchError> {
        let Value::Object(p) = patch else {
            return Err(PatchError(
                "a strategic merge patch must be a JSON object".into(),
            ));
        };
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        merge_map(self, &mut Vec::new(), target, p)
    }
}

/// Kubernetes strategic merge patch of `patch` onto `target`. Lists merge by their
/// `patchMergeKey`, as upstream's: ports by number alone.
pub(crate) fn strategic_merge(
    kind: Option<&dyn Kind>,
    target: &mut Value,
    patch: &Value,
) -> Result<(), PatchError> {
    Merge {
        kind,
        list_map_keys: false,
    }
    .run(target, patch)
}

/// The merge of server-side apply: as [`strategic_merge`], but lists merge by all their
/// list-map keys (ports by number and protocol).
pub(crate) fn apply_merge(
    kind: Option<&dyn Kind>,
    target: &mut Value,
    patch: &Value,
) -> Result<(), PatchError> {
    Merge {
        kind,
        list_map_keys: true,
    }
    .run(target, patch)
}

fn merge_map(
    merge: &Merge,
    path: &mut Vec<String>,
    target: &mut Value,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(strip_directives(replaced));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown patch type: {other:?}"))),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let retain_keys = patch.get("$retainKeys").cloned();
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let Value::Array(remove) = value else {
                return Err(PatchError(format!("{key} must be a list")));
            };
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|v| !remove.contains(v));
            }
            continue;
        }
        let Some(obj) = target.as_object_mut() else {
            return Err(PatchError(format!("cannot patch {key} into a non-object")));
        };
        if value.is_null() {
            obj.remove(key);
            continue;
        }
        path.push(key.clone());
        let slot = obj.entry(key.clone()).or_insert(Value::Null);
        match value {
            Value::Object(child) => {
                merge_map(merge, path, slot, child)?;
                if slot.is_null() {
                    obj.remove(key);
                }
            }
            Value::Array(items) => {
                let strategy = merge.strategy(path);
                merge_list(merge, path, slot, items, strategy)?;
                if let Some(Value::Array(order)) = patch.get(&format!("$setElementOrder/{key}")) {
                    apply_order(slot, order, strategy);
                }
            }
            other => *slot = other.clone(),
        }
        path.pop();
    }
    // A `$setElementOrder` for a list the patch did not touch still orders it.
    for (key, order) in patch {
        if let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order)
            && !patch.contains_key(field)
        {
            path.push(field.to_string());
            let strategy = merge.strategy(path);
            path.pop();
            if let Some(slot) = target.get_mut(field) {
                apply_order(slot, order, strategy);
            }
        }
    }
    if let (Some(Value::Array(keep)), Some(obj)) = (retain_keys, target.as_object_mut()) {
        obj.retain(|k, _| keep.iter().any(|v| v.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list(
    merge: &Merge,
    path: &mut Vec<String>,
    target: &mut Value,
    patch: &[Value],
    strategy: ListStrategy,
) -> Result<(), PatchError> {
    let replace = patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    let current = match target {
        Value::Array(items) if !replace => std::mem::take(items),
        _ => Vec::new(),
    };
    let merged = match strategy {
        _ if replace => patch
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .cloned()
            .map(strip_value)
            .collect(),
        ListStrategy::Atomic => patch.iter().cloned().map(strip_value).collect(),
        ListStrategy::MergePrimitives => {
            let mut out = current;
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            out
        }
        ListStrategy::MergeKey(keys) => {
            let mut out = current;
            for item in patch {
                let Some(key_value) = identity(item, keys) else {
                    return Err(PatchError(format!(
                        "map: {item} does not contain declared merge key: {}",
                        keys[0]
                    )));
                };
                let pos = out
                    .iter()
                    .position(|existing| identity(existing, keys).as_ref() == Some(&key_value));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let Value::Object(fields) = item else {
                            continue;
                        };
                        merge_map(merge, path, &mut out[i], fields)?;
                    }
                    (None, false) => {
                        let mut fresh = Value::Object(Map::new());
                        if let Value::Object(fields) = item {
                            merge_map(merge, path, &mut fresh, fields)?;
                        }
                        out.push(fresh);
                    }
                }
            }
            out
        }
    };
    *target = Value::Array(merged);
    Ok(())
}

/// Orders a merged list as `$setElementOrder` says; items it does not name keep their
/// relative order after the named ones.
fn apply_order(target: &mut Value, order: &[Value], strategy: ListStrategy) {
    let Value::Array(items) = target else { return };
    let key_of = |item: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeKey(keys) => identity(item, keys).map(Value::Object),
            _ => Some(item.clone()),
        }
    };
    let wanted: Vec<Value> = order.iter().filter_map(&key_of).collect();
    let mut rest = std::mem::take(items);
    let mut ordered = Vec::with_capacity(rest.len());
    for w in &wanted {
        if let Some(i) = rest
            .iter()
            .position(|item| key_of(item).as_ref() == Some(w))
        {
            ordered.push(rest.remove(i));
        }
    }
    ordered.extend(rest);
    *items = ordered;
}

fn strip_directives(mut map: Map<String, Value>) -> Map<String, Value> {
    map.retain(|k, _| !k.starts_with('$'));
    for v in map.values_mut() {
        *v = strip_value(std::mem::take(v));
    }
    map
}

fn strip_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::strategy::of_kind;

    fn smp(kind: Option<&dyn Kind>, mut target: Value, patch: Value) -> Value {
        strategic_merge(kind, &mut target, &patch).unwrap();
        target
    }

    #[test]
    fn ports_merge_by_number_in_a_patch_and_by_number_and_protocol_in_apply() {
        let svc = json!({"spec": {"ports": [{"name": "a", "port": 80, "protocol": "TCP"}]}});
        // A strategic merge patch keys ports on the number, as upstream's patchMergeKey.
        let udp = json!({"spec": {"ports": [{"port": 80, "protocol": "UDP"}]}});
        assert_eq!(
            smp(of_kind("", "Service"), svc.clone(), udp.clone())["spec"]["ports"],
            json!([{"name": "a", "port": 80, "protocol": "UDP"}])
        );
        // Server-side apply keys them on number and protocol: UDP is another port.
        let mut applied = svc.clone();
        apply_merge(of_kind("", "Service"), &mut applied, &udp).unwrap();
        assert_eq!(applied["spec"]["ports"].as_array().unwrap().len(), 2);
        // A patch removing the protocol (`null`) still finds the TCP port, in both.
        let unset = json!({"spec": {"ports": [{"port": 80, "protocol": null}]}});
        let mut applied = svc.clone();
        apply_merge(of_kind("", "Service"), &mut applied, &unset).unwrap();
        assert_eq!(applied["spec"]["ports"], json!([{"name": "a", "port": 80}]));
        assert_eq!(
            smp(of_kind("", "Service"), svc, unset)["spec"]["ports"],
            json!([{"name": "a", "port": 80}])
        );
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "busybox"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            "containers": [{"name": "web", "env": [{"name": "A", "value": "9"}]}]}});
        let out = smp(of_kind("", "Pod"), pod, patch);
        assert_eq!(out["spec"]["containers"][0]["image"], "web:1");
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn delete_directive_and_null() {
        let pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "web"}, {"name": "side"}]}});
        let patch = json!({"metadata": {"labels": {"a": null}},
            "spec": {"containers": [{"name": "side", "$patch": "delete"}]}});
        let out = smp(of_kind("", "Pod"), pod, patch);
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "web"}]));
    }

    #[test]
    fn atomic_lists_are_replaced_and_primitives_union() {
        let pod =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"tolerations": [{"key": "x"}]}});
        let patch =
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"tolerations": [{"key": "y"}]}});
        let out = smp(of_kind("", "Pod"), pod, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]));
        let out = smp(
            of_kind("", "Pod"),
            out,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn service_ports_merge_by_port_and_replace_directive() {
        let svc = json!({"spec": {"ports": [{"port": 80, "nodePort": 32143}], "selector": {"app": "web", "x": "y"}}});
        let out = smp(
            of_kind("", "Service"),
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}],
            "selector": {"$patch": "replace", "app": "web2"}}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "nodePort": 32143, "targetPort": 8080}])
        );
        assert_eq!(out["spec"]["selector"], json!({"app": "web2"}));
    }

    #[test]
    fn retain_keys() {
        let d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(
            of_kind("apps", "Deployment"),
            d,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn missing_merge_key_is_an_error() {
        let mut pod = json!({"spec": {"containers": [{"name": "web"}]}});
        assert!(
            strategic_merge(
                of_kind("", "Pod"),
                &mut pod,
                &json!({"spec": {"containers": [{"image": "x"}]}})
            )
            .is_err()
        );
    }
}
