//! The route × role matrix, and the API's error contract, without sockets: each case calls the
//! router directly with a token of each role.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use depot_api::TokenName;
use depot_api::types::Role;
use depot_server::{AppState, ServerOptions};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Registry {
    _dir: tempfile::TempDir,
    state: AppState,
    tokens: Vec<(Role, String)>,
}

fn registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions { secrets_key: Some(dir.path().join("secrets.key")), ..ServerOptions::default() };
    let (state, first) = depot_server::open(dir.path(), None, None, options).unwrap();
    let admin = first.expect("first start creates the admin token").admin_token;
    let mut tokens = vec![(Role::Admin, admin)];
    for role in [Role::Operator, Role::Viewer, Role::Agent] {
        let name = TokenName::parse(role.as_str()).unwrap();
        tokens.push((role, depot_server::issue_token(&state, &name, role, None).unwrap()));
    }
    Registry { _dir: dir, state, tokens }
}

async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = depot_server::app(state.clone()).oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// The roles each route allows, with a request that is otherwise valid or harmlessly wrong
/// (a missing object), so that only the permission decides between 403 and anything else.
fn routes() -> Vec<(Method, &'static str, Option<serde_json::Value>, &'static [Role])> {
    let digest = format!("sha256:{}", "0".repeat(64));
    let digest: &'static str = Box::leak(digest.into_boxed_str());
    let blob_uri: &'static str = Box::leak(format!("/api/v1/blobs/{digest}").into_boxed_str());
    vec![
        (Method::GET, "/api/v1/whoami", None, ANY),
        (Method::GET, blob_uri, None, ANY),
        (Method::HEAD, blob_uri, None, ANY),
        (Method::PUT, blob_uri, None, OPERATE),
        (Method::GET, Box::leak(format!("{blob_uri}/frames").into_boxed_str()), None, ANY),
        (Method::GET, Box::leak(format!("{blob_uri}/signatures").into_boxed_str()), None, ANY),
        (Method::PUT, Box::leak(format!("{blob_uri}/assembly").into_boxed_str()), None, OPERATE),
        (Method::GET, "/api/v1/components", None, VIEW),
        (Method::GET, "/api/v1/components/web/versions", None, VIEW),
        (Method::GET, "/api/v1/components/web/versions/1.0.0", None, VIEW),
        (Method::PUT, "/api/v1/components/web/versions/1.0.0", Some(serde_json::json!({"digest": digest})), OPERATE),
        (Method::DELETE, "/api/v1/components/web/versions/1.0.0", None, OPERATE),
        (
            Method::PUT,
            "/api/v1/components/web/versions/1.0.0/deprecation",
            Some(serde_json::json!({"reason": "broken"})),
            OPERATE,
        ),
        (Method::DELETE, "/api/v1/components/web/versions/1.0.0/deprecation", None, OPERATE),
        (Method::GET, "/api/v1/components/web/channels", None, VIEW),
        (Method::PUT, "/api/v1/components/web/channels/stable", Some(serde_json::json!({"version": "1.0.0"})), ADMIN),
        (Method::DELETE, "/api/v1/components/web/channels/stable", None, ADMIN),
        (Method::DELETE, "/api/v1/components/web", None, OPERATE),
        (Method::GET, "/api/v1/configs", None, VIEW),
        (Method::POST, "/api/v1/configs", Some(serde_json::json!({"name": "prod", "layers": []})), OPERATE),
        (Method::GET, "/api/v1/configs/nope", None, ANY),
        (Method::PATCH, "/api/v1/configs/nope", Some(serde_json::json!({"layers": []})), OPERATE),
        (Method::POST, "/api/v1/configs/nope/bump", Some(serde_json::json!({"component": "web"})), OPERATE),
        (Method::POST, "/api/v1/configs/nope/rollback", Some(serde_json::json!({})), OPERATE),
        (Method::GET, "/api/v1/configs/nope/history", None, VIEW),
        (Method::DELETE, "/api/v1/configs/nope", None, OPERATE),
        (Method::GET, "/api/v1/configs/nope/agents", None, VIEW),
        (
            Method::PUT,
            "/api/v1/configs/nope/agents/web-01",
            Some(
                serde_json::json!({"revision": 1, "hash": "x", "state": "active", "reported_at": "2026-01-01T00:00:00Z"}),
            ),
            REPORT,
        ),
        (Method::GET, "/api/v1/pipelines", None, VIEW),
        (
            Method::POST,
            "/api/v1/pipelines",
            Some(serde_json::json!({"name": "p", "components": [], "stages": []})),
            OPERATE,
        ),
        (Method::GET, "/api/v1/pipelines/nope", None, VIEW),
        (Method::GET, "/api/v1/pipelines/nope/history", None, VIEW),
        (Method::POST, "/api/v1/pipelines/nope/promotions", Some(serde_json::json!({"to": "prod"})), OPERATE),
        (Method::POST, "/api/v1/pipelines/nope/promotions/1/approval", Some(serde_json::json!({})), OPERATE),
        (Method::POST, "/api/v1/pipelines/nope/promotions/1/rejection", None, OPERATE),
        (Method::DELETE, "/api/v1/pipelines/nope", None, ADMIN),
        (Method::PUT, "/api/v1/pipelines/nope/stages/prod/gate", Some(serde_json::json!({"gate": "approval"})), ADMIN),
        (Method::POST, "/api/v1/pipelines/nope/stages/prod/rollback", Some(serde_json::json!({})), OPERATE),
        (Method::GET, "/api/v1/pipelines/nope/stages/prod/env", None, VIEW),
        (
            Method::PATCH,
            "/api/v1/pipelines/nope/stages/prod/env",
            Some(serde_json::json!({"set": {"A": "1"}})),
            OPERATE,
        ),
        (Method::GET, "/api/v1/tokens", None, ADMIN),
        (Method::POST, "/api/v1/tokens", Some(serde_json::json!({"name": "x", "role": "viewer"})), ADMIN),
        (Method::DELETE, "/api/v1/tokens/nobody", None, ADMIN),
        (Method::POST, "/api/v1/gc", None, ADMIN),
    ]
}

const ANY: &[Role] = &[Role::Agent, Role::Viewer, Role::Operator, Role::Admin];
const VIEW: &[Role] = &[Role::Viewer, Role::Operator, Role::Admin];
const OPERATE: &[Role] = &[Role::Operator, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];
/// Agents report their status; operators and viewers only read it.
const REPORT: &[Role] = &[Role::Agent, Role::Admin];

#[tokio::test]
async fn every_route_checks_its_role() {
    let registry = registry();
    for (method, uri, body, roles) in routes() {
        let (status, json) = call(&registry.state, method.clone(), uri, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} without a token");
        if method != Method::HEAD {
            assert_eq!(json["code"], "unauthorized");
        }
        let (status, _) = call(&registry.state, method.clone(), uri, Some("admin.0000"), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} with a wrong secret");
        for (role, token) in &registry.tokens {
            let (status, json) = call(&registry.state, method.clone(), uri, Some(token), body.clone()).await;
            if roles.contains(role) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{method} {uri} as {role:?} should be allowed, got {status} {json}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri} as {role:?} should be forbidden ({json})");
                if method != Method::HEAD {
                    assert_eq!(json["code"], "forbidden");
                }
            }
        }
    }
}

#[tokio::test]
async fn agent_tokens_read_only_their_configurations() {
    let registry = registry();
    let name = TokenName::parse("web-agent").unwrap();
    let agent = depot_server::issue_token(&registry.state, &name, Role::Agent, Some("web-*")).unwrap();
    let (status, json) = call(&registry.state, Method::GET, "/api/v1/configs/db-prod", Some(&agent), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, json) = call(&registry.state, Method::GET, "/api/v1/configs/web-prod", Some(&agent), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "allowed, and the configuration does not exist: {json}");
    assert_eq!(json["code"], "unknown-config");
    let report =
        serde_json::json!({"revision": 1, "hash": "x", "state": "active", "reported_at": "2026-01-01T00:00:00Z"});
    let (status, json) =
        call(&registry.state, Method::PUT, "/api/v1/configs/db-prod/agents/db-01", Some(&agent), Some(report)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nor report for others: {json}");
}

#[tokio::test]
async fn errors_have_stable_codes_and_hints() {
    let registry = registry();
    let admin = registry.tokens[0].1.clone();
    let (status, json) =
        call(&registry.state, Method::GET, "/api/v1/components/web/versions", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["code"], "unknown-component");
    assert!(json["message"].as_str().unwrap().contains("web"));
    assert!(json["hint"].as_str().is_some());
    let (status, json) =
        call(&registry.state, Method::GET, "/api/v1/components/we:b/versions", Some(&admin), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["code"], "invalid-name");
    let (status, json) = call(
        &registry.state,
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(serde_json::json!({"name": "ci", "role": "operator"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = json["token"].as_str().unwrap().to_owned();
    let (status, json) = call(&registry.state, Method::GET, "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["role"], "operator");
    let (status, _) = call(&registry.state, Method::DELETE, "/api/v1/tokens/ci", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&registry.state, Method::GET, "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token stops working");
}

/// A stage's environment layer holds its variables' values: operators and the stage's agents
/// may download it, viewers and other configurations' agents may not.
#[tokio::test]
async fn environment_layers_are_read_only_by_operators_and_their_agents() {
    let registry = registry();
    let admin = registry.tokens[0].1.clone();
    let digest = push(&registry, &admin, "web", b"v1").await;
    let admin_token = admin.clone();
    let admin = Some(admin_token.as_str());
    let create =
        serde_json::json!({"name": "web", "components": ["web"], "stages": [{"name": "dev"}, {"name": "prod"}]});
    let (status, json) = call(&registry.state, Method::POST, "/api/v1/pipelines", admin, Some(create)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let change = serde_json::json!({"set": {"SECRET": "s3cr3t"}});
    let (status, json) =
        call(&registry.state, Method::PATCH, "/api/v1/pipelines/web/stages/prod/env", admin, Some(change)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let env_digest = json["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(json["layers"][0]["component"], "web-prod.env");
    let uri = format!("/api/v1/blobs/{env_digest}");
    let token = |name: &str, pattern: &str| {
        depot_server::issue_token(&registry.state, &TokenName::parse(name).unwrap(), Role::Agent, Some(pattern))
            .unwrap()
    };
    let (prod_agent, db_agent) = (token("prod-01", "web-prod"), token("db-01", "db-*"));
    let viewer = registry.tokens.iter().find(|(role, _)| *role == Role::Viewer).unwrap().1.clone();
    for (who, token, allowed) in [
        ("admin", admin_token.as_str(), true),
        ("the stage's agent", prod_agent.as_str(), true),
        ("another configuration's agent", db_agent.as_str(), false),
        ("a viewer", viewer.as_str(), false),
    ] {
        let (status, json) = call(&registry.state, Method::GET, &uri, Some(token), None).await;
        let expected = if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(status, expected, "{who}: {json}");
    }
    // The viewer still reads the application's own layers, and the variables' names.
    let (status, _) = call(&registry.state, Method::GET, &format!("/api/v1/blobs/{digest}"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) =
        call(&registry.state, Method::GET, "/api/v1/pipelines/web/stages/prod/env", Some(&viewer), None).await;
    assert_eq!((status, json["vars"]["SECRET"].as_str()), (StatusCode::OK, Some("********")));
    let (status, _) =
        call(&registry.state, Method::GET, "/api/v1/pipelines/web/stages/prod/env?show=true", Some(&viewer), None)
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A platform variable is refused by the registry too, not only by the CLI.
    let change = serde_json::json!({"set": {"DEPOT_STAGE": "dev"}});
    let (status, json) =
        call(&registry.state, Method::PATCH, "/api/v1/pipelines/web/stages/prod/env", admin, Some(change)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["message"].as_str().unwrap().contains("reserved"), "{json}");
    // Once the pipeline is deleted, its environment layers (kept sealed with its variables, never
    // in the blob store) are gone, for everyone.
    let (status, _) = call(&registry.state, Method::DELETE, "/api/v1/pipelines/web", admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for token in [viewer.as_str(), prod_agent.as_str(), admin_token.as_str()] {
        let (status, json) = call(&registry.state, Method::GET, &uri, Some(token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    }
}

/// Uploads a one-file archive with `content` and pushes it as `component@1.0.0`; its digest.
async fn push(registry: &Registry, admin: &str, component: &str, content: &[u8]) -> String {
    let archive = depot_release::archive::pack_files(&[("app.txt", content, 0o644)]).unwrap();
    let digest = format!("sha256:{}", depot_release::digest::sha256_hex(&archive));
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("/api/v1/blobs/{digest}"))
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::from(archive))
        .unwrap();
    let response = depot_server::app(registry.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let uri = format!("/api/v1/components/{component}/versions/1.0.0");
    let (status, json) =
        call(&registry.state, Method::PUT, &uri, Some(admin), Some(serde_json::json!({"digest": digest}))).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    digest
}

/// An agent token reads only the blobs that are layers of the configurations its pattern
/// matches; one for every configuration must be asked for with `*`.
#[tokio::test]
async fn agent_tokens_read_only_the_layers_of_their_configurations() {
    let registry = registry();
    let admin = registry.tokens[0].1.clone();
    let a = push(&registry, &admin, "app-a", b"a").await;
    let b = push(&registry, &admin, "app-b", b"b").await;
    for (config, component) in [("a-cfg", "app-a"), ("b-cfg", "app-b")] {
        let create = serde_json::json!({"name": config, "layers": [{"component": component, "version": "1.0.0"}]});
        let (status, json) = call(&registry.state, Method::POST, "/api/v1/configs", Some(&admin), Some(create)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
    }
    let agent =
        depot_server::issue_token(&registry.state, &TokenName::parse("a-agent").unwrap(), Role::Agent, Some("a-*"))
            .unwrap();
    let blob = |digest: &str| format!("/api/v1/blobs/{digest}");
    let (status, json) = call(&registry.state, Method::GET, &blob(&a), Some(&agent), None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, json) = call(&registry.state, Method::GET, &blob(&b), Some(&agent), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["code"], "forbidden");
    // The same for their frame indexes (these blobs are not seekable archives: no frames).
    let frames = |digest: &str| format!("/api/v1/blobs/{digest}/frames");
    let (status, json) = call(&registry.state, Method::GET, &frames(&a), Some(&agent), None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["frames"], serde_json::json!([]));
    let (status, json) = call(&registry.state, Method::GET, &frames(&b), Some(&agent), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    // Over the API, an agent token names its configurations, `*` for all of them.
    let unscoped = serde_json::json!({"name": "any-agent", "role": "agent"});
    let (status, json) = call(&registry.state, Method::POST, "/api/v1/tokens", Some(&admin), Some(unscoped)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(json["hint"].as_str().unwrap().contains("`*`"), "{json}");
    let every = serde_json::json!({"name": "any-agent", "role": "agent", "config_pattern": "*"});
    let (status, json) = call(&registry.state, Method::POST, "/api/v1/tokens", Some(&admin), Some(every)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let any = json["token"].as_str().unwrap().to_owned();
    let (status, _) = call(&registry.state, Method::GET, &blob(&b), Some(&any), None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Every route of the matrix is described, with its method, in the document served at
/// `/api/v1/openapi.json`.
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let registry = registry();
    let (status, served) = call(&registry.state, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, serde_json::to_value(depot_server::openapi()).unwrap());
    let paths = served["paths"].as_object().unwrap();
    for (method, uri, _, _) in routes() {
        let template = template_of(uri);
        let operation = paths.get(&template).and_then(|p| p.get(method.as_str().to_lowercase()));
        assert!(operation.is_some(), "{method} {template} is in the OpenAPI document");
    }
    for path in ["/healthz", "/metrics"] {
        assert!(paths.contains_key(path));
    }
    assert!(served["components"]["securitySchemes"]["token"].is_object());
    assert!(served["components"]["schemas"]["ErrorCode"].is_object());
}

/// `/api/v1/components/web/versions/1.0.0` → `/api/v1/components/{component}/versions/{version}`.
fn template_of(uri: &str) -> String {
    let parts: Vec<&str> = uri.split('/').collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let previous = if i > 0 { parts[i - 1] } else { "" };
        out.push(match previous {
            "blobs" => "{digest}",
            "components" => "{component}",
            "versions" => "{version}",
            "channels" => "{channel}",
            "configs" | "tokens" | "pipelines" => "{name}",
            "stages" => "{stage}",
            "promotions" => "{id}",
            "agents" => "{host}",
            _ => part,
        });
    }
    out.join("/")
}

/// What `/metrics` says, as text, asked with `accept`.
async fn metrics_text(state: &AppState, accept: Option<&str>) -> (String, String) {
    let mut request = Request::builder().uri("/metrics");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = depot_server::app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Nothing a client sends becomes a label: made-up methods are all counted as `OTHER`, made-up
/// paths as the route `unmatched`, so a thousand of each add no series.
#[tokio::test]
async fn made_up_methods_and_paths_add_no_series() {
    let registry = registry();
    let send = |method: Method, uri: String| {
        let state = registry.state.clone();
        async move {
            let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
            depot_server::app(state).oneshot(request).await.unwrap().status()
        }
    };
    send(Method::from_bytes(b"FIRST").unwrap(), "/api/v1/configs/x".to_owned()).await;
    send(Method::GET, "/nothing/here".to_owned()).await;
    metrics_text(&registry.state, None).await;
    let (_, before) = metrics_text(&registry.state, None).await;
    let series = |text: &str| text.lines().filter(|l| l.starts_with("depot_http_requests_total")).count();
    for i in 0..1000 {
        let method = Method::from_bytes(format!("M{i}{}", "X".repeat(1000)).as_bytes()).unwrap();
        let status = send(method, format!("/api/v1/configs/name-{i}")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let status = send(Method::GET, format!("/made/up/{i}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, after) = metrics_text(&registry.state, None).await;
    assert_eq!(series(&before), series(&after), "{after}");
    assert!(!after.contains("XXXX") && !after.contains("name-1") && !after.contains("/made/up"), "{after}");
    assert!(
        after.contains(r#"depot_http_requests_total{method="OTHER",route="/api/v1/configs/{name}",status="405"} 1001"#),
        "{after}"
    );
    assert!(after.contains(r#"route="unmatched",status="404"} 1001"#), "{after}");
}

/// Sends a raw request; the status, the headers and the JSON body.
async fn send_raw(state: &AppState, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let response = depot_server::app(state.clone()).oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// What the framework refuses (a body that is not JSON, JSON of the wrong shape, a number out of
/// range, a path or a method no route has) is answered with the API's error body, and a 401 says
/// how to authenticate.
#[tokio::test]
async fn framework_rejections_have_the_error_body() {
    let registry = registry();
    let admin = registry.tokens[0].1.clone();
    let json_request = |content_type: Option<&str>, body: &str| {
        let mut request = Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/configs/web")
            .header("authorization", format!("Bearer {admin}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    let cases = [
        (json_request(Some("text/plain"), r#"{"layers": []}"#), 415, "unsupported-media-type"),
        (json_request(Some("application/json"), r#"{"layers": 3}"#), 422, "invalid-body"),
        (json_request(Some("application/json"), "{"), 400, "invalid-request"),
        (
            json_request(Some("application/json"), r#"{"layers": [], "expect_revision": 9223372036854775808}"#),
            422,
            "invalid-body",
        ),
        (json_request(Some("application/json"), &"x".repeat(3 << 20)), 413, "too-large"),
        (Request::builder().uri("/no/such/path").body(Body::empty()).unwrap(), 404, "not-found"),
        (
            Request::builder().method(Method::PATCH).uri("/healthz").body(Body::empty()).unwrap(),
            405,
            "method-not-allowed",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, headers, json) = send_raw(&registry.state, request).await;
        assert_eq!(got.as_u16(), status, "{what}: {json}");
        assert_eq!(json["code"], code, "{what}: {json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {json}");
        assert_eq!(headers["content-type"], "application/json", "{what}");
        if status == 405 {
            assert!(headers.contains_key("allow"), "{what} says what is allowed");
        }
    }
    let (_, _, json) = send_raw(
        &registry.state,
        json_request(Some("application/json"), r#"{"layers": [], "expect_revision": 9223372036854775808}"#),
    )
    .await;
    assert!(json["message"].as_str().unwrap().contains("out of range"), "{json}");
    let request = Request::builder().uri("/api/v1/whoami").body(Body::empty()).unwrap();
    let (status, headers, _) = send_raw(&registry.state, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="depot""#);
}

/// The document names every operation once, gives names and digests their pattern, and blobs
/// their binary format.
#[tokio::test]
async fn the_openapi_document_is_a_precise_contract() {
    let document = serde_json::to_value(depot_server::openapi()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(id) = operation["operationId"].as_str() else { continue };
            assert!(ids.insert(id.to_owned()), "{method} {path}: operationId {id} is used twice");
            if path.contains('{') {
                assert!(operation["responses"]["400"].is_object(), "{method} {path} documents 400");
                assert!(operation["responses"]["404"].is_object(), "{method} {path} documents 404");
            }
            if operation["requestBody"]["content"]["application/json"].is_object() {
                for status in ["413", "415", "422"] {
                    assert!(operation["responses"][status].is_object(), "{method} {path} documents {status}");
                }
            }
        }
    }
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["Digest"]["pattern"], "^sha256:[0-9a-f]{64}$");
    assert_eq!(schemas["ConfigName"]["pattern"], "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    let upload = &document["paths"]["/api/v1/blobs/{digest}"]["put"];
    assert_eq!(upload["parameters"][0]["schema"]["$ref"], "#/components/schemas/Digest");
    let body = &upload["requestBody"]["content"]["application/octet-stream"]["schema"]["$ref"];
    assert_eq!(body, "#/components/schemas/Archive");
    assert_eq!(schemas["Archive"]["format"], "binary");
}
