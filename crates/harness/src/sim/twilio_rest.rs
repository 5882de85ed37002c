//! A stand-in for Twilio's REST API, for tests: it serves the two endpoints the bridge uses,
//! checks HTTP basic auth the way Twilio does, records every request, and answers with
//! Twilio-shaped JSON (a call resource, or an error document). Written from Twilio's published
//! API reference, sharing no code with the bridge's client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RestRequest {
    pub method: String,
    pub path: String,
    /// Whether basic auth matched the account SID + auth token (or an accepted API key).
    pub auth_ok: bool,
    /// The basic-auth user name sent, if any.
    pub user: Option<String>,
    /// Form fields in the order sent (repeated names kept).
    pub form: Vec<(String, String)>,
}

impl RestRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<RestRequest>,
    /// Scripted failures, used one per request, before auth is even checked.
    fail_next: Vec<(u16, i64, String)>,
    created: u64,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    api_key: Option<(String, String)>,
    inner: Mutex<Inner>,
}

/// A running fake; stops when dropped.
pub struct FakeTwilio {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTwilio {
    /// Serves on 127.0.0.1 (a free port) for one account and its auth token.
    pub async fn spawn(account_sid: &str, auth_token: &str) -> std::io::Result<FakeTwilio> {
        FakeTwilio::spawn_with_key(account_sid, auth_token, None).await
    }

    /// Like [`FakeTwilio::spawn`], also accepting an API key SID + secret.
    pub async fn spawn_with_key(
        account_sid: &str,
        auth_token: &str,
        api_key: Option<(&str, &str)>,
    ) -> std::io::Result<FakeTwilio> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            api_key: api_key.map(|(k, s)| (k.to_owned(), s.to_owned())),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/{resource}",
                post(calls_create),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                post(call_update),
            )
            .fallback(|| async { error(404, 20404, "The requested resource was not found") })
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTwilio { addr, shared, task })
    }

    /// What to put in `twilio_api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RestRequest> {
        lock(&self.shared.inner).requests.clone()
    }

    /// The next request (whatever it is) gets this error instead of being served.
    pub fn fail_next(&self, status: u16, code: i64, message: &str) {
        lock(&self.shared.inner)
            .fail_next
            .push((status, code, message.to_owned()));
    }

    /// Waits (up to `timeout`) until at least `n` requests arrived.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: std::time::Duration,
    ) -> Vec<RestRequest> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n || tokio::time::Instant::now() >= end {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn error(status: u16, code: i64, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "message": message,
               "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
               "status": status.as_u16()})
        .to_string(),
    )
        .into_response()
}

/// Records the request; answers with a scripted or an auth error, if any.
fn record(
    shared: &Shared,
    account: &str,
    path: String,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, Box<Response>> {
    let (user, password) = basic_auth(headers).unzip();
    let key_ok = match (&shared.api_key, &user, &password) {
        (Some((k, s)), Some(u), Some(p)) => k == u && s == p,
        _ => false,
    };
    let token_ok = user.as_deref() == Some(shared.account_sid.as_str())
        && password.as_deref() == Some(shared.auth_token.as_str());
    let auth_ok = (key_ok || token_ok) && account == shared.account_sid;
    let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default();
    let mut inner = lock(&shared.inner);
    inner.requests.push(RestRequest {
        method: "POST".into(),
        path,
        auth_ok,
        user,
        form: form.clone(),
    });
    if !inner.fail_next.is_empty() {
        let (status, code, message) = inner.fail_next.remove(0);
        return Err(Box::new(error(status, code, &message)));
    }
    if !auth_ok {
        return Err(Box::new(error(401, 20003, "Authenticate")));
    }
    Ok(form)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn call_json(account: &str, sid: &str, to: &str, from: &str, status: &str) -> String {
    json!({"sid": sid, "account_sid": account, "to": to, "from": from, "status": status,
           "uri": format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json")})
    .to_string()
}

async fn calls_create(
    State(shared): State<Arc<Shared>>,
    Path((account, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/{resource}");
    if resource != "Calls.json" {
        return error(404, 20404, "The requested resource was not found");
    }
    let form = match record(&shared, &account, path, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (to, from) = (get("To"), get("From"));
    if to.is_empty() || from.is_empty() {
        return error(400, 21201, "No 'To' number is specified");
    }
    if get("Twiml").is_empty() && get("Url").is_empty() {
        return error(400, 21205, "Url parameter is required");
    }
    let n = {
        let mut inner = lock(&shared.inner);
        inner.created += 1;
        inner.created
    };
    let sid = format!("CA{n:032x}");
    (
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        call_json(&account, &sid, &to, &from, "queued"),
    )
        .into_response()
}

async fn call_update(
    State(shared): State<Arc<Shared>>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/Calls/{call}");
    let Some(sid) = call.strip_suffix(".json") else {
        return error(404, 20404, "The requested resource was not found");
    };
    let form = match record(&shared, &account, path, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let has = |k: &str| form.iter().any(|(n, _)| n == k);
    if !(has("Status") || has("Twiml") || has("Url")) {
        return error(400, 20001, "Twiml, Url or Status is required");
    }
    let status = if has("Status") {
        "completed"
    } else {
        "in-progress"
    };
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        call_json(&account, sid, "", "", status),
    )
        .into_response()
}
