//! A stand-in for Twilio's REST API, for tests: it serves the two endpoints the bridge uses,
//! checks HTTP basic auth the way Twilio does, records every request, and answers with
//! Twilio-shaped JSON (a call resource, or an error document). Written from Twilio's published
//! API reference, sharing no code with the bridge's client.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::json;

use super::http_stub::Served;

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
    served: Served,
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            api_key: api_key.map(|(k, s)| (k.to_owned(), s.to_owned())),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/{*resource}", post(calls))
            .fallback(|| async { not_found() })
            .with_state(shared.clone());
        let served = Served::start("127.0.0.1:0", app).await?;
        Ok(FakeTwilio { served, shared })
    }

    /// What to put in `twilio_api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.served.addr)
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

/// A call resource as Twilio answers with it, with the HTTP status `http`.
fn call_resource(
    http: StatusCode,
    account: &str,
    sid: &str,
    (to, from): (&str, &str),
    status: &str,
) -> Response {
    let call = json!({"sid": sid, "account_sid": account, "to": to, "from": from, "status": status,
           "uri": format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json")});
    (
        http,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        call.to_string(),
    )
        .into_response()
}

/// Twilio's answer for a path it does not serve.
fn not_found() -> Response {
    error(404, 20404, "The requested resource was not found")
}

/// `POST .../Calls.json` creates a call; `POST .../Calls/{sid}.json` updates one. Anything else
/// under the account is not found (and not recorded).
async fn calls(
    State(shared): State<Arc<Shared>>,
    Path((account, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let update = match resource.strip_prefix("Calls/") {
        None if resource == "Calls.json" => None,
        Some(call) => match call.strip_suffix(".json") {
            Some(sid) if !sid.contains('/') => Some(sid),
            _ => return not_found(),
        },
        None => return not_found(),
    };
    let path = format!("/2010-04-01/Accounts/{account}/{resource}");
    let form = match record(&shared, &account, path, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match update {
        None => create_call(&shared, &account, &form),
        Some(sid) => update_call(&account, sid, &form),
    }
}

fn create_call(shared: &Shared, account: &str, form: &[(String, String)]) -> Response {
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
    call_resource(StatusCode::CREATED, account, &sid, (&to, &from), "queued")
}

fn update_call(account: &str, sid: &str, form: &[(String, String)]) -> Response {
    let has = |k: &str| form.iter().any(|(n, _)| n == k);
    if !(has("Status") || has("Twiml") || has("Url")) {
        return error(400, 20001, "Twiml, Url or Status is required");
    }
    let status = if has("Status") {
        "completed"
    } else {
        "in-progress"
    };
    call_resource(StatusCode::OK, account, sid, ("", ""), status)
}
