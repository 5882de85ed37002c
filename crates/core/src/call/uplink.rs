//! The caller's side, as Twilio sends it: `start` (the stream, the caller, the profile),
//! media (the caller's audio, gaps filled, sent upstream as it comes or held until a session
//! is ready), marks echoed back, keys pressed, `stop`.

use std::time::Instant;

use base64::Engine;

use super::playback::MarkEcho;
use super::tools::CallInfo;
use super::{
    Call, CallEvent, EndReason, Output, FLUSH_CHUNK_MS, MAX_BEFORE_START, MAX_INBOUND_PAYLOAD,
    ULAW_BYTES_PER_MS,
};
use crate::audio::{g711, ULAW_SILENCE};
use crate::realtime::{AudioFormat, ClientEvent};
use crate::twilio::Inbound;

impl Call {
    /// Binds the call to one CallSid before its `start`: its socket was opened with a softphone
    /// ticket, which was issued for that call. A `start` naming another (a phone call's, say,
    /// to pass for it with tools, reports and callbacks) is no `start` of this call: the call
    /// ends as one without a usable `start`.
    pub fn require_call_sid(&mut self, call_sid: impl Into<Box<str>>) {
        self.required_call_sid = Some(call_sid.into());
    }

    pub fn on_twilio(&mut self, msg: Inbound<'_>, now: Instant) {
        if self.is_ended() {
            return;
        }
        self.last_twilio = now;
        match msg {
            Inbound::Connected { .. } => {}
            Inbound::Start { stream_sid, start } => {
                if self.stream_sid.is_some() {
                    self.anomaly("duplicate_start", format!("second start for {stream_sid}"));
                    return;
                }
                let foreign = self
                    .required_call_sid
                    .as_deref()
                    .filter(|want| start.call_sid.as_deref() != Some(*want))
                    .map(|want| format!("start names {:?}, not {want}", start.call_sid));
                if let Some(detail) = foreign {
                    self.anomaly("unexpected_call_sid", detail);
                    self.end(EndReason::NoStart);
                    return;
                }
                if !start.media_format.is_mulaw_8k_mono() {
                    self.anomaly(
                        "unsupported_media_format",
                        format!(
                            "{:?}: only audio/x-mulaw 8000 Hz mono is supported",
                            start.media_format
                        ),
                    );
                    self.end(EndReason::UnsupportedMediaFormat);
                    return;
                }
                self.stream_sid = Some(stream_sid.clone().into_owned());
                self.conversation.stream_started(
                    now.saturating_duration_since(self.opened_at).as_millis() as u64,
                );
                self.opening_progressed();
                let params = &start.custom_parameters;
                self.info = Some(CallInfo {
                    stream_sid: stream_sid.clone().into_owned(),
                    call_sid: start.call_sid.clone(),
                    account_sid: start.account_sid.clone(),
                    from: params.get("From").cloned(),
                    to: params.get("To").cloned(),
                    parameters: params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                });
                self.out.push_back(Output::Event(CallEvent::Started {
                    stream_sid: stream_sid.into_owned(),
                    call_sid: start.call_sid,
                    from: start.custom_parameters.get("From").cloned(),
                }));
                self.out.push_back(Output::Event(CallEvent::Labels {
                    profile: start.custom_parameters.get("profile").cloned(),
                    direction: start.custom_parameters.get("direction").cloned(),
                }));
                self.release_held();
            }
            Inbound::Media { stream_sid, media } => {
                if !self.is_our_stream(&stream_sid, "media") {
                    return;
                }
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return; // outbound track echo of a both_tracks stream
                }
                if media.payload.len() > MAX_INBOUND_PAYLOAD * 4 / 3 + 4 {
                    self.anomaly(
                        "oversize_media",
                        format!("{} base64 chars", media.payload.len()),
                    );
                    return;
                }
                let mut bytes = std::mem::take(&mut self.bytes_buf);
                bytes.clear();
                if let Err(e) = base64::engine::general_purpose::STANDARD
                    .decode_vec(&*media.payload, &mut bytes)
                {
                    self.anomaly("bad_media_payload", e.to_string());
                    self.bytes_buf = bytes;
                    return;
                }
                self.fill_gap(media.timestamp, bytes.len() as u64);
                // The one place the caller's audio is classified: the echo gate replaces the
                // agent's own voice by silence before the voice activity model and the model
                // hear it.
                self.bargein_cancel_echo(&mut bytes, now);
                self.bargein_hear(&bytes, now);
                self.uplink(&bytes);
                // A rotation waits for a quiet moment; frames come every 20 ms.
                self.rotation_frame(&bytes, now);
                self.bytes_buf = bytes;
            }
            Inbound::Dtmf { stream_sid, dtmf } => {
                if !self.is_our_stream(&stream_sid, "dtmf") {
                    return;
                }
                self.silence_key_pressed(now);
                if self.cfg.dtmf_to_model && dtmf.digit.len() <= 2 && self.dtmf_keys.len() < 64 {
                    self.dtmf_keys.push_str(&dtmf.digit);
                    self.dtmf_deadline = Some(now + self.cfg.dtmf_gap);
                    if dtmf.digit == "#" {
                        self.flush_dtmf();
                    }
                }
                self.out
                    .push_back(Output::Event(CallEvent::Dtmf(dtmf.digit)));
            }
            Inbound::Mark { stream_sid, mark } => {
                if !self.is_our_stream(&stream_sid, "mark") {
                    return;
                }
                let echo = self.playback.on_mark(&mark.name, now);
                if let (MarkEcho::Played(at), Some(b)) = (&echo, self.bargein.as_deref_mut()) {
                    b.played_up_to(*at);
                }
                match echo {
                    MarkEcho::Unknown => self.anomaly("unknown_mark", mark.name.into_owned()),
                    MarkEcho::Played(_)
                        if self.agent_speaking
                            && self.current_item.is_none()
                            && !self.playback.audible(now) =>
                    {
                        self.agent_speaking = false;
                        self.out.push_back(Output::Event(CallEvent::PlayoutDone));
                        self.silence_agent_done(now);
                    }
                    _ => {}
                }
                self.keypad_out_progress(now);
                if self.ending.is_some() {
                    self.ending_progress(now);
                }
            }
            Inbound::Stop { stream_sid } => {
                if self.is_our_stream(&stream_sid, "stop") {
                    self.stream_ended(EndReason::CallerHungUp, now);
                }
            }
            Inbound::Unknown => {}
        }
    }

    /// Twilio's socket closed (with or without `stop`).
    pub fn on_twilio_closed(&mut self, now: Instant) {
        self.stream_ended(EndReason::TwilioDisconnected, now);
    }

    pub(super) fn is_our_stream(&mut self, sid: &str, what: &str) -> bool {
        match &self.stream_sid {
            Some(ours) if ours == sid => true,
            Some(_) => {
                self.anomaly("foreign_stream", format!("{what} for stream {sid} ignored"));
                false
            }
            None => {
                self.anomaly("before_start", format!("{what} before start ignored"));
                // Twilio always sends `start` first; a stream still without one after a second
                // of messages (e.g. a `start` we could not parse) would be a silently dead call.
                self.before_start += 1;
                if self.before_start >= MAX_BEFORE_START {
                    self.end(EndReason::NoStart);
                }
                false
            }
        }
    }

    /// Twilio's timestamps are ms since the stream started; a jump means lost packets. Filling
    /// the gap with silence keeps the model's clock (VAD, `audio_start_ms`) on the caller's.
    pub(super) fn fill_gap(&mut self, timestamp: Option<u64>, payload_bytes: u64) {
        let Some(ts) = timestamp else { return };
        if let Some(expected) = self.next_timestamp_ms {
            // Half a frame of slack: Twilio's timestamps jitter by a millisecond or two.
            if ts > expected + 10 {
                let gap = (ts - expected).min(self.cfg.max_gap_fill_ms);
                self.anomaly(
                    "media_gap",
                    format!("{} ms missing, filled {gap} ms", ts - expected),
                );
                let silence = [ULAW_SILENCE; 160];
                let mut left = gap * 8;
                while left > 0 {
                    let n = left.min(160) as usize;
                    self.uplink(&silence[..n]);
                    left -= n as u64;
                }
            }
        }
        self.next_timestamp_ms = Some(ts + payload_bytes / 8);
    }

    /// Caller μ-law audio on its way to the model. Until a session is ready it waits in the
    /// prebuffer as μ-law (8 bytes per ms whatever the upstream format: PCM16 at 24 kHz
    /// would be 48), and is converted when it is sent.
    pub(super) fn uplink(&mut self, ulaw: &[u8]) {
        if !self.upstream_ready {
            let limit = (self.cfg.prebuffer_limit_ms * ULAW_BYTES_PER_MS) as usize;
            if self.prebuffer.len() + ulaw.len() > limit {
                self.anomaly(
                    "prebuffer_full",
                    format!(
                        "upstream not ready; {} bytes of caller audio dropped",
                        ulaw.len()
                    ),
                );
                return;
            }
            self.prebuffer.extend_from_slice(ulaw);
            self.conversation.caller_audio_kept(ulaw.len());
            return;
        }
        self.conversation.caller_audio_kept(ulaw.len());
        let at = self.conversation.caller_audio_position() - ulaw.len() as u64;
        self.send_caller_audio(ulaw, at);
    }

    /// Converts caller μ-law to the session's format and appends it; a copy is kept for a
    /// reconnect (see `Lifecycle::tail`). `at`: its position on the caller's audio timeline
    /// (bytes), which places the session's `audio_start_ms` (see `Conversation::audio_sent`).
    pub(super) fn send_caller_audio(&mut self, ulaw: &[u8], at: u64) {
        self.conversation.audio_sent(self.upstream.current(), at);
        let mut upstream = self.append_pool.take();
        match self.format {
            AudioFormat::Pcmu => upstream.extend_from_slice(ulaw),
            AudioFormat::Pcm24k => {
                let Some(up) = self.upsampler.as_mut() else {
                    return;
                };
                self.pcm_in.clear();
                g711::decode_into(ulaw, &mut self.pcm_in);
                self.pcm_out.clear();
                if let Err(e) = up.process(&self.pcm_in, &mut self.pcm_out) {
                    self.anomaly("resample_up", e.to_string());
                    return;
                }
                upstream.reserve(self.pcm_out.len() * 2);
                for s in &self.pcm_out {
                    upstream.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
        self.keep_tail(ulaw);
        if upstream.is_empty() {
            return;
        }
        self.send_model(ClientEvent::AppendAudio(upstream));
    }

    /// Caller audio waiting for a session, in ms.
    pub(super) fn prebuffered_ms(&self) -> u64 {
        self.prebuffer.len() as u64 / ULAW_BYTES_PER_MS
    }

    /// Sends the buffered caller audio to the session in use, in appends of bounded size.
    pub(super) fn flush_prebuffer(&mut self) {
        let chunk = (FLUSH_CHUNK_MS * ULAW_BYTES_PER_MS) as usize;
        let buffered = std::mem::take(&mut self.prebuffer);
        // The buffer holds the newest caller audio (a requeued tail runs straight on into it).
        let mut at = self.conversation.caller_audio_position() - buffered.len() as u64;
        for part in buffered.chunks(chunk) {
            self.send_caller_audio(part, at);
            at += part.len() as u64;
        }
    }
}
