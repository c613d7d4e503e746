//! The HorizontalPodAutoscaler on live metrics, on a 2-node lab cluster whose
//! controller-manager syncs HPAs every 5 s and stabilizes scale-downs over 30 s (upstream's
//! flags, shortened): the real `kubectl autoscale deployment web --cpu-percent=50 --min=1
//! --max=5` over a Deployment requesting `cpu: 100m`; a load generator pod fetching a CGI
//! script that burns CPU scales it to at least 3 replicas; once the load stops it scales back
//! to 1; `kubectl describe hpa` and the events explain both.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::Value;

const LAB: &str = "ekhpa";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";

fn workload() -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: burn}}
data:
  burn: |
    #!/bin/sh
    i=0
    while [ $i -lt 20000 ]; do i=$((i+1)); done
    printf 'Content-Type: text/plain\r\n\r\nburnt\n'
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["httpd", "-f", "-p", "80", "-h", "/www"]
        resources: {{requests: {{cpu: 100m}}}}
        volumeMounts: [{{name: burn, mountPath: /www/cgi-bin}}]
      volumes:
      - name: burn
        configMap: {{name: burn, defaultMode: 0755}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"#
    )
}

fn load_generator() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: load}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: load
    image: {BUSYBOX}
    command: ["sh", "-c", "while true; do wget -q -O- http://web/cgi-bin/burn >/dev/null; done"]
"#
    )
}

fn hpa(c: &LabCluster) -> Result<Value> {
    c.get("hpa", "web")
}

#[test]
fn the_hpa_scales_on_cpu_and_back() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            controller_manager_args: &[
                "horizontal-pod-autoscaler-sync-period=5s",
                "horizontal-pod-autoscaler-downscale-stabilization=30s",
            ],
            ..ClusterOptions::default()
        },
    )?;
    c.apply(&workload())?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    c.kubectl(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=5",
    ])?;
    // Metrics arrive after two scrapes; until then the target reads <unknown>.
    c.wait(Duration::from_secs(90), "a CPU reading in the HPA", |c| {
        Ok(
            hpa(c)?["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
                .is_number(),
        )
    })?;

    c.apply(&load_generator())?;
    let mut last = Value::Null;
    c.wait(Duration::from_secs(180), "web scaled to 3 or more", |c| {
        last = hpa(c)?;
        Ok(last["status"]["currentReplicas"].as_i64().unwrap_or(0) >= 3)
    })
    .with_context(|| format!("the HPA's last status: {}", last["status"]))?;
    let table = c.kubectl(&["get", "hpa", "web"])?;
    ensure!(
        table.contains("Deployment/web") && table.contains("/50%"),
        "kubectl get hpa: {table}"
    );

    c.kubectl(&["delete", "pod", "load", "--wait=false"])?;
    c.wait(Duration::from_secs(240), "web scaled back to 1", |c| {
        last = hpa(c)?;
        Ok(last["status"]["desiredReplicas"] == 1 && last["status"]["currentReplicas"] == 1)
    })
    .with_context(|| format!("the HPA's last status: {}", last["status"]))?;

    let rescales: Vec<String> = c
        .events_of("web")?
        .into_iter()
        .filter(|(reason, _)| reason == "SuccessfulRescale")
        .map(|(_, message)| message)
        .collect();
    ensure!(
        rescales.iter().any(|m| m.contains("above target"))
            && rescales.iter().any(|m| m.contains("below target")),
        "SuccessfulRescale events: {rescales:?}"
    );
    let described = c.kubectl(&["describe", "hpa", "web"])?;
    ensure!(
        described.contains("SuccessfulRescale") && described.contains("New size: 1"),
        "kubectl describe hpa web:\n{described}"
    );
    Ok(())
}
