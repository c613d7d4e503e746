//! The apiserver's `/metrics` and health endpoints with the real kubectl against a loopback
//! server: request counts and latencies labelled as upstream's (`verb="LIST"` after a list),
//! `/metrics` allowed by `nonResourceURLs` rules only (upstream's Forbidden wording before the
//! binding), and `/livez`, `/readyz`, `/healthz` with their named checks.

use std::time::Duration;

use ekube_tests::{ServerProcess, kubectl_as, ok, stderr, wait_for};

/// The samples of `name` (exactly, or its `_bucket`/`_sum`/`_count` series) in an exposition.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
        })
        .collect()
}

/// A LimitRange in `dev`.
fn limit_range(name: &str) -> String {
    format!(
        "{{apiVersion: v1, kind: LimitRange, metadata: {{name: {name}, namespace: dev}}, \
         spec: {{limits: [{{type: Container, max: {{cpu: '2'}}}}]}}}}"
    )
}

#[test]
fn apiserver_metrics_count_requests_as_upstream_labels_them() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "dev"]));
    ok(s.kubectl(&["get", "pods", "-n", "dev"]));
    ok(s.kubectl(&["get", "pods", "-A"]));
    // Nothing but this test writes LimitRanges, so their counts are exact.
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&limit_range("lr"))));

    let namespaces = ok(s.kubectl(&["get", "namespaces", "-o", "name"]))
        .lines()
        .count();
    let text = ok(s.kubectl(&["get", "--raw", "/metrics"]));
    let stored = format!("apiserver_storage_objects{{resource=\"namespaces\"}} {namespaces}\n");
    assert!(text.contains(&stored), "no {stored:?} in\n{text}");
    for line in [
        "# TYPE apiserver_request_total counter",
        "# TYPE apiserver_request_duration_seconds histogram",
        "# TYPE apiserver_longrunning_requests gauge",
        "# TYPE apiserver_current_inflight_requests gauge",
        "# TYPE apiserver_storage_objects gauge",
        "apiserver_storage_objects{resource=\"limitranges\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no line starting {line:?} in\n{text}"
        );
    }
    let requests = samples(&text, "apiserver_request_total");
    for series in [
        "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} ",
        "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\"} ",
        "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"limitranges\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1",
        "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"namespaces\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} ",
    ] {
        assert!(
            requests.iter().any(|l| l.starts_with(series)),
            "no series {series:?} in\n{}",
            requests.join("\n")
        );
    }
    let buckets = samples(&text, "apiserver_request_duration_seconds");
    for series in [
        "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"0.005\"} ",
        "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"60\"} ",
        "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"+Inf\"} ",
        "apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} ",
    ] {
        assert!(
            buckets.iter().any(|l| l.starts_with(series)),
            "no series {series:?} in\n{}",
            buckets.join("\n")
        );
    }

    // A server-side apply is APPLY; a dry run says so.
    ok(s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&limit_range("applied")),
    ));
    ok(s.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&limit_range("dry")),
    ));
    let text = ok(s.kubectl(&["get", "--raw", "/metrics"]));
    let requests = samples(&text, "apiserver_request_total");
    for series in [
        "code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"limitranges\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 1",
        "code=\"201\",component=\"apiserver\",dry_run=\"All\",group=\"\",resource=\"limitranges\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1",
    ] {
        assert!(
            requests.iter().any(|l| l.ends_with(series)),
            "no series ending {series:?} in\n{}",
            requests.join("\n")
        );
    }
}

#[test]
fn metrics_need_a_non_resource_url_rule() {
    let s = ServerProcess::start(&[]).unwrap();
    let jane = s.user_kubeconfig("jane", &[]).unwrap();
    let out = kubectl_as(&jane, &["get", "--raw", "/metrics"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (Forbidden): forbidden: User \"jane\" cannot get path \"/metrics\""
    );
    // `system:monitoring` is bound to its group.
    let monitor = s
        .user_kubeconfig("prometheus", &["system:monitoring"])
        .unwrap();
    let text = ok(kubectl_as(&monitor, &["get", "--raw", "/metrics"]));
    assert!(
        text.contains("# TYPE apiserver_request_total counter"),
        "{text}"
    );

    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics-reader}
rules:
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jane-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}
",
        ),
    ));
    wait_for(Duration::from_secs(10), "jane to read /metrics", || {
        Ok(kubectl_as(&jane, &["get", "--raw", "/metrics"])
            .status
            .success())
    })
    .unwrap();
    let text = ok(kubectl_as(&jane, &["get", "--raw", "/metrics"]));
    assert!(
        text.contains("# TYPE apiserver_request_duration_seconds histogram"),
        "{text}"
    );
    // The rule names `/metrics` only.
    let out = kubectl_as(&jane, &["get", "--raw", "/readyz/etcd"]);
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (Forbidden): forbidden: User \"jane\" cannot get path \"/readyz/etcd\""
    );
}

#[test]
fn health_endpoints_name_their_checks() {
    let s = ServerProcess::start(&[]).unwrap();
    for endpoint in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(ok(s.kubectl(&["get", "--raw", endpoint])), "ok");
    }
    assert_eq!(
        ok(s.kubectl(&["get", "--raw", "/livez?verbose"])),
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]poststarthook/rbac/bootstrap-roles ok\n\
         livez check passed\n"
    );
    assert_eq!(
        ok(s.kubectl(&["get", "--raw", "/readyz?verbose"])),
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\n\
         [+]poststarthook/rbac/bootstrap-roles ok\n[+]shutdown ok\nreadyz check passed\n"
    );
    assert_eq!(
        ok(s.kubectl(&[
            "get",
            "--raw",
            "/readyz?verbose&exclude=etcd&exclude=nosuch"
        ])),
        "[+]ping ok\n[+]log ok\n[+]etcd excluded: ok\n[+]informer-sync ok\n\
         [+]poststarthook/rbac/bootstrap-roles ok\n[+]shutdown ok\n\
         warn: some health checks cannot be excluded: no matches for \"nosuch\"\n\
         readyz check passed\n"
    );
    for single in [
        "/livez/ping",
        "/readyz/etcd",
        "/healthz/log",
        "/readyz/shutdown",
    ] {
        assert_eq!(ok(s.kubectl(&["get", "--raw", single])), "ok", "{single}");
    }
    let out = s.kubectl(&["get", "--raw", "/livez/nosuch"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): the server could not find the requested resource"
    );
    // Probes are counted with their path as the subresource.
    let text = ok(s.kubectl(&["get", "--raw", "/metrics"]));
    let livez = "apiserver_request_total{code=\"200\",component=\"\",dry_run=\"\",group=\"\",resource=\"\",scope=\"\",subresource=\"/livez\",verb=\"GET\",version=\"\"} ";
    assert!(
        text.lines().any(|l| l.starts_with(livez)),
        "no {livez:?} in\n{text}"
    );
}

/// `curl -k https://127.0.0.1:<port><path>` with an optional bearer token: status and body.
fn scrape(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        curl.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = curl
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn scheduler_and_controller_manager_serve_metrics_to_allowed_users() {
    let (scheduler, controller_manager) = (ekube_tests::free_port(), ekube_tests::free_port());
    let s = ServerProcess::start(&[
        &format!("--kube-scheduler-arg=secure-port={scheduler}"),
        &format!("--kube-controller-manager-arg=secure-port={controller_manager}"),
    ])
    .unwrap();
    for port in [scheduler, controller_manager] {
        wait_for(
            Duration::from_secs(20),
            "the secure port to answer /healthz",
            || Ok(scrape(port, "/healthz", None) == (200, "ok".into())),
        )
        .unwrap();
        assert_eq!(scrape(port, "/readyz", None), (200, "ok".into()));
    }
    // A pod to schedule (no node fits: an unschedulable attempt) and a Deployment to reconcile.
    ok(s.kubectl(&["run", "web", "--image=nginx"]));
    ok(s.kubectl(&["create", "deployment", "app", "--image=nginx"]));

    ok(s.kubectl(&["create", "serviceaccount", "prometheus"]));
    ok(s.kubectl(&["create", "serviceaccount", "nobody"]));
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "prometheus",
        "--clusterrole=system:monitoring",
        "--serviceaccount=default:prometheus",
    ]));
    let allowed = ok(s.kubectl(&["create", "token", "prometheus"]));
    let denied = ok(s.kubectl(&["create", "token", "nobody"]));
    let (allowed, denied) = (allowed.trim(), denied.trim());

    for port in [scheduler, controller_manager] {
        let (code, body) = scrape(port, "/metrics", None);
        assert_eq!(code, 403, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            status["message"],
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\""
        );
        let (code, body) = scrape(port, "/metrics", Some(denied));
        assert_eq!(code, 403, "{body}");
        assert!(
            body.contains("User \\\"system:serviceaccount:default:nobody\\\" cannot get path"),
            "{body}"
        );
        let (code, body) = scrape(port, "/metrics", Some("not-a-token"));
        assert_eq!(code, 401, "{body}");
    }
    wait_for(
        Duration::from_secs(20),
        "an unschedulable attempt in the scheduler's metrics",
        || {
            let (code, body) = scrape(scheduler, "/metrics", Some(allowed));
            assert_eq!(code, 200, "{body}");
            Ok(body.lines().any(|l| {
                l.starts_with("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"} ")
            }) && body.contains("scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"default-scheduler\",result=\"unschedulable\",le=\"0.001\"} ")
                && body.contains("scheduler_pending_pods{queue=\"backoff\"} "))
        },
    )
    .unwrap();
    wait_for(
        Duration::from_secs(20),
        "a deployment reconcile in the controller-manager's metrics",
        || {
            let (code, body) = scrape(controller_manager, "/metrics", Some(allowed));
            assert_eq!(code, 200, "{body}");
            Ok(body.lines().any(|l| {
                l.starts_with("workqueue_work_duration_seconds_count{name=\"deployment\"} ")
            }))
        },
    )
    .unwrap();
}
