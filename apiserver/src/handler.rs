//! HTTP request handling: authentication, impersonation, the in-flight limit, authorization,
//! routing, and one function per verb.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use ekube_api::ResourceInfo;
use ekube_api::selector::{FieldSelector, LabelSelector};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::auth::User;
use crate::authz::escalation::Guard;
use crate::authz::{request_info, review};
use crate::errors::{ApiError, Result};
use crate::registry::{FieldValidation, ListOptions, Warnings, WriteOptions};
use crate::route::{self, Route, Target};
use crate::table::{self, IncludeObject};
use crate::{apply, delete, discovery, openapi, patch, resource_metrics, watch};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub(crate) fn respond(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    respond(code, "application/json", value.to_string())
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    );
    if let Some(secs) = e.retry_after_seconds() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

/// The parsed query string.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    /// The options of a write by `user`.
    pub fn write_options(&self, user: &Arc<User>) -> Result<WriteOptions> {
        let field_validation = match self.get("fieldValidation") {
            None | Some("" | "Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                )));
            }
        };
        let dry_run = match self.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported dryRun value {other:?}: only \"All\""
                )));
            }
        };
        Ok(WriteOptions {
            dry_run,
            field_validation,
            field_manager: self.get("fieldManager").map(str::to_string),
            precondition: None,
            user: user.clone(),
        })
    }

    /// The label and field selectors of a list or watch of `r`; a field `r`'s kind cannot be
    /// selected by is a bad request, as upstream's field label conversion makes it.
    pub fn selectors(&self, r: &ResourceInfo) -> Result<(LabelSelector, FieldSelector)> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(strategy) = crate::strategy::of(r) {
            crate::strategy::selectable(strategy, &fields).map_err(ApiError::bad_request)?;
        }
        Ok((labels, fields))
    }

    /// What a list of `r` asks for: its selectors ([`Self::selectors`]), page size and where
    /// the page starts. A `limit` that is not a number is a bad request; a negative one, like
    /// none, asks for every item.
    pub fn list_options(&self, r: &ResourceInfo) -> Result<ListOptions> {
        let (labels, fields) = self.selectors(r)?;
        let limit = match self.get("limit").filter(|l| !l.is_empty()) {
            None => 0,
            Some(l) => l
                .parse::<i64>()
                .map_err(|e| ApiError::bad_request(format!("limit {l:?}: {e}")))?,
        };
        Ok(ListOptions {
            labels,
            fields,
            limit: usize::try_from(limit).unwrap_or(0),
            continue_token: self.get("continue").map(str::to_string),
        })
    }
}

/// How the client wants objects rendered.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

pub fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

pub async fn handle(
    api: Arc<ApiServer>,
    certificate_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let measured = crate::metrics::Measured::start(req.method(), req.uri(), req.headers());
    let response = match route_request(&api, certificate_user, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let response = measured.finish(response);
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "request");
    Ok(response)
}

async fn route_request(
    api: &Arc<ApiServer>,
    certificate_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>> {
    let authenticated = api
        .authn
        .authenticate(certificate_user.as_ref(), req.headers())
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "authentication failed");
            ApiError::unauthorized()
        })?;
    let user = crate::auth::impersonate::apply(&api.authz, authenticated, req.headers())?;
    let route = route::parse(req.uri().path());
    let query = Query::parse(req.uri().query());
    let _slot = api.inflight.admit(req.method(), &route, &query, &user)?;
    let mut attributes = request_info::parse(req.method(), req.uri().path(), &query);
    attributes.user = user;
    api.authz.check(&attributes)?;
    // Shared with the registry's admission chain from here on.
    let user = Arc::new(attributes.user);
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match route {
        Route::Health(path) => crate::health::respond(api, &path, req.uri().query()).await,
        Route::ComponentMetrics => Ok(crate::metrics::respond(api).await),
        Route::Version => ok(version()),
        Route::Api => ok(discovery::api_versions(&api.server_address)),
        Route::Apis => ok(discovery::api_group_list()),
        Route::Group(g) => {
            discovery::api_group(&g).map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        Route::ResourceList { group, version } => discovery::resource_list(&group, &version)
            .map_or_else(|| Err(ApiError::path_not_found()), ok),
        Route::OpenApiV2 => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            Ok(if openapi::v2proto::accepted(accept) {
                respond(
                    StatusCode::OK,
                    openapi::v2proto::CONTENT_TYPE,
                    openapi::v2_protobuf(),
                )
            } else {
                respond(StatusCode::OK, "application/json", openapi::v2())
            })
        }
        Route::OpenApiV3Root => Ok(respond(
            StatusCode::OK,
            "application/json",
            openapi::v3_root(),
        )),
        Route::OpenApiV3(p) => openapi::v3(&p)
            .map(|doc| respond(StatusCode::OK, "application/json", doc))
            .ok_or_else(ApiError::path_not_found),
        Route::Review(r, ns) => {
            if req.method() != Method::POST {
                return Err(ApiError::method_not_allowed(req.method().as_str()));
            }
            let (headers, body) = read_body(api, req).await?;
            let obj = parse_object(&body, &content_type(&headers))?;
            let answer = review::create(&api.authz, r, ns.as_deref(), &user, obj)?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        Route::Metrics(target) => {
            if req.method() != Method::GET {
                return Err(ApiError::method_not_allowed(req.method().as_str()));
            }
            ok(resource_metrics::serve(api, &target, &query).await?)
        }
        Route::Resource(target) => resource(api, &user, target, query, req).await,
        Route::NotFound => Err(ApiError::path_not_found()),
    }
}

pub fn version() -> Value {
    let minor = crate::KUBE_VERSION.split('.').nth(1).unwrap_or("0");
    json!({
        "major": "1",
        "minor": minor,
        "gitVersion": ekube_api::GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Reads the request body up to `--max-request-bytes`. A larger body is still read to its end
/// (up to a hard cap) and discarded, so an HTTP/1.1 client that is still sending sees the 413
/// instead of a reset connection.
async fn read_body(
    api: &ApiServer,
    req: Request<hyper::body::Incoming>,
) -> Result<(HeaderMap, Bytes)> {
    const DISCARD_CAP: usize = 64 << 20;
    let limit = api.config.max_request_bytes;
    let (parts, mut body) = req.into_parts();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > DISCARD_CAP {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok((parts.headers, buf.freeze()))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into())
}

/// Parses a JSON or YAML body into an object.
pub fn parse_object(body: &[u8], ct: &str) -> Result<Value> {
    if crate::protobuf::is_protobuf(ct) {
        return crate::protobuf::decode(body).map_err(|e| match e {
            crate::protobuf::DecodeError::UnsupportedKind { .. }
            | crate::protobuf::DecodeError::UnsupportedEncoding(_) => {
                let mut err = ApiError::unsupported_media_type(ct);
                err.message = e.to_string();
                err
            }
            other => ApiError::bad_request(format!("error decoding protobuf: {other}")),
        });
    }
    if !(ct.is_empty() || ct.ends_with("json") || ct.ends_with("yaml") || ct == "*/*") {
        return Err(ApiError::unsupported_media_type(ct));
    }
    let value: Value = if ct.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        serde_yaml::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON or YAML object",
        ));
    }
    check_shape(&value)?;
    Ok(value)
}

/// Refuses an object whose `metadata` is not an `ObjectMeta` or whose `spec` or `status` is not
/// an object, as decoding into the typed model would, before the generic code (defaulting,
/// finalizers, deletion) reaches into those fields.
pub fn check_shape(obj: &Value) -> Result<()> {
    if let Some(meta) = obj.get("metadata").filter(|m| !m.is_null()) {
        serde_path_to_error::deserialize::<
            _,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        >(meta)
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "metadata".to_string()
            } else {
                format!("metadata.{path}")
            };
            ApiError::bad_request(format!("{field}: {}", e.inner()))
        })?;
    }
    for field in ["spec", "status"] {
        match obj.get(field) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "{field}: invalid type: {}, expected an object",
                    json_type(other)
                )));
            }
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_type(r: &ResourceInfo, obj: &Value) -> Result<()> {
    check_type_meta(&r.api_version(), r.kind, obj)
}

/// Refuses a body whose `apiVersion` or `kind`, when given, are not `api_version` and `kind`.
pub fn check_type_meta(api_version: &str, kind: &str, obj: &Value) -> Result<()> {
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let k = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if (!av.is_empty() && av != api_version) || (!k.is_empty() && k != kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({api_version})"
        )));
    }
    Ok(())
}

fn with_warnings(mut resp: Response<Body>, warnings: Warnings) -> Response<Body> {
    for w in warnings.0 {
        let escaped = w.replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

async fn resource(
    api: &Arc<ApiServer>,
    user: &Arc<User>,
    t: Target,
    q: Query,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>> {
    if t.subresource.as_deref() == Some("proxy") {
        return crate::proxy::serve(api, &t, req).await;
    }
    let r = t.info;
    // RBAC writes must not grant more than the writer holds.
    let guard = Guard {
        authz: &api.authz,
        cache: &api.rbac,
        user,
    };
    let ns = t.namespace.as_deref();
    let method = req.method().clone();
    let table = wants_table(req.headers());
    match (&method, t.name.as_deref(), t.subresource.as_deref()) {
        (&Method::GET, None, None) if q.flag("watch") => {
            watch::serve(api.clone(), r, ns, None, q, table, closable(&req)).await
        }
        (&Method::GET, None, None) => list(api, r, ns, &q, table).await,
        (&Method::GET, Some(name), None) if q.flag("watch") => {
            let name = Some(name.to_string());
            watch::serve(api.clone(), r, ns, name, q, table, closable(&req)).await
        }
        (&Method::GET, Some(name), sub) => {
            let obj = api.registry.get(r, ns, name).await?;
            match sub {
                None | Some("status") if table => {
                    let mut tbl = table::to_table(
                        crate::strategy::of(r),
                        std::slice::from_ref(&obj),
                        include_object(&q),
                        ekube_api::time::Timestamp::now(),
                    );
                    tbl["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
                    Ok(json_response(StatusCode::OK, &tbl))
                }
                None | Some("status" | "ephemeralcontainers") => {
                    Ok(json_response(StatusCode::OK, &obj))
                }
                Some("scale") if r.scale => Ok(json_response(
                    StatusCode::OK,
                    &crate::subresources::scale_of(r, &obj),
                )),
                Some(other) => {
                    crate::subresources::get(api, r, ns, name, other, &q, user, req).await
                }
            }
        }
        (&Method::POST, None, None) if r.review => {
            let (headers, body) = read_body(api, req).await?;
            let obj = parse_object(&body, &content_type(&headers))?;
            check_type(r, &obj)?;
            let reviewed = match r.kind {
                "TokenReview" => crate::tokenreview::create(api, obj).await?,
                _ => return Err(ApiError::path_not_found()),
            };
            Ok(json_response(StatusCode::CREATED, &reviewed))
        }
        _ if r.review => Err(ApiError::method_not_allowed(method.as_str())),
        (&Method::POST, None, None) => {
            let opts = q.write_options(user)?;
            let (headers, body) = read_body(api, req).await?;
            let obj = parse_object(&body, &content_type(&headers))?;
            check_type(r, &obj)?;
            guard.check(r, ns, &obj)?;
            let obj = crate::certificates::stamp_requester(r, obj, user);
            let (created, warnings) = api.registry.create(r, ns, obj, &opts).await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &created),
                warnings,
            ))
        }
        (&Method::POST, Some(name), Some(sub @ ("exec" | "attach" | "portforward")))
            if r.kind == "Pod" =>
        {
            crate::subresources::stream(api, r, ns, name, sub, user, req).await
        }
        (&Method::POST, Some(name), Some(sub)) => {
            let (headers, body) = read_body(api, req).await?;
            crate::subresources::post(api, r, ns, name, sub, &q, user, &headers, &body).await
        }
        (&Method::PUT, Some(name), sub) => {
            let opts = q.write_options(user)?;
            let (headers, body) = read_body(api, req).await?;
            let obj = parse_object(&body, &content_type(&headers))?;
            if sub == Some("scale") && r.scale {
                // The body is the `autoscaling/v1` Scale, not the workload.
                check_type_meta("autoscaling/v1", "Scale", &obj)?;
                return crate::subresources::put_scale(api, r, ns, name, &obj, &opts).await;
            }
            check_type(r, &obj)?;
            if sub == Some("approval") && r.kind == "CertificateSigningRequest" {
                let signer = crate::certificates::Signer {
                    ca: &api.ca,
                    max_duration: api.config.cluster_signing_duration,
                };
                let (v, w) =
                    crate::certificates::approve(&api.registry, &signer, r, name, &obj, &opts)
                        .await?;
                return Ok(with_warnings(json_response(StatusCode::OK, &v), w));
            }
            if sub == Some("finalize") && r.kind == "Namespace" {
                let (v, w) = api
                    .registry
                    .guaranteed_update(r, ns, name, None, &opts, |mut cur| {
                        cur["spec"]["finalizers"] = obj
                            .pointer("/spec/finalizers")
                            .cloned()
                            .unwrap_or(json!([]));
                        Ok(cur)
                    })
                    .await?;
                return Ok(with_warnings(json_response(StatusCode::OK, &v), w));
            }
            let sub = check_sub(r, sub)?;
            let opts = WriteOptions {
                precondition: resource_version_of(&obj)?,
                ..opts
            };
            let (v, w) = api
                .registry
                .guaranteed_update(r, ns, name, sub, &opts, |_| {
                    guard.check(r, ns, &obj)?;
                    Ok(obj.clone())
                })
                .await?;
            Ok(with_warnings(json_response(StatusCode::OK, &v), w))
        }
        (&Method::PATCH, Some(name), sub) => {
            let force = q.flag("force");
            let (headers, body) = read_body(api, req).await?;
            let ct = content_type(&headers);
            let opts = WriteOptions {
                precondition: patch_precondition(&ct, &body)?,
                ..q.write_options(user)?
            };
            if sub == Some("scale") && r.scale {
                let cur = api.registry.get(r, ns, name).await?;
                let mut scale = crate::subresources::scale_of(r, &cur);
                // Only a resourceVersion the patch itself sets pins the write.
                scale["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("resourceVersion"));
                apply_patch(r, &ct, &mut scale, &body)?;
                return crate::subresources::put_scale(api, r, ns, name, &scale, &opts).await;
            }
            let sub = check_sub(r, sub)?;
            if ct == "application/apply-patch+yaml" {
                return server_side_apply(api, &guard, r, ns, name, sub, &body, &opts, force).await;
            }
            let (v, w) = api
                .registry
                .guaranteed_update(r, ns, name, sub, &opts, |mut cur| {
                    apply_patch(r, &ct, &mut cur, &body)?;
                    guard.check(r, ns, &cur)?;
                    Ok(cur)
                })
                .await?;
            Ok(with_warnings(json_response(StatusCode::OK, &v), w))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete::options(&q, &read_body(api, req).await?.1, user)?;
            delete::object(api, r, ns, name, &opts).await
        }
        (&Method::DELETE, None, None) => {
            let opts = delete::options(&q, &read_body(api, req).await?.1, user)?;
            delete::collection(api, r, ns, &q, &opts).await
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// The handle that closes an HTTP/1 request's connection. HTTP/2 streams are flow-controlled
/// one by one, so a stalled one only needs its response ended, not the whole connection.
fn closable<B>(req: &Request<B>) -> Option<ekube_api::serve::ConnectionAbort> {
    (req.version() < http::Version::HTTP_2)
        .then(|| req.extensions().get().cloned())
        .flatten()
}

/// The `resourceVersion` an object carries, if any.
fn resource_version_of(obj: &Value) -> Result<Option<u64>> {
    match obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
    {
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}"))),
        None => Ok(None),
    }
}

/// The `resourceVersion` a patch pins: in the patch object itself, or set by a JSON patch op.
fn patch_precondition(ct: &str, body: &[u8]) -> Result<Option<u64>> {
    let patch: Value = match ct {
        "application/apply-patch+yaml" => serde_yaml::from_slice(body).unwrap_or(Value::Null),
        _ => serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    match patch {
        Value::Array(ops) => {
            let rv = ops.iter().find_map(|op| {
                (op["path"] == "/metadata/resourceVersion"
                    && matches!(op["op"].as_str(), Some("replace" | "add" | "test")))
                .then(|| op["value"].as_str().map(str::to_string))
                .flatten()
            });
            rv.map(|rv| {
                rv.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
            })
            .transpose()
        }
        obj => resource_version_of(&obj),
    }
}

fn check_sub<'a>(r: &ResourceInfo, sub: Option<&'a str>) -> Result<Option<&'a str>> {
    match sub {
        None => Ok(None),
        Some("status") if r.status => Ok(Some("status")),
        Some("ephemeralcontainers") if r.kind == "Pod" => Ok(Some("ephemeralcontainers")),
        Some(_) => Err(ApiError::path_not_found()),
    }
}

/// Applies a JSON, merge or strategic merge patch to `target`.
pub fn apply_patch(r: &ResourceInfo, ct: &str, target: &mut Value, body: &[u8]) -> Result<()> {
    let patch: Value = match ct {
        "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    match ct {
        "application/json-patch+json" => {
            patch::json_patch(target, &patch).map_err(|e| ApiError::bad_request(e.0))?
        }
        "application/merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(target, &patch)
        }
        _ => patch::strategic_merge(crate::strategy::of(r), target, &patch)
            .map_err(|e| ApiError::bad_request(e.0))?,
    }
    if !target.is_object() {
        return Err(ApiError::bad_request("the patched object is not an object"));
    }
    check_shape(target)
}

#[allow(clippy::too_many_arguments)]
async fn server_side_apply(
    api: &Arc<ApiServer>,
    guard: &Guard<'_>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    opts: &WriteOptions,
    force: bool,
) -> Result<Response<Body>> {
    let manager = opts
        .field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "PATCH with apply-patch+yaml requires a fieldManager query parameter",
            )
        })?;
    let applied = parse_object(body, "application/yaml")?;
    check_type(r, &applied)?;
    if applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an applied configuration",
        ));
    }
    let body_name = applied
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    match api.registry.get(r, ns, name).await {
        Err(e) if e.code == 404 && sub.is_none() => {
            let obj = apply::apply(r, None, &applied, &manager, force)?;
            guard.check(r, ns, &obj)?;
            // Created by apply as by POST: a CSR records who asked, whatever the body says.
            let obj = crate::certificates::stamp_requester(r, obj, &opts.user);
            let (created, w) = api.registry.create(r, ns, obj, opts).await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &created),
                w,
            ))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let (v, w) = api
                .registry
                .guaranteed_update(r, ns, name, sub, opts, |cur| {
                    let next = apply::apply(r, Some(&without_rv(cur)), &applied, &manager, force)?;
                    guard.check(r, ns, &next)?;
                    Ok(next)
                })
                .await?;
            Ok(with_warnings(json_response(StatusCode::OK, &v), w))
        }
    }
}

fn without_rv(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

async fn list(
    api: &Arc<ApiServer>,
    r: &ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    table: bool,
) -> Result<Response<Body>> {
    let opts = q.list_options(r)?;
    let list_meta = |rv: u64, next: Option<String>| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(next) = next {
            meta["continue"] = json!(next);
        }
        meta
    };
    if table {
        let (items, rv, next) = api.registry.list(r, ns, &opts).await?;
        let strategy = crate::strategy::of(r);
        let mut t = table::to_table(
            strategy,
            &items,
            include_object(q),
            ekube_api::time::Timestamp::now(),
        );
        t["metadata"] = list_meta(rv, next);
        return Ok(json_response(StatusCode::OK, &t));
    }
    // The items are written as JSON text straight into the body; the members come in the
    // order serde_json writes an object's keys.
    let mut body = String::from("{\"apiVersion\":");
    body.push_str(&json!(r.api_version()).to_string());
    body.push_str(",\"items\":[");
    let (rv, next) = api.registry.list_json(r, ns, &opts, &mut body).await?;
    body.push_str("],\"kind\":");
    body.push_str(&json!(r.list_kind()).to_string());
    body.push_str(",\"metadata\":");
    body.push_str(&list_meta(rv, next).to_string());
    body.push('}');
    Ok(respond(StatusCode::OK, "application/json", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceInfo {
        ekube_api::resources::find("", "v1", "pods").expect("pods are served")
    }

    #[test]
    fn a_list_reads_its_page_from_the_query() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&limit=50&continue=abc"));
        let opts = q.list_options(pods()).unwrap();
        assert_eq!(opts.labels, LabelSelector::parse("app=web").unwrap());
        assert_eq!(
            (opts.limit, opts.continue_token.as_deref()),
            (50, Some("abc"))
        );

        let all = Query::parse(None).list_options(pods()).unwrap();
        assert_eq!((all.limit, all.continue_token), (0, None));
        let negative = Query::parse(Some("limit=-1")).list_options(pods()).unwrap();
        assert_eq!(negative.limit, 0);
    }

    #[test]
    fn a_limit_that_is_no_number_is_a_bad_request() {
        for limit in ["ten", "1.5", "99999999999999999999"] {
            let q = Query::parse(Some(&format!("limit={limit}")));
            let e = q.list_options(pods()).expect_err(limit);
            assert_eq!(e.code, 400, "{limit}: {e:?}");
            assert!(e.message.contains(limit), "{limit}: {}", e.message);
        }
    }
}
