//! Refuses webhook and media-socket requests that Twilio did not sign, when an auth token is
//! configured. The URL Twilio signed is rebuilt from `public_url` (behind a proxy the socket's
//! own view of the URL is wrong), else from `X-Forwarded-Host`/`Host`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::web::ticket::{self, MediaTicket};
use crate::server::AppState;
use crate::twilio::signature::{url_variants, verify, Algorithm};
use crate::twilio::twiml::stream_url;

/// Twilio's webhook forms are a few hundred bytes.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

pub async fn require_twilio_signature(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = s.cfg.twilio_auth_token.as_ref() else {
        return next.run(req).await;
    };
    // The browser softphone cannot sign; it brings a short-lived, single-use ticket instead.
    let ticket = ticket::admit_media(
        s.cfg.softphone_token.as_ref(),
        &s.tickets,
        req.uri(),
        ticket::now_unix(),
    );
    let refused = match ticket {
        MediaTicket::Opens(t) => {
            // The media task binds the call to the ticket's CallSid.
            req.extensions_mut().insert(t);
            return next.run(req).await;
        }
        MediaTicket::Absent | MediaTicket::Invalid => None,
        MediaTicket::AlreadyUsed(t) => Some((
            "softphone_ticket_reused",
            "the softphone ticket was already used",
            Some(t.call_sid),
        )),
        MediaTicket::TooMany => Some((
            "softphone_tickets_full",
            "too many softphone tickets used in the last minute",
            None,
        )),
    };
    // Refused like any unsigned request (the same answer); the log says why.
    if let Some((kind, why, call_sid)) = refused {
        s.metrics.anomalies.with_label_values(&[kind]).inc();
        warn!(
            path = req.uri().path(),
            call_sid = call_sid.as_deref(),
            why,
            "refused a softphone ticket"
        );
        return (StatusCode::FORBIDDEN, "invalid Twilio signature").into_response();
    }
    let (parts, body) = req.into_parts();
    let refuse = |why: &str| {
        s.metrics
            .anomalies
            .with_label_values(&["bad_twilio_signature"])
            .inc();
        warn!(
            path = parts.uri.path(),
            why, "refused a request without a valid Twilio signature"
        );
        (StatusCode::FORBIDDEN, "invalid Twilio signature").into_response()
    };
    let Some(signature) = parts
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return refuse("no X-Twilio-Signature header");
    };
    let settings = parts
        .headers
        .get("x-twilio-webhooks-signature-settings")
        .and_then(|v| v.to_str().ok());
    let Some(alg) = Algorithm::from_settings(settings) else {
        return refuse("unsupported signature algorithm");
    };
    let secret = match (alg, settings) {
        (Algorithm::Sha256, _) | (Algorithm::Sha1, Some(_)) => {
            match s.cfg.twilio_webhook_shared_key.as_ref() {
                Some(k) => k.0.as_str(),
                None => {
                    return refuse("signed with a Webhooks Rule key; set twilio_webhook_shared_key")
                }
            }
        }
        (Algorithm::Sha1, None) => token.0.as_str(),
    };
    let host = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|h| !h.is_empty())
    };
    let base = s.cfg.public_url.clone().or_else(|| {
        host("x-forwarded-host")
            .or_else(|| host("host"))
            .map(|h| format!("https://{h}"))
    });
    let Some(base) = base else {
        return refuse("no public URL to rebuild the signed URL from");
    };
    let body = match super::edge::read_body(body, MAX_WEBHOOK_BODY, s.cfg.http_header_timeout).await
    {
        Ok(b) => b,
        Err(super::edge::BodyError::TooLarge) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response()
        }
        Err(e) => {
            warn!(path = parts.uri.path(), error = ?e, "webhook body not read");
            return (e.status(), "body not received").into_response();
        }
    };
    let path = parts.uri.path();
    let (url, params) = if path == "/media" {
        // Signed over the <Stream url> exactly as our TwiML wrote it, without parameters.
        match stream_url(&base, "/media") {
            Some(u) => (u, Vec::new()),
            None => return refuse("public URL unusable"),
        }
    } else {
        let path_q = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let params = if is_form {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default()
        } else {
            Vec::new()
        };
        (format!("{}{}", base.trim_end_matches('/'), path_q), params)
    };
    if !verify(secret, alg, signature, &url_variants(&url), &params) {
        return refuse("signature does not match");
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}
