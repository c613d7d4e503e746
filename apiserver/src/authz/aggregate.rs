//! The ClusterRole aggregation controller, as upstream's `clusterrole-aggregation`: an
//! aggregated ClusterRole's stored `rules` are rewritten to the union of the ClusterRoles its
//! `aggregationRule` selects, so `kubectl get clusterrole admin -o yaml` shows what `admin`
//! grants. Authorization does not wait for it: [`super::cache`] resolves aggregation on read.

use std::sync::Arc;
use std::time::Duration;

use ekube_api::resources::find;
use serde_json::json;

use super::cache::GROUP;
use crate::ApiServer;
use crate::registry::WriteOptions;

/// Writes stale aggregated rules whenever ClusterRoles change, until the process ends.
pub async fn run(api: Arc<ApiServer>) {
    let r = find(GROUP, "v1", "clusterroles").expect("RBAC resources are served");
    loop {
        for (name, rules) in api.rbac.stale_aggregations() {
            let result = api
                .registry
                .guaranteed_update(r, None, &name, None, &WriteOptions::default(), |mut cur| {
                    cur["rules"] = json!(rules);
                    Ok(cur)
                })
                .await;
            match result {
                Ok(_) => tracing::debug!(clusterrole = %name, "aggregated rules written"),
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(clusterrole = %name, error = %e, "writing aggregated rules")
                }
            }
        }
        api.rbac.cluster_roles_changed().await;
        // Let a burst of changes (the bootstrap policy, an apply of many roles) settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
