//! A stand-in for an integrator's HTTP endpoint (a CRM's report URL), for tests: it records
//! every POST with its headers and body, checks `X-Callbridge-Signature` with the shared
//! secret, and answers with scripted statuses (then 200).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::http_stub::Served;

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub signature: Option<String>,
    /// Whether the signature verified (secret, body, within 5 minutes).
    pub signature_ok: bool,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct Shared {
    secret: Vec<u8>,
    script: Mutex<Vec<u16>>,
    got: Mutex<Vec<Received>>,
    /// The body of 2xx answers (e.g. a setup lookup's JSON), and a delay before answering.
    reply: Mutex<(String, Duration)>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    served: Served,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Serves any path on 127.0.0.1 (a free port). `script`: the statuses of the first
    /// requests (e.g. `[500, 503]`); every later request gets 200.
    pub async fn spawn(secret: &str, script: &[u16]) -> std::io::Result<Receiver> {
        Receiver::spawn_on("127.0.0.1:0", secret, script).await
    }

    /// Like [`Receiver::spawn`] on a given address (to come back on the same port).
    pub async fn spawn_on(addr: &str, secret: &str, script: &[u16]) -> std::io::Result<Receiver> {
        let shared = Arc::new(Shared {
            secret: secret.as_bytes().to_vec(),
            script: Mutex::new(script.to_vec()),
            got: Mutex::new(Vec::new()),
            reply: Mutex::new(("stored".to_owned(), Duration::ZERO)),
        });
        let app = Router::new()
            .fallback(post(receive))
            .with_state(shared.clone());
        let served = Served::start(addr, app).await?;
        Ok(Receiver { served, shared })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.served.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// What 2xx answers carry, and how long every answer waits.
    pub fn reply(&self, body: &str, delay: Duration) {
        *lock(&self.shared.reply) = (body.to_owned(), delay);
    }

    /// Replaces the statuses still to come (later requests get 200).
    pub fn script(&self, statuses: &[u16]) {
        *lock(&self.shared.script) = statuses.to_vec();
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.got).clone()
    }

    /// Waits (up to `timeout`) until `pred` holds for what was received; returns it either way.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if pred(&got) || tokio::time::Instant::now() >= end {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(s): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let signature = header(crate::integrator::SIGNATURE_HEADER);
    let signature_ok = signature.as_deref().is_some_and(|h| {
        crate::integrator::verify(&s.secret, h, &body, crate::integrator::unix_now(), 300)
    });
    let answered = {
        let mut script = lock(&s.script);
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    lock(&s.got).push(Received {
        path: uri.path().to_owned(),
        idempotency_key: header("idempotency-key"),
        signature,
        signature_ok,
        body: body.to_vec(),
        answered,
    });
    let (reply, delay) = lock(&s.reply).clone();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = if status.is_success() {
        reply
    } else {
        format!("test receiver answers {answered}")
    };
    (status, text)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
