//! `batch/v1` Job spec validation, as upstream's `ValidateJob`/`validateJobSpec` word it:
//! non-negative counts, a known `completionMode` with the Indexed mode's rules, a restart policy
//! a Job can finish under, and the fields that may not change on update.
//!
//! `backoffLimitPerIndex` (and `maxFailedIndexes`, which needs it) is refused: the job
//! controller counts every failure against `backoffLimit`, and a limit it would ignore must not
//! be admitted silently.

use serde_json::Value;

use super::{is_dns1123_label, labels, pod_spec};
use crate::errors::Cause;

/// Upstream's `maxParallelismForIndexedJob`: caps the length of `status.completedIndexes`.
pub const MAX_PARALLELISM_FOR_INDEXED_JOB: i64 = 100_000;

const MODES: &[&str] = &["NonIndexed", "Indexed"];

/// A whole Job: its spec, and (Indexed) that its last pod's hostname `<name>-<completions-1>`
/// is a valid DNS label.
pub(crate) fn job(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    job_spec(spec, "spec", causes);
    if spec["completionMode"] == "Indexed"
        && let Some(completions) = spec["completions"].as_i64().filter(|c| *c > 0)
    {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let hostname = format!("{name}-{}", completions - 1);
        if !name.is_empty() && !is_dns1123_label(&hostname) {
            causes.push(Cause::invalid(
                "metadata.name",
                format!("\"{name}\""),
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
}

/// Upstream's `ValidateCronJob`: a schedule the controller's own parser accepts (what is
/// admitted is what it can run), a known time zone, and a valid job template.
pub(crate) fn cron_job(obj: &Value, causes: &mut Vec<Cause>) {
    let schedule = obj
        .pointer("/spec/schedule")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if schedule.is_empty() {
        causes.push(Cause::required("spec.schedule"));
    } else if schedule.contains("TZ") {
        causes.push(Cause::invalid(
            "spec.schedule",
            format!("\"{schedule}\""),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(e) = ekube_api::cron::Schedule::parse(schedule) {
        causes.push(Cause::invalid(
            "spec.schedule",
            format!("\"{schedule}\""),
            &e.reason,
        ));
    }
    if let Some(zone) = obj.pointer("/spec/timeZone").and_then(Value::as_str)
        && let Err(e) = ekube_api::cron::time_zone(Some(zone))
    {
        causes.push(Cause::invalid("spec.timeZone", format!("\"{zone}\""), &e));
    }
    let template = obj.pointer("/spec/jobTemplate/spec");
    job_spec(
        template.unwrap_or(&Value::Null),
        "spec.jobTemplate.spec",
        causes,
    );
}

/// A Job spec (of a Job, or of a CronJob's `jobTemplate` at `at`).
pub(crate) fn job_spec(spec: &Value, at: &str, causes: &mut Vec<Cause>) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        if let Some(n) = spec[field].as_i64().filter(|n| *n < 0) {
            causes.push(Cause::invalid(
                format!("{at}.{field}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    let mode = spec["completionMode"].as_str();
    match mode {
        None | Some("NonIndexed") => {
            for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
                if let Some(n) = spec[field].as_i64() {
                    causes.push(Cause::invalid(
                        format!("{at}.{field}"),
                        n,
                        "requires indexed completion mode",
                    ));
                }
            }
        }
        Some("Indexed") => {
            if spec["completions"].is_null() {
                causes.push(Cause::required_with(
                    format!("{at}.completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec["parallelism"]
                .as_i64()
                .filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED_JOB)
            {
                causes.push(Cause::invalid(
                    format!("{at}.parallelism"),
                    p,
                    &format!(
                        "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"
                    ),
                ));
            }
            if !spec["backoffLimitPerIndex"].is_null() {
                causes.push(Cause::forbidden(
                    format!("{at}.backoffLimitPerIndex"),
                    "backoff limits per index are not supported by this cluster; remove the field and use backoffLimit, which counts the failed pods of all indexes together",
                ));
            } else if !spec["maxFailedIndexes"].is_null() {
                causes.push(Cause::required_with(
                    format!("{at}.backoffLimitPerIndex"),
                    "when maxFailedIndexes is specified",
                ));
            }
        }
        Some(other) => causes.push(Cause::not_supported(
            format!("{at}.completionMode"),
            other,
            MODES,
        )),
    }
    if spec.get("template").is_none() {
        causes.push(Cause::required(format!("{at}.template")));
        return;
    }
    labels(
        spec.pointer("/template/metadata/labels"),
        &format!("{at}.template.metadata.labels"),
        causes,
    );
    pod_spec(
        spec.pointer("/template/spec"),
        &format!("{at}.template.spec"),
        causes,
    );
    if let Some(policy) = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        && policy == "Always"
    {
        causes.push(Cause::not_supported(
            format!("{at}.template.spec.restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        ));
    }
}

/// The Job fields an update may not change: the selector once set, the completion mode, the
/// per-index backoff limit, and `completions` (except an Indexed Job resized elastically,
/// `completions` and `parallelism` moving together, as upstream's `ElasticIndexedJob` allows).
pub(crate) fn immutable(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let (o, n) = (&old["spec"], &new["spec"]);
    let shown = |v: &Value| match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".into(),
        other => other.to_string(),
    };
    if o["selector"] != n["selector"] && !o["selector"].is_null() {
        causes.push(Cause::invalid("spec.selector", "", "field is immutable"));
    }
    for field in ["completionMode", "backoffLimitPerIndex"] {
        if o[field] != n[field] {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                shown(&n[field]),
                "field is immutable",
            ));
        }
    }
    let elastic = n["completionMode"] == "Indexed"
        && o["completions"] == o["parallelism"]
        && n["completions"] == n["parallelism"];
    if o["completions"] != n["completions"] && !elastic {
        causes.push(Cause::invalid(
            "spec.completions",
            shown(&n["completions"]),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate_kind;
    use super::*;
    use serde_json::json;

    fn job(name: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}});
        json!({"metadata": {"name": name}, "spec": spec})
    }

    fn messages(obj: &Value) -> Vec<String> {
        validate_kind("batch", "Job", obj, None, (30000, 32767))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn indexed_jobs_need_completions_within_limits() {
        let ok = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2});
        assert!(messages(&job("work", ok)).is_empty());
        assert!(messages(&job("work", json!({"completionMode": "NonIndexed"}))).is_empty());
        assert_eq!(
            messages(&job(
                "work",
                json!({"completionMode": "Indexed", "parallelism": 2})
            )),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
        assert_eq!(
            messages(&job(
                "work",
                json!({"completionMode": "Indexed", "completions": 200_000, "parallelism": 100_001})
            )),
            [
                "spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is Indexed"
            ]
        );
        assert_eq!(
            messages(&job("work", json!({"completionMode": "Sometimes"}))),
            [
                "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""
            ]
        );
        assert_eq!(
            messages(&job("work", json!({"completions": -1, "parallelism": -2}))),
            [
                "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn the_last_index_must_make_a_valid_hostname() {
        // 61 + "-99" is one past a label's 63 characters.
        let name = "j".repeat(61);
        let spec = json!({"completionMode": "Indexed", "completions": 100});
        assert_eq!(
            messages(&job(&name, spec.clone())),
            [format!(
                "metadata.name: Invalid value: \"{name}\": will not able to create pod with invalid DNS label: {name}-99"
            )]
        );
        assert!(
            messages(&job(
                &"j".repeat(59),
                json!({"completionMode": "Indexed", "completions": 10})
            ))
            .is_empty()
        );
        // NonIndexed pods get no index in their hostname.
        assert!(messages(&job(&name, json!({"completions": 100}))).is_empty());
    }

    #[test]
    fn per_index_backoff_limits_are_refused() {
        let indexed =
            json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1});
        let causes = messages(&job("work", indexed));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(
            causes[0].starts_with(
                "spec.backoffLimitPerIndex: Forbidden: backoff limits per index are not supported"
            ),
            "{causes:?}"
        );
        assert_eq!(
            messages(&job(
                "work",
                json!({"completionMode": "Indexed", "completions": 3, "maxFailedIndexes": 1})
            )),
            ["spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"]
        );
        assert_eq!(
            messages(&job("work", json!({"backoffLimitPerIndex": 1}))),
            ["spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"]
        );
    }

    #[test]
    fn cronjob_templates_get_the_same_rules() {
        let cj = json!({"metadata": {"name": "cj"}, "spec": {"schedule": "* * * * *",
            "jobTemplate": {"spec": {"completionMode": "Indexed", "parallelism": 2,
                "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        let causes: Vec<String> = validate_kind("batch", "CronJob", &cj, None, (30000, 32767))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            causes,
            ["spec.jobTemplate.spec.completions: Required value: when completion mode is Indexed"]
        );
    }

    #[test]
    fn completion_mode_and_completions_are_immutable() {
        let changed = |old: Value, new: Value| {
            let mut causes = Vec::new();
            immutable(&job("w", old), &job("w", new), &mut causes);
            causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>()
        };
        let indexed = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3});
        let non = json!({"completionMode": "NonIndexed", "completions": 3, "parallelism": 3});
        assert_eq!(
            changed(indexed.clone(), non.clone()),
            ["spec.completionMode: Invalid value: \"NonIndexed\": field is immutable"]
        );
        assert!(changed(indexed.clone(), indexed.clone()).is_empty());
        // Elastic: an Indexed Job's completions may follow its parallelism.
        let bigger = json!({"completionMode": "Indexed", "completions": 5, "parallelism": 5});
        assert!(changed(indexed.clone(), bigger).is_empty());
        let apart = json!({"completionMode": "Indexed", "completions": 5, "parallelism": 3});
        assert_eq!(
            changed(indexed, apart),
            ["spec.completions: Invalid value: 5: field is immutable"]
        );
        let non5 = json!({"completionMode": "NonIndexed", "completions": 5, "parallelism": 5});
        assert_eq!(
            changed(non, non5),
            ["spec.completions: Invalid value: 5: field is immutable"]
        );
        // Parallelism alone may change.
        assert!(
            changed(
                json!({"completions": 3, "parallelism": 1}),
                json!({"completions": 3, "parallelism": 2})
            )
            .is_empty()
        );
    }
}
