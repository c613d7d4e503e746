//! `describe job`, laid out as kubectl's `describeJob`: the selector, parallelism, completions
//! and completion mode, the limits, when it started and finished, the pod counts, an Indexed
//! Job's completed indexes, and its pod template.

use ekube_api::display::{format_labels, human_duration};
use serde_json::Value;

use super::{W, arr, date, meta_head, pod_template, s, ts};

/// kubectl's `capIndexesListOrNone` soft limit on the completed indexes shown.
const INDEXES_SHOWN: usize = 50;

pub(super) fn job(w: &mut W, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    meta_head(w, o, true);
    w.kv(
        0,
        "Selector",
        format_labels(&spec["selector"]["matchLabels"]),
    );
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    if let Some(owner) = arr(&m["ownerReferences"])
        .iter()
        .find(|r| r["controller"] == true)
    {
        w.kv(
            0,
            "Controlled By",
            format!("{}/{}", s(&owner["kind"]), s(&owner["name"])),
        );
    }
    if let Some(p) = spec["parallelism"].as_i64() {
        w.kv(0, "Parallelism", p.to_string());
    }
    w.kv(
        0,
        "Completions",
        spec["completions"]
            .as_i64()
            .map_or_else(|| "<unset>".to_string(), |c| c.to_string()),
    );
    if let Some(mode) = spec["completionMode"].as_str() {
        w.kv(0, "Completion Mode", mode);
    }
    if let Some(suspend) = spec["suspend"].as_bool() {
        w.kv(0, "Suspend", suspend.to_string());
    }
    if let Some(limit) = spec["backoffLimit"].as_i64() {
        w.kv(0, "Backoff Limit", limit.to_string());
    }
    if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
        w.kv(0, "TTL Seconds After Finished", ttl.to_string());
    }
    if !st["startTime"].is_null() {
        w.kv(0, "Start Time", date(&st["startTime"]));
    }
    if !st["completionTime"].is_null() {
        w.kv(0, "Completed At", date(&st["completionTime"]));
    }
    if let (Some(start), Some(end)) = (ts(&st["startTime"]), ts(&st["completionTime"])) {
        w.kv(
            0,
            "Duration",
            human_duration(end.duration_since(start).as_secs()),
        );
    }
    if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64() {
        w.kv(0, "Active Deadline Seconds", format!("{deadline}s"));
    }
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    let active = match st["ready"].as_i64() {
        Some(ready) => format!("{} Active ({ready} Ready)", n("active")),
        None => format!("{} Active", n("active")),
    };
    w.kv(
        0,
        "Pods Statuses",
        format!(
            "{active} / {} Succeeded / {} Failed",
            n("succeeded"),
            n("failed")
        ),
    );
    if spec["completionMode"] == "Indexed" {
        w.kv(
            0,
            "Completed Indexes",
            capped_indexes(s(&st["completedIndexes"]), INDEXES_SHOWN),
        );
    }
    pod_template(w, &spec["template"]);
}

/// The index list up to the first comma at or past `soft_limit` characters, then `...`;
/// `<none>` when empty (kubectl's `capIndexesListOrNone`).
fn capped_indexes(list: &str, soft_limit: usize) -> String {
    if list.is_empty() {
        return "<none>".into();
    }
    match list
        .char_indices()
        .skip(soft_limit)
        .find(|&(_, c)| c == ',')
    {
        Some((at, _)) => format!("{}...", &list[..=at]),
        None => list.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::describe;
    use super::*;
    use crate::kubectl::discovery::Resource;
    use serde_json::json;

    #[test]
    fn indexes_are_capped_at_a_comma() {
        assert_eq!(capped_indexes("", 50), "<none>");
        assert_eq!(capped_indexes("0-2,4", 50), "0-2,4");
        let long: Vec<String> = (0..40).map(|i| (i * 2).to_string()).collect();
        let list = long.join(",");
        let shown = capped_indexes(&list, 50);
        assert!(shown.ends_with(",..."), "{shown}");
        assert!(list.starts_with(shown.trim_end_matches("...")), "{shown}");
        assert!(shown.len() > 50 && shown.len() < 60, "{shown}");
    }

    #[test]
    fn indexed_job_view() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "idx", "namespace": "default", "labels": {"app": "w"}},
            "spec": {"parallelism": 2, "completions": 3, "completionMode": "Indexed",
                "suspend": false, "backoffLimit": 6,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"metadata": {"labels": {"app": "w"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
            "status": {"startTime": "2024-05-10T11:00:00Z", "completionTime": "2024-05-10T11:00:42Z",
                "succeeded": 3, "ready": 0, "completedIndexes": "0-2"}});
        let r = Resource {
            group: "batch".into(),
            version: "v1".into(),
            plural: "jobs".into(),
            singular: "job".into(),
            kind: "Job".into(),
            namespaced: true,
            short_names: vec![],
            verbs: vec!["get".into()],
            categories: vec!["all".into()],
        };
        let text = describe(&r, &job, &[], None, ekube_api::time::Timestamp::now());
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .split_whitespace()
                .skip(key.split_whitespace().count())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("Completions:"), "3");
        assert_eq!(line("Completion Mode:"), "Indexed");
        assert_eq!(line("Completed Indexes:"), "0-2");
        assert_eq!(line("Duration:"), "42s");
        assert_eq!(
            line("Pods Statuses:"),
            "0 Active (0 Ready) / 3 Succeeded / 0 Failed"
        );
        assert_eq!(line("Selector:"), "batch.kubernetes.io/controller-uid=u");
        assert!(text.contains("Pod Template:"), "{text}");
        // A NonIndexed job has no completed indexes line.
        let mut plain = job.clone();
        plain["spec"]["completionMode"] = json!("NonIndexed");
        let text = describe(&r, &plain, &[], None, ekube_api::time::Timestamp::now());
        assert!(!text.contains("Completed Indexes"), "{text}");
    }
}
