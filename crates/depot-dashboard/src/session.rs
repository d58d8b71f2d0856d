//! Signing in and out, and who each request is.
//!
//! A session is a random id in the `depot_session` cookie (HttpOnly, SameSite=Strict, path
//! `/ui`, Secure over TLS, expiring with the session). The registry keeps, in memory and by the
//! id's sha256, the token it was opened with, its CSRF token and when it ends. Each request
//! authenticates that token again, so a revoked token or a deleted one ends its sessions at
//! once. A replica knows only its own sessions and a restart ends them: behind a load
//! balancer, route the dashboard's users to one replica (sticky sessions).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use depot_api::types::Role;
use depot_registry::Caller;
use maud::html;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Dashboard;
use crate::pages::{error_page, layout_signed_out};

/// How long a session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

const SESSION_COOKIE: &str = "depot_session";
const SIGN_IN_COOKIE: &str = "depot_sign_in";

/// Sessions open on this registry.
pub struct Sessions {
    lifetime: Duration,
    open: Mutex<HashMap<[u8; 32], Session>>,
}

/// The most sessions one token may hold (the oldest goes), and in all (signing in waits for
/// some to end).
const SESSIONS_PER_TOKEN: usize = 16;
const SESSIONS: usize = 10_000;

/// The most live pages (`/ui/events` streams) one session may keep open: a browser opens only
/// a few connections to one host, and each stream renders its page again and again.
pub const STREAMS_PER_SESSION: usize = 4;

/// The most live pages open at once on this registry, all sessions together.
const STREAMS: usize = 256;

#[derive(Clone)]
struct Session {
    token: String,
    csrf: String,
    opened: Instant,
    ends: Instant,
    streams: usize,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Sessions { lifetime, open: Mutex::new(HashMap::new()) }
    }

    /// Opens a session for `token`: its id (for the cookie). `None` when the registry holds as
    /// many sessions as it takes.
    fn open(&self, token: String) -> Option<String> {
        let id = random_hex();
        let now = Instant::now();
        let mut open = self.open.lock().expect("sessions lock");
        open.retain(|_, session| session.ends > now);
        let mut mine: Vec<([u8; 32], Instant)> =
            open.iter().filter(|(_, s)| s.token == token).map(|(k, s)| (*k, s.opened)).collect();
        if mine.len() >= SESSIONS_PER_TOKEN {
            mine.sort_by_key(|(_, opened)| *opened);
            for (key, _) in &mine[..=mine.len() - SESSIONS_PER_TOKEN] {
                open.remove(key);
            }
        }
        if open.len() >= SESSIONS {
            return None;
        }
        let session = Session { token, csrf: random_hex(), opened: now, ends: now + self.lifetime, streams: 0 };
        open.insert(key(&id), session);
        Some(id)
    }

    /// Counts a live stream of session `id`, if it may have one more.
    fn start_stream(&self, id: &str) -> bool {
        let mut open = self.open.lock().expect("sessions lock");
        if open.values().map(|s| s.streams).sum::<usize>() >= STREAMS {
            return false;
        }
        match open.get_mut(&key(id)) {
            Some(session) if session.streams < STREAMS_PER_SESSION => {
                session.streams += 1;
                true
            }
            _ => false,
        }
    }

    fn end_stream(&self, id: &str) {
        if let Some(session) = self.open.lock().expect("sessions lock").get_mut(&key(id)) {
            session.streams = session.streams.saturating_sub(1);
        }
    }

    fn get(&self, id: &str) -> Option<Session> {
        let open = self.open.lock().expect("sessions lock");
        open.get(&key(id)).filter(|session| session.ends > Instant::now()).cloned()
    }

    fn close(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(&key(id));
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.as_secs())
}

/// The signed-in caller of a page, and the CSRF token its forms carry. A request without a
/// live session is sent to the sign-in page.
pub struct Signed {
    pub caller: Caller,
    pub csrf: String,
    id: String,
}

impl Signed {
    pub fn may_operate(&self) -> bool {
        matches!(self.caller.role, Role::Operator | Role::Admin)
    }
}

impl Signed {
    /// The session of a request, if it has a live one whose token is still valid.
    async fn of(headers: &HeaderMap, dashboard: &Dashboard) -> Option<Signed> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let session = dashboard.sessions.get(id)?;
        match dashboard.registry.authenticate(&session.token).await {
            Ok(caller) if caller.role != Role::Agent => Some(Signed { caller, csrf: session.csrf, id: id.to_owned() }),
            // Revoked since: the session ends.
            _ => {
                dashboard.sessions.close(id);
                None
            }
        }
    }

    /// Counts a live stream of this session; `None` when it has as many as it may.
    pub fn stream(&self, dashboard: &Dashboard) -> Option<StreamGuard> {
        dashboard
            .sessions
            .start_stream(&self.id)
            .then(|| StreamGuard { sessions: dashboard.sessions.clone(), id: self.id.clone() })
    }
}

/// A live stream counted against its session until dropped.
pub struct StreamGuard {
    sessions: std::sync::Arc<Sessions>,
    id: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.sessions.end_stream(&self.id);
    }
}

impl FromRequestParts<Dashboard> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dashboard: &Dashboard) -> Result<Self, Response> {
        Signed::of(&parts.headers, dashboard).await.ok_or_else(|| {
            let next = parts.uri.path_and_query().map_or("/ui/", |p| p.as_str());
            Redirect::to(&format!("/ui/sign-in?next={}", encode(next))).into_response()
        })
    }
}

/// The session of a live stream: without one, `204 No Content`, which tells the browser's
/// EventSource to stop rather than retry.
pub struct Streaming(pub Signed);

impl FromRequestParts<Dashboard> for Streaming {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dashboard: &Dashboard) -> Result<Self, Response> {
        Signed::of(&parts.headers, dashboard).await.map(Streaming).ok_or_else(|| StatusCode::NO_CONTENT.into_response())
    }
}

/// Whether `signed`'s session is still open and its token still valid (for a long stream).
pub async fn still_signed(dashboard: &Dashboard, signed: &Signed) -> bool {
    match dashboard.sessions.get(&signed.id) {
        Some(session) => {
            matches!(dashboard.registry.authenticate(&session.token).await, Ok(caller) if caller.role != Role::Agent)
        }
        None => false,
    }
}

/// A form posted by a signed-in user of this origin, with the session's CSRF token: the
/// caller and the form's fields. Anything else is refused before the form is used.
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<Dashboard> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, dashboard: &Dashboard) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        check_same_origin(&parts.headers, &parts.uri)?;
        let signed = Signed::of(&parts.headers, dashboard).await.ok_or_else(|| {
            error_page(StatusCode::FORBIDDEN, "Not signed in", "sign in, then try again from the dashboard's page")
        })?;
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large", ""))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| error_page(StatusCode::BAD_REQUEST, "The form could not be read", ""))?;
        let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !bool::from(csrf.as_bytes().ct_eq(signed.csrf.as_bytes())) {
            return Err(error_page(
                StatusCode::FORBIDDEN,
                "This form did not come from your session",
                "reload the page and try again",
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| error_page(StatusCode::BAD_REQUEST, "The form is incomplete", &e.to_string()))?;
        Ok(Posted { signed, form })
    }
}

/// Refuses a request another site's page made. A browser that sends `Sec-Fetch-Site` says
/// so itself; otherwise its `Origin`, when it sends one, must name this host: the request's
/// authority (HTTP/2's `:authority`) or its `Host` header.
fn check_same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), Response> {
    let refuse = || error_page(StatusCode::FORBIDDEN, "Refused: the request came from another site", "");
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            _ => Err(refuse()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin == "null" || host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(refuse());
        }
    }
    Ok(())
}

/// Percent-encodes a path for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after signing in: a dashboard path, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/ui/") && !next.contains('\\') && next.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            next
        }
        _ => "/ui/",
    }
}

#[derive(serde::Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

pub async fn sign_in_page(
    State(dashboard): State<Dashboard>,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Response {
    sign_in_form(&dashboard, safe_next(query.next.as_deref()), None, StatusCode::OK)
}

fn sign_in_form(dashboard: &Dashboard, next: &str, problem: Option<&str>, status: StatusCode) -> Response {
    let nonce = random_hex();
    let page = layout_signed_out(
        "Sign in",
        html! {
            h1 { "Sign in to depot" }
            @if let Some(problem) = problem { p.error role="alert" { (problem) } }
            form method="post" action="/ui/sign-in" {
                input type="hidden" name="nonce" value=(nonce);
                input type="hidden" name="next" value=(next);
                label for="token" { "Access token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint { "A viewer, operator or admin token (" code { "NAME.SECRET" } "). Agent tokens cannot sign in." }
                button type="submit" { "Sign in" }
            }
        },
    );
    let cookie = set_cookie(SIGN_IN_COOKIE, &nonce, Duration::from_secs(600), dashboard.secure);
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

#[derive(serde::Deserialize)]
pub struct SignInForm {
    token: String,
    nonce: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(dashboard): State<Dashboard>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    form: axum::Form<SignInForm>,
) -> Response {
    if let Err(refused) = check_same_origin(&headers, &uri) {
        return refused;
    }
    let next = safe_next(form.next.as_deref()).to_owned();
    // The form must come from the sign-in page this browser was given (no sign-in CSRF).
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.nonce.as_bytes())) {
        return sign_in_form(&dashboard, &next, Some("The sign-in form expired: try again."), StatusCode::FORBIDDEN);
    }
    let caller = match dashboard.registry.authenticate(form.token.trim()).await {
        Ok(caller) => caller,
        Err(_) => {
            return sign_in_form(&dashboard, &next, Some("Unknown token."), StatusCode::UNAUTHORIZED);
        }
    };
    if caller.role == Role::Agent {
        return sign_in_form(
            &dashboard,
            &next,
            Some("Agent tokens cannot sign in: use a viewer, operator or admin token."),
            StatusCode::FORBIDDEN,
        );
    }
    // A session this browser held before ends: a new sign-in never adds to an old one.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        dashboard.sessions.close(old);
    }
    let Some(id) = dashboard.sessions.open(form.token.trim().to_owned()) else {
        return sign_in_form(
            &dashboard,
            &next,
            Some("The registry holds as many sessions as it takes: try again later."),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    tracing::info!(token = %caller.name, "dashboard: signed in");
    let cookie = set_cookie(SESSION_COOKIE, &id, dashboard.sessions.lifetime, dashboard.secure);
    let clear = set_cookie(SIGN_IN_COOKIE, "", Duration::ZERO, dashboard.secure);
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("a cookie header"));
    response.headers_mut().append(header::SET_COOKIE, clear.parse().expect("a cookie header"));
    response
}

/// Signs out: the session ends here and in the browser. Without a session (it expired), the
/// cookie is cleared all the same.
pub async fn sign_out(
    State(dashboard): State<Dashboard>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    form: axum::Form<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = check_same_origin(&headers, &uri) {
        return refused;
    }
    if let Some(signed) = Signed::of(&headers, &dashboard).await {
        let csrf = form.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
        if !bool::from(csrf.as_bytes().ct_eq(signed.csrf.as_bytes())) {
            return error_page(StatusCode::FORBIDDEN, "This form did not come from your session", "");
        }
        dashboard.sessions.close(&signed.id);
    }
    let clear = set_cookie(SESSION_COOKIE, "", Duration::ZERO, dashboard.secure);
    ([(header::SET_COOKIE, clear)], Redirect::to("/ui/sign-in")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_dashboard_pages() {
        assert_eq!(safe_next(Some("/ui/configs/web")), "/ui/configs/web");
        for bad in
            ["https://evil.example/", "//evil.example/ui/", "/ui\\..\\x", "/api/v1/tokens", "", "/ui/\r\nSet-Cookie:x"]
        {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn posts_from_other_origins_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        let path: axum::http::Uri = "/ui/x".parse().unwrap();
        let check = |pairs: &[(&'static str, &'static str)]| check_same_origin(&headers(pairs), &path).is_ok();
        assert!(check(&[("host", "d:7070")]));
        assert!(check(&[("host", "d:7070"), ("origin", "http://d:7070")]));
        assert!(!check(&[("host", "d:7070"), ("origin", "http://d:7071")]));
        assert!(!check(&[("host", "d:7070"), ("origin", "null")]));
        assert!(!check(&[("origin", "http://d:7070")]), "no host to compare with");
        assert!(!check(&[("host", "d:7070"), ("sec-fetch-site", "same-site")]));
        assert!(check(&[("host", "d:7070"), ("sec-fetch-site", "same-origin")]));
        // HTTP/2: the authority is in the URI, no Host header.
        let h2: axum::http::Uri = "https://d:7070/ui/x".parse().unwrap();
        assert!(check_same_origin(&headers(&[("origin", "https://d:7070")]), &h2).is_ok());
    }

    #[test]
    fn sessions_end_when_closed_or_expired() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let id = sessions.open("t.s".into()).unwrap();
        assert!(sessions.get(&id).is_some());
        assert!(sessions.get("other").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&id).is_none(), "expired");
        let id = Sessions::new(Duration::from_secs(60)).open("t.s".into()).unwrap();
        let sessions = Sessions::new(Duration::from_secs(60));
        let mine = sessions.open("t.s".into()).unwrap();
        sessions.close(&mine);
        assert!(sessions.get(&mine).is_none() && sessions.get(&id).is_none());
        // A token's oldest sessions go past the cap; streams are counted.
        let first = sessions.open("t.s".into()).unwrap();
        let rest: Vec<String> = (0..SESSIONS_PER_TOKEN).map(|_| sessions.open("t.s".into()).unwrap()).collect();
        assert!(sessions.get(&first).is_none() && rest.iter().all(|id| sessions.get(id).is_some()));
        assert!((0..STREAMS_PER_SESSION).all(|_| sessions.start_stream(&rest[0])));
        assert!(!sessions.start_stream(&rest[0]));
        sessions.end_stream(&rest[0]);
        assert!(sessions.start_stream(&rest[0]));
    }
}
