//! Persistent storage end to end on a three-node lab, driven with the real kubectl: the
//! `local-path` add-on (default StorageClass, `WaitForFirstConsumer`) provisions a claim on
//! the node its first pod is scheduled to, the data outlives the pod, a claim in use waits on
//! its finalizer until the pod is gone, and reclaim `Delete` removes the directory; a
//! StatefulSet's replicas keep their own data across deletion; bad input is refused or
//! reported as upstream does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use serde_json::Value;

const LAB: &str = "ekstore";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";

/// A claim of the default class and a pod that writes `hello` into it.
fn claim_and_writer() -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'echo hello > /data/hello && sleep 3600']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"
    )
}

/// A pod that reads the claim back (read-only) and stays up.
fn reader() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'cat /data/hello; touch /data/nope 2>/dev/null || echo read-only; sleep 3600']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data, readOnly: true}}
"
    )
}

/// Three replicas, each writing a token of its own into its claim the first time it starts.
fn statefulset() -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        command: [sh, -c, '[ -f /data/token ] || echo $(hostname)-$(cat /proc/sys/kernel/random/uuid) > /data/token; sleep 3600']
        readinessProbe:
          exec: {{command: [cat, /data/token]}}
          periodSeconds: 1
        volumeMounts: [{{name: www, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 16Mi}}}}
"
    )
}

const UNKNOWN_CLASS: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: lost}
spec:
  storageClassName: nope
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
";

const BAD_AFFINITY: &str = "apiVersion: v1
kind: PersistentVolume
metadata: {name: bad-affinity}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/disk}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: Near, values: [n1]}
";

/// The tutorial's volume made by hand ("Configure a Pod to Use a PersistentVolume for
/// Storage"): a hostPath of class `manual` (no such StorageClass object), its claim and a pod.
fn manual(dir: &Path) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata: {{name: task-pv-volume, labels: {{type: local}}}}
spec:
  storageClassName: manual
  capacity: {{storage: 100Mi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {dir}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: task-pv-claim}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 30Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: task-pv-pod}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'echo manual > /data/index.html && sleep 3600']
    volumeMounts: [{{name: storage, mountPath: /data}}]
  volumes:
  - name: storage
    persistentVolumeClaim: {{claimName: task-pv-claim}}
",
        dir = dir.display()
    )
}

fn phase(object: &Value) -> &str {
    object["status"]["phase"].as_str().unwrap_or_default()
}

fn running(pod: &Value) -> bool {
    phase(pod) == "Running"
}

fn gone(c: &LabCluster, kind: &str, name: &str) -> Result<bool> {
    let out = c.run(&["get", kind, name, "-o", "name"])?;
    Ok(!out.success() && out.stderr.contains("NotFound"))
}

/// `kubectl exec <pod> -- <argv>`'s output.
fn exec(c: &LabCluster, pod: &str, argv: &[&str]) -> Result<String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend(argv);
    c.kubectl(&args)
}

/// Where a `local` volume keeps its data, checked to be under the lab's storage directory.
fn volume_dir(pv: &Value, storage: &Path) -> Result<PathBuf> {
    let path = PathBuf::from(
        pv["spec"]["local"]["path"]
            .as_str()
            .with_context(|| format!("volume without a local path: {pv}"))?,
    );
    ensure!(
        path.parent() == Some(storage),
        "volume path {} is not in {}",
        path.display(),
        storage.display()
    );
    Ok(path)
}

#[test]
fn claims_are_provisioned_kept_and_reclaimed() -> Result<()> {
    let c = LabCluster::start(LAB, 3, ClusterOptions::default())?;
    let storage = c.lab.config().lab_dir().join("storage");
    let long = Duration::from_secs(120);

    // The add-on's class is the default one.
    let classes = c.kubectl(&["get", "storageclass"])?;
    ensure!(
        classes.contains("local-path (default)")
            && classes.contains("rancher.io/local-path")
            && classes.contains("WaitForFirstConsumer"),
        "kubectl get storageclass:\n{classes}"
    );

    // A claim without a class gets the default one, and waits for its first pod.
    c.apply(&claim_and_writer())?;
    let claim = c.get("pvc", "data")?;
    ensure!(
        claim["spec"]["storageClassName"] == "local-path",
        "the default class was not given: {claim}"
    );
    let writer = c.wait_pod("writer", long, "running", running)?;
    let node = writer["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.wait(long, "claim data bound", |c| {
        Ok(phase(&c.get("pvc", "data")?) == "Bound")
    })?;
    let claim = c.get("pvc", "data")?;
    ensure!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node.as_str(),
        "the scheduler's node is not on the claim: {claim}"
    );
    ensure!(
        c.events_of("data")?
            .iter()
            .any(|(reason, _)| reason == "WaitForFirstConsumer"),
        "no WaitForFirstConsumer event: {:?}",
        c.events_of("data")?
    );
    let pv_name = claim["spec"]["volumeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pv = c.get("pv", &pv_name)?;
    ensure!(
        pv["spec"]["claimRef"]["name"] == "data"
            && pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
            && pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
                [0]["values"][0]
                == node.as_str()
            && phase(&pv) == "Bound",
        "provisioned volume: {pv}"
    );
    let dir = volume_dir(&pv, &storage)?;
    c.wait(long, "the writer's file on the node", |_| {
        Ok(std::fs::read_to_string(dir.join("hello")).is_ok_and(|s| s == "hello\n"))
    })?;

    // The data outlives the pod: a new pod on the same claim reads it, on the same node.
    c.kubectl(&["delete", "pod", "writer", "--wait=true"])?;
    c.apply(&reader())?;
    let reader = c.wait_pod("reader", long, "running", running)?;
    ensure!(
        reader["spec"]["nodeName"] == node.as_str(),
        "the reader went to {} and not to the volume's node {node}",
        reader["spec"]["nodeName"]
    );
    c.wait(long, "the reader's output", |c| {
        let out = c.kubectl(&["logs", "reader"])?;
        Ok(out.contains("hello") && out.contains("read-only"))
    })?;
    let described = c.kubectl(&["describe", "pod", "reader"])?;
    ensure!(
        described.contains("PersistentVolumeClaim") && described.contains("ClaimName:  data"),
        "kubectl describe pod reader:\n{described}"
    );

    // A claim in use waits on its finalizer until the pod is gone.
    c.kubectl(&["delete", "pvc", "data", "--wait=false"])?;
    std::thread::sleep(Duration::from_secs(3));
    let claim = c.get("pvc", "data")?;
    ensure!(
        !claim["metadata"]["deletionTimestamp"].is_null()
            && claim["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "kubernetes.io/pvc-protection")),
        "a claim in use went or lost its finalizer: {claim}"
    );
    ensure!(
        dir.join("hello").exists(),
        "the data went while the claim was in use"
    );
    c.kubectl(&["delete", "pod", "reader", "--wait=true"])?;
    c.wait(long, "claim data gone", |c| gone(c, "pvc", "data"))?;
    // Reclaim policy Delete: the directory and the volume go.
    c.wait(long, "volume and directory removed", |c| {
        Ok(gone(c, "pv", &pv_name)? && !dir.exists())
    })?;

    // Each replica of a StatefulSet keeps its own data across deletion.
    c.apply(&statefulset())?;
    c.wait(Duration::from_secs(180), "3 ready web replicas", |c| {
        Ok(c.list("pods", &["-l", "app=web"])?
            .iter()
            .filter(|p| is_ready(p))
            .count()
            == 3)
    })?;
    let token = exec(&c, "web-1", &["cat", "/data/token"])?;
    ensure!(token.starts_with("web-1-"), "web-1's token: {token:?}");
    let claims = c.list("pvc", &["-l", "app=web"])?;
    ensure!(
        claims.len() == 3 && claims.iter().all(|p| phase(p) == "Bound"),
        "the StatefulSet's claims: {}",
        Value::from(claims.clone())
    );
    let old_uid = c.get("pod", "web-1")?["metadata"]["uid"].clone();
    c.kubectl(&["delete", "pod", "web-1", "--wait=true"])?;
    c.wait(long, "web-1 back and ready", |c| {
        let pod = c.get("pod", "web-1")?;
        Ok(pod["metadata"]["uid"] != old_uid && is_ready(&pod))
    })?;
    let again = exec(&c, "web-1", &["cat", "/data/token"])?;
    ensure!(
        again == token,
        "web-1 lost its data: {token:?} then {again:?}"
    );

    // Bad input: an unknown class is reported on the claim, which stays Pending.
    c.apply(UNKNOWN_CLASS)?;
    c.wait(long, "a ProvisioningFailed event naming the class", |c| {
        Ok(c.events_of("lost")?.iter().any(|(reason, message)| {
            reason == "ProvisioningFailed"
                && message.contains("storageclass.storage.k8s.io \"nope\" not found")
        }))
    })?;
    ensure!(
        phase(&c.get("pvc", "lost")?) == "Pending",
        "a claim of an unknown class left Pending"
    );

    // A volume made by hand binds to the claim that fits it; Retain keeps it once released.
    let manual_dir = c.lab.config().lab_dir().join("manual");
    c.apply(&manual(&manual_dir))?;
    c.wait_pod("task-pv-pod", long, "running", running)?;
    c.wait(long, "the pod's file in the hostPath volume", |_| {
        Ok(std::fs::read_to_string(manual_dir.join("index.html")).is_ok_and(|s| s == "manual\n"))
    })?;
    let pv = c.get("pv", "task-pv-volume")?;
    ensure!(
        phase(&pv) == "Bound" && pv["spec"]["claimRef"]["name"] == "task-pv-claim",
        "the volume made by hand: {pv}"
    );
    c.kubectl(&["delete", "pod", "task-pv-pod", "--wait=true"])?;
    c.kubectl(&["delete", "pvc", "task-pv-claim", "--wait=true"])?;
    c.wait(long, "the volume released", |c| {
        Ok(phase(&c.get("pv", "task-pv-volume")?) == "Released")
    })?;
    ensure!(
        manual_dir.join("index.html").exists(),
        "Retain lost the data"
    );

    // A volume with an invalid node affinity is refused with 422, naming the field.
    let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    std::fs::write(file.path(), BAD_AFFINITY)?;
    let out = c.run(&["create", "-f", &file.path().display().to_string()])?;
    ensure!(
        !out.success()
            && out.stderr.contains("is invalid")
            && out
                .stderr
                .contains("nodeSelectorTerms[0].matchExpressions[0].operator"),
        "a bad node affinity: exit {:?}: {}",
        out.code,
        out.stderr
    );
    Ok(())
}
