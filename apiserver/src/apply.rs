//! Server-side apply (`application/apply-patch+yaml`).
//!
//! Each field manager owns the fields of the configuration it last applied, recorded in
//! `metadata.managedFields` as a `FieldsV1` set (`f:` for fields, `k:` for list items by merge
//! key, `v:` for set members). Applying again merges the new configuration, removes the fields
//! the manager owned before and no longer applies (unless another manager owns them), and
//! reports a 409 conflict when it would change a value another applier owns, unless `force`.
//! Ownership is tracked for appliers only; plain updates (PUT, other patches) take no fields.

use serde_json::{Map, Value, json};

use crate::errors::{ApiError, Cause};
use crate::patch::{ListStrategy, apply_merge, identity, list_strategy};
use crate::strategy::Kind;
use ekube_api::resources::ResourceInfo;

type Path = Vec<String>;

/// The leaf paths of an applied configuration, as `FieldsV1` path elements.
fn leaves(
    kind: Option<&dyn Kind>,
    v: &Value,
    path: &mut Vec<String>,
    names: &mut Vec<String>,
    out: &mut Vec<Path>,
) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1
                    && names[0] == "metadata"
                    && matches!(
                        k.as_str(),
                        "name"
                            | "namespace"
                            | "managedFields"
                            | "resourceVersion"
                            | "uid"
                            | "creationTimestamp"
                    )
                {
                    continue;
                }
                path.push(format!("f:{k}"));
                names.push(k.clone());
                match child {
                    Value::Object(m) if !m.is_empty() => leaves(kind, child, path, names, out),
                    Value::Array(items) => match list_strategy(kind, names) {
                        ListStrategy::MergeKey(keys) => {
                            for item in items {
                                let Some(id) = identity(item, keys) else {
                                    continue;
                                };
                                path.push(format!("k:{}", Value::Object(id)));
                                out.push([path.clone(), vec![".".to_string()]].concat());
                                leaves(kind, item, path, names, out);
                                path.pop();
                            }
                        }
                        ListStrategy::MergePrimitives => {
                            for item in items {
                                out.push([path.clone(), vec![format!("v:{item}")]].concat());
                            }
                        }
                        ListStrategy::Atomic => out.push(path.clone()),
                    },
                    _ => out.push(path.clone()),
                }
                names.pop();
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn to_fields_v1(paths: &[Path]) -> Value {
    fn insert(map: &mut Map<String, Value>, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if let Value::Object(child) = map.entry(first.clone()).or_insert_with(|| json!({})) {
            insert(child, rest);
        }
    }
    let mut root = Map::new();
    for p in paths {
        insert(&mut root, p);
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, path: &mut Path, out: &mut Vec<Path>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                from_fields_v1(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn read_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        if let Some(field) = elem.strip_prefix("f:") {
            cur = cur.get(field)?;
        } else if let Some(key) = elem.strip_prefix("k:") {
            cur = cur
                .as_array()?
                .iter()
                .find(|item| item_matches(item, key))?;
        } else if elem == "." {
            return Some(cur);
        } else if let Some(member) = elem.strip_prefix("v:") {
            let want: Value = serde_json::from_str(member).ok()?;
            return cur.as_array()?.iter().find(|x| **x == want);
        }
    }
    Some(cur)
}

fn remove_path(obj: &mut Value, path: &[String]) {
    // A list item's `.` marker stands for the whole item.
    let path = match path.split_last() {
        Some((last, rest)) if last == "." => rest,
        _ => path,
    };
    remove_rec(obj, path);
}

/// Removes the element `path` names; a map or list emptied by that goes too.
fn remove_rec(cur: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        remove_elem(cur, first);
        return;
    }
    let Some(child) = child_mut(cur, first) else {
        return;
    };
    remove_rec(child, rest);
    let emptied = match child {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if emptied {
        remove_elem(cur, first);
    }
}

fn item_matches(item: &Value, key: &str) -> bool {
    let want: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
    let keys: Vec<&str> = want.keys().map(String::as_str).collect();
    !want.is_empty()
        && identity(item, &keys).is_some_and(|id| id.iter().all(|(k, v)| want.get(k) == Some(v)))
}

fn child_mut<'a>(cur: &'a mut Value, elem: &str) -> Option<&'a mut Value> {
    if let Some(field) = elem.strip_prefix("f:") {
        cur.get_mut(field)
    } else if let Some(key) = elem.strip_prefix("k:") {
        cur.as_array_mut()?
            .iter_mut()
            .find(|item| item_matches(item, key))
    } else {
        None
    }
}

fn remove_elem(cur: &mut Value, elem: &str) {
    if let Some(field) = elem.strip_prefix("f:") {
        cur.as_object_mut().map(|m| m.remove(field));
    } else if let Some(key) = elem.strip_prefix("k:") {
        if let Some(items) = cur.as_array_mut() {
            items.retain(|item| !item_matches(item, key));
        }
    } else if let Some(member) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(member).unwrap_or(Value::Null);
        if let Some(items) = cur.as_array_mut() {
            items.retain(|x| *x != want);
        }
    }
}

/// Merges `applied` by `manager` into `current` (None when the object does not exist yet), an
/// object of the resource `r`. Returns the object to write, with `managedFields` updated.
pub fn apply(
    r: &ResourceInfo,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let (kind, api_version) = (crate::strategy::of(r), r.api_version());
    let mut new_leaves = Vec::new();
    leaves(
        kind,
        applied,
        &mut Vec::new(),
        &mut Vec::new(),
        &mut new_leaves,
    );
    let mut entries: Vec<Value> = current
        .and_then(|c| c.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_mine = |e: &Value| e["manager"] == manager && e["operation"] == "Apply";
    let previous: Vec<Path> = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| {
            let mut out = Vec::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut out);
            out
        })
        .unwrap_or_default();
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    // Conflicts with other appliers.
    let mut causes = Vec::new();
    let mut others: Vec<Path> = Vec::new();
    for e in entries
        .iter_mut()
        .filter(|e| !is_mine(e) && e["operation"] == "Apply")
    {
        let mut owned = Vec::new();
        from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut owned);
        let contested: Vec<Path> = owned
            .iter()
            .filter(|p| new_leaves.contains(p) && read_path(&obj, p) != read_path(applied, p))
            .cloned()
            .collect();
        if !contested.is_empty() {
            if force {
                owned.retain(|p| !contested.contains(p));
                e["fieldsV1"] = to_fields_v1(&owned);
            } else {
                let who = e["manager"].as_str().unwrap_or_default().to_string();
                causes.extend(contested.iter().map(|p| Cause {
                    reason: "FieldManagerConflict",
                    field: p.join("."),
                    message: format!("conflict with \"{who}\""),
                }));
            }
        }
        others.extend(owned);
    }
    if !causes.is_empty() {
        return Err(ApiError::apply_conflicts(&causes));
    }
    for stale in previous
        .iter()
        .filter(|p| !new_leaves.contains(p) && !others.contains(p))
    {
        remove_path(&mut obj, stale);
    }
    let mut patch = applied.clone();
    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    apply_merge(kind, &mut obj, &patch).map_err(|e| ApiError::bad_request(e.0))?;
    let fields = to_fields_v1(&new_leaves);
    // A no-op apply keeps its entry as it was (time included), so it writes nothing.
    let unchanged =
        current.is_some_and(|c| without_managed_fields(c) == without_managed_fields(&obj));
    let time = entries
        .iter()
        .find(|e| is_mine(e) && e["apiVersion"] == api_version && e["fieldsV1"] == fields)
        .filter(|_| unchanged)
        .map_or_else(|| json!(crate::registry::now()), |e| e["time"].clone());
    let entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    // In place, so an unchanged apply leaves the list exactly as it was.
    match entries.iter().position(&is_mine) {
        Some(at) => {
            entries[at] = entry;
            let mut index = 0;
            entries.retain(|e| {
                index += 1;
                index - 1 == at || !is_mine(e)
            });
        }
        None => entries.push(entry),
    }
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    obj["metadata"]["managedFields"] = json!(entries);
    Ok(obj)
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(resource: &str) -> &'static ResourceInfo {
        ekube_api::resources::find("", "v1", resource).expect("a core resource")
    }

    #[test]
    fn an_unchanged_reapply_changes_nothing_not_even_the_time() {
        let config = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        let mut first = apply(core("services"), None, &config, "me", false).unwrap();
        first["metadata"]["managedFields"][0]["time"] = json!("2020-01-01T00:00:00Z");
        let again = apply(core("services"), Some(&first), &config, "me", false).unwrap();
        assert_eq!(again, first);
        let changed = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 81}]}});
        let later = apply(core("services"), Some(&first), &changed, "me", false).unwrap();
        assert_ne!(
            later["metadata"]["managedFields"][0]["time"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let dns = json!({"metadata": {"name": "kube-dns"}, "spec": {"ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153}]}});
        let obj = apply(core("services"), None, &dns, "me", false).unwrap();
        let names: Vec<&str> = obj["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["dns", "dns-tcp", "metrics"]);
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"];
        assert!(
            fields.get(r#"k:{"port":53,"protocol":"UDP"}"#).is_some(),
            "{fields}"
        );
        assert!(
            fields.get(r#"k:{"port":9153,"protocol":"TCP"}"#).is_some(),
            "{fields}"
        );
        // Dropping the UDP port on the next apply removes that item only.
        let tcp_only = json!({"metadata": {"name": "kube-dns"}, "spec": {"ports": [
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "metrics", "port": 9153}]}});
        let obj = apply(core("services"), Some(&obj), &tcp_only, "me", false).unwrap();
        assert_eq!(obj["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(obj["spec"]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn reapply_removes_dropped_fields() {
        let first = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "web", "image": "web", "env": [{"name": "X", "value": "1"}]}]}});
        let obj = apply(core("pods"), None, &first, "me", false).unwrap();
        let second = json!({"metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "web", "image": "web:v2"}]}});
        let obj = apply(core("pods"), Some(&obj), &second, "me", false).unwrap();
        assert_eq!(obj["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(obj["spec"]["containers"][0]["image"], "web:v2");
        assert!(obj["spec"]["containers"][0].get("env").is_none());
    }

    #[test]
    fn other_appliers_conflict_unless_forced() {
        let a = json!({"metadata": {"name": "p", "labels": {"owner": "a"}}});
        let obj = apply(core("configmaps"), None, &a, "alice", false).unwrap();
        let b = json!({"metadata": {"name": "p", "labels": {"owner": "b"}}});
        let err = apply(core("configmaps"), Some(&obj), &b, "bob", false).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"alice\""),
            "{}",
            err.message
        );
        let obj = apply(core("configmaps"), Some(&obj), &b, "bob", true).unwrap();
        assert_eq!(obj["metadata"]["labels"]["owner"], "b");
    }
}
