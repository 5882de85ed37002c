//! Performing a call's effects: signed HTTP requests to tools, Twilio REST updates. Each runs
//! as its own task in the call's [`JoinSet`]; the media loop hands the result back to the
//! call. Dropping the set (the call ended) abandons what is still running.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use super::twilio_rest::{describe, read_limited, redirect_host};
use super::AppState;
use crate::call::effects::{Effect, EffectId, EffectResult, ToolFailure, ToolOutcome, ToolRequest};
use crate::integrator::{signature, SIGNATURE_HEADER};

/// The largest tool answer accepted (it becomes the `function_call_output`).
pub const MAX_TOOL_ANSWER: usize = 64 * 1024;

pub type EffectTasks = JoinSet<(EffectId, EffectResult)>;

/// Starts `effect` in the background.
pub fn spawn(s: &AppState, set: &mut EffectTasks, id: EffectId, effect: Effect) {
    match effect {
        Effect::RunTool(req) => {
            let http = s.http.clone();
            let secret = s.cfg.tool_secret.clone();
            set.spawn(async move {
                let secret = secret.as_ref().map_or(&[][..], |s| s.0.as_bytes());
                let out = run_tool(&http, secret, &req).await;
                (id, EffectResult::Tool(out))
            });
        }
        Effect::UpdateCall(u) => {
            let rest = s.twilio_rest.clone();
            set.spawn(async move {
                let r = rest
                    .update_call(&u.account_sid, &u.call_sid, &u.update)
                    .await
                    .map_err(|e| e.to_string());
                (id, EffectResult::CallUpdated(r))
            });
        }
    }
}

/// POSTs the call to the tool, signed; the answer, or why there is none. Never retried after
/// a timeout (a tool may not be idempotent); retried once if the connection was refused
/// (nothing reached the tool).
pub async fn run_tool(http: &reqwest::Client, secret: &[u8], req: &ToolRequest) -> ToolOutcome {
    let deadline = tokio::time::Instant::now() + req.timeout;
    let mut retried = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match attempt(http, secret, req, left).await {
            Err(e) if e.is_connect() && refused(&e) && !retried && left > Duration::ZERO => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(100).min(left / 2)).await;
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    ToolFailure::Timeout
                } else if e.is_connect() {
                    ToolFailure::Connect
                } else {
                    ToolFailure::Other
                };
                let message = match kind {
                    ToolFailure::Timeout => {
                        format!(
                            "the tool did not answer within {} ms",
                            req.timeout.as_millis()
                        )
                    }
                    _ => format!("the tool could not be reached: {}", describe(&e)),
                };
                return ToolOutcome::Failed { kind, message };
            }
            Ok(resp) => return answer(resp, deadline).await,
        }
    }
}

async fn attempt(
    http: &reqwest::Client,
    secret: &[u8],
    req: &ToolRequest,
    left: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    http.post(&req.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(secret, now, req.body.as_bytes()),
        )
        .body(req.body.clone())
        .timeout(left)
        .send()
        .await
}

/// Whether the connection was actively refused (nothing listening): safe to try again.
fn refused(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        src = s.source();
    }
    false
}

async fn answer(resp: reqwest::Response, deadline: tokio::time::Instant) -> ToolOutcome {
    let status = resp.status().as_u16();
    if resp.status().is_redirection() {
        // The shared client follows no redirect: the signed body went to the configured URL
        // only. Where it pointed is logged (host only) so the operator can fix the URL.
        tracing::warn!(
            status,
            location_host = redirect_host(&resp).as_deref().unwrap_or("-"),
            "a tool answered a redirect; not followed (configure the final URL)"
        );
        return ToolOutcome::Failed {
            kind: ToolFailure::Redirect(status),
            message: format!("the tool answered HTTP {status} (a redirect, not followed)"),
        };
    }
    let body = match tokio::time::timeout_at(deadline, read_limited(resp, MAX_TOOL_ANSWER)).await {
        Err(_) => {
            return ToolOutcome::Failed {
                kind: ToolFailure::Timeout,
                message: "the tool's answer did not arrive in time".into(),
            }
        }
        Ok(Err(e)) if e.contains("larger than") => {
            return ToolOutcome::Failed {
                kind: ToolFailure::TooLarge,
                message: format!("the tool's answer is larger than {MAX_TOOL_ANSWER} bytes"),
            }
        }
        Ok(Err(e)) => {
            return ToolOutcome::Failed {
                kind: ToolFailure::Other,
                message: format!("the tool's answer broke off: {e}"),
            }
        }
        Ok(Ok(b)) => b,
    };
    if !(200..300).contains(&status) {
        return ToolOutcome::Failed {
            kind: ToolFailure::Status(status),
            message: format!("the tool answered HTTP {status}"),
        };
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return ToolOutcome::Failed {
            kind: ToolFailure::NotJson,
            message: "the tool's answer is not JSON".into(),
        };
    }
    match String::from_utf8(body) {
        Ok(text) => ToolOutcome::Ok(text),
        Err(_) => ToolOutcome::Failed {
            kind: ToolFailure::NotJson,
            message: "the tool's answer is not UTF-8 JSON".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    fn req(url: String, timeout_ms: u64) -> ToolRequest {
        ToolRequest {
            tool: "t".into(),
            url,
            timeout: Duration::from_millis(timeout_ms),
            body: r#"{"tool":"t"}"#.into(),
        }
    }

    async fn serve(listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/ok", post(|| async { "{\"ok\":true}" }))
            .route(
                "/big",
                post(|| async { format!("\"{}\"", "x".repeat(MAX_TOOL_ANSWER)) }),
            );
        let _ = axum::serve(listener, app).await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_tried_once_more() {
        // A port with nothing listening yet; the tool comes up right after the first attempt.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let l = tokio::net::TcpListener::bind(addr).await.unwrap();
            serve(l).await;
        });
        let http = reqwest::Client::new();
        let out = run_tool(&http, b"k", &req(format!("http://{addr}/ok"), 3000)).await;
        assert_eq!(out, ToolOutcome::Ok("{\"ok\":true}".into()));
        late.abort();
    }

    #[tokio::test]
    async fn oversize_and_unreachable_answers_are_failures() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l));
        let http = reqwest::Client::new();
        match run_tool(&http, b"k", &req(format!("http://{addr}/big"), 3000)).await {
            ToolOutcome::Failed { kind, .. } => assert_eq!(kind, ToolFailure::TooLarge),
            other => panic!("{other:?}"),
        }
        server.abort();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = probe.local_addr().unwrap();
        drop(probe);
        match run_tool(&http, b"k", &req(format!("http://{dead}/ok"), 3000)).await {
            ToolOutcome::Failed { kind, .. } => assert_eq!(kind, ToolFailure::Connect),
            other => panic!("{other:?}"),
        }
    }
}
