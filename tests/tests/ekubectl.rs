//! `ekube kubectl` against a real `ekube server` on loopback: apply, get (server-side Tables),
//! create generators, label/annotate, describe, api-resources and delete, checking the output
//! a kubectl user would see.

use ekube_tests::ServerProcess;

/// Runs `ekube kubectl` against one server, asserting success or failure.
struct Cli<'a>(&'a ServerProcess);

impl Cli<'_> {
    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.0.ekubectl(args);
        assert!(
            out.status.success(),
            "ekube kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail and returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.0.ekubectl(args);
        assert!(
            !out.status.success(),
            "ekube kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

const MANIFEST: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: web:1
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    nodePort: 32143
";

#[test]
fn ekube_kubectl_manages_objects_end_to_end() {
    let s = ServerProcess::start(&[]).unwrap();
    let c = Cli(&s);
    let file = s.dir.join("web.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_str().unwrap();

    // apply: created, then unchanged; stdin works too.
    assert_eq!(
        c.ok(&["apply", "-f", file]),
        "pod/web created\nservice/web created\n"
    );
    assert_eq!(
        c.ok(&["apply", "-f", file]),
        "pod/web unchanged\nservice/web unchanged\n"
    );
    let out = s.ekubectl_stdin(
        &["apply", "-f", "-"],
        Some(&MANIFEST.replace("image: web:1", "image: web:2")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/web configured\nservice/web unchanged\n"
    );

    // get: server-side columns.
    let pods = c.ok(&["get", "pods"]);
    let mut lines = pods.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert!(lines.next().unwrap().starts_with("web "), "{pods}");
    let svc = c.ok(&["get", "svc", "web", "-o", "wide"]);
    assert!(
        svc.contains("80:32143/TCP") && svc.contains("NodePort") && svc.contains("app=web"),
        "{svc}"
    );
    let both = c.ok(&["get", "pods,svc"]);
    assert!(
        both.contains("pod/web") && both.contains("service/web"),
        "{both}"
    );
    let all = c.ok(&["get", "po", "-A"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert_eq!(c.ok(&["get", "pod/web", "-o", "name"]), "pod/web\n");
    let yaml = c.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Pod") && yaml.contains("name: web"),
        "{yaml}"
    );
    let selected = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(selected, "pod/web\n");
    let err = c.fails(&["get", "pod", "missing"]);
    assert_eq!(
        err.trim_end(),
        "Error from server (NotFound): pods \"missing\" not found"
    );
    let err = c.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );

    // create generators.
    assert_eq!(
        c.ok(&["create", "namespace", "kubectl-t1"]),
        "namespace/kubectl-t1 created\n"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal",
            "a=b",
            "--from-literal=c=d"
        ]),
        "configmap/cfg created\n"
    );
    let cm: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "cfg", "-o", "json"])).unwrap();
    assert_eq!(cm["data"], serde_json::json!({"a": "b", "c": "d"}));
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal",
            "k=v"
        ]),
        "secret/sec created\n"
    );
    let sec: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "secret", "sec", "-o", "json"])).unwrap();
    assert_eq!(sec["data"]["k"], "dg==");
    let err = c.fails(&["create", "configmap", "cfg", "--from-literal", "a=b"]);
    assert!(err.contains("Error from server (AlreadyExists)"), "{err}");

    // label / annotate with kubectl's overwrite rule.
    let err = c.fails(&["label", "pod", "web", "app=other"]);
    assert!(
        err.contains("'app' already has a value (web), and --overwrite is false"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["label", "pod", "web", "app=other", "--overwrite"]),
        "pod/web labeled\n"
    );
    assert_eq!(c.ok(&["label", "pod/web", "tier=fe"]), "pod/web labeled\n");
    assert_eq!(c.ok(&["label", "pod", "web", "tier-"]), "pod/web labeled\n");
    assert_eq!(
        c.ok(&["annotate", "pod", "web", "note=hello world"]),
        "pod/web annotated\n"
    );
    let labels = c.ok(&["get", "pod", "web", "--show-labels", "--no-headers"]);
    assert!(labels.trim_end().ends_with("app=other"), "{labels}");

    // describe and api-resources.
    let d = c.ok(&["describe", "pod", "web"]);
    assert!(
        d.starts_with("Name:") && d.contains("web") && d.contains("Events:"),
        "{d}"
    );
    let d = c.ok(&["describe", "svc", "web"]);
    assert!(d.contains("32143/TCP"), "{d}");
    let ar = c.ok(&["api-resources"]);
    assert!(
        ar.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "po", "v1", "true", "Pod"]
        ),
        "{ar}"
    );

    // --from-env-file stores what kubectl stores.
    let env = s.dir.join("app.env");
    std::fs::write(&env, "DB_HOST=db\nDB_PASSWORD=s3cret\n").unwrap();
    let env = env.to_str().unwrap();
    c.ok(&["create", "configmap", "envcfg", "--from-env-file", env]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "envsec",
        "--from-env-file",
        env,
    ]);
    let cm: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "envcfg", "-o", "json"])).unwrap();
    assert_eq!(
        cm["data"],
        serde_json::json!({"DB_HOST": "db", "DB_PASSWORD": "s3cret"})
    );
    let sec: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "secret", "envsec", "-o", "json"])).unwrap();
    assert_eq!(sec["data"]["DB_PASSWORD"], "czNjcmV0");
    let ns = c.ok(&["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }

    // delete.
    assert_eq!(
        c.ok(&["delete", "configmap", "cfg"]),
        "configmap \"cfg\" deleted\n"
    );
    assert_eq!(
        c.ok(&["delete", "-f", file, "--grace-period=0", "--force"]),
        "pod \"web\" force deleted\nservice \"web\" force deleted\n"
    );
    let err = c.fails(&["delete", "secret", "nope"]);
    assert_eq!(
        err.trim_end(),
        "Error from server (NotFound): secrets \"nope\" not found"
    );
    c.ok(&["delete", "secret", "nope", "--ignore-not-found"]);
}
