//! Images as users name them, on a 3-node lab cluster whose registry mirrors `docker.io` (every
//! node's `registries.yaml`) and carries the Debian-based look-alikes of Docker Hub's images
//! (`ekube_lab::hub`). Three nodes, as the issue's manifest is run: the nginx pod's NodePort
//! answers through its own node and through two others.
//!
//! One cluster serves the file: the issue's nginx manifest, verbatim, through the real
//! `kubectl create -f`, answering nginx's welcome page on every node's port 32143 from the
//! external namespace; `busybox` fetching that page with `wget -T`; bad references refused as
//! upstream refuses them; a missing image reported as such, with the normalised name; and the
//! lab's auth registry, reached through a dead mirror and a rewrite rule, refusing a pull
//! without credentials as an authorization failure and serving it with an `imagePullSecret`;
//! `mysql:5.7` (Debian's MariaDB) taking its root password from a Secret, serving another
//! pod's client, and keeping a table across pod re-creation on a hostPath volume.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_lab::{AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, CERT_REGISTRY, DEAD_MIRROR};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::Value;

const LAB: &str = "ekimg";

/// The manifest of the issue, verbatim.
const NGINX: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: nginx, labels: {app: nginx}}
spec:
  containers:
    - {name: nginx, image: nginx:alpine, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-node-service, labels: {name: kube-node-service}}
spec:
  type: NodePort
  ports: [{port: 80, targetPort: 80, protocol: TCP, nodePort: 32143}]
  selector: {app: nginx}
"#;

/// busybox as tutorials use it: `wget -T` (which Debian's build lacks) fetches the service
/// `SERVICE_IP`, and `nslookup` and `nc` are there.
const BUSYBOX: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: fetch}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "type nslookup nc && wget -T 5 -qO- http://SERVICE_IP/"]
"#;

/// Pods whose images cannot be pulled: (pod, image).
const BAD: [(&str, &str); 3] = [
    ("upper", "Nginx:alpine"),
    (
        "short-digest",
        "nginx@sha256:0123456789abcdef0123456789abcdef01234567",
    ),
    ("missing", "nginx:no-such-tag"),
];

const WELCOME: &str = "<title>Welcome to nginx!</title>";

/// The last lines the agents logged, for a failure's context.
fn agent_logs(c: &LabCluster) -> String {
    c.lab
        .nodes()
        .map(|h| {
            let text = c
                .lab
                .log_path(&h.short, "agent")
                .ok()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            format!("--- agent on {}:\n{tail}", h.short)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn waiting_reason(pod: &Value) -> &str {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn images_as_users_name_them() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        3,
        ClusterOptions {
            hub_images: true,
            auth_registry: true,
            ..ClusterOptions::default()
        },
    )?;
    nginx_answers_on_every_node(&c)
        .and_then(|()| busybox_fetches_the_page(&c))
        .and_then(|()| bad_references_are_refused(&c))
        .and_then(|()| pull_secrets_open_the_auth_registry(&c))
        .and_then(|()| client_certificates_open_the_cert_registry(&c))
        .and_then(|()| mysql_keeps_its_data(&c))
        .with_context(|| agent_logs(&c))
}

/// The issue's manifest: the pod runs, its status names the image as containerd does, and
/// every node's port 32143 answers nginx's welcome page to the external client.
fn nginx_answers_on_every_node(c: &LabCluster) -> Result<()> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    std::fs::write(file.path(), NGINX)?;
    c.kubectl(&["create", "-f", &file.path().display().to_string()])?;
    let pod = c.wait_pod("nginx", Duration::from_secs(120), "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let status = &pod["status"]["containerStatuses"][0];
    ensure!(
        status["image"] == "docker.io/library/nginx:alpine",
        "status image: {}",
        status["image"]
    );
    let image_id = status["imageID"].as_str().unwrap_or_default();
    ensure!(
        image_id.starts_with("docker.io/library/nginx@sha256:") && image_id.len() == 31 + 64,
        "status imageID: {image_id}"
    );
    // describe shows the spec's image as written, its status's imageID, and the pull events.
    let describe = c.kubectl(&["describe", "pod", "nginx"])?;
    ensure!(
        describe.contains(&format!("Image ID:       {image_id}"))
            && describe.contains("Successfully pulled image \"nginx:alpine\""),
        "kubectl describe pod nginx:\n{describe}"
    );
    for node in c.lab.nodes() {
        let url = format!("http://{}:32143/", node.ip);
        let mut last = String::new();
        c.wait(Duration::from_secs(30), &format!("{url} from ext"), |c| {
            let out = c.lab.exec("ext", &["curl", "-s", "-m", "3", &url])?;
            last = out.stdout;
            Ok(last.contains(WELCOME))
        })
        .with_context(|| format!("last answer of {url}: {last:?}"))?;
    }
    // nginx logs to the container's stdout, as the official image does.
    let mut log = String::new();
    c.wait(Duration::from_secs(10), "nginx's access log line", |c| {
        log = c.container_output(&pod, "nginx")?;
        Ok(log.contains("\"GET / HTTP/1.1\" 200"))
    })
    .with_context(|| format!("nginx log: {log:?}"))?;
    Ok(())
}

/// `image: busybox` is Docker Hub's busybox, mirrored: `wget -T` fetches the page through
/// the service, and `nslookup`/`nc` are there.
fn busybox_fetches_the_page(c: &LabCluster) -> Result<()> {
    let service = c.get("service", "kube-node-service")?;
    let ip = service["spec"]["clusterIP"]
        .as_str()
        .context("kube-node-service has no clusterIP")?;
    c.apply(&BUSYBOX.replace("SERVICE_IP", ip))?;
    let pod = c.wait_pod("fetch", Duration::from_secs(120), "Succeeded", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })?;
    let out = c.container_output(&pod, "main")?;
    ensure!(
        pod["status"]["phase"] == "Succeeded" && out.contains(WELCOME),
        "busybox fetch: phase {}, output:\n{out}",
        pod["status"]["phase"]
    );
    Ok(())
}

/// Unparsable references wait as InvalidImageName with upstream's event; a tag no endpoint has
/// is a pull failure naming the normalised reference and "not found".
fn bad_references_are_refused(c: &LabCluster) -> Result<()> {
    let manifest: String = BAD
        .iter()
        .map(|(name, image)| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  \
                 containers: [{{name: main, image: \"{image}\"}}]\n"
            )
        })
        .collect();
    c.apply(&manifest)?;
    for (name, image, reason) in [
        (
            "upper",
            "Nginx:alpine",
            "invalid reference format: repository name must be lowercase",
        ),
        ("short-digest", BAD[1].1, "invalid checksum digest length"),
    ] {
        c.wait_pod(name, Duration::from_secs(60), "InvalidImageName", |p| {
            waiting_reason(p) == "InvalidImageName"
        })?;
        let expected = format!(
            "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {reason}"
        );
        let events = c.events_of(name)?;
        ensure!(
            events
                .iter()
                .any(|(r, m)| r == "InspectFailed" && *m == expected),
            "events of {name}: {events:?}, wanted InspectFailed {expected:?}"
        );
    }
    c.wait_pod("missing", Duration::from_secs(90), "ErrImagePull", |p| {
        matches!(waiting_reason(p), "ErrImagePull" | "ImagePullBackOff")
    })?;
    let events = c.events_of("missing")?;
    ensure!(
        events.iter().any(|(r, m)| r == "Failed"
            && m.contains(
                "failed to pull and unpack image \"docker.io/library/nginx:no-such-tag\""
            )
            && m.contains(
                "http://192.168.64.1:5000: docker.io/library/nginx:no-such-tag: not found"
            )),
        "events of missing: {events:?}"
    );
    Ok(())
}

/// A pod of `image` that sleeps, with the pull secret `secret` if any.
fn sleeper(name: &str, image: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{secrets}  \
         terminationGracePeriodSeconds: 1\n  \
         containers: [{{name: main, image: \"{image}\", command: [sleep, \"3600\"]}}]\n"
    )
}

/// `<auth registry>/team/busybox` goes to the dead mirror, then to the auth registry as
/// `library/busybox` (the rewrite): without credentials that is an authorization failure,
/// with a `kubernetes.io/dockerconfigjson` pull secret the pod runs.
fn pull_secrets_open_the_auth_registry(c: &LabCluster) -> Result<()> {
    let image = format!("{AUTH_REGISTRY}/team/busybox:latest");
    c.apply(&sleeper("private-anon", &image, None))?;
    c.wait_pod(
        "private-anon",
        Duration::from_secs(90),
        "ErrImagePull",
        |p| matches!(waiting_reason(p), "ErrImagePull" | "ImagePullBackOff"),
    )?;
    let events = c.events_of("private-anon")?;
    let failure = events
        .iter()
        .find(|(r, m)| r == "Failed" && m.contains("failed to pull and unpack image"))
        .map(|(_, m)| m.as_str())
        .with_context(|| format!("no pull failure among {events:?}"))?;
    ensure!(
        failure.contains(&format!("http://{DEAD_MIRROR}: "))
            && failure.contains(&format!(
                "http://{AUTH_REGISTRY}: authorization failed: 401 Unauthorized"
            ))
            && !failure.contains("not found"),
        "pull failure without credentials: {failure}"
    );

    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={AUTH_REGISTRY}"),
        &format!("--docker-username={AUTH_USER}"),
        &format!("--docker-password={AUTH_PASSWORD}"),
    ])?;
    c.apply(&sleeper("private", &image, Some("regcred")))?;
    let pod = c.wait_pod("private", Duration::from_secs(90), "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let status = &pod["status"]["containerStatuses"][0];
    ensure!(
        status["image"] == image.as_str()
            && status["imageID"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{AUTH_REGISTRY}/team/busybox@sha256:"))),
        "status of private: {status}"
    );
    Ok(())
}

/// `<cert registry>/library/busybox` is served over HTTPS only to clients with a certificate
/// of the lab's registry CA: the node's `registries.yaml` names its CA, certificate and key,
/// and the pod runs.
fn client_certificates_open_the_cert_registry(c: &LabCluster) -> Result<()> {
    let image = format!("{CERT_REGISTRY}/library/busybox:latest");
    c.apply(&sleeper("client-cert", &image, None))?;
    let pod = c.wait_pod("client-cert", Duration::from_secs(90), "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let status = &pod["status"]["containerStatuses"][0];
    ensure!(
        status["image"] == image.as_str()
            && status["imageID"].as_str().is_some_and(|id| {
                id.starts_with(&format!("{CERT_REGISTRY}/library/busybox@sha256:"))
            }),
        "status of client-cert: {status}"
    );
    Ok(())
}

/// A MySQL server pinned to NODE with its data on the node's HOSTDIR and its root password
/// from the Secret `mysql-pass`.
const MYSQL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: mysql, labels: {app: mysql}}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 10
  containers:
  - name: mysql
    image: mysql:5.7
    env:
    - name: MYSQL_ROOT_PASSWORD
      valueFrom: {secretKeyRef: {name: mysql-pass, key: password}}
    - {name: MYSQL_DATABASE, value: shop}
    ports: [{containerPort: 3306}]
    volumeMounts: [{name: data, mountPath: /var/lib/mysql}]
  volumes:
  - name: data
    hostPath: {path: HOSTDIR, type: DirectoryOrCreate}
"#;

/// A client pod running SQL against the server at SERVER (waiting for it to accept).
const MYSQL_CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: mysql:5.7
    env:
    - name: PW
      valueFrom: {secretKeyRef: {name: mysql-pass, key: password}}
    command:
    - sh
    - -c
    - |
      for i in $(seq 90); do mariadb -h SERVER -uroot -p"$PW" -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
      mariadb -h SERVER -uroot -p"$PW" shop -e "SQL"
"#;

/// Runs `sql` in a client pod `name`; its output.
fn mysql_client(c: &LabCluster, name: &str, server: &str, sql: &str) -> Result<String> {
    c.apply(
        &MYSQL_CLIENT
            .replace("NAME", name)
            .replace("SERVER", server)
            .replace("SQL", sql),
    )?;
    let pod = c.wait_pod(name, Duration::from_secs(150), "done", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })?;
    let out = c.container_output(&pod, "client")?;
    ensure!(
        pod["status"]["phase"] == "Succeeded",
        "client {name} failed: {out}"
    );
    Ok(out)
}

/// The server pod, Running; its IP.
fn start_mysql(c: &LabCluster, manifest: &str) -> Result<String> {
    c.apply(manifest)?;
    let pod = c.wait_pod("mysql", Duration::from_secs(150), "Running", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    })?;
    Ok(pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// `mysql:5.7` initialises from the Secret's password, serves a client in another pod, and
/// a table written before the pod is deleted is there after it is recreated on the same node.
fn mysql_keeps_its_data(c: &LabCluster) -> Result<()> {
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "mysql-pass",
        "--from-literal=password=s3cr'et",
    ])?;
    let n1 = c.lab.host("n1")?;
    let data = n1.dir.join("mysql-data");
    let manifest = MYSQL
        .replace("NODE", &c.node_name("n1"))
        .replace("HOSTDIR", &data.display().to_string());
    let ip = start_mysql(c, &manifest)?;
    mysql_client(
        c,
        "writer",
        &ip,
        "CREATE TABLE items (name VARCHAR(20)); INSERT INTO items VALUES ('apple');",
    )?;
    c.kubectl(&["delete", "pod", "mysql", "--wait=true"])?;
    ensure!(
        data.join("shop").is_dir(),
        "no database directory in {}",
        data.display()
    );
    let ip = start_mysql(c, &manifest)?;
    let out = mysql_client(c, "reader", &ip, "SELECT name FROM items;")?;
    ensure!(out.contains("apple"), "reader saw: {out}");
    Ok(())
}
