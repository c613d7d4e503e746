//! `describe`: a readable, kubectl-like view of Pods, Services, Nodes, Deployments, Jobs and
//! HorizontalPodAutoscalers, a generic field-by-field view of anything else, and the object's
//! Events at the end.

use anyhow::Result;
use clap::Args;
use ekube_api::display::{format_labels, human_duration};
use ekube_api::time::{self, Timestamp};
use serde_json::Value;

use super::discovery::Resource;
use super::get::query;
use super::output::tabwrite;
use super::{Ctx, Reported, split_type_names};

mod hpa;
mod job;
mod node;

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// TYPE [NAME_PREFIX...] or TYPE/NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Describe across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> Result<()> {
    let mut failed = false;
    let mut first = true;
    for (ty, names) in split_type_names(&args.args)? {
        let r = ctx.resolve(&ty).await?;
        let ns = if r.namespaced && !args.all_namespaces {
            Some(ctx.namespace.clone())
        } else {
            None
        };
        let (objects, missing) = ctx
            .named_or_selected(&r, ns.as_deref(), &names, args.selector.as_deref())
            .await?;
        failed |= missing;
        for o in objects {
            let events = events_for(ctx, &o).await;
            let pods = if r.group.is_empty() && r.kind == "Node" {
                node_pods(ctx, &o).await
            } else {
                None
            };
            if !first {
                println!("\n");
            }
            first = false;
            print!(
                "{}",
                describe(&r, &o, &events, pods.as_deref(), Timestamp::now())
            );
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// The object's Events: asked for by `involvedObject` field selectors, filtered again here in
/// case the server ignores some of them.
async fn events_for(ctx: &Ctx, o: &Value) -> Vec<Value> {
    let meta = &o["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let uid = meta["uid"].as_str().unwrap_or_default();
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let selector = format!("involvedObject.name={name},involvedObject.uid={uid}");
    let path = format!("/api/v1/namespaces/{ns}/events");
    let list = match ctx
        .get_json(&format!(
            "{path}{}",
            query(&[("fieldSelector", Some(&selector))])
        ))
        .await
    {
        Ok(l) => l,
        Err(_) => match ctx.get_json(&path).await {
            Ok(l) => l,
            Err(_) => return Vec::new(),
        },
    };
    let mut events: Vec<Value> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            io["name"] == name
                && (uid.is_empty() || io["uid"].as_str().is_none_or(|u| u.is_empty() || u == uid))
        })
        .cloned()
        .collect();
    events.sort_by_key(last_time);
    events
}

/// The pods on a node that have not finished, as kubectl lists them for `describe node`; `None`
/// when they cannot be listed (the resource sections are then left out, as kubectl leaves them
/// out when listing pods is forbidden).
async fn node_pods(ctx: &Ctx, node: &Value) -> Option<Vec<Value>> {
    let name = node["metadata"]["name"].as_str()?;
    let selector = format!("spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed");
    let list = ctx
        .get_json(&format!(
            "/api/v1/pods{}",
            query(&[("fieldSelector", Some(&selector))])
        ))
        .await
        .ok()?;
    // Filtered again in case the server ignores part of the selector.
    let pods = list["items"]
        .as_array()?
        .iter()
        .filter(|p| {
            p["spec"]["nodeName"] == name
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .cloned()
        .collect();
    Some(pods)
}

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(time::parse)
}
fn first_time(e: &Value) -> Option<Timestamp> {
    ts(&e["firstTimestamp"]).or_else(|| ts(&e["eventTime"]))
}
fn last_time(e: &Value) -> Option<Timestamp> {
    ts(&e["series"]["lastObservedTime"])
        .or_else(|| ts(&e["lastTimestamp"]))
        .or_else(|| first_time(e))
}

fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

/// Collects `Key:\tvalue` lines with indentation, aligned at the end like kubectl's prefix writer.
#[derive(Default)]
struct W {
    text: String,
}

impl W {
    fn kv(&mut self, level: usize, key: &str, value: impl AsRef<str>) {
        self.text.push_str(&format!(
            "{}{key}:\t{}\n",
            "  ".repeat(level),
            value.as_ref()
        ));
    }
    fn head(&mut self, level: usize, key: &str) {
        self.text
            .push_str(&format!("{}{key}:\n", "  ".repeat(level),));
    }
    fn line(&mut self, level: usize, text: impl AsRef<str>) {
        self.text
            .push_str(&format!("{}{}\n", "  ".repeat(level), text.as_ref()));
    }
    /// A map as `k=v` (labels) or `k: v` (annotations), one per line, `<none>` when empty.
    fn map(&mut self, level: usize, key: &str, v: &Value, sep: &str) {
        let mut pairs: Vec<String> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        if pairs.is_empty() {
            return self.kv(level, key, "<none>");
        }
        self.kv(level, key, &pairs[0]);
        for p in &pairs[1..] {
            self.text
                .push_str(&format!("{}\t{p}\n", "  ".repeat(level)));
        }
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
fn or_none(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(x) if x.is_empty() => "<none>".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}
fn date(v: &Value) -> String {
    ts(v)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_else(|| "<unset>".into())
}
/// A container's ports as kubectl describe prints them: `80/TCP, 53/UDP` or `<none>`.
pub(crate) fn container_ports(c: &Value) -> String {
    let ports: Vec<String> = arr(&c["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            format!("{}/{proto}", p["containerPort"])
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(", ")
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The whole description of one object; `pods` are a Node's non-terminated pods.
pub fn describe(
    r: &Resource,
    o: &Value,
    events: &[Value],
    pods: Option<&[Value]>,
    now: Timestamp,
) -> String {
    let mut w = W::default();
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Pod") => pod(&mut w, o),
        ("", "Service") => service(&mut w, o),
        ("", "Node") => node::node(&mut w, o, pods, now),
        ("apps", "Deployment") => deployment(&mut w, o),
        ("batch", "Job") => job::job(&mut w, o),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa::horizontal_pod_autoscaler(&mut w, o),
        _ => generic(&mut w, o),
    }
    if events.is_empty() {
        w.kv(0, "Events", "<none>");
    } else {
        w.head(0, "Events");
        w.line(1, "Type\tReason\tAge\tFrom\tMessage");
        w.line(1, "----\t------\t----\t----\t-------");
        for e in events {
            let count = e["series"]["count"]
                .as_i64()
                .or_else(|| e["count"].as_i64())
                .unwrap_or(1);
            let mut when = age(last_time(e), now);
            if count > 1 {
                when = format!("{when} (x{count} over {})", age(first_time(e), now));
            }
            let from = [s(&e["source"]["component"]), s(&e["reportingController"])]
                .into_iter()
                .find(|x| !x.is_empty())
                .unwrap_or("");
            w.line(
                1,
                format!(
                    "{}\t{}\t{when}\t{from}\t{}",
                    s(&e["type"]),
                    s(&e["reason"]),
                    s(&e["message"]).trim()
                ),
            );
        }
    }
    tabwrite(&w.text, 0, 2)
}

fn meta_head(w: &mut W, o: &Value, namespaced: bool) {
    let m = &o["metadata"];
    w.kv(0, "Name", s(&m["name"]));
    if namespaced {
        w.kv(0, "Namespace", s(&m["namespace"]));
    }
}

fn pod(w: &mut W, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    meta_head(w, o, true);
    w.kv(
        0,
        "Priority",
        spec["priority"].as_i64().unwrap_or(0).to_string(),
    );
    w.kv(0, "Service Account", s(&spec["serviceAccountName"]));
    let node = match (s(&spec["nodeName"]), s(&st["hostIP"])) {
        ("", _) => "<none>".to_string(),
        (n, "") => n.to_string(),
        (n, ip) => format!("{n}/{ip}"),
    };
    w.kv(0, "Node", node);
    if !st["startTime"].is_null() {
        w.kv(0, "Start Time", date(&st["startTime"]));
    }
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    let status = if m["deletionTimestamp"].is_string() {
        "Terminating".to_string()
    } else {
        s(&st["phase"]).to_string()
    };
    w.kv(0, "Status", status);
    if !st["reason"].is_null() {
        w.kv(0, "Reason", s(&st["reason"]));
    }
    w.kv(0, "IP", s(&st["podIP"]));
    let ips = arr(&st["podIPs"]);
    if ips.is_empty() {
        w.kv(0, "IPs", "<none>");
    } else {
        w.head(0, "IPs");
        for ip in ips {
            w.kv(1, "IP", s(&ip["ip"]));
        }
    }
    if let Some(owner) = arr(&m["ownerReferences"])
        .iter()
        .find(|r| r["controller"] == true)
    {
        w.kv(
            0,
            "Controlled By",
            format!("{}/{}", s(&owner["kind"]), s(&owner["name"])),
        );
    }
    for (title, specs, statuses) in [
        (
            "Init Containers",
            &spec["initContainers"],
            &st["initContainerStatuses"],
        ),
        ("Containers", &spec["containers"], &st["containerStatuses"]),
    ] {
        if arr(specs).is_empty() {
            continue;
        }
        w.head(0, title);
        for c in arr(specs) {
            let name = s(&c["name"]);
            let cs = arr(statuses)
                .iter()
                .find(|x| x["name"] == name)
                .cloned()
                .unwrap_or(Value::Null);
            w.head(1, name);
            w.kv(2, "Container ID", s(&cs["containerID"]));
            w.kv(2, "Image", s(&c["image"]));
            w.kv(2, "Image ID", s(&cs["imageID"]));
            w.kv(2, "Port", container_ports(c));
            if !c["command"].is_null() {
                w.head(2, "Command");
                for part in arr(&c["command"]) {
                    w.line(3, s(part));
                }
            }
            if !c["args"].is_null() {
                w.head(2, "Args");
                for part in arr(&c["args"]) {
                    w.line(3, s(part));
                }
            }
            container_state(w, "State", &cs["state"]);
            if cs["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
                container_state(w, "Last State", &cs["lastState"]);
            }
            w.kv(
                2,
                "Ready",
                if cs["ready"] == true { "True" } else { "False" },
            );
            w.kv(
                2,
                "Restart Count",
                cs["restartCount"].as_i64().unwrap_or(0).to_string(),
            );
            let env = arr(&c["env"]);
            if env.is_empty() {
                w.kv(2, "Environment", "<none>");
            } else {
                w.head(2, "Environment");
                for e in env {
                    let value = if e["value"].is_string() {
                        s(&e["value"]).to_string()
                    } else if let Some(r) = e["valueFrom"]["configMapKeyRef"].as_object() {
                        format!(
                            "<set to the key '{}' of config map '{}'>",
                            r["key"].as_str().unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        )
                    } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                        format!(
                            "<set to the key '{}' in secret '{}'>",
                            r["key"].as_str().unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        )
                    } else if let Some(r) = e["valueFrom"]["fieldRef"].as_object() {
                        format!(
                            " ({}:{})",
                            r.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"),
                            r["fieldPath"].as_str().unwrap_or("")
                        )
                    } else {
                        String::new()
                    };
                    w.kv(3, s(&e["name"]), value);
                }
            }
            let mounts = arr(&c["volumeMounts"]);
            if mounts.is_empty() {
                w.kv(2, "Mounts", "<none>");
            } else {
                w.head(2, "Mounts");
                for vm in mounts {
                    let mode = if vm["readOnly"] == true { "ro" } else { "rw" };
                    w.line(
                        3,
                        format!("{} from {} ({mode})", s(&vm["mountPath"]), s(&vm["name"])),
                    );
                }
            }
        }
    }
    let conditions = arr(&st["conditions"]);
    if !conditions.is_empty() {
        w.head(0, "Conditions");
        w.line(1, "Type\tStatus");
        for c in conditions {
            w.line(1, format!("{}\t{}", s(&c["type"]), s(&c["status"])));
        }
    }
    let volumes = arr(&spec["volumes"]);
    if volumes.is_empty() {
        w.kv(0, "Volumes", "<none>");
    } else {
        w.head(0, "Volumes");
        for v in volumes {
            w.head(1, s(&v["name"]));
            let source = v
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"));
            if let Some((kind, detail)) = source {
                let mut chars = kind.chars();
                let ty = chars
                    .next()
                    .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default();
                w.kv(2, "Type", ty);
                if let Some(d) = detail.as_object() {
                    for (k, v) in d {
                        if !v.is_object() && !v.is_array() {
                            w.kv(2, &smart_label(k), or_none(v));
                        }
                    }
                }
            }
        }
    }
    w.kv(0, "QoS Class", or_none(&st["qosClass"]));
    w.map(0, "Node-Selectors", &spec["nodeSelector"], "=");
    let tolerations: Vec<String> = arr(&spec["tolerations"])
        .iter()
        .map(|t| {
            let mut text = s(&t["key"]).to_string();
            if !s(&t["value"]).is_empty() {
                text.push_str(&format!("={}", s(&t["value"])));
            }
            if !s(&t["effect"]).is_empty() {
                text.push_str(&format!(":{}", s(&t["effect"])));
            }
            if s(&t["operator"]) == "Exists" && s(&t["key"]).is_empty() {
                text = format!(":{}", s(&t["effect"]));
                text = if text == ":" {
                    "op=Exists".into()
                } else {
                    format!("{} op=Exists", text.trim_start_matches(':'))
                };
            } else if s(&t["operator"]) == "Exists" {
                text.push_str(" op=Exists");
            }
            if let Some(secs) = t["tolerationSeconds"].as_i64() {
                text.push_str(&format!(" for {secs}s"));
            }
            text
        })
        .collect();
    w.kv(
        0,
        "Tolerations",
        if tolerations.is_empty() {
            "<none>".to_string()
        } else {
            tolerations[0].clone()
        },
    );
    for t in tolerations.iter().skip(1) {
        w.line(0, format!("\t{t}"));
    }
}

fn container_state(w: &mut W, title: &str, state: &Value) {
    if let Some(r) = state["running"].as_object() {
        w.kv(2, title, "Running");
        w.kv(
            3,
            "Started",
            date(r.get("startedAt").unwrap_or(&Value::Null)),
        );
    } else if let Some(x) = state["waiting"].as_object() {
        w.kv(2, title, "Waiting");
        w.kv(
            3,
            "Reason",
            x.get("reason").and_then(Value::as_str).unwrap_or(""),
        );
    } else if let Some(x) = state["terminated"].as_object() {
        w.kv(2, title, "Terminated");
        w.kv(
            3,
            "Reason",
            x.get("reason").and_then(Value::as_str).unwrap_or(""),
        );
        w.kv(
            3,
            "Exit Code",
            x.get("exitCode").map(Value::to_string).unwrap_or_default(),
        );
        w.kv(
            3,
            "Started",
            date(x.get("startedAt").unwrap_or(&Value::Null)),
        );
        w.kv(
            3,
            "Finished",
            date(x.get("finishedAt").unwrap_or(&Value::Null)),
        );
    } else {
        w.kv(2, title, "Waiting");
    }
}

fn service(w: &mut W, o: &Value) {
    let (m, spec) = (&o["metadata"], &o["spec"]);
    meta_head(w, o, true);
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    let selector = format_labels(&spec["selector"]);
    w.kv(0, "Selector", selector);
    w.kv(0, "Type", or_none(&spec["type"]));
    w.kv(0, "IP Family Policy", or_none(&spec["ipFamilyPolicy"]));
    w.kv(
        0,
        "IP Families",
        arr(&spec["ipFamilies"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(","),
    );
    w.kv(0, "IP", or_none(&spec["clusterIP"]));
    w.kv(
        0,
        "IPs",
        arr(&spec["clusterIPs"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Some(ext) = spec["externalIPs"].as_array() {
        w.kv(
            0,
            "External IPs",
            ext.iter().map(s).collect::<Vec<_>>().join(","),
        );
    }
    if spec["type"] == "ExternalName" {
        w.kv(0, "External Name", s(&spec["externalName"]));
    }
    for p in arr(&spec["ports"]) {
        let name = if s(&p["name"]).is_empty() {
            "<unset>"
        } else {
            s(&p["name"])
        };
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        w.kv(0, "Port", format!("{name}  {}/{proto}", p["port"]));
        let target = match &p["targetPort"] {
            Value::Null => p["port"].to_string(),
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        w.kv(0, "TargetPort", format!("{target}/{proto}"));
        if let Some(np) = p["nodePort"].as_i64() {
            w.kv(0, "NodePort", format!("{name}  {np}/{proto}"));
        }
    }
    w.kv(0, "Session Affinity", or_none(&spec["sessionAffinity"]));
    if matches!(s(&spec["type"]), "NodePort" | "LoadBalancer") {
        w.kv(
            0,
            "External Traffic Policy",
            or_none(&spec["externalTrafficPolicy"]),
        );
    }
    w.kv(
        0,
        "Internal Traffic Policy",
        or_none(&spec["internalTrafficPolicy"]),
    );
}

fn deployment(w: &mut W, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    meta_head(w, o, true);
    w.kv(0, "CreationTimestamp", date(&m["creationTimestamp"]));
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    w.kv(
        0,
        "Selector",
        format_labels(&spec["selector"]["matchLabels"]),
    );
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    w.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            spec["replicas"].as_i64().unwrap_or(1),
            n(&st["updatedReplicas"]),
            n(&st["replicas"]),
            n(&st["availableReplicas"]),
            n(&st["unavailableReplicas"])
        ),
    );
    let strategy = spec["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
    w.kv(0, "StrategyType", strategy);
    w.kv(
        0,
        "MinReadySeconds",
        n(&spec["minReadySeconds"]).to_string(),
    );
    if strategy == "RollingUpdate" {
        let ru = &spec["strategy"]["rollingUpdate"];
        let pct = |v: &Value| match v {
            Value::Null => "25%".to_string(),
            Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        w.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                pct(&ru["maxUnavailable"]),
                pct(&ru["maxSurge"])
            ),
        );
    }
    pod_template(w, &spec["template"]);
    let conditions = arr(&st["conditions"]);
    if !conditions.is_empty() {
        w.head(0, "Conditions");
        w.line(1, "Type\tStatus\tReason");
        w.line(1, "----\t------\t------");
        for c in conditions {
            w.line(
                1,
                format!(
                    "{}\t{}\t{}",
                    s(&c["type"]),
                    s(&c["status"]),
                    s(&c["reason"])
                ),
            );
        }
    }
}

/// A workload's `Pod Template:` section: its labels and each container's image, ports and
/// environment variable names.
fn pod_template(w: &mut W, tpl: &Value) {
    w.head(0, "Pod Template");
    w.map(1, "Labels", &tpl["metadata"]["labels"], "=");
    w.head(1, "Containers");
    for c in arr(&tpl["spec"]["containers"]) {
        w.head(2, s(&c["name"]));
        w.kv(3, "Image", s(&c["image"]));
        w.kv(3, "Port", container_ports(c));
        w.kv(
            3,
            "Environment",
            if arr(&c["env"]).is_empty() {
                "<none>".to_string()
            } else {
                arr(&c["env"])
                    .iter()
                    .map(|e| s(&e["name"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
    }
}

/// `clusterIP` → `Cluster IP`, `podCIDRs` → `Pod CIDRs` (kubectl's smart labels).
fn smart_label(k: &str) -> String {
    let chars: Vec<char> = k.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
        if c.is_ascii_uppercase()
            && (prev_lower || (prev_upper && next_lower && chars.get(i + 1) != Some(&'s')))
        {
            out.push(' ');
        }
        out.push(if i == 0 { c.to_ascii_uppercase() } else { c });
    }
    out
}

fn generic(w: &mut W, o: &Value) {
    let m = &o["metadata"];
    w.kv(0, "Name", s(&m["name"]));
    if m["namespace"].is_string() {
        w.kv(0, "Namespace", s(&m["namespace"]));
    }
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    w.kv(0, "API Version", s(&o["apiVersion"]));
    w.kv(0, "Kind", s(&o["kind"]));
    if let Some(map) = o.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            // User-chosen keys (ConfigMap/Secret data) are shown verbatim, field names as labels.
            let verbatim = matches!(k.as_str(), "data" | "binaryData" | "stringData");
            field(w, 0, &smart_label(k), v, verbatim);
        }
    }
}

fn field(w: &mut W, level: usize, key: &str, v: &Value, verbatim: bool) {
    match v {
        Value::Object(m) if m.is_empty() => w.kv(level, key, "<none>"),
        Value::Object(m) => {
            w.head(level, key);
            for (k, v) in m {
                let label = if verbatim { k.clone() } else { smart_label(k) };
                field(w, level + 1, &label, v, false);
            }
        }
        Value::Array(a) if a.is_empty() => w.kv(level, key, "<none>"),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            w.head(level, key);
            for x in a {
                w.line(level + 1, or_none(x));
            }
        }
        Value::Array(a) => {
            w.head(level, key);
            for x in a {
                field(w, level + 1, "-", x, false);
            }
        }
        other => w.kv(level, key, or_none(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-10T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn pod_view_with_events() {
        let rs = super::super::discovery::tests::sample();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "hostIP": "192.168.64.10", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "nginx", "state": {"running": {"startedAt": "2024-05-10T11:59:00Z"}}}]},
        });
        let events = vec![
            json!({"type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/web to n1", "source": {"component": "default-scheduler"},
                   "firstTimestamp": "2024-05-10T11:58:00Z", "lastTimestamp": "2024-05-10T11:58:00Z", "count": 1}),
            json!({"type": "Normal", "reason": "Pulled", "message": "Container image \"nginx\" already present", "source": {"component": "kubelet"},
                   "firstTimestamp": "2024-05-10T11:50:00Z", "lastTimestamp": "2024-05-10T11:59:00Z", "count": 3}),
        ];
        let out = describe(rs.resolve("po").unwrap(), &pod, &events, None, now());
        assert!(
            out.starts_with("Name:             web\nNamespace:        default\n"),
            "{out}"
        );
        assert!(
            out.contains("Node:             n1/192.168.64.10\n"),
            "{out}"
        );
        assert!(
            out.contains("Labels:           app=web\n                  tier=fe\n"),
            "{out}"
        );
        assert!(out.contains("    Port:           80/TCP\n"), "{out}");
        assert!(out.contains("    State:          Running\n"), "{out}");
        assert!(
            out.contains("  Type    Reason     Age                From               Message\n"),
            "{out}"
        );
        assert!(out.contains("  Normal  Pulled     60s (x3 over 10m)  kubelet            Container image \"nginx\" already present\n"), "{out}");
    }

    #[test]
    fn service_and_generic_views() {
        let rs = super::super::discovery::tests::sample();
        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 32143, "protocol": "TCP"}], "sessionAffinity": "None", "externalTrafficPolicy": "Cluster"}});
        let out = describe(rs.resolve("svc").unwrap(), &svc, &[], None, now());
        assert!(
            out.contains("Port:                     <unset>  80/TCP\n"),
            "{out}"
        );
        assert!(
            out.contains("NodePort:                 <unset>  32143/TCP\n"),
            "{out}"
        );
        assert!(out.ends_with("Events:                   <none>\n"), "{out}");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"key": "value"}});
        let out = describe(rs.resolve("ns").unwrap(), &cm, &[], None, now());
        assert!(
            out.contains("Data:\n  key:   value\nEvents:  <none>\n"),
            "{out}"
        );
        assert_eq!(smart_label("clusterIP"), "Cluster IP");
        assert_eq!(smart_label("podCIDRs"), "Pod CIDRs");
        assert_eq!(smart_label("holderIdentity"), "Holder Identity");
    }
}
