//! The socket side of a simulated session: the upgrade (and the faults that refuse it), then
//! the loop that sends the session's outbox, publishes its log and waits for the next frame
//! or deadline.

use super::*;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const MAX_DURATION_REASON: &str = "Your session hit the maximum duration of 60 minutes.";

/// Something for the socket.
pub(super) enum Out {
    Event(Value),
    /// An audio delta: the event without `delta`, the base64 payload, decoded length, and for
    /// the probe (response ordinal, byte offset in the response).
    Audio(Value, String, usize, (u32, usize)),
    Close(CloseCode, &'static str, ClosedBy),
    Drop(ClosedBy),
}

struct Handshake {
    beta: bool,
    path: String,
    headers: Vec<(String, String)>,
}

fn reject(status: StatusCode, code: &str, message: &str) -> ErrorResponse {
    let body =
        json!({"error": {"type": "invalid_request_error", "code": code, "message": message}});
    let mut r = ErrorResponse::new(Some(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The upgrade's verdict: the handshake facts, or (status, error code, message) to refuse with.
fn check_upgrade(
    req: &Request,
    key: Option<&str>,
) -> Result<Handshake, (StatusCode, &'static str, &'static str)> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let val = match name.as_str() {
                "authorization" => "Bearer [redacted]".to_string(),
                "api-key" => "[redacted]".to_string(),
                _ => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (name, val)
        })
        .collect();
    let uri = req.uri();
    if !uri.path().trim_end_matches('/').ends_with("/realtime") {
        return Err((
            StatusCode::NOT_FOUND,
            "not_found",
            "Unknown path; use /v1/realtime.",
        ));
    }
    let has_model = uri.query().unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == "model" || k == "deployment") && !v.is_empty()
    });
    if !has_model {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
        ));
    }
    if let Some(key) = key {
        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        let bearer = h("authorization").and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(key) && h("api-key") != Some(key) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "Incorrect API key provided.",
            ));
        }
    }
    let beta = req.headers().get_all("openai-beta").iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("realtime=v1"))
            })
            .unwrap_or(false)
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    Ok(Handshake {
        beta,
        path,
        headers,
    })
}

/// Serves one connection to the end.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    if shared.cfg.connect_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.cfg.connect_delay_ms.into())).await;
    }
    let mut hs: Option<Handshake> = None;
    let key = shared.cfg.require_api_key.clone();
    let unauthorized = shared.faults.unauthorized_this();
    // The Err type is fixed by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let checked = match unauthorized {
            true => Err((
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "Incorrect API key provided.",
            )),
            false => check_upgrade(req, key.as_deref()),
        };
        hs = Some(checked.map_err(|(status, code, msg)| reject(status, code, msg))?);
        Ok(resp)
    };
    let ws = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        // A small read buffer: tungstenite zero-fills all of it on every read, and its
        // 128 KiB default made that memset most of a load run's CPU (perf). Larger messages
        // still arrive whole (the buffer grows for them).
        tokio_tungstenite::accept_hdr_async_with_config(
            tcp,
            cb,
            Some(
                tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(4096),
            ),
        ),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "sim handshake refused or failed");
            return;
        }
        Err(_) => return,
    };
    let Some(hs) = hs else { return };
    let dialect = if hs.beta {
        SimDialect::Beta
    } else {
        SimDialect::Ga
    };
    let (n, id) = next_session_id(&shared);
    let probe = shared.cfg.probe.as_ref().map(|p| p.0.session(n));
    let log = Arc::new(Mutex::new(SessionLog {
        id: id.clone(),
        dialect,
        path: hs.path,
        headers: hs.headers,
        received: Vec::new(),
        sent: Vec::new(),
        truncates: Vec::new(),
        committed_inputs: Vec::new(),
        appended_audio_bytes: 0,
        sent_audio_bytes: 0,
        responses_completed: 0,
        responses_cancelled: 0,
        errors_sent: 0,
        session: Value::Null,
        closed_by: None,
    }));
    let index = {
        let mut sessions = lock(&shared.sessions);
        sessions.push(log.clone());
        sessions.len() - 1
    };
    let inbox = shared.faults.register(index);
    tracing::trace!(%peer, session = %id, ?dialect, "sim session open");
    let mut s = Session::new(shared, hs.beta, id);
    s.probe = probe;
    let closed_by = serve(ws, &mut s, &log, &mut stop, inbox).await;
    s.publish(&log);
    lock(&log).closed_by = Some(closed_by);
}

async fn serve(
    mut ws: WebSocketStream<TcpStream>,
    s: &mut Session,
    log: &Mutex<SessionLog>,
    stop: &mut watch::Receiver<bool>,
    mut faults: tokio::sync::mpsc::UnboundedReceiver<super::super::SessionFault>,
) -> ClosedBy {
    if s.beta && s.shared.cfg.faults.contains(&Fault::RejectBeta) {
        s.error(
            ApiError::invalid(
                "beta_api_shape_disabled",
                "The Realtime API beta interface has been shut down. Remove the 'OpenAI-Beta: realtime=v1' header and use the GA interface.",
                None,
            ),
            None,
        );
        s.out.push(Out::Close(
            CloseCode::Policy,
            "beta_api_shape_disabled",
            ClosedBy::Fault("reject_beta".into()),
        ));
    } else {
        s.on_connect();
    }
    let mut client_closed = false;
    // One timer for the session, re-armed only when the deadline moves: a new one per loop
    // turn was a timer-wheel insert and removal per client message (the load tool's profile).
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        if let Some(by) = flush(&mut ws, s, log).await {
            return by;
        }
        if *stop.borrow() {
            return close(
                &mut ws,
                log,
                CloseCode::Away,
                "server shutting down",
                ClosedBy::Shutdown,
            )
            .await;
        }
        let deadline = if client_closed {
            None
        } else {
            s.next_deadline()
        };
        if deadline != armed {
            if let Some(d) = deadline {
                timer.as_mut().reset(d);
            }
            armed = deadline;
        }
        tokio::select! {
            _ = stop.changed() => {
                return close(&mut ws, log, CloseCode::Away, "server shutting down", ClosedBy::Shutdown).await;
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    s.recv_at = std::time::Instant::now();
                    if let Some(p) = s.probe.as_mut() {
                        p.frame_received(t.as_str());
                    }
                    s.on_text(t.as_str())
                }
                Some(Ok(Message::Binary(_))) => s.error(
                    ApiError::invalid("invalid_frame", "Binary frames are not supported; send JSON text frames.", None),
                    None,
                ),
                Some(Ok(Message::Close(_))) => client_closed = true,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    return if client_closed { ClosedBy::Client } else { ClosedBy::ClientDropped };
                }
            },
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                s.on_timer(Instant::now())
            }
            Some(f) = faults.recv() => {
                s.publish(log);
                return super::super::faults::apply(f, &mut ws, log).await;
            }
        }
    }
}

async fn close(
    ws: &mut WebSocketStream<TcpStream>,
    log: &Mutex<SessionLog>,
    code: CloseCode,
    reason: &'static str,
    by: ClosedBy,
) -> ClosedBy {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let sent = ws.send(Message::Close(Some(frame))).await.is_ok();
    // Observable at once; the close handshake below may take a while.
    lock(log).closed_by = Some(by.clone());
    if sent {
        // Give the client a moment to answer the close handshake.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    by
}

/// Sends the outbox and publishes the log. `Some` when the session is over.
async fn flush(
    ws: &mut WebSocketStream<TcpStream>,
    s: &mut Session,
    log: &Mutex<SessionLog>,
) -> Option<ClosedBy> {
    if s.out.is_empty() && s.received.is_empty() {
        return None;
    }
    let record = s.shared.cfg.record_events;
    let probing = s.probe.is_some();
    let mut frames = Vec::with_capacity(s.out.len());
    // What the probe hears about once the frames are flushed: Some(delta) or None (speech
    // started).
    let mut notes: Vec<Option<(u32, usize, usize)>> = Vec::new();
    let mut calls: Vec<String> = Vec::new();
    // Per frame: an audio delta or not (for the probe's traffic count).
    let mut kinds: Vec<bool> = Vec::new();
    let mut end = None;
    for o in s.out.drain(..) {
        match o {
            Out::Event(v) => {
                if probing && get_str(&v, "type") == Some("input_audio_buffer.speech_started") {
                    notes.push(None);
                }
                if probing && get_str(&v, "type") == Some("response.function_call_arguments.done") {
                    calls.push(get_str(&v, "call_id").unwrap_or_default().to_owned());
                }
                frames.push(v.to_string());
                if probing {
                    kinds.push(false);
                }
                if record {
                    s.sent.push(v);
                }
            }
            Out::Audio(mut v, b64, n, (resp, offset)) => {
                if probing {
                    notes.push(Some((resp, offset, n)));
                }
                if let Some(m) = v.as_object_mut() {
                    m.insert("delta".into(), Value::String(b64));
                }
                frames.push(v.to_string());
                if probing {
                    kinds.push(true);
                }
                if let Some(m) = v.as_object_mut() {
                    m.remove("delta");
                    m.insert("audio_bytes".into(), n.into());
                }
                if record {
                    s.sent.push(v);
                }
            }
            Out::Close(code, reason, by) => {
                end = Some((Some((code, reason)), by));
                break;
            }
            Out::Drop(by) => {
                end = Some((None, by));
                break;
            }
        }
    }
    s.out.clear();
    s.publish(log);
    if let Some(p) = s.probe.as_mut() {
        // Stamped before the write: a peer may react before this task runs again.
        let at = std::time::Instant::now();
        for note in notes {
            match note {
                Some((resp, offset, n)) => p.delta_sent(resp, offset, n, at),
                None => p.speech_started_sent(at),
            }
        }
        for c in &calls {
            p.function_call_sent(c, at);
        }
        let (mut deltas, mut delta_bytes, mut others, mut other_bytes) = (0, 0, 0, 0);
        for (f, delta) in frames.iter().zip(&kinds) {
            if *delta {
                deltas += 1;
                delta_bytes += f.len();
            } else {
                others += 1;
                other_bytes += f.len();
            }
        }
        p.flush_sent(deltas, delta_bytes, others, other_bytes);
    }
    for f in frames {
        if ws.feed(Message::text(f)).await.is_err() {
            return Some(ClosedBy::ClientDropped);
        }
    }
    if ws.flush().await.is_err() {
        return Some(ClosedBy::ClientDropped);
    }
    match end {
        None => None,
        Some((Some((code, reason)), by)) => Some(close(ws, log, code, reason, by).await),
        Some((None, by)) => Some(by),
    }
}
