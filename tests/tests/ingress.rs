//! The ingress add-on end to end, on a 2-node lab cluster with `ekube addons enable ingress`
//! (DaemonSet `ekube-ingress` on both nodes' own networks, IngressClass `ekube` the default).
//! Every request comes from the lab's external namespace, to node 1's address, with `curl
//! --resolve`, `openssl s_client`, `wrk` and a WebSocket client:
//!
//! - two hosts and three paths reach three Deployments;
//! - the ingress-controller-conformance scenarios of `path_rules.feature` and
//!   `host_rules.feature`, named after them, and a default backend;
//! - TLS: two hosts with two certificates chosen by SNI, HTTP/2 by ALPN, plain HTTP redirected;
//! - a canary with weight 20 takes 15–25 % of 1,000 requests;
//! - `wrk` for 30 s while the Ingress changes and its backend scales up and down: no non-2xx
//!   answer and no socket error;
//! - a WebSocket echo through the ingress;
//! - bad input: a missing Service answers 503 on its path with an event while the others work,
//!   an invalid path is refused with 422, a malformed TLS Secret is reported and the default
//!   certificate served;
//! - every Ingress's `status.loadBalancer` lists both nodes.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::Value;

const LAB: &str = "eking";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";
const WEB: &str = "192.168.64.1:5000/web:latest";

/// An HTTP/1.1 server in shell for busybox `nc -ll -e`: answers with the Service it stands
/// for (`$SVC`), the request target, and the headers the ingress sets.
const ECHO: &str = r#"#!/bin/sh
read -r method target version
host=""; xfp=""; xff=""
while read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Hh]ost:*) host=${line#*: } ;;
    [Xx]-[Ff]orwarded-[Pp]roto:*) xfp=${line#*: } ;;
    [Xx]-[Ff]orwarded-[Ff]or:*) xff=${line#*: } ;;
  esac
done
body="service=$SVC path=$target host=$host proto=$xfp for=$xff"
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' $((${#body}+1)) "$body"
"#;

/// The conformance suite's backends, each on its own port of one `conformance` pod.
const CONFORMANCE: [&str; 8] = [
    "foo-exact",
    "foo-prefix",
    "aaa-slash-bbb-prefix",
    "aaa-prefix",
    "aaa-slash-bbb-slash-prefix",
    "foo-slash-exact",
    "wildcard-foo-com",
    "foo-bar-com",
];

/// A Deployment of echo servers: `services` as (Service, container port).
fn echo_deployment(name: &str, services: &[(&str, u16)]) -> String {
    let list: Vec<String> = services.iter().map(|(s, p)| format!("{s}:{p}")).collect();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: echo
        image: {BUSYBOX}
        env: [{{name: SERVICES, value: "{}"}}]
        command: ["sh", "-c", "for e in $SERVICES; do SVC=${{e%%:*}} nc -ll -p ${{e##*:}} -e /echo/echo.sh & done; wait"]
        volumeMounts: [{{name: echo, mountPath: /echo}}]
      volumes:
      - name: echo
        configMap: {{name: echo, defaultMode: 0755}}
---
"#,
        list.join(" ")
    )
}

/// A Service `name` on port 8080 (named `http`) to `target` of pods labelled `app`.
fn service(name: &str, app: &str, target: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 8080, targetPort: {target}}}]\n---\n"
    )
}

fn workloads(ext_ip: &str) -> String {
    let mut m = String::new();
    m.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: echo}\ndata:\n  echo.sh: |\n");
    for line in ECHO.lines() {
        m.push_str(&format!("    {line}\n"));
    }
    m.push_str("---\n");
    for app in ["red", "green", "blue"] {
        m.push_str(&echo_deployment(app, &[(app, 8080)]));
        m.push_str(&service(app, app, 8080));
    }
    let ports: Vec<(&str, u16)> = CONFORMANCE
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, 9001 + i as u16))
        .collect();
    m.push_str(&echo_deployment("conformance", &ports));
    for (name, port) in &ports {
        m.push_str(&service(name, "conformance", *port));
    }
    // The load test's backend: busybox httpd, which scales. It exits on SIGTERM with whatever
    // it is sending cut off, which no proxy can hide once the answer has started; so, as a
    // Deployment meant to scale without errors does, it keeps serving for 2 s after its
    // deletion, while the Ingress stops sending it requests.
    m.push_str(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {WEB}
        lifecycle: {{preStop: {{exec: {{command: [sleep, "2"]}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 80}}]
---
# The WebSocket echo server runs outside the cluster: a Service without a selector and its
# own EndpointSlice.
apiVersion: v1
kind: Service
metadata: {{name: ws}}
spec:
  ports: [{{name: ws, port: 80, targetPort: 8765}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: ws-1, labels: {{kubernetes.io/service-name: ws}}}}
addressType: IPv4
ports: [{{name: ws, port: 8765, protocol: TCP}}]
endpoints: [{{addresses: ["{ext_ip}"], conditions: {{ready: true}}}}]
"#
    ));
    m
}

fn backend(service: &str) -> String {
    format!("{{service: {{name: {service}, port: {{number: 8080}}}}}}")
}

fn path(path: &str, kind: &str, service: &str) -> String {
    format!(
        "      - {{path: {path}, pathType: {kind}, backend: {}}}\n",
        backend(service)
    )
}

/// The Ingresses of the routing cases (the conformance suite's, verbatim in substance).
fn ingresses() -> String {
    let rule = |host: &str, paths: &[String]| {
        format!(
            "  - host: \"{host}\"\n    http:\n      paths:\n{}",
            paths.concat()
        )
    };
    let mut m = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: apps}}\nspec:\n  rules:\n{}{}---\n",
        rule(
            "shop.example",
            &[path("/cart", "Prefix", "red"), path("/", "Prefix", "green")]
        ),
        rule("blog.example", &[path("/posts", "Exact", "blue")]),
    );
    m.push_str(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: path-rules}}\nspec:\n  rules:\n{}{}{}{}---\n",
        rule("exact-path-rules", &[path("/foo", "Exact", "foo-exact")]),
        rule(
            "prefix-path-rules",
            &[
                path("/foo", "Prefix", "foo-prefix"),
                path("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix"),
                path("/aaa", "Prefix", "aaa-prefix"),
            ]
        ),
        rule(
            "mixed-path-rules",
            &[
                path("/foo", "Prefix", "foo-prefix"),
                path("/foo", "Exact", "foo-exact")
            ]
        ),
        rule(
            "trailing-slash-path-rules",
            &[
                path("/aaa/bbb/", "Prefix", "aaa-slash-bbb-slash-prefix"),
                path("/foo/", "Exact", "foo-slash-exact"),
            ]
        ),
    ));
    // The suite's host rules; its plain HTTP request expects the backend, not a redirect.
    m.push_str(&format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: host-rules
  annotations: {{nginx.ingress.kubernetes.io/ssl-redirect: "false"}}
spec:
  tls: [{{hosts: [foo.bar.com], secretName: conformance-tls}}]
  rules:
{}  - host: foo.bar.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: foo-bar-com, port: {{name: http}}}}}}}}
---
"#,
        rule("*.foo.com", &[path("/", "Prefix", "wildcard-foo-com")]),
    ));
    m.push_str(&format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: secure}}
spec:
  tls:
  - {{hosts: [a.secure.example], secretName: a-tls}}
  - {{hosts: [b.secure.example], secretName: b-tls}}
  rules:
{}{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: stable}}
spec:
  rules:
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: canary
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "20"
spec:
  rules:
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: load}}
spec:
  rules:
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: ws}}
spec:
  rules:
  - host: ws.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: ws, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: broken}}
spec:
  rules:
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: badtls}}
spec:
  tls: [{{hosts: [bad.example], secretName: bad-tls}}]
  rules:
{}"#,
        rule("a.secure.example", &[path("/", "Prefix", "red")]),
        rule("b.secure.example", &[path("/", "Prefix", "green")]),
        rule("canary.example", &[path("/", "Prefix", "red")]),
        rule("canary.example", &[path("/", "Prefix", "green")]),
        rule(
            "load.example",
            &["      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n".to_string()]
        ),
        rule(
            "broken.example",
            &[path("/ok", "Prefix", "red"), path("/gone", "Prefix", "missing")]
        ),
        rule("bad.example", &[path("/", "Prefix", "blue")]),
    ));
    m
}

/// `curl` from the external namespace to node 1 as `url` (its host resolved to node 1);
/// the status and the body. `extra` may replace the body (`-o /dev/null`) and the write-out,
/// which must end in a line with `%{http_code}`.
fn get(c: &LabCluster, n1: &str, url: &str, extra: &[&str]) -> Result<(u16, String)> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .context("a URL with a host")?;
    let port = if url.starts_with("https") { 443 } else { 80 };
    let resolve = format!("{host}:{port}:{n1}");
    let mut argv = vec![
        "curl",
        "-sk",
        "-m",
        "5",
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code}",
    ];
    argv.extend(extra);
    argv.push(url);
    let out = c.lab.exec("ext", &argv)?;
    let (body, code) = out
        .stdout
        .rsplit_once('\n')
        .with_context(|| format!("curl {url}: {:?} {}", out.stdout, out.stderr))?;
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// The Service that answered (from the echo body), or the status when it is not 200.
fn served(c: &LabCluster, n1: &str, url: &str) -> Result<String> {
    let (code, body) = get(c, n1, url, &[])?;
    if code != 200 {
        return Ok(code.to_string());
    }
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("service="))
        .map(str::to_string)
        .with_context(|| format!("{url}: no service in {body:?}"))
}

fn body_field(body: &str, key: &str) -> String {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// A self-signed pair for `host`, as a `kubernetes.io/tls` Secret `name`.
fn tls_secret(c: &LabCluster, dir: &std::path::Path, name: &str, host: &str) -> Result<()> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args(["-subj", &format!("/CN={host}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .output()?;
    ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl(&[
        "create",
        "secret",
        "tls",
        name,
        "--cert",
        &crt.display().to_string(),
        "--key",
        &key.display().to_string(),
    ])?;
    Ok(())
}

/// The subject of the certificate node 1 presents for `sni`.
fn presented(c: &LabCluster, n1: &str, sni: &str) -> Result<String> {
    let script = format!(
        "openssl s_client -connect {n1}:443 -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -subject"
    );
    Ok(c.lab
        .exec("ext", &["sh", "-c", &script])?
        .stdout
        .trim()
        .to_string())
}

#[test]
fn ingress_end_to_end() -> Result<()> {
    let c = LabCluster::start(LAB, 2, ClusterOptions::default())?;
    let n1 = c.lab.host("n1")?.ip.to_string();
    let n2 = c.lab.host("n2")?.ip.to_string();
    let ext_ip = c.lab.host("ext")?.ip.to_string();
    c.enable_addon("ingress", &[])?;
    let class = c.get("ingressclass", "ekube")?;
    ensure!(class["spec"]["controller"] == "ekube.io/ingress", "{class}");

    let certs = tempfile::tempdir()?;
    tls_secret(&c, certs.path(), "conformance-tls", "foo.bar.com")?;
    tls_secret(&c, certs.path(), "a-tls", "a.secure.example")?;
    tls_secret(&c, certs.path(), "b-tls", "b.secure.example")?;
    c.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bad-tls}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: not a certificate\n  tls.key: not a key\n",
    )?;
    c.apply(&workloads(&ext_ip))?;
    c.apply(&ingresses())?;
    let wsecho = c
        .lab
        .spawn("ext", "wsecho", &["python3", "-c", WS_SERVER])?;

    // Both nodes' controllers run, and write their addresses into every Ingress.
    c.wait(
        Duration::from_secs(120),
        "ekube-ingress ready on both nodes",
        |c| {
            let ds: Value = serde_json::from_str(&c.kubectl(&[
                "get",
                "daemonset",
                "ekube-ingress",
                "-n",
                "kube-system",
                "-o",
                "json",
            ])?)?;
            Ok(ds["status"]["numberReady"] == 2)
        },
    )?;
    let mut want = vec![n1.clone(), n2.clone()];
    want.sort();
    c.wait(
        Duration::from_secs(60),
        "every Ingress's status lists both nodes",
        |c| {
            let list = c.list("ingress", &[])?;
            Ok(list.len() == 10
                && list.iter().all(|i| {
                    let mut ips: Vec<String> = i["status"]["loadBalancer"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["ip"].as_str().map(str::to_string))
                        .collect();
                    ips.sort();
                    ips == want
                }))
        },
    )?;
    for app in ["red", "green", "blue", "conformance", "web"] {
        c.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{app}"),
            "--timeout=120s",
        ])?;
    }
    // The endpoints reach the controller a moment after the pods are ready.
    c.wait(
        Duration::from_secs(30),
        "the backends answer through the ingress",
        |c| {
            Ok(served(c, &n1, "http://shop.example/cart")? == "red"
                && served(c, &n1, "http://prefix-path-rules/aaa")? == "aaa-prefix")
        },
    )?;

    // Two hosts, three paths, three Deployments.
    for (url, want) in [
        ("http://shop.example/cart/items", "red"),
        ("http://shop.example/", "green"),
        ("http://shop.example/checkout", "green"),
        ("http://blog.example/posts", "blue"),
        ("http://blog.example/posts/1", "404"),
    ] {
        let got = served(&c, &n1, url)?;
        ensure!(got == want, "{url}: {got}, wanted {want}");
    }
    let (_, body) = get(&c, &n1, "http://shop.example/cart?x=1", &[])?;
    ensure!(
        body_field(&body, "path") == "/cart?x=1"
            && body_field(&body, "host") == "shop.example"
            && body_field(&body, "proto") == "http"
            && body_field(&body, "for") == ext_ip,
        "what the backend saw: {body:?}"
    );

    // The conformance suite's scenarios: (scenario, URL, the Service that must answer or the
    // status, the request path the backend must see).
    let scenarios = [
        (
            "exact /foo matches request /foo",
            "http://exact-path-rules/foo",
            "foo-exact",
            "/foo",
        ),
        (
            "exact /foo does not match request /foo/",
            "http://exact-path-rules/foo/",
            "404",
            "",
        ),
        (
            "exact /foo does not match request /FOO",
            "http://exact-path-rules/FOO",
            "404",
            "",
        ),
        (
            "exact /foo does not match request /bar",
            "http://exact-path-rules/bar",
            "404",
            "",
        ),
        (
            "prefix /foo matches request /foo",
            "http://prefix-path-rules/foo",
            "foo-prefix",
            "/foo",
        ),
        (
            "prefix /foo matches request /foo/",
            "http://prefix-path-rules/foo/",
            "foo-prefix",
            "/foo/",
        ),
        (
            "prefix /foo does not match request /FOO",
            "http://prefix-path-rules/FOO",
            "404",
            "",
        ),
        (
            "prefix /aaa/bbb matches request /aaa/bbb",
            "http://prefix-path-rules/aaa/bbb",
            "aaa-slash-bbb-prefix",
            "/aaa/bbb",
        ),
        (
            "prefix /aaa/bbb matches request /aaa/bbb/ccc",
            "http://prefix-path-rules/aaa/bbb/ccc",
            "aaa-slash-bbb-prefix",
            "/aaa/bbb/ccc",
        ),
        (
            "prefix /aaa matches request /aaa/ccc",
            "http://prefix-path-rules/aaa/ccc",
            "aaa-prefix",
            "/aaa/ccc",
        ),
        (
            "prefix /aaa does not match request /aaaccc",
            "http://prefix-path-rules/aaaccc",
            "404",
            "",
        ),
        (
            "mixed: exact /foo is preferred for request /foo",
            "http://mixed-path-rules/foo",
            "foo-exact",
            "/foo",
        ),
        (
            "mixed: prefix /foo takes request /foo/",
            "http://mixed-path-rules/foo/",
            "foo-prefix",
            "/foo/",
        ),
        (
            "prefix /aaa/bbb/ matches request /aaa/bbb",
            "http://trailing-slash-path-rules/aaa/bbb",
            "aaa-slash-bbb-slash-prefix",
            "/aaa/bbb",
        ),
        (
            "prefix /aaa/bbb/ matches request /aaa/bbb/",
            "http://trailing-slash-path-rules/aaa/bbb/",
            "aaa-slash-bbb-slash-prefix",
            "/aaa/bbb/",
        ),
        (
            "exact /foo/ does not match request /foo",
            "http://trailing-slash-path-rules/foo",
            "404",
            "",
        ),
        (
            "host foo.bar.com matches request foo.bar.com",
            "http://foo.bar.com/",
            "foo-bar-com",
            "/",
        ),
        (
            "host foo.bar.com matches TLS request foo.bar.com",
            "https://foo.bar.com/",
            "foo-bar-com",
            "/",
        ),
        (
            "host foo.bar.com does not match request subdomain.bar.com",
            "http://subdomain.bar.com/",
            "404",
            "",
        ),
        (
            "wildcard *.foo.com matches bar.foo.com",
            "http://bar.foo.com/",
            "wildcard-foo-com",
            "/",
        ),
        (
            "wildcard does not match more than one label (baz.bar.foo.com)",
            "http://baz.bar.foo.com/",
            "404",
            "",
        ),
        (
            "wildcard does not match no label (foo.com)",
            "http://foo.com/",
            "404",
            "",
        ),
    ];
    let mut failed = Vec::new();
    for (scenario, url, want, want_path) in scenarios {
        let (code, body) = get(&c, &n1, url, &[])?;
        let got = if code == 200 {
            body_field(&body, "service")
        } else {
            code.to_string()
        };
        if got != want || (code == 200 && body_field(&body, "path") != want_path) {
            failed.push(format!("{scenario}: {url} gave {code} {body:?}"));
        }
    }
    ensure!(
        failed.is_empty(),
        "conformance scenarios failed:\n{}",
        failed.join("\n")
    );
    ensure!(
        presented(&c, &n1, "foo.bar.com")?.contains("CN = foo.bar.com"),
        "the secure connection must verify the foo.bar.com hostname"
    );

    // TLS: each host its certificate by SNI, HTTP/2 by ALPN, plain HTTP redirected.
    for host in ["a.secure.example", "b.secure.example"] {
        let subject = presented(&c, &n1, host)?;
        ensure!(
            subject.contains(&format!("CN = {host}")),
            "{host}: {subject}"
        );
    }
    let (code, version) = get(
        &c,
        &n1,
        "https://a.secure.example/x",
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}\n%{http_code}",
        ],
    )?;
    ensure!(
        code == 200 && version.ends_with('2'),
        "HTTP/2: {code} {version:?}"
    );
    let (_, body) = get(&c, &n1, "https://b.secure.example/x", &[])?;
    ensure!(
        body_field(&body, "service") == "green" && body_field(&body, "proto") == "https",
        "https://b.secure.example: {body:?}"
    );
    let (code, location) = get(
        &c,
        &n1,
        "http://a.secure.example/x?y=1",
        &["-o", "/dev/null", "-w", "%{redirect_url}\n%{http_code}"],
    )?;
    ensure!(
        code == 308 && location == "https://a.secure.example/x?y=1",
        "plain HTTP to a TLS host: {code} {location:?}"
    );

    // The default backend takes what no rule matches, while it exists.
    c.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: fallback}}\nspec:\n  defaultBackend: {}\n",
        backend("blue")
    ))?;
    c.wait(
        Duration::from_secs(20),
        "the default backend serving",
        |c| Ok(served(c, &n1, "http://nowhere.example/x")? == "blue"),
    )?;
    ensure!(served(&c, &n1, "http://shop.example/cart")? == "red");
    c.kubectl(&["delete", "ingress", "fallback"])?;
    c.wait(Duration::from_secs(20), "404 again", |c| {
        Ok(served(c, &n1, "http://nowhere.example/x")? == "404")
    })?;

    // The canary: weight 20 of 1,000 requests (curl's URL globbing, one connection).
    let out = c.lab.exec(
        "ext",
        &[
            "curl",
            "-s",
            "-m",
            "120",
            "--resolve",
            &format!("canary.example:80:{n1}"),
            "http://canary.example/[1-1000]",
        ],
    )?;
    let canary = out.stdout.matches("service=green").count();
    let stable = out.stdout.matches("service=red").count();
    eprintln!("canary weight 20: {canary} of 1000 requests to the canary");
    ensure!(
        canary + stable == 1000 && (150..=250).contains(&canary),
        "canary weight 20: {canary} to the canary, {stable} to the stable backend"
    );

    // WebSocket echo.
    let out = c.lab.exec(
        "ext",
        &[
            "python3",
            "-c",
            WS_CLIENT,
            &n1,
            "80",
            "/chat",
            "ws.example",
            "hello through the ingress",
        ],
    )?;
    ensure!(
        out.success() && out.stdout.trim() == "hello through the ingress",
        "WebSocket echo: {:?} {}",
        out.stdout,
        out.stderr
    );
    c.lab.stop(wsecho)?;

    // Bad input.
    ensure!(served(&c, &n1, "http://broken.example/gone")? == "503");
    ensure!(served(&c, &n1, "http://broken.example/ok")? == "red");
    c.wait(
        Duration::from_secs(30),
        "an event for the missing Service",
        |c| {
            Ok(c.events_of("broken")?.iter().any(|(reason, message)| {
                reason == "ServiceNotFound" && message.contains("default/missing")
            }))
        },
    )?;
    c.wait(
        Duration::from_secs(30),
        "an event for the malformed Secret",
        |c| {
            Ok(c.events_of("badtls")?
                .iter()
                .any(|(reason, message)| reason == "InvalidSecret" && message.contains("bad-tls")))
        },
    )?;
    let subject = presented(&c, &n1, "bad.example")?;
    ensure!(
        subject.contains("Fake Certificate"),
        "bad.example is served the default certificate, not {subject:?}"
    );
    let invalid = certs.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: invalid}}\nspec:\n  rules:\n  - host: x.example\n    http:\n      paths:\n      - {{path: foo, pathType: Exact, backend: {}}}\n",
            backend("red")
        ),
    )?;
    let out = c.run(&["apply", "-f", &invalid.display().to_string()])?;
    ensure!(
        !out.success()
            && out.stderr.contains("spec.rules[0].http.paths[0].path")
            && out.stderr.contains("must be an absolute path"),
        "an Exact path that is not absolute: {}",
        out.stderr
    );

    load_while_changing(&c, &n1)?;
    Ok(())
}

/// `wrk` for 30 s through the ingress while the Ingress gains a path and its backend scales up
/// and back down: every answer 2xx, no socket error.
fn load_while_changing(c: &LabCluster, n1: &str) -> Result<()> {
    let url = format!("http://{n1}/");
    let wrk = c.lab.spawn(
        "ext",
        "wrk",
        &[
            "wrk",
            "-t2",
            "-c8",
            "-d30s",
            "-H",
            "Host: load.example",
            &url,
        ],
    )?;
    let changes = || -> Result<()> {
        std::thread::sleep(Duration::from_secs(4));
        c.kubectl(&[
            "patch", "ingress", "load", "--type=json", "-p",
            r#"[{"op":"add","path":"/spec/rules/0/http/paths/-","value":{"path":"/extra","pathType":"Prefix","backend":{"service":{"name":"red","port":{"number":8080}}}}}]"#,
        ])?;
        c.kubectl(&["scale", "deployment/web", "--replicas=4"])?;
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
        std::thread::sleep(Duration::from_secs(3));
        c.kubectl(&["scale", "deployment/web", "--replicas=2"])?;
        c.kubectl(&["annotate", "ingress", "load", "ekube.io/touched=yes"])?;
        Ok(())
    };
    let changed = changes();
    let log = c.lab.log_path("ext", "wrk")?;
    let mut report = String::new();
    c.wait(Duration::from_secs(60), "wrk to finish", |_| {
        report = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(report.contains("Requests/sec"))
    })?;
    let _ = c.lab.stop(wrk);
    changed?;
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("wrk's report: {report}"))?;
    eprintln!("wrk through the ingress while it changed:\n{report}");
    if report.contains("Non-2xx") || report.contains("Socket errors") || requests < 100 {
        bail!("wrk through the ingress while it changed:\n{report}");
    }
    Ok(())
}

/// A WebSocket echo server (`python3 -c`, argument: the port) and client (arguments: host,
/// port, path, Host header, message), shared by the tests that pass upgrades through.
const WS_SERVER: &str = include_str!("../websocket/echo_server.py");
const WS_CLIENT: &str = include_str!("../websocket/client.py");
