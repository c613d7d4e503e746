//! ReplicationController controller: the ReplicaSet controller run over core/v1
//! ReplicationControllers, as upstream runs it.
//!
//! An RC's selector is a plain map of labels (equality only) and its status lacks
//! `terminatingReplicas`; everything else (adoption, release, the order surplus pods go in,
//! the status counts) is [`crate::replicaset::sync_replicas`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::Result;
use crate::events::Recorder;
use crate::informer::Changes;
use crate::replicaset::{Replicas, sync_replicas};
use crate::runner::{self, Ctx};
use crate::util::{controller_of, deleting, labels_of};

/// The status fields of a ReplicationController (`ReplicationControllerStatus`).
const STATUS_FIELDS: &[&str] = &[
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
];

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<ReplicationController>::all(client.clone()),
        watcher::Config::default(),
    );
    let rcs = controller.store();
    // One pod watch for both: a controlled pod wakes its controller, an orphan the RCs that
    // select it (which may adopt it), as upstream's pod handlers do.
    let controller =
        controller.watches_shared_stream(pods, move |pod| interested(&rcs.state(), &pod));
    let ctx = Ctx { client, recorder };
    runner::drive(
        "replicationcontroller",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// The LabelSelector equivalent of an RC's selector: its pairs as `matchLabels`. An empty
/// map selects nothing (validation refuses it; the claim never adopts with it).
fn selector(rc: &ReplicationController) -> LabelSelector {
    LabelSelector {
        match_labels: rc.spec.as_ref().and_then(|s| s.selector.clone()),
        match_expressions: None,
    }
}

/// The RCs a change to `pod` concerns: its controller when that is an RC, else (an orphan
/// not being deleted) every RC of its namespace whose selector matches its labels.
fn interested(
    rcs: &[Arc<ReplicationController>],
    pod: &Pod,
) -> Vec<ObjectRef<ReplicationController>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod) {
        return if owner.api_version == "v1" && owner.kind == "ReplicationController" {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    if deleting(pod) {
        return Vec::new();
    }
    let labels = labels_of(pod);
    rcs.iter()
        .filter(|rc| rc.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rc| {
            let sel = ekube_api::selector::LabelSelector::from_label_selector(&selector(rc));
            !sel.is_empty() && sel.matches(&labels)
        })
        .map(|rc| ObjectRef::from_obj(&**rc))
        .collect()
}

#[tracing::instrument(skip_all, fields(rc = %rc.name_any()))]
async fn reconcile(rc: Arc<ReplicationController>, ctx: Arc<Ctx>) -> Result<Action> {
    let spec = rc.spec.as_ref();
    let wanted = Replicas {
        selector: selector(&rc),
        replicas: spec.and_then(|s| s.replicas),
        template: spec.and_then(|s| s.template.as_ref()),
        min_ready_seconds: spec.and_then(|s| s.min_ready_seconds),
        status: serde_json::to_value(rc.status.clone().unwrap_or_default()).unwrap_or_default(),
        status_fields: STATUS_FIELDS,
    };
    sync_replicas(&ctx, &*rc, wanted).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_selector_map_becomes_match_labels() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web", "tier": "front"}}
        }))
        .unwrap();
        let sel = ekube_api::selector::LabelSelector::from_label_selector(&selector(&rc));
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        let none: ReplicationController =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {}})).unwrap();
        let empty = ekube_api::selector::LabelSelector::from_label_selector(&selector(&none));
        assert!(empty.is_empty(), "no selector selects nothing");
    }

    #[test]
    fn a_pod_wakes_its_controller_or_the_rcs_that_select_it() {
        let rc = |name: &str, ns: &str, selector: serde_json::Value| {
            Arc::new(
                serde_json::from_value::<ReplicationController>(json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"selector": selector}
                }))
                .unwrap(),
            )
        };
        let rcs = [
            rc("web", "default", json!({"app": "web"})),
            rc(
                "web-canary",
                "default",
                json!({"app": "web", "track": "canary"}),
            ),
            rc("web", "other", json!({"app": "web"})),
            rc("empty", "default", json!({})),
        ];
        let pod = |meta: serde_json::Value| {
            serde_json::from_value::<Pod>(json!({"metadata": meta})).unwrap()
        };
        let names = |refs: Vec<ObjectRef<ReplicationController>>| {
            refs.into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect::<Vec<_>>()
        };
        let orphan = pod(json!({"name": "p", "namespace": "default", "labels": {"app": "web"}}));
        assert_eq!(names(interested(&rcs, &orphan)), ["default/web"]);
        let owned = pod(
            json!({"name": "p", "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController",
                "name": "web-canary", "uid": "u", "controller": true}]}),
        );
        assert_eq!(names(interested(&rcs, &owned)), ["default/web-canary"]);
        let other = pod(
            json!({"name": "p", "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web", "uid": "u", "controller": true}]}),
        );
        assert!(
            interested(&rcs, &other).is_empty(),
            "another controller's pod"
        );
        let going = pod(
            json!({"name": "p", "namespace": "default", "labels": {"app": "web"},
            "deletionTimestamp": "2024-01-01T00:00:00Z"}),
        );
        assert!(
            interested(&rcs, &going).is_empty(),
            "a deleted orphan is not adopted"
        );
    }
}
