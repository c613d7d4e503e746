//! Indexed Jobs (`completionMode: Indexed`): every pod runs one completion index in
//! `0..completions`, and the Job completes once each index has one succeeded pod.
//!
//! As upstream's job controller does it: a pod's index is its
//! `batch.kubernetes.io/job-completion-index` annotation (and label), its hostname is
//! `<job>-<index>`, its generated name `<job>-<index>-<random>`, and every container gets
//! `JOB_COMPLETION_INDEX` from that annotation through the downward API. Succeeded indexes
//! accumulate in `status.completedIndexes` as sorted intervals (`"0-2,4"`); missing indexes get
//! pods lowest first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::util::pod_ready;

/// The annotation (and label) holding a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable every container of an Indexed Job's pods reads its index from.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's `names.MaxGeneratedNameLength`: a generated name's prefix leaves room for the
/// five random characters within a 63-character label.
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// Whether the job runs in `Indexed` completion mode.
pub fn is_indexed(mode: Option<&str>) -> bool {
    mode == Some("Indexed")
}

/// A set of completion indexes, held as sorted, disjoint, non-adjacent closed intervals so that
/// a large `completions` costs nothing until its indexes complete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexSet(Vec<(i32, i32)>);

impl IndexSet {
    /// Reads `status.completedIndexes` (`"1,3-5,7"`), keeping indexes below `completions`.
    /// Malformed parts are skipped: the pods that succeeded are counted again anyway.
    pub fn parse(text: &str, completions: i32) -> Self {
        let mut set = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            if let (Ok(first), Ok(last)) = (first, last)
                && 0 <= first
                && first <= last
                && first < completions
            {
                set.0.push((first, last.min(completions - 1)));
            }
        }
        set.normalize();
        set
    }

    /// Adds `indexes` to the set.
    pub fn extend(&mut self, indexes: impl IntoIterator<Item = i32>) {
        self.0.extend(indexes.into_iter().map(|i| (i, i)));
        self.normalize();
    }

    pub fn contains(&self, index: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= index && index <= b)
    }

    /// How many indexes the set holds.
    pub fn count(&self) -> i32 {
        self.0.iter().map(|&(a, b)| b - a + 1).sum()
    }

    /// The first `count` indexes in `0..completions` that are neither in the set nor in
    /// `busy`, lowest first.
    pub fn first_missing(&self, busy: &BTreeSet<i32>, completions: i32, count: usize) -> Vec<i32> {
        let mut out = Vec::with_capacity(count);
        let mut intervals = self.0.iter().peekable();
        let mut i = 0;
        while i < completions && out.len() < count {
            while intervals.peek().is_some_and(|&&(_, b)| b < i) {
                intervals.next();
            }
            match intervals.peek() {
                Some(&&(a, b)) if a <= i => i = b + 1,
                _ => {
                    if !busy.contains(&i) {
                        out.push(i);
                    }
                    i += 1;
                }
            }
        }
        out
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }
}

/// Upstream's compressed form: `first-last` per interval of two or more, joined by commas.
impl fmt::Display for IndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, &(a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The completion index of a pod (its annotation, else its label), if it has a valid one below
/// `completions`.
pub fn pod_index(pod: &Pod, completions: i32) -> Option<i32> {
    let meta = &pod.metadata;
    [&meta.annotations, &meta.labels]
        .into_iter()
        .find_map(|m| m.as_ref()?.get(COMPLETION_INDEX))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| (0..completions).contains(i))
}

/// Which of the active pods to delete: those without a valid index, those whose index already
/// succeeded, and all but one pod per index (a ready one, else the oldest). Returns them and
/// the indexes the remaining active pods run.
pub fn surplus<'a>(
    active: &[&'a Pod],
    succeeded: &IndexSet,
    completions: i32,
) -> (Vec<&'a Pod>, BTreeMap<i32, &'a Pod>) {
    let mut remove = Vec::new();
    let mut keep: BTreeMap<i32, &'a Pod> = BTreeMap::new();
    let rank = |p: &Pod| {
        (
            !pod_ready(p),
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    };
    for &pod in active {
        let Some(index) = pod_index(pod, completions).filter(|i| !succeeded.contains(*i)) else {
            remove.push(pod);
            continue;
        };
        match keep.get(&index) {
            Some(&other) if rank(other) <= rank(pod) => remove.push(pod),
            Some(&other) => {
                remove.push(other);
                keep.insert(index, pod);
            }
            None => {
                keep.insert(index, pod);
            }
        }
    }
    (remove, keep)
}

/// Adds `JOB_COMPLETION_INDEX` (the downward API's view of the index annotation) to every
/// container and init container that does not set it already.
pub fn add_index_env(spec: &mut PodSpec) {
    let add = |c: &mut Container| {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == INDEX_ENV) {
            return;
        }
        env.push(EnvVar {
            name: INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        });
    };
    spec.containers.iter_mut().for_each(add);
    spec.init_containers.iter_mut().flatten().for_each(add);
}

/// Turns the pod for `job` into the pod for `index`: the index annotation and label, the
/// hostname `<job>-<index>` and the generated name `<job>-<index>-`.
pub fn set_index(meta: &mut ObjectMeta, spec: Option<&mut PodSpec>, job: &str, index: i32) {
    let value = index.to_string();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX.into(), value.clone());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX.into(), value);
    meta.generate_name = Some(generate_name(job, index));
    if let Some(spec) = spec {
        spec.hostname = Some(format!("{job}-{index}"));
    }
}

/// Upstream's `podGenerateNameWithIndex`: `<job>-<index>-`, the job name cut so that the
/// prefix stays within the generated-name limit.
fn generate_name(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let prefix = format!("{job}{suffix}");
    if prefix.len() <= MAX_GENERATED_NAME_LENGTH {
        return prefix;
    }
    let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
    format!("{}{suffix}", &job[..keep.min(job.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(indexes: &[i32]) -> IndexSet {
        let mut s = IndexSet::default();
        s.extend(indexes.iter().copied());
        s
    }

    #[test]
    fn completed_indexes_are_compressed_intervals() {
        assert_eq!(set(&[]).to_string(), "");
        assert_eq!(set(&[0, 1, 2, 4]).to_string(), "0-2,4");
        assert_eq!(set(&[4, 2, 0, 1, 2]).to_string(), "0-2,4");
        assert_eq!(set(&[0, 1]).to_string(), "0-1");
        assert_eq!(set(&[3, 5, 7, 6]).to_string(), "3,5-7");
        assert_eq!(set(&[0, 1, 2, 4]).count(), 4);
        // Adding the gap joins the neighbours.
        let mut s = set(&[0, 1, 2, 4]);
        s.extend([3]);
        assert_eq!(s.to_string(), "0-4");
        assert_eq!(s.count(), 5);
    }

    #[test]
    fn completed_indexes_parse_back_within_completions() {
        assert_eq!(IndexSet::parse("0-2,4", 10), set(&[0, 1, 2, 4]));
        assert_eq!(IndexSet::parse("", 10), IndexSet::default());
        // Beyond completions (it was lowered) and malformed parts are dropped.
        assert_eq!(IndexSet::parse("1,3-9", 5).to_string(), "1,3-4");
        assert_eq!(IndexSet::parse("x,2,5-3,-1", 10).to_string(), "2");
        let s = IndexSet::parse("0-99999", 100_000);
        assert_eq!(s.count(), 100_000);
        assert!(s.contains(99_999) && !s.contains(100_000));
    }

    #[test]
    fn missing_indexes_lowest_first_skipping_done_and_running() {
        let done = set(&[0, 2]);
        let busy = BTreeSet::from([1, 4]);
        assert_eq!(done.first_missing(&busy, 10, 3), [3, 5, 6]);
        assert_eq!(done.first_missing(&busy, 6, 10), [3, 5]);
        assert_eq!(done.first_missing(&busy, 10, 0), Vec::<i32>::new());
        assert_eq!(
            IndexSet::default().first_missing(&BTreeSet::new(), 3, 2),
            [0, 1]
        );
        // All done: nothing left, however many are asked for.
        assert!(
            set(&[0, 1, 2])
                .first_missing(&BTreeSet::new(), 3, 5)
                .is_empty()
        );
        // A long completed prefix is skipped as one interval.
        let long = IndexSet::parse("0-99997", 100_000);
        assert_eq!(
            long.first_missing(&BTreeSet::new(), 100_000, 5),
            [99_998, 99_999]
        );
    }

    fn pod(name: &str, index: Option<&str>, created: &str, ready: bool) -> Pod {
        let annotations = index.map(|i| json!({COMPLETION_INDEX: i}));
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn index_comes_from_the_annotation_and_must_be_in_range() {
        assert_eq!(
            pod_index(&pod("a", Some("2"), "2024-01-01T00:00:00Z", true), 3),
            Some(2)
        );
        assert_eq!(
            pod_index(&pod("a", Some("3"), "2024-01-01T00:00:00Z", true), 3),
            None
        );
        assert_eq!(
            pod_index(&pod("a", Some("-1"), "2024-01-01T00:00:00Z", true), 3),
            None
        );
        assert_eq!(
            pod_index(&pod("a", Some("x"), "2024-01-01T00:00:00Z", true), 3),
            None
        );
        assert_eq!(
            pod_index(&pod("a", None, "2024-01-01T00:00:00Z", true), 3),
            None
        );
        let labelled: Pod = serde_json::from_value(
            json!({"metadata": {"name": "l", "labels": {COMPLETION_INDEX: "1"}}}),
        )
        .unwrap();
        assert_eq!(pod_index(&labelled, 3), Some(1));
    }

    #[test]
    fn surplus_drops_done_invalid_and_duplicate_indexes() {
        let old = pod("old", Some("1"), "2024-01-01T00:00:00Z", false);
        let new = pod("new", Some("1"), "2024-01-01T00:01:00Z", false);
        let ready = pod("ready", Some("2"), "2024-01-01T00:02:00Z", true);
        let unready = pod("unready", Some("2"), "2024-01-01T00:00:00Z", false);
        let done = pod("done", Some("0"), "2024-01-01T00:00:00Z", true);
        let stray = pod("stray", None, "2024-01-01T00:00:00Z", true);
        let beyond = pod("beyond", Some("7"), "2024-01-01T00:00:00Z", true);
        let active = [&new, &old, &unready, &ready, &done, &stray, &beyond];
        let (remove, keep) = surplus(&active, &set(&[0]), 5);
        let mut removed: Vec<String> = remove
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        removed.sort();
        assert_eq!(removed, ["beyond", "done", "new", "stray", "unready"]);
        let kept: Vec<(i32, String)> = keep
            .iter()
            .map(|(i, p)| (*i, p.metadata.name.clone().unwrap()))
            .collect();
        assert_eq!(kept, [(1, "old".into()), (2, "ready".into())]);
    }

    #[test]
    fn index_env_goes_into_every_container_once() {
        let mut spec: PodSpec = serde_json::from_value(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "env": [{"name": INDEX_ENV, "value": "mine"}]},
            ],
        }))
        .unwrap();
        add_index_env(&mut spec);
        add_index_env(&mut spec);
        let path = "metadata.annotations['batch.kubernetes.io/job-completion-index']";
        let env = |c: &Container| serde_json::to_value(c.env.clone().unwrap()).unwrap();
        assert_eq!(
            env(&spec.containers[0]),
            json!([{"name": "X", "value": "1"},
                   {"name": INDEX_ENV, "valueFrom": {"fieldRef": {"fieldPath": path}}}])
        );
        // A container that sets the variable itself keeps its own.
        assert_eq!(
            env(&spec.containers[1]),
            json!([{"name": INDEX_ENV, "value": "mine"}])
        );
        assert_eq!(
            env(&spec.init_containers.as_ref().unwrap()[0]),
            json!([{"name": INDEX_ENV, "valueFrom": {"fieldRef": {"fieldPath": path}}}])
        );
    }

    #[test]
    fn pods_are_named_and_hosted_by_index() {
        let mut meta = ObjectMeta::default();
        let mut spec = PodSpec::default();
        set_index(&mut meta, Some(&mut spec), "work", 4);
        assert_eq!(meta.generate_name.as_deref(), Some("work-4-"));
        assert_eq!(spec.hostname.as_deref(), Some("work-4"));
        assert_eq!(meta.annotations.unwrap()[COMPLETION_INDEX], "4");
        assert_eq!(meta.labels.unwrap()[COMPLETION_INDEX], "4");
        // A long job name is cut so that the prefix keeps its index within 58 characters.
        let long = "j".repeat(60);
        let name = generate_name(&long, 12);
        assert_eq!(name.len(), 58);
        assert!(name.ends_with("j-12-"), "{name}");
    }
}
