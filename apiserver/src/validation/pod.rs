//! A pod's spec, as upstream's `ValidatePodSpec` checks it: the containers (names, images,
//! ports, environment, probes, resources), restart policy, DNS settings and volumes; shared
//! by Pods and by every workload's pod template.

use serde_json::Value;

use super::{DNS1123_LABEL, dns, ephemeral, is_dns1123_label, protocol, resources, volumes};
use crate::errors::Cause;

pub(crate) fn pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(format!("{at}.containers")));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            container(c, &format!("{at}.{list}[{i}]"), &mut names, causes);
        }
    }
    ephemeral::validate(spec, at, &mut names, causes);
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        causes.push(Cause::not_supported(
            format!("{at}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && g < 0
    {
        causes.push(Cause::invalid(
            format!("{at}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    dns::validate(spec, at, causes);
    let mut volume_names = Vec::new();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        let field = format!("{at}.volumes[{i}].name");
        if name.is_empty() {
            causes.push(Cause::required(field));
        } else if !is_dns1123_label(name) {
            causes.push(Cause::invalid(field, format!("\"{name}\""), DNS1123_LABEL));
        } else if volume_names.contains(&name) {
            causes.push(Cause::duplicate(field, format!("\"{name}\"")));
        } else {
            volume_names.push(name);
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (j, m) in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                if !volume_names.contains(&name) {
                    causes.push(Cause {
                        reason: "FieldValueNotFound",
                        field: format!("{at}.{list}[{i}].volumeMounts[{j}].name"),
                        message: format!("Not found: \"{name}\""),
                    });
                }
                if m.get("mountPath")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!(
                        "{at}.{list}[{i}].volumeMounts[{j}].mountPath"
                    )));
                }
            }
        }
    }
    volumes::validate(spec, at, causes);
}

pub(super) fn container<'a>(
    c: &'a Value,
    at: &str,
    names: &mut Vec<&'a str>,
    causes: &mut Vec<Cause>,
) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(format!("{at}.name")));
    } else {
        super::unique_label(name, &format!("{at}.name"), names, causes);
    }
    if c.get("image")
        .and_then(Value::as_str)
        .is_none_or(|i| i.trim().is_empty())
    {
        causes.push(Cause::required(format!("{at}.image")));
    }
    if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "IfNotPresent" | "Never")
    {
        causes.push(Cause::not_supported(
            format!("{at}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    for (i, p) in c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match p.get("containerPort").and_then(Value::as_i64) {
            None => causes.push(Cause::required(format!("{at}.ports[{i}].containerPort"))),
            Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                format!("{at}.ports[{i}].containerPort"),
                n,
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        }
        protocol(p, &format!("{at}.ports[{i}].protocol"), causes);
    }
    for (i, e) in c
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if e.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{at}.env[{i}].name")));
        }
    }
    resources::requirements(c, at, causes);
}

/// Upstream's rule for a pod's container states on update: unless the pod restarts its
/// containers (`restartPolicy: Always`), a terminated container stays terminated; with
/// `OnFailure` one that failed may run again. A sidecar (an init container with its own
/// `restartPolicy: Always`) restarts whatever the pod's policy.
pub(crate) fn state_transitions(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let policy = old
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if policy == "Always" {
        return;
    }
    let sidecars: Vec<&str> = old
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for list in ["containerStatuses", "initContainerStatuses"] {
        fn statuses<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
            pod.pointer(&format!("/status/{list}"))
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice)
        }
        let new_statuses = statuses(new, list);
        for (i, was) in statuses(old, list).iter().enumerate() {
            let name = was.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some(terminated) = was.pointer("/state/terminated") else {
                continue;
            };
            let failed = terminated.get("exitCode").and_then(Value::as_i64) != Some(0);
            if (failed && policy == "OnFailure")
                || (list == "initContainerStatuses" && sidecars.contains(&name))
            {
                continue;
            }
            let left = new_statuses.iter().any(|now| {
                now.get("name").and_then(Value::as_str) == Some(name)
                    && now.pointer("/state/terminated").is_none()
            });
            if left {
                causes.push(Cause::forbidden(
                    format!("status.{list}[{i}].state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
}
