//! `POST/GET /twiml` and `/incoming-call`: Twilio's voice webhook.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::media::spawn_warm;
use crate::server::{prewarm, AppState};
use crate::twilio::twiml::{reject, render, stream_url, TwimlParams};

/// Twilio posts the call's details form-encoded (GET puts them in the query).
pub async fn handle(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    // Draining: 503, so Twilio tries the number's fallback URL (another instance) and the load
    // balancer stops sending here; calls answered before keep their media sockets.
    if s.draining.load(Ordering::Relaxed) {
        s.metrics
            .calls_refused
            .with_label_values(&["webhook", "draining"])
            .inc();
        tracing::info!("TwiML request while draining: 503");
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    // Full: tell Twilio to reject the call (the caller hears busy, or a rejection), rather than
    // answer it and refuse its media socket (a call that connects to silence).
    // With a cluster, `cluster_max_calls` counts every replica's calls (`cluster/cap.rs`).
    let cluster_full = s.cluster.as_ref().and_then(|c| c.at_cap()) == Some(true);
    if cluster_full || s.active_calls.load(Ordering::Relaxed) >= s.cfg.max_calls {
        s.metrics
            .calls_refused
            .with_label_values(&["webhook", "busy"])
            .inc();
        tracing::warn!(
            max_calls = s.cfg.max_calls,
            cluster_full,
            reason = s.cfg.reject_reason,
            "at max_calls: answering <Reject>"
        );
        return (
            [(header::CONTENT_TYPE, "text/xml")],
            reject(s.cfg.reject_reason),
        )
            .into_response();
    }
    let mut fields = query;
    for (k, v) in form_urlencoded(&body) {
        fields.insert(k, v);
    }
    // Behind a proxy the public host comes from configuration; otherwise from the request.
    let public = s.cfg.public_url.clone().or_else(|| {
        header_str(&headers, "x-forwarded-host")
            .or_else(|| header_str(&headers, "host"))
            .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
    });
    let Some(url) = public.as_deref().and_then(|p| stream_url(p, "/media")) else {
        tracing::warn!("TwiML request without a usable public host; set public_url");
        return (
            StatusCode::BAD_REQUEST,
            "no usable public host: set PUBLIC_URL",
        )
            .into_response();
    };
    // `?profile=NAME` on the webhook URL travels to the media stream as a <Parameter>.
    let mut parameters: Vec<(&str, &str)> = ["From", "To", "CallSid", "profile"]
        .iter()
        .filter_map(|k| fields.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    // The call warms up while Twilio opens the stream; its media socket claims it at `start`
    // with this token (see `server/prewarm.rs`).
    let warm = prewarm::prepare(&s, &fields);
    if let Some(w) = &warm {
        parameters.push((prewarm::PARAM_TOKEN, w.token()));
    }
    tracing::info!(
        call_sid = fields.get("CallSid").map(String::as_str).unwrap_or("-"),
        stream_url = %url,
        "answering call with <Connect><Stream>"
    );
    let profile = s.cfg.profiles.choose(
        fields.get("profile").map(String::as_str),
        fields.get("To").map(String::as_str),
    );
    let record = profile
        .and_then(|p| p.twilio_recording)
        .unwrap_or(s.cfg.callcenter.twilio_recording);
    let recording_callback = record.then(|| {
        let p = public.as_deref().unwrap_or("");
        let base = if p.starts_with("http://") || p.starts_with("https://") {
            p.trim_end_matches('/').to_owned()
        } else {
            format!("https://{p}")
        };
        format!("{base}/twilio/recording")
    });
    let xml = render(
        &s.cfg.twiml_template,
        &TwimlParams {
            stream_url: &url,
            parameters,
            say_before_connect: s.cfg.say_before_connect.as_deref(),
            apology: &s.cfg.apology,
            recording_callback: recording_callback.as_deref(),
        },
    );
    if let Some(w) = warm {
        spawn_warm(&s, w);
    }
    s.recent_twiml.served();
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}
