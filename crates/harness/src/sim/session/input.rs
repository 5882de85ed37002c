//! The input audio buffer: appended audio fed to the VAD, speech edges, and commits that turn
//! the buffer into a user item.

use super::*;

impl Session {
    /// Returns the decoded length when the audio was valid base64.
    pub(super) fn on_append(&mut self, ev: &Value, eid: Option<Value>) -> Option<usize> {
        let Some(b64) = get_str(ev, "audio") else {
            return self.reject_audio(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                eid,
            );
        };
        self.on_append_b64(b64, eid)
    }

    /// An `invalid_request_error` about the `audio` parameter; nothing is appended.
    fn reject_audio(
        &mut self,
        code: &'static str,
        message: &str,
        eid: Option<Value>,
    ) -> Option<usize> {
        self.error(ApiError::invalid(code, message, Some("audio")), eid);
        None
    }

    pub(super) fn on_append_b64(&mut self, b64: &str, eid: Option<Value>) -> Option<usize> {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        if B64.decode_vec(b64, &mut data).is_err() {
            self.scratch = data;
            return self.reject_audio(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                eid,
            );
        }
        let n = data.len();
        self.appended_bytes += n;
        if let Some(p) = self.probe.as_mut() {
            p.append(&data, self.recv_at);
        }
        match self.in_fmt {
            AudioFormat::Pcmu => {
                self.feed(data.iter().map(|&b| audio_codec_algorithms::decode_ulaw(b)))
            }
            AudioFormat::Pcma => {
                self.feed(data.iter().map(|&b| audio_codec_algorithms::decode_alaw(b)))
            }
            AudioFormat::Pcm16 => {
                let mut bytes: &[u8] = &data;
                if let Some(c) = self.carry.take() {
                    match bytes.split_first() {
                        Some((&b, rest)) => {
                            self.feed(std::iter::once(i16::from_le_bytes([c, b])));
                            bytes = rest;
                        }
                        None => self.carry = Some(c),
                    }
                }
                let chunks = bytes.chunks_exact(2);
                if let [b] = chunks.remainder() {
                    self.carry = Some(*b);
                }
                self.feed(chunks.map(|c| i16::from_le_bytes([c[0], c[1]])));
            }
        }
        self.scratch = data;
        let mut edges = std::mem::take(&mut self.edges);
        for e in edges.drain(..) {
            self.on_edge(e);
        }
        self.edges = edges;
        Some(n)
    }

    pub(super) fn feed(&mut self, samples: impl Iterator<Item = i16>) {
        let rate = self.in_fmt.rate() as u64;
        let base = self.in_base_ms;
        let Some(td) = self.td else {
            self.in_samples += samples.count() as u64;
            return;
        };
        for s in samples {
            self.in_samples += 1;
            let n = self.in_samples;
            if let Some(e) = self.vad.push(s, || base + n * 1000 / rate, td.silence_ms) {
                self.edges.push(e);
            }
        }
    }

    pub(super) fn on_edge(&mut self, e: VadEdge) {
        let Some(td) = self.td else { return };
        match e {
            VadEdge::Started { window_start_ms } => {
                if self.speech.is_some() {
                    return;
                }
                let item_id = self.new_id("item_");
                let start = window_start_ms
                    .saturating_sub(td.prefix_ms)
                    .max(self.buffer_start_ms);
                self.speech = Some((item_id.clone(), window_start_ms));
                self.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": start, "item_id": item_id}));
                if td.interrupt_response && self.resp.is_some() {
                    self.finish_response(Some("turn_detected"));
                }
            }
            VadEdge::Stopped { end_ms } => {
                let Some((item_id, speech_start)) = self.speech.take() else {
                    return;
                };
                self.send(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item_id}));
                let speech_ms = end_ms
                    .saturating_sub(speech_start)
                    .saturating_sub(td.silence_ms);
                self.committed_inputs.push(CommittedInput {
                    item_id: item_id.clone(),
                    audio_start_ms: speech_start,
                    audio_end_ms: end_ms,
                    by_vad: true,
                });
                self.commit_user_item(item_id, speech_ms);
                self.buffer_start_ms = end_ms;
                if td.create_response && self.resp.is_none() {
                    self.start_response(None);
                }
            }
        }
    }

    pub(super) fn commit_user_item(&mut self, item_id: String, speech_ms: u64) {
        let previous = self.last_item_id();
        self.send(json!({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous}));
        let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
            "role": "user", "content": [{"type": "input_audio", "transcript": null}]});
        self.item_added(previous, item);
        self.items.push(Item {
            id: item_id.clone(),
            assistant: false,
            call_id: None,
            audio_ms: 0,
        });
        if self.transcribe || self.shared.cfg.always_transcribe {
            let scripted = self.shared.cfg.caller_transcripts.get(self.caller_turns);
            let transcript = match scripted {
                Some(t) => t.clone(),
                None => format!("caller spoke for {:.1} s", speech_ms as f64 / 1000.0),
            };
            self.caller_turns += 1;
            self.send(
                json!({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id, "content_index": 0, "transcript": transcript}),
            );
        }
    }

    pub(super) fn on_commit(&mut self, eid: Option<Value>) {
        let now = self.current_ms();
        let have = now.saturating_sub(self.buffer_start_ms);
        if have < 100 {
            let msg = format!(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {have}.00ms of audio."
            );
            return self.error(
                ApiError::invalid("input_audio_buffer_commit_empty", msg, None),
                eid,
            );
        }
        let item_id = match self.speech.take() {
            Some((id, _)) => id,
            None => self.new_id("item_"),
        };
        self.vad.reset();
        self.committed_inputs.push(CommittedInput {
            item_id: item_id.clone(),
            audio_start_ms: self.buffer_start_ms,
            audio_end_ms: now,
            by_vad: false,
        });
        self.commit_user_item(item_id, have);
        self.buffer_start_ms = now;
    }
}
