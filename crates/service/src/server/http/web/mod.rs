//! Browser pages served by `serve`: the softphone (`/softphone`) and the live call console
//! (`/console`, `/console/events`). Each is off unless its token is configured, and every
//! request must carry the token (`Authorization: Bearer …` or `?token=…`); the assets are
//! embedded in the binary (no front-end build step).
//!
//! The softphone speaks Twilio's Media Streams protocol to the same `/media` route a phone call
//! uses. A browser cannot set headers on a WebSocket upgrade, so instead of Twilio's signature
//! it presents a short-lived, single-use ticket (see [`ticket`]) in the URL's query; the ticket
//! also names the call, chosen by the server, whose events `/softphone/events` shows the page.

pub mod session;
pub mod ticket;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Secret;
use crate::server::AppState;

const SOFTPHONE_HTML: &str = include_str!("assets/softphone.html");
const SOFTPHONE_JS: &str = include_str!("assets/softphone.js");
const WORKLET_JS: &str = include_str!("assets/mic-worklet.js");
const CONSOLE_HTML: &str = include_str!("assets/console.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
/// The login form posts one token: a login body is the credential itself, so it cannot be
/// authenticated before it is read; it is kept to what a token needs.
const MAX_LOGIN_BODY: usize = 1024;

/// The pages' routes (only those whose token is configured).
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new();
    if state.cfg.softphone_token.is_some() {
        r = r
            .route("/softphone", get(softphone_page))
            .route("/softphone/login", post(softphone_login))
            .route("/softphone/ticket", get(softphone_ticket))
            .route("/softphone/profiles", get(softphone_profiles))
            .route("/softphone/events", get(softphone_events))
            .route("/softphone/app.js", get(|| js(SOFTPHONE_JS)))
            .route("/softphone/mic-worklet.js", get(|| js(WORKLET_JS)));
    }
    if state.cfg.console_token.is_some() && state.console.is_some() {
        r = r
            .route("/console", get(console_page))
            .route("/console/login", post(console_login))
            .route("/console/events", get(console_events))
            .route("/console/calls/{n}", get(console_call));
    }
    r
}

async fn js(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Compares without an early exit: both sides are hashed first, so neither the position of
/// the first wrong byte nor the token's length shows in the time taken.
pub fn same_token(given: &str, expected: &Secret) -> bool {
    use ring::digest::{digest, SHA256};
    let a = digest(&SHA256, given.as_bytes());
    let b = digest(&SHA256, expected.0.as_bytes());
    let diff = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token a request carries: `Authorization: Bearer …`, else `?token=…`.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(b) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(b.trim().to_owned());
    }
    query_param(query?, "token")
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `Ok` when the request carries `expected` (or a login session of the page `what`); else the
/// 401 to send.
#[allow(clippy::result_large_err)]
fn authorize(req: &Request, expected: Option<&Secret>, what: &str) -> Result<(), Response> {
    let token_ok = match (expected, presented(req.headers(), req.uri().query())) {
        (Some(exp), Some(given)) => same_token(&given, exp),
        _ => false,
    };
    let ok = token_ok
        || match (expected, session::presented(req.headers(), what)) {
            (Some(exp), Some(value)) => session::verify(exp, what, &value, ticket::now_unix()),
            _ => false,
        };
    if ok {
        return Ok(());
    }
    tracing::info!(
        path = req.uri().path(),
        "refused a {what} request without its token"
    );
    Err((
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{what}: a valid token is needed (Authorization: Bearer TOKEN or ?token=TOKEN)\n"),
    )
        .into_response())
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The token is in the page's URL: keep it out of Referer headers.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

async fn softphone_page(State(s): State<AppState>, req: Request) -> Response {
    if authorize(&req, s.cfg.softphone_token.as_ref(), "softphone").is_err() {
        return login_page("softphone", false);
    }
    page(SOFTPHONE_HTML)
}

/// The login form's post.
#[derive(serde::Deserialize)]
struct Login {
    #[serde(default)]
    token: String,
}

async fn softphone_login(State(s): State<AppState>, body: axum::body::Body) -> Response {
    match read_login(&s, body).await {
        Ok(l) => login(&s, s.cfg.softphone_token.as_ref(), "softphone", &l.token),
        Err(refused) => refused,
    }
}

async fn console_login(State(s): State<AppState>, body: axum::body::Body) -> Response {
    match read_login(&s, body).await {
        Ok(l) => login(&s, s.cfg.console_token.as_ref(), "console", &l.token),
        Err(refused) => refused,
    }
}

/// The login form, read like every other unauthenticated body: at most `MAX_LOGIN_BODY`
/// bytes, within `http_header_timeout` (a form trickled a byte at a time would otherwise hold
/// its connection for as long as the client likes).
async fn read_login(s: &AppState, body: axum::body::Body) -> Result<Login, Response> {
    let bytes = super::edge::read_body(body, MAX_LOGIN_BODY, s.cfg.http_header_timeout)
        .await
        .map_err(|e| {
            tracing::info!(error = ?e, "login form not read");
            (e.status(), "login form not received").into_response()
        })?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| (StatusCode::BAD_REQUEST, "malformed login form").into_response())
}

/// A right token: a session cookie for the page and a redirect to it (no token in the URL).
/// A wrong one: the form again, 401.
fn login(s: &AppState, expected: Option<&Secret>, page: &str, given: &str) -> Response {
    let Some(token) = expected.filter(|t| same_token(given, t)) else {
        tracing::info!(page, "refused a login with a wrong token");
        return login_page(page, true);
    };
    let secure = s
        .cfg
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let value = session::issue(token, page, ticket::now_unix());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("/{page}")),
            (
                header::SET_COOKIE,
                session::set_cookie(page, &value, secure),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// The page's login form, answered with 401 where the page needs its token.
fn login_page(page: &str, wrong: bool) -> Response {
    let html = LOGIN_HTML.replace("{{page}}", page).replace(
        "{{error}}",
        if wrong {
            "That token is not right."
        } else {
            ""
        },
    );
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

/// A fresh ticket for one softphone call: `{ticket, param, path, call_sid}`. The server chooses
/// the call's SID (the page says it in its `start`), so the ticket also names the one call
/// whose events the page may follow.
async fn softphone_ticket(State(s): State<AppState>, req: Request) -> Response {
    if let Err(r) = authorize(&req, s.cfg.softphone_token.as_ref(), "softphone") {
        return r;
    }
    let Some(token) = s.cfg.softphone_token.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(t) = ticket::issue(token, ticket::now_unix()) else {
        tracing::error!("the system's random generator failed: no softphone ticket");
        return (StatusCode::INTERNAL_SERVER_ERROR, "no ticket: try again\n").into_response();
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "ticket": t.ticket,
            "param": ticket::QUERY_PARAM,
            "path": "/media",
            "call_sid": t.call_sid,
        })),
    )
        .into_response()
}

/// The configured agent profiles, for the softphone's picker: `{"profiles": [names],
/// "default": name or null}` (names only: a profile's instructions and URLs stay server-side).
async fn softphone_profiles(State(s): State<AppState>, req: Request) -> Response {
    if let Err(r) = authorize(&req, s.cfg.softphone_token.as_ref(), "softphone") {
        return r;
    }
    let p = &s.cfg.profiles;
    let names: Vec<&str> = p.by_name.keys().map(String::as_str).collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "profiles": names, "default": p.default })),
    )
        .into_response()
}

/// The softphone's own call, as the console sees it (its transcript and turn latencies): the
/// same feed as `/console/events`, filtered to the call of the page's `?ticket=` (from
/// `/softphone/ticket`). Any other call is the console's, behind its own token: a CallSid
/// alone (`?call=`) opens nothing. The ticket's expiry does not bind here (see
/// [`ticket::read`]): the page's `EventSource` reconnects with the same URL mid-call.
async fn softphone_events(State(s): State<AppState>, req: Request) -> Response {
    if let Err(r) = authorize(&req, s.cfg.softphone_token.as_ref(), "softphone") {
        return r;
    }
    let (Some(token), Some(hub)) = (s.cfg.softphone_token.as_ref(), s.console.clone()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(value) = req.uri().query().and_then(|q| query_param(q, "ticket")) else {
        return (
            StatusCode::BAD_REQUEST,
            "?ticket=TICKET (from /softphone/ticket) is needed\n",
        )
            .into_response();
    };
    let Some(call) = ticket::read(token, &value).map(|t| t.call_sid) else {
        tracing::warn!("refused a softphone events request with a forged or foreign ticket");
        return (StatusCode::FORBIDDEN, "not a ticket of this softphone\n").into_response();
    };
    let rx = hub.subscribe();
    let closing = hub.closing();
    let stream = futures_util::stream::unfold((rx, call), |(mut rx, call)| async move {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    let ours = serde_json::from_str::<serde_json::Value>(&msg)
                        .is_ok_and(|v| v["call_sid"].as_str() == Some(call.as_str()));
                    if ours {
                        let ev = Event::default().data(&*msg);
                        return Some((Ok(ev), (rx, call)));
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    sse(stream, closing)
}

async fn console_page(State(s): State<AppState>, req: Request) -> Response {
    if authorize(&req, s.cfg.console_token.as_ref(), "console").is_err() {
        return login_page("console", false);
    }
    page(CONSOLE_HTML)
}

async fn console_call(State(s): State<AppState>, Path(n): Path<u64>, req: Request) -> Response {
    if let Err(r) = authorize(&req, s.cfg.console_token.as_ref(), "console") {
        return r;
    }
    // Another replica's call (`?pod=`), followed over the cluster.
    let pod = req.uri().query().and_then(|q| query_param(q, "pod"));
    if let (Some(pod), Some(c)) = (pod, &s.cluster) {
        if pod != c.cfg.pod {
            return match c.console.call(&pod, n) {
                Some(c) => ([(header::CACHE_CONTROL, "no-store")], Json(c)).into_response(),
                None => (StatusCode::NOT_FOUND, "no such call on that pod\n").into_response(),
            };
        }
    }
    match s.console.as_ref().and_then(|h| h.call(n)) {
        Some(c) => ([(header::CACHE_CONTROL, "no-store")], Json(c)).into_response(),
        None => (StatusCode::NOT_FOUND, "no such call on this pod\n").into_response(),
    }
}

/// Server-sent events: a `snapshot` first (active and recent calls), then one JSON object per
/// call event; a watcher that fell behind gets a fresh snapshot instead of the missed events.
async fn console_events(State(s): State<AppState>, req: Request) -> Response {
    if let Err(r) = authorize(&req, s.cfg.console_token.as_ref(), "console") {
        return r;
    }
    let Some(hub) = s.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rx = hub.subscribe();
    let closing = hub.closing();
    let cluster = s.cluster.clone();
    let snapshot = std::sync::Arc::new(move |hub: &super::console::Hub| {
        let (active, recent) = hub.snapshot();
        let (active, recent) = crate::cluster::console::merged(active, recent, cluster.as_deref());
        json!({"type": "snapshot", "call_sid": null, "active": active, "recent": recent})
            .to_string()
    });
    let first = snapshot(&hub);
    let stream =
        futures_util::stream::unfold((Some(first), rx, hub), move |(pending, mut rx, hub)| {
            let snapshot = snapshot.clone();
            async move {
                if let Some(p) = pending {
                    return Some((Ok(Event::default().data(p)), (None, rx, hub)));
                }
                let data = match rx.recv().await {
                    Ok(msg) => msg.to_string(),
                    Err(RecvError::Lagged(_)) => snapshot(&hub),
                    Err(RecvError::Closed) => return None,
                };
                Some((Ok(Event::default().data(data)), (None, rx, hub)))
            }
        });
    sse(stream, closing)
}

/// The stream as server-sent events, ending when the server shuts down.
fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    closing: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    use futures_util::StreamExt;
    (
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(stream.take_until(closing))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}
