use super::*;
use serde_json::json;

/// A minimal protobuf writer, shaped like the Go marshallers' output.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Self::default()
    }

    fn raw_varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn tag(&mut self, num: u32, wire: u8) {
        self.raw_varint(u64::from(num) << 3 | u64::from(wire));
    }

    /// int32, int64 and bool fields; negative values sign-extend like Go's encoder.
    fn int(mut self, num: u32, v: i64) -> Self {
        self.tag(num, 0);
        self.raw_varint(v as u64);
        self
    }

    fn bool(self, num: u32, v: bool) -> Self {
        self.int(num, i64::from(v))
    }

    fn bytes(mut self, num: u32, b: &[u8]) -> Self {
        self.tag(num, 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, num: u32, s: &str) -> Self {
        self.bytes(num, s.as_bytes())
    }

    fn msg(self, num: u32, m: Enc) -> Self {
        self.bytes(num, &m.0)
    }

    fn map_str(self, num: u32, k: &str, v: &str) -> Self {
        self.msg(num, Enc::new().str(1, k).str(2, v))
    }

    fn map_bytes(self, num: u32, k: &str, v: &[u8]) -> Self {
        self.msg(num, Enc::new().str(1, k).bytes(2, v))
    }

    fn map_msg(self, num: u32, k: &str, v: Enc) -> Self {
        self.msg(num, Enc::new().str(1, k).msg(2, v))
    }

    fn packed(mut self, num: u32, values: &[i64]) -> Self {
        let mut body = Enc::new();
        for v in values {
            body.raw_varint(*v as u64);
        }
        self.tag(num, 2);
        self.raw_varint(body.0.len() as u64);
        self.0.extend_from_slice(&body.0);
        self
    }
}

/// ObjectMeta as client-go writes it: every non-pointer field, zero or not.
fn object_meta(name: &str, namespace: &str) -> Enc {
    Enc::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Enc::new())
}

fn quantity(s: &str) -> Enc {
    Enc::new().str(1, s)
}

fn int_or_int(i: i64) -> Enc {
    Enc::new().int(1, 0).int(2, i).str(3, "")
}

fn int_or_str(s: &str) -> Enc {
    Enc::new().int(1, 1).int(2, 0).str(3, s)
}

fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, api_version).str(2, kind))
        .bytes(2, &raw.0)
        .str(3, "")
        .str(4, "");
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&unknown.0);
    body
}

// Bodies captured from kubectl v1.37 (`kubectl create deployment web --image=nginx
// --replicas=2 --port=80`, `kubectl create service clusterip web2 --tcp=5678:8080
// --tcp=53:dns`, `kubectl create token default`), expected JSON from the same commands with
// `--dry-run=client -o json`.
const KUBECTL_CREATE_DEPLOYMENT: &[u8] = b"\
    k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xb8\x01\x0a\x1f\x0a\x03web\x12\
    \x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12\x86\x01\x08\
    \x02\x12\x0c\x0a\x0a\x0a\x03app\x12\x03web\x1al\x0a\x1c\x0a\x00\x12\x00\x1a\x00\x22\
    \x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12L\x12.\x0a\x05nginx\x12\x05ng\
    inx*\x002\x0a\x0a\x00\x10\x00\x18P\x22\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\
    \x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\
    \x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\
    \x00\x18\x00 \x00(\x008\x00\x1a\x00\x22\x00";
const KUBECTL_CREATE_SERVICE_CLUSTERIP: &[u8] = b"\
    k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x8d\x01\x0a!\x0a\x04web2\x12\x00\x1a\
    \x00\x22\x00*\x002\x008\x00B\x00Z\x0b\x0a\x03app\x12\x04web2\x12d\x0a\x1e\x0a\x09567\
    8-8080\x12\x03TCP\x18\xae,\x22\x07\x08\x00\x10\x90?\x1a\x00(\x00\x0a\x1c\x0a\x0653-d\
    ns\x12\x03TCP\x185\x22\x09\x08\x01\x10\x00\x1a\x03dns(\x00\x12\x0b\x0a\x03app\x12\
    \x04web2\x1a\x00\x22\x09ClusterIP:\x00B\x00R\x00Z\x00`\x00h\x00\x1a\x02\x0a\x00\x1a\
    \x00\x22\x00";
const KUBECTL_CREATE_TOKEN: &[u8] = b"\
    k8s\x00\x0a(\x0a\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\x0a\x10\x0a\
    \x00\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x00\x1a\x04\x0a\x00\x12\x00\x1a\
    \x00\x22\x00";

#[test]
fn real_kubectl_bodies_match_kubectl_json() {
    assert_eq!(
        decode(KUBECTL_CREATE_DEPLOYMENT).unwrap(),
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {},
                    }]},
                },
                "strategy": {},
            },
            "status": {},
        })
    );
    assert_eq!(
        decode(KUBECTL_CREATE_SERVICE_CLUSTERIP).unwrap(),
        json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web2", "labels": {"app": "web2"}},
            "spec": {
                "ports": [
                    {"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080},
                    {"name": "53-dns", "protocol": "TCP", "port": 53, "targetPort": "dns"},
                ],
                "selector": {"app": "web2"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        })
    );
    assert_eq!(
        decode(KUBECTL_CREATE_TOKEN).unwrap(),
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {},
            "spec": {},
        })
    );
}

#[test]
fn config_map_with_data_and_binary_data() {
    let raw = Enc::new()
        .msg(1, object_meta("game", "default"))
        .map_str(2, "lives", "3")
        .map_str(2, "empty", "")
        .map_bytes(3, "blob", &[0, 1, 2])
        .str(99, "a field from a newer release");
    let got = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "game", "namespace": "default"},
            "data": {"lives": "3", "empty": ""},
            "binaryData": {"blob": "AAEC"},
        })
    );
}

#[test]
fn secret_data_is_base64_and_type_is_kept() {
    let raw = Enc::new()
        .msg(1, object_meta("db", "").map_str(11, "app", "db"))
        .map_bytes(2, "password", b"s3cr3t")
        .str(3, "Opaque")
        .bool(5, false);
    let got = decode(&envelope("v1", "Secret", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "data": {"password": "czNjcjN0"},
            "type": "Opaque",
            "immutable": false,
        })
    );
}

#[test]
fn namespace_with_empty_spec_and_status() {
    let raw = Enc::new()
        .msg(1, object_meta("team-a", ""))
        .msg(2, Enc::new())
        .msg(3, Enc::new().str(1, ""));
    let got = decode(&envelope("v1", "Namespace", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-a"},
            "spec": {},
            "status": {},
        })
    );
}

#[test]
fn deployment_with_container_env_ports_resources_and_probe() {
    let container = Enc::new()
        .str(1, "web")
        .str(2, "nginx:1.27")
        .str(3, "nginx")
        .str(4, "-g")
        .str(4, "daemon off;")
        .str(5, "")
        .msg(
            6,
            Enc::new()
                .str(1, "http")
                .int(2, 0)
                .int(3, 80)
                .str(4, "TCP")
                .str(5, ""),
        )
        .msg(7, Enc::new().str(1, "MODE").str(2, "prod"))
        .msg(
            7,
            Enc::new().str(1, "LIVES").str(2, "").msg(
                3,
                Enc::new().msg(
                    3,
                    Enc::new().msg(1, Enc::new().str(1, "game")).str(2, "lives"),
                ),
            ),
        )
        .msg(
            7,
            Enc::new().str(1, "POD").str(2, "").msg(
                3,
                Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "metadata.name")),
            ),
        )
        .msg(
            7,
            Enc::new().str(1, "PASSWORD").str(2, "").msg(
                3,
                Enc::new().msg(
                    4,
                    Enc::new()
                        .msg(1, Enc::new().str(1, "db"))
                        .str(2, "password")
                        .bool(3, true),
                ),
            ),
        )
        .msg(
            19,
            Enc::new()
                .str(1, "CFG_")
                .msg(2, Enc::new().msg(1, Enc::new().str(1, "game"))),
        )
        .msg(
            8,
            Enc::new()
                .map_msg(1, "cpu", quantity("500m"))
                .map_msg(2, "cpu", quantity("100m"))
                .map_msg(2, "memory", quantity("64Mi")),
        )
        .msg(
            9,
            Enc::new()
                .str(1, "data")
                .bool(2, true)
                .str(3, "/data")
                .str(4, ""),
        )
        .msg(
            11,
            Enc::new()
                .msg(
                    1,
                    Enc::new().msg(
                        2,
                        Enc::new()
                            .str(1, "/healthz")
                            .msg(2, int_or_str("http"))
                            .str(3, "")
                            .str(4, "HTTP"),
                    ),
                )
                .int(2, 0)
                .int(3, 1)
                .int(4, 5)
                .int(5, 1)
                .int(6, 3),
        )
        .msg(
            10,
            Enc::new()
                .msg(
                    1,
                    Enc::new().msg(3, Enc::new().msg(1, int_or_int(80)).str(2, "")),
                )
                .int(2, 10),
        )
        .msg(
            22,
            Enc::new().msg(1, Enc::new().msg(1, Enc::new().str(1, "true"))),
        )
        .str(13, "/dev/termination-log")
        .str(14, "IfNotPresent")
        .bool(16, false);
    let pod_spec = Enc::new()
        .msg(
            1,
            Enc::new().str(1, "data").msg(
                2,
                Enc::new().msg(2, Enc::new().str(1, "").msg(2, quantity("1Gi"))),
            ),
        )
        .msg(
            1,
            Enc::new().str(1, "cfg").msg(
                2,
                Enc::new().msg(
                    19,
                    Enc::new().msg(1, Enc::new().str(1, "game")).int(3, 0o644),
                ),
            ),
        )
        .msg(2, container)
        .str(3, "Always")
        .int(4, 0)
        .str(6, "ClusterFirst")
        .map_str(7, "kubernetes.io/os", "linux")
        .str(8, "")
        .str(10, "")
        .bool(11, false)
        .msg(14, Enc::new().packed(4, &[1000, 2000]))
        .msg(
            22,
            Enc::new()
                .str(1, "dedicated")
                .str(2, "Equal")
                .str(3, "web")
                .str(4, "NoSchedule")
                .int(5, 300),
        )
        .int(25, -5);
    let spec = Enc::new()
        .int(1, 0)
        .msg(2, Enc::new().map_str(1, "app", "web"))
        .msg(
            3,
            Enc::new()
                .msg(1, object_meta("", "").map_str(11, "app", "web"))
                .msg(2, pod_spec),
        )
        .msg(
            4,
            Enc::new().str(1, "RollingUpdate").msg(
                2,
                Enc::new().msg(1, int_or_int(0)).msg(2, int_or_str("25%")),
            ),
        )
        .int(5, 0)
        .bool(7, false);
    let raw = Enc::new()
        .msg(1, object_meta("web", "default"))
        .msg(2, spec)
        .msg(3, Enc::new().int(1, 0).int(2, 0));
    let got = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "volumes": [
                        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "game", "defaultMode": 420}},
                    ],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "command": ["nginx"],
                        "args": ["-g", "daemon off;"],
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "LIVES", "valueFrom": {
                                "configMapKeyRef": {"name": "game", "key": "lives"},
                            }},
                            {"name": "POD", "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"},
                            }},
                            {"name": "PASSWORD", "valueFrom": {
                                "secretKeyRef": {"name": "db", "key": "password", "optional": true},
                            }},
                        ],
                        "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "game"}}],
                        "resources": {
                            "limits": {"cpu": "500m"},
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                        },
                        "volumeMounts": [
                            {"name": "data", "readOnly": true, "mountPath": "/data"},
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                            "timeoutSeconds": 1,
                            "periodSeconds": 5,
                            "successThreshold": 1,
                            "failureThreshold": 3,
                        },
                        "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 10},
                        "startupProbe": {"exec": {"command": ["true"]}},
                        "terminationMessagePath": "/dev/termination-log",
                        "imagePullPolicy": "IfNotPresent",
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 0,
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "securityContext": {"supplementalGroups": [1000, 2000]},
                    "tolerations": [{
                        "key": "dedicated", "operator": "Equal", "value": "web",
                        "effect": "NoSchedule", "tolerationSeconds": 300,
                    }],
                    "priority": -5,
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
        },
        "status": {},
    });
    assert_eq!(
        got,
        expected,
        "got {}",
        serde_json::to_string_pretty(&got).unwrap()
    );
}

#[test]
fn service_ports_with_int_and_named_target_ports() {
    let spec = Enc::new()
        .msg(
            1,
            Enc::new()
                .str(1, "http")
                .str(2, "TCP")
                .int(3, 80)
                .msg(4, int_or_int(8080))
                .int(5, 0),
        )
        .msg(
            1,
            Enc::new()
                .str(1, "metrics")
                .str(2, "TCP")
                .int(3, 9090)
                .msg(4, int_or_str("metrics"))
                .int(5, 30090),
        )
        .map_str(2, "app", "web")
        .str(3, "")
        .str(4, "NodePort")
        .str(7, "ClientIP")
        .str(11, "")
        .msg(14, Enc::new().msg(1, Enc::new().int(1, 10800)));
    let raw = Enc::new()
        .msg(1, object_meta("web", "default"))
        .msg(2, spec)
        .msg(3, Enc::new().msg(1, Enc::new()));
    let got = decode(&envelope("v1", "Service", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {
                        "name": "metrics", "protocol": "TCP", "port": 9090,
                        "targetPort": "metrics", "nodePort": 30090,
                    },
                ],
                "selector": {"app": "web"},
                "type": "NodePort",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            },
            "status": {"loadBalancer": {}},
        })
    );
}

#[test]
fn eviction_keeps_zero_grace_period() {
    let raw = Enc::new()
        .msg(1, object_meta("web-1", "default"))
        .msg(2, Enc::new().int(1, 0).str(5, "All"));
    let got = decode(&envelope("policy/v1", "Eviction", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]},
        })
    );
}

#[test]
fn csr_approval_with_request_bytes_and_condition_times() {
    let raw = Enc::new()
        .msg(
            1,
            object_meta("node-csr", "")
                .msg(9, Enc::new().int(1, 1_767_323_045))
                .int(10, 30),
        )
        .msg(
            2,
            Enc::new()
                .bytes(1, b"-----BEGIN CERTIFICATE REQUEST-----")
                .str(2, "system:node:n1")
                .str(5, "digital signature")
                .str(5, "client auth")
                .str(7, "kubernetes.io/kube-apiserver-client-kubelet")
                .msg(
                    6,
                    Enc::new()
                        .str(1, "scopes")
                        .msg(2, Enc::new().str(1, "a").str(1, "b")),
                ),
        )
        .msg(
            3,
            Enc::new().msg(
                1,
                Enc::new()
                    .str(1, "Approved")
                    .str(2, "KubectlApprove")
                    .str(3, "This CSR was approved by kubectl certificate approve.")
                    .msg(4, Enc::new().int(1, 1_767_323_045).int(2, 999))
                    .msg(5, Enc::new())
                    .str(6, "True"),
            ),
        );
    let got = decode(&envelope(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        raw,
    ))
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {
                "name": "node-csr",
                "deletionTimestamp": "2026-01-02T03:04:05Z",
                "deletionGracePeriodSeconds": 30,
            },
            "spec": {
                "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0=",
                "username": "system:node:n1",
                "usages": ["digital signature", "client auth"],
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "extra": {"scopes": ["a", "b"]},
            },
            "status": {
                "conditions": [{
                    "type": "Approved",
                    "status": "True",
                    "reason": "KubectlApprove",
                    "message": "This CSR was approved by kubectl certificate approve.",
                    "lastUpdateTime": "2026-01-02T03:04:05Z",
                }],
            },
        })
    );
}

#[test]
fn token_request_and_managed_fields() {
    let meta = object_meta("default", "default").msg(
        17,
        Enc::new()
            .str(1, "kubectl")
            .str(2, "Update")
            .str(3, "v1")
            .msg(4, Enc::new().int(1, 0))
            .str(6, "FieldsV1")
            .msg(7, Enc::new().bytes(1, br#"{"f:spec":{}}"#)),
    );
    let raw = Enc::new()
        .msg(1, meta)
        .msg(
            2,
            Enc::new().int(4, 3600).msg(
                3,
                Enc::new()
                    .str(1, "Pod")
                    .str(2, "v1")
                    .str(3, "web-1")
                    .str(4, "u-1"),
            ),
        )
        .msg(3, Enc::new().str(1, "").msg(2, Enc::new()));
    let got = decode(&envelope("authentication.k8s.io/v1", "TokenRequest", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {
                "name": "default",
                "namespace": "default",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "1970-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {}},
                }],
            },
            // No audiences is `audiences` left out (the server reads both as "the API's");
            // the status is the server's to write, so the request's is dropped.
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "u-1",
                },
            },
        })
    );
}

#[test]
fn cron_job_with_job_template() {
    let pod_spec = Enc::new()
        .msg(
            2,
            Enc::new().str(1, "tick").str(2, "busybox").str(3, "date"),
        )
        .str(3, "OnFailure");
    let job_spec = Enc::new()
        .msg(6, Enc::new().msg(1, object_meta("", "")).msg(2, pod_spec))
        .int(7, 0);
    let raw = Enc::new()
        .msg(1, object_meta("tick", "default"))
        .msg(
            2,
            Enc::new().str(1, "*/5 * * * *").str(3, "").msg(
                5,
                Enc::new().msg(1, object_meta("tick", "")).msg(2, job_spec),
            ),
        )
        .msg(3, Enc::new());
    let got = decode(&envelope("batch/v1", "CronJob", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "metadata": {"name": "tick"},
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "metadata": {},
                            "spec": {
                                "containers": [
                                    {"name": "tick", "image": "busybox", "command": ["date"]},
                                ],
                                "restartPolicy": "OnFailure",
                            },
                        },
                    },
                },
            },
            "status": {},
        })
    );
}

#[test]
fn role_binding_required_fields_survive_when_empty() {
    let raw = Enc::new()
        .msg(1, object_meta("read", "default"))
        .msg(
            2,
            Enc::new()
                .str(1, "ServiceAccount")
                .str(2, "")
                .str(3, "ci")
                .str(4, "default"),
        )
        .msg(
            3,
            Enc::new()
                .str(1, "rbac.authorization.k8s.io")
                .str(2, "Role")
                .str(3, "read"),
        );
    let got = decode(&envelope(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        raw,
    ))
    .unwrap();
    assert_eq!(
        got["subjects"],
        json!([{"kind": "ServiceAccount", "name": "ci", "namespace": "default"}])
    );
    assert_eq!(
        got["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"})
    );

    let role = Enc::new()
        .msg(1, object_meta("empty", "default"))
        .msg(2, Enc::new().str(2, ""));
    let got = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", role)).unwrap();
    assert_eq!(got["rules"], json!([{"verbs": [], "apiGroups": [""]}]));
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let raw = Enc::new().int(1, 5).str(4, "Foreground");
    let got = decode(&envelope("v1", "DeleteOptions", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 5,
            "propagationPolicy": "Foreground",
        })
    );
    assert!(supports("apps/v1", "DeleteOptions"));
    assert!(supports("v1", "Pod"));
    assert!(!supports("apps/v1", "StatefulSet"));
}

#[test]
fn errors_name_the_problem() {
    let err = decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
    assert!(matches!(err, DecodeError::BadMagic), "{err}");

    let err = decode(&envelope("apps/v1", "StatefulSet", Enc::new())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported kind \"StatefulSet\" (apiVersion \"apps/v1\") in protobuf; send it as application/json instead"
    );

    // A ConfigMap whose last data entry is cut short.
    let raw = Enc::new()
        .msg(1, object_meta("game", "default"))
        .map_str(2, "lives", "3")
        .0;
    let mut body = MAGIC.to_vec();
    body.extend(
        Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .bytes(2, &raw[..raw.len() - 3])
            .0,
    );
    let err = decode(&body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf: failed to decode Protobuf message: ConfigMap.data: buffer underflow"
    );

    // A length-delimited value where ObjectMeta.generation (a varint) belongs.
    let raw = Enc::new().msg(1, Enc::new().str(7, "seven"));
    let err = decode(&envelope("v1", "ConfigMap", raw)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf: failed to decode Protobuf message: ObjectMeta.generation: \
         ConfigMap.metadata: invalid wire type: LengthDelimited (expected Varint)"
    );

    let mut body = MAGIC.to_vec();
    body.extend(
        Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .str(3, "gzip")
            .0,
    );
    assert!(matches!(decode(&body), Err(DecodeError::UnsupportedEncoding(e)) if e == "gzip"));
}

#[test]
fn lease_renew_time_keeps_microseconds() {
    let raw = Enc::new()
        .msg(1, object_meta("node-1", "kube-node-lease"))
        .msg(
            2,
            Enc::new()
                .str(1, "node-1")
                .int(2, 40)
                .msg(4, Enc::new().int(1, 1_767_323_045).int(2, 250_000_000))
                .int(5, 0),
        );
    let got = decode(&envelope("coordination.k8s.io/v1", "Lease", raw)).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "renewTime": "2026-01-02T03:04:05.250000Z",
            "leaseTransitions": 0,
        })
    );
}

#[test]
fn special_scalar_forms() {
    use k8s_openapi::apimachinery::pkg::{
        apis::meta::v1::{MicroTime, Time},
        util::intstr::IntOrString,
    };
    use k8s_pb::apimachinery::pkg as pb;

    use super::convert::{FromField, FromPb};

    let micro = pb::apis::meta::v1::MicroTime {
        seconds: Some(1_767_323_045),
        nanos: Some(123_456_789),
    };
    assert_eq!(
        serde_json::to_value(MicroTime::from_pb(micro).unwrap()).unwrap(),
        json!("2026-01-02T03:04:05.123456Z")
    );
    // A required time the client left at Go's zero value reads back as that zero value.
    let zero = Time::from_field(Some(pb::apis::meta::v1::Time::default())).unwrap();
    assert_eq!(
        serde_json::to_value(zero).unwrap(),
        json!("0001-01-01T00:00:00Z")
    );
    let named = pb::util::intstr::IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: Some("http".to_owned()),
    };
    assert_eq!(
        IntOrString::from_pb(named).unwrap(),
        IntOrString::String("http".to_owned())
    );
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
}

#[test]
fn horizontal_pod_autoscaler_as_kubectl_autoscale_sends_it() {
    let target = Enc::new()
        .str(1, "Deployment")
        .str(2, "web")
        .str(3, "apps/v1");
    let metric = Enc::new().str(1, "Resource").msg(
        4,
        Enc::new()
            .str(1, "cpu")
            .msg(2, Enc::new().str(1, "Utilization").int(4, 50)),
    );
    let spec = Enc::new().msg(1, target).int(2, 1).int(3, 5).msg(4, metric);
    // Go writes the non-pointer status fields even when zero.
    let status = Enc::new().int(3, 0).int(4, 0);
    let raw = Enc::new()
        .msg(1, object_meta("web", ""))
        .msg(2, spec)
        .msg(3, status);
    let v = decode(&envelope("autoscaling/v2", "HorizontalPodAutoscaler", raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
               "minReplicas": 1, "maxReplicas": 5,
               "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                   "target": {"type": "Utilization", "averageUtilization": 50}}}]})
    );
    assert_eq!(v["status"], json!({"desiredReplicas": 0}));

    let spec = Enc::new()
        .msg(1, Enc::new().str(1, "Deployment").str(2, "web"))
        .int(3, 5)
        .int(4, 50);
    let raw = Enc::new().msg(1, object_meta("web", "")).msg(2, spec);
    let v = decode(&envelope("autoscaling/v1", "HorizontalPodAutoscaler", raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
               "targetCPUUtilizationPercentage": 50})
    );
}
