//! The apiserver's `proxy` subresources on a 2-node lab cluster, through the real `kubectl
//! proxy` running on node 1 (requests with `curl` to it on node 1's loopback) and `kubectl get
//! --raw`:
//!
//! - `services/web/proxy/` answers the backend's page; `services/http:echo:8080/proxy/<path>`
//!   (and the named port `echo:http`) reaches the path and query, with `X-Forwarded-For` and
//!   `X-Forwarded-Uri` set and no credentials passed on; `…/proxy` is `301` to `…/proxy/`
//!   with the query kept; a POST body reaches the backend;
//! - a Service whose only pod is not ready, and a port the Service lacks, answer 503 with
//!   upstream's messages; a missing Service is 404 (its Endpoints named when no port number
//!   is given, as upstream);
//! - `pods/<pod>:8080/proxy/…` and `nodes/<node>/proxy/healthz` (the kubelet) work;
//! - a WebSocket echo on node 2's port 8765 through `nodes/<n2>:8765/proxy/` (the upgrade
//!   passes kubectl proxy and the apiserver);
//! - a user without `services/proxy` is refused with 403.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};

const LAB: &str = "ekapx";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";
const WEB: &str = "192.168.64.1:5000/web:latest";
/// Where `kubectl proxy` listens on node 1's loopback.
const PROXY_PORT: u16 = 18001;

/// An HTTP/1.1 server in shell for busybox `nc -ll -e`: answers with the request line, the
/// forwarding headers, whether credentials arrived, and the body.
const ECHO: &str = r#"#!/bin/sh
read -r method target version
xff="-"; xfu="-"; auth="none"; len=0
while read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Xx]-[Ff]orwarded-[Ff]or:*) xff=${line#*: } ;;
    [Xx]-[Ff]orwarded-[Uu]ri:*) xfu=${line#*: } ;;
    [Aa]uthorization:*|[Ii]mpersonate-*) auth="passed" ;;
    [Cc]ontent-[Ll]ength:*) len=${line#*: } ;;
  esac
done
data=""
[ "$len" -gt 0 ] && data=$(head -c "$len")
body="method=$method target=$target for=$xff uri=$xfu auth=$auth data=$data"
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' $((${#body}+1)) "$body"
"#;

fn workloads() -> String {
    let mut m = String::new();
    m.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: echo}\ndata:\n  echo.sh: |\n");
    for line in ECHO.lines() {
        m.push_str(&format!("    {line}\n"));
    }
    m.push_str(&format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: {WEB}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, labels: {{app: echo}}}}
spec:
  containers:
  - name: echo
    image: {BUSYBOX}
    command: ["nc", "-ll", "-p", "8080", "-e", "/echo/echo.sh"]
    ports: [{{containerPort: 8080}}]
    volumeMounts: [{{name: echo, mountPath: /echo}}]
  volumes:
  - name: echo
    configMap: {{name: echo, defaultMode: 0755}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: unready, labels: {{app: unready}}}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {{command: ["false"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: unready}}
spec:
  selector: {{app: unready}}
  ports: [{{port: 80, targetPort: 80}}]
"#
    ));
    m
}

/// `curl` on node 1 to `kubectl proxy`: (status, headers, body).
fn curl(c: &LabCluster, path: &str, extra: &[&str]) -> Result<(u16, String, String)> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}{path}");
    let mut argv = vec![
        "curl",
        "-s",
        "-m",
        "10",
        "-D",
        "/dev/stderr",
        "-w",
        "\n%{http_code}",
    ];
    argv.extend(extra);
    argv.push(&url);
    let out = c.lab.exec("n1", &argv)?;
    let (body, code) = out
        .stdout
        .rsplit_once('\n')
        .with_context(|| format!("curl {url}: {:?} {}", out.stdout, out.stderr))?;
    Ok((
        code.trim().parse().unwrap_or(0),
        out.stderr.clone(),
        body.to_string(),
    ))
}

/// Ends `kubectl proxy` (by its PID) however the test ends.
struct Stop<'a>(&'a LabCluster, u32);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.lab.stop(self.1) {
            eprintln!("stopping kubectl proxy (pid {}): {e}", self.1);
        }
    }
}

#[test]
fn proxy_subresources_through_kubectl_proxy() -> Result<()> {
    let c = LabCluster::start(LAB, 2, ClusterOptions::default())?;
    c.apply(&workloads())?;
    c.wait(Duration::from_secs(180), "web and echo ready", |c| {
        let web = c.list("pods", &["-l", "app=web"])?;
        Ok(web.iter().any(is_ready) && is_ready(&c.get("pod", "echo")?))
    })?;
    c.wait_pod("unready", Duration::from_secs(120), "running", |p| {
        p["status"]["phase"] == "Running"
    })?;

    let pid = c.lab.spawn(
        "n1",
        "kubectl-proxy",
        &c.argv(&["proxy", &format!("--port={PROXY_PORT}")]),
    )?;
    let _stop = Stop(&c, pid);
    c.wait(Duration::from_secs(30), "kubectl proxy to listen", |c| {
        Ok(curl(c, "/version", &[])?.0 == 200)
    })?;
    let svc = "/api/v1/namespaces/default/services";

    // The backend's page (its pod's hostname), with the one port left out and named by number.
    let web_pod = c.list("pods", &["-l", "app=web"])?[0]["metadata"]["name"]
        .as_str()
        .context("the web pod's name")?
        .to_string();
    // The Endpoints follow the pods' readiness a moment later.
    c.wait(
        Duration::from_secs(30),
        "services/web/proxy/ to answer",
        |c| Ok(curl(c, &format!("{svc}/web/proxy/"), &[])?.0 == 200),
    )?;
    for name in ["web", "web:80", "http:web:80"] {
        let (code, _, body) = curl(&c, &format!("{svc}/{name}/proxy/"), &[])?;
        ensure!(
            code == 200 && body.contains(&web_pod),
            "services/{name}/proxy/: {code} {body:?}"
        );
    }

    // Path and query reach the backend; forwarding headers set, credentials not passed on.
    c.wait(
        Duration::from_secs(30),
        "services/echo/proxy to answer",
        |c| Ok(curl(c, &format!("{svc}/echo:http/proxy/"), &[])?.0 == 200),
    )?;
    let (code, _, body) = curl(
        &c,
        &format!("{svc}/http:echo:8080/proxy/some/path?x=1&y=two"),
        &[],
    )?;
    ensure!(code == 200, "echo: {code} {body:?}");
    ensure!(
        body.contains("method=GET target=/some/path?x=1&y=two ")
            && body.contains(&format!(" uri={svc}/http:echo:8080/proxy/some/path "))
            && body.contains(" auth=none "),
        "path, query and headers at the backend: {body:?}"
    );
    let xff = body
        .split(" for=")
        .nth(1)
        .and_then(|r| r.split(" uri=").next())
        .unwrap_or_default();
    ensure!(
        xff.starts_with("127.0.0.1, ") && xff.len() > "127.0.0.1, ".len(),
        "X-Forwarded-For names kubectl proxy's client and then kubectl proxy: {xff:?}"
    );
    let (code, _, body) = curl(
        &c,
        &format!("{svc}/echo:http/proxy/post"),
        &["-X", "POST", "--data-binary", "hello-body"],
    )?;
    ensure!(
        code == 200
            && body.contains("method=POST target=/post ")
            && body.contains("data=hello-body"),
        "a POST body: {code} {body:?}"
    );

    // `…/proxy` itself is redirected to `…/proxy/`, the query kept.
    let (code, headers, _) = curl(&c, &format!("{svc}/web:80/proxy?a=b"), &[])?;
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    ensure!(
        code == 301 && location == format!("{svc}/web:80/proxy/?a=b"),
        "services/web:80/proxy: {code} Location {location:?}"
    );

    // No ready endpoint, a port the Service lacks, no such Service.
    let (code, _, body) = curl(&c, &format!("{svc}/unready/proxy/"), &[])?;
    ensure!(
        code == 503 && body.contains(r#"no endpoints available for service \"unready\""#),
        "a Service without ready endpoints: {code} {body}"
    );
    let (code, _, body) = curl(&c, &format!("{svc}/web:8081/proxy/"), &[])?;
    ensure!(
        code == 503 && body.contains(r#"no service port 8081 found for service \"web\""#),
        "a port the Service lacks: {code} {body}"
    );
    let (code, _, body) = curl(&c, &format!("{svc}/echo:nope/proxy/"), &[])?;
    ensure!(
        code == 503 && body.contains(r#"no endpoints available for service \"echo\""#),
        "a port name the Service lacks: {code} {body}"
    );
    // No such Service: as upstream, a port number looks the Service up, a name or none
    // only its Endpoints.
    for (name, missing) in [("missing:80", "services"), ("missing", "endpoints")] {
        let (code, _, body) = curl(&c, &format!("{svc}/{name}/proxy/"), &[])?;
        ensure!(
            code == 404
                && body.contains("NotFound")
                && body.contains(&format!(r#"{missing} \"missing\" not found"#)),
            "a missing Service as {name}: {code} {body}"
        );
    }

    // A pod by its port, and by its first declared port.
    for name in ["echo:8080", "echo", "http:echo:8080"] {
        let (code, _, body) = curl(
            &c,
            &format!("/api/v1/namespaces/default/pods/{name}/proxy/p?q=1"),
            &[],
        )?;
        ensure!(
            code == 200 && body.contains("target=/p?q=1 "),
            "pods/{name}/proxy: {code} {body:?}"
        );
    }

    // The kubelet of node 2.
    let n2 = c.node_name("n2");
    let (code, _, body) = curl(&c, &format!("/api/v1/nodes/{n2}/proxy/healthz"), &[])?;
    ensure!(
        code == 200 && body.trim() == "ok",
        "nodes/{n2}/proxy/healthz: {code} {body:?}"
    );

    // A WebSocket echo on node 2's own address, port 8765, through both proxies.
    let ws = c.lab.spawn("n2", "wsecho", &["python3", "-c", WS_SERVER])?;
    let ws_path = format!("/api/v1/nodes/{n2}:8765/proxy/chat");
    let mut last = String::new();
    let echoed = c.wait(Duration::from_secs(20), "a WebSocket echo", |c| {
        let out = c.lab.exec(
            "n1",
            &[
                "python3",
                "-c",
                WS_CLIENT,
                "127.0.0.1",
                &PROXY_PORT.to_string(),
                &ws_path,
                "127.0.0.1",
                "hello through the apiserver",
            ],
        )?;
        last = format!("{:?} {}", out.stdout, out.stderr);
        Ok(out.success() && out.stdout.trim() == "hello through the apiserver")
    });
    c.lab.stop(ws)?;
    echoed.with_context(|| format!("the last attempt: {last}"))?;

    // `kubectl get --raw`, and a user without `services/proxy`.
    let page = c.kubectl(&["get", "--raw", &format!("{svc}/web:80/proxy/")])?;
    ensure!(page.contains(&web_pod), "kubectl get --raw: {page:?}");
    let out = c.run(&[
        "get",
        "--raw",
        &format!("{svc}/web:80/proxy/"),
        "--as=someone",
    ])?;
    ensure!(
        !out.success()
            && out.stderr.contains("Forbidden")
            && out
                .stderr
                .contains(r#"cannot get resource "services/proxy""#),
        "a user without services/proxy: {:?} {}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

/// A WebSocket echo server (`python3 -c`, argument: the port) and client (arguments: host,
/// port, path, Host header, message), shared by the tests that pass upgrades through.
const WS_SERVER: &str = include_str!("../websocket/echo_server.py");
const WS_CLIENT: &str = include_str!("../websocket/client.py");
