//! Responses: `response.create` and `response.cancel`, the response's audio and text paced
//! out, function calls, and `response.done`.

use super::*;

impl Session {
    pub(super) fn on_response_create(&mut self, ev: &Value, eid: Option<Value>) {
        if let Some(r) = &self.resp {
            let msg = format!(
                "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                r.id
            );
            return self.error(
                ApiError::invalid("conversation_already_has_active_response", msg, None),
                eid,
            );
        }
        let params = ev.get("response").filter(|v| !v.is_null());
        if let Some(p) = params {
            if let Err(e) = validate::response_params(self.beta, p) {
                return self.error(e, eid);
            }
        }
        let params = params.cloned();
        self.start_response(params.as_ref());
    }

    pub(super) fn on_response_cancel(&mut self, ev: &Value, eid: Option<Value>) {
        let want = get_str(ev, "response_id");
        match &self.resp {
            Some(r) if want.is_none_or(|w| w == r.id) => {
                self.finish_response(Some("client_cancelled"))
            }
            _ => {
                let e = ApiError::invalid(
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found.",
                    None,
                );
                self.error(e, eid)
            }
        }
    }

    // ---- responses ----

    pub(super) fn response_json(
        &self,
        r: &Resp,
        status: &str,
        details: Value,
        output: Value,
        usage: Value,
    ) -> Value {
        let conv = if r.in_conversation {
            json!("conv_SIM")
        } else {
            Value::Null
        };
        if self.beta {
            let modalities = if r.text_only {
                json!(["text"])
            } else {
                json!(["text", "audio"])
            };
            json!({"object": "realtime.response", "id": r.id, "status": status, "status_details": details,
                "output": output, "conversation_id": conv, "modalities": modalities, "voice": r.voice,
                "output_audio_format": beta_format_name(r.format), "temperature": 0.8,
                "max_output_tokens": "inf", "usage": usage, "metadata": null})
        } else {
            let modalities = if r.text_only {
                json!(["text"])
            } else {
                json!(["audio"])
            };
            json!({"object": "realtime.response", "id": r.id, "status": status, "status_details": details,
                "output": output, "conversation_id": conv, "output_modalities": modalities,
                "max_output_tokens": "inf",
                "audio": {"output": {"format": ga_format_json(r.format), "voice": r.voice}},
                "usage": usage, "metadata": null})
        }
    }

    pub(super) fn part_type(&self, text_only: bool) -> &'static str {
        match (self.beta, text_only) {
            (false, false) => "output_audio",
            (false, true) => "output_text",
            (true, false) => "audio",
            (true, true) => "text",
        }
    }

    pub(super) fn start_response(&mut self, params: Option<&Value>) {
        let cfg = &self.shared.cfg;
        let text = if cfg.reply_texts.is_empty() {
            "Hello from the simulator.".to_string()
        } else {
            cfg.reply_texts[self.reply_idx % cfg.reply_texts.len()].clone()
        };
        let clip = (!cfg.reply_audio.is_empty())
            .then(|| cfg.reply_audio[self.reply_idx % cfg.reply_audio.len()].clone());
        let calls = cfg
            .reply_tool_calls
            .get(self.reply_idx)
            .cloned()
            .unwrap_or_default();
        self.reply_idx += 1;
        let p = |k: &str| params.and_then(|p| p.get(k));
        let text_only = match (self.beta, p("output_modalities"), p("modalities")) {
            (false, Some(m), _) => m == &json!(["text"]),
            (true, _, Some(m)) => m == &json!(["text"]),
            _ => self.text_only,
        };
        let format = if self.beta {
            p("output_audio_format").and_then(|v| validate::beta_format(v, "").ok())
        } else {
            params
                .and_then(|p| p.pointer("/audio/output/format"))
                .and_then(|v| validate::ga_format(v, "").ok())
        }
        .unwrap_or(self.out_fmt);
        let voice = if self.beta {
            p("voice")
        } else {
            params.and_then(|p| p.pointer("/audio/output/voice"))
        }
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| self.voice());
        let in_conversation = p("conversation").and_then(Value::as_str) != Some("none");
        let ms = match (&clip, cfg.response_audio_ms) {
            (Some(c), _) => (c.len() / 8) as u32,
            (None, 0) => (text.chars().count() as u32 * 65).max(500),
            (None, ms) => ms,
        };
        let fault_close = cfg.faults.iter().find_map(|f| match f {
            Fault::CloseAfterResponses(n) if *n == self.responses_finished => Some(false),
            Fault::DropAfterResponses(n) if *n == self.responses_finished => Some(true),
            _ => None,
        });
        let audio = (!text_only).then(|| match &clip {
            Some(c) => Arc::new(voice::convert_ulaw(c, format)),
            None => self.shared.voice.get(format, ms),
        });
        let start = Instant::now() + Duration::from_millis(cfg.response_latency_ms as u64);
        let r = Resp {
            id: self.new_id("resp_"),
            item_id: self.new_id("item_"),
            text,
            text_sent: 0,
            text_only,
            in_conversation,
            format,
            voice,
            audio,
            total_bytes: ms as usize * format.bytes_per_ms(),
            sent_bytes: 0,
            delta_idx: 0,
            start,
            fault_close,
            calls,
        };
        let created = self.response_json(&r, "in_progress", Value::Null, json!([]), Value::Null);
        self.send(json!({"type": "response.created", "response": created}));
        let item = json!({"id": r.item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
            "role": "assistant", "content": []});
        self.send(json!({"type": "response.output_item.added", "response_id": r.id, "output_index": 0, "item": item.clone()}));
        if in_conversation {
            let previous = self.last_item_id();
            if self.beta {
                self.send(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
            } else {
                self.send(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
            }
            self.items.push(Item {
                id: r.item_id.clone(),
                assistant: true,
                call_id: None,
                audio_ms: 0,
            });
        }
        let part = if text_only {
            json!({"type": self.part_type(true), "text": ""})
        } else {
            json!({"type": self.part_type(false), "transcript": ""})
        };
        self.send(
            json!({"type": "response.content_part.added", "response_id": r.id, "item_id": r.item_id,
            "output_index": 0, "content_index": 0, "part": part}),
        );
        self.resp = Some(r);
    }

    pub(super) fn ev_name(&self, what: &str) -> &'static str {
        match (self.beta, what) {
            (false, "audio.delta") => "response.output_audio.delta",
            (false, "audio.done") => "response.output_audio.done",
            (false, "transcript.delta") => "response.output_audio_transcript.delta",
            (false, "transcript.done") => "response.output_audio_transcript.done",
            (false, "text.delta") => "response.output_text.delta",
            (false, "text.done") => "response.output_text.done",
            (true, "audio.delta") => "response.audio.delta",
            (true, "audio.done") => "response.audio.done",
            (true, "transcript.delta") => "response.audio_transcript.delta",
            (true, "transcript.done") => "response.audio_transcript.done",
            (true, "text.delta") => "response.text.delta",
            _ => "response.text.done",
        }
    }

    /// Sends text up to `upto` (a byte index, moved forward to a word boundary).
    pub(super) fn send_text_delta(&mut self, upto: usize) {
        let Some(r) = &mut self.resp else { return };
        let mut end = upto.min(r.text.len());
        while !r.text.is_char_boundary(end) {
            end += 1;
        }
        while end < r.text.len() && !r.text[end..].starts_with(' ') {
            end += r.text[end..].chars().next().map_or(1, char::len_utf8);
        }
        if end <= r.text_sent {
            return;
        }
        let delta = r.text[r.text_sent..end].to_string();
        r.text_sent = end;
        let (id, item_id, text_only) = (r.id.clone(), r.item_id.clone(), r.text_only);
        let ty = self.ev_name(if text_only {
            "text.delta"
        } else {
            "transcript.delta"
        });
        self.send(
            json!({"type": ty, "response_id": id, "item_id": item_id, "output_index": 0,
            "content_index": 0, "delta": delta}),
        );
    }

    pub(super) fn step_response(&mut self) {
        let delta_name = self.ev_name("audio.delta");
        let cfg = &self.shared.cfg;
        let Some(r) = &mut self.resp else { return };
        if r.total_bytes == 0 && !r.text_only {
            // A response with nothing to say (the model only calls a tool).
            return self.finish_response(None);
        }
        if r.text_only {
            let len = r.text.len();
            let mut pos = 0;
            while pos < len {
                self.send_text_delta(pos + 1);
                pos = self.resp.as_ref().map_or(len, |r| r.text_sent);
            }
            return self.finish_response(None);
        }
        let sizes = &cfg.delta_ms;
        let nonzero = sizes.iter().filter(|&&d| d > 0).count();
        let ms = if nonzero == 0 {
            100
        } else {
            let d = sizes
                .iter()
                .copied()
                .filter(|&d| d > 0)
                .cycle()
                .nth(r.delta_idx % nonzero)
                .unwrap_or(100);
            r.delta_idx += 1;
            d
        };
        let n = (ms as usize * r.format.bytes_per_ms()).min(r.total_bytes - r.sent_bytes);
        let b64 = match &r.audio {
            Some(a) => B64.encode(&a[r.sent_bytes..(r.sent_bytes + n).min(a.len())]),
            None => String::new(),
        };
        let offset = r.sent_bytes;
        if offset == 0 {
            self.audio_responses += 1;
        }
        r.sent_bytes += n;
        let ev = json!({"type": delta_name, "response_id": r.id, "item_id": r.item_id,
            "output_index": 0, "content_index": 0});
        let (sent, total, fault) = (r.sent_bytes, r.total_bytes, r.fault_close);
        let upto = r.text.len() * sent / total.max(1);
        self.sent_audio_bytes += n;
        self.audio_sent_ever = true;
        let eid = self.new_id("event_");
        let mut ev = ev;
        if let Some(m) = ev.as_object_mut() {
            m.insert("event_id".into(), Value::String(eid));
        }
        let ordinal = self.audio_responses;
        self.out.push(Out::Audio(ev, b64, n, (ordinal, offset)));
        self.send_text_delta(upto);
        if let Some(drop) = fault {
            if sent * 2 >= total {
                if let Some(r) = &mut self.resp {
                    r.fault_close = None;
                }
                self.out.push(if drop {
                    Out::Drop(ClosedBy::Fault("drop_after_responses".into()))
                } else {
                    Out::Close(
                        CloseCode::Error,
                        "simulated server error",
                        ClosedBy::Fault("close_after_responses".into()),
                    )
                });
                return;
            }
        }
        if sent >= total {
            self.finish_response(None);
        }
    }

    /// The response's scripted function calls, as the API streams them (item added, arguments
    /// delta and done, item done); returns the completed items for `response.done`.
    pub(super) fn function_calls(&mut self, r: &Resp) -> Vec<Value> {
        let mut done = Vec::new();
        for (i, (name, args)) in r.calls.iter().enumerate() {
            // `mcp:LABEL/TOOL`: OpenAI calls a remote MCP server (`mcp.rs`), no function call.
            if let Some((label, tool)) = name.strip_prefix("mcp:").and_then(|n| n.split_once('/')) {
                done.push(self.mcp_call(r, i + 1, label, tool, args));
                continue;
            }
            let item_id = self.new_id("item_");
            let call_id = self.new_id("call_");
            let index = i + 1;
            let added = json!({"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": name, "call_id": call_id, "arguments": ""});
            self.send(
                json!({"type": "response.output_item.added", "response_id": r.id,
                "output_index": index, "item": added}),
            );
            if r.in_conversation {
                let previous = self.last_item_id();
                let ty = if self.beta {
                    "conversation.item.created"
                } else {
                    "conversation.item.added"
                };
                self.send(json!({"type": ty, "previous_item_id": previous, "item": added}));
                self.items.push(Item {
                    id: item_id.clone(),
                    assistant: true,
                    call_id: Some(call_id.clone()),
                    audio_ms: 0,
                });
            }
            self.send(
                json!({"type": "response.function_call_arguments.delta", "response_id": r.id,
                "item_id": item_id, "output_index": index, "call_id": call_id, "delta": args}),
            );
            self.send(
                json!({"type": "response.function_call_arguments.done", "response_id": r.id,
                "item_id": item_id, "output_index": index, "call_id": call_id, "name": name,
                "arguments": args}),
            );
            let item = json!({"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "completed", "name": name, "call_id": call_id, "arguments": args});
            self.send(
                json!({"type": "response.output_item.done", "response_id": r.id,
                "output_index": index, "item": item}),
            );
            if !self.beta && r.in_conversation {
                self.send(json!({"type": "conversation.item.done", "item": item}));
            }
            done.push(item);
        }
        done
    }

    /// Ends the active response: completed when `cancel_reason` is `None`, else cancelled.
    pub(super) fn finish_response(&mut self, cancel_reason: Option<&str>) {
        if cancel_reason.is_none() {
            self.send_text_delta(usize::MAX);
        }
        let Some(r) = self.resp.take() else { return };
        let said = r.text[..r.text_sent].to_string();
        let base = json!({"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0});
        let with = |ty: &str, extra: Value| {
            let mut v = base.clone();
            if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                m.insert("type".into(), json!(ty));
                m.extend(e.clone());
            }
            v
        };
        let part = if r.text_only {
            self.send(with(self.ev_name("text.done"), json!({"text": said})));
            json!({"type": self.part_type(true), "text": said})
        } else {
            self.send(with(self.ev_name("audio.done"), json!({})));
            self.send(with(
                self.ev_name("transcript.done"),
                json!({"transcript": said}),
            ));
            json!({"type": self.part_type(false), "transcript": said})
        };
        self.send(with("response.content_part.done", json!({"part": part})));
        let status = if cancel_reason.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let item = json!({"id": r.item_id, "object": "realtime.item", "type": "message", "status": status,
            "role": "assistant", "content": [part]});
        self.send(json!({"type": "response.output_item.done", "response_id": r.id, "output_index": 0, "item": item.clone()}));
        if !self.beta && r.in_conversation {
            self.send(json!({"type": "conversation.item.done", "item": item.clone()}));
        }
        let sent_ms = (r.sent_bytes / r.format.bytes_per_ms()) as u64;
        if let Some(it) = self.items.iter_mut().rev().find(|i| i.id == r.item_id) {
            it.audio_ms = sent_ms;
        }
        let usage = self.usage(&said, sent_ms);
        let (status, details) = match cancel_reason {
            None => {
                self.completed += 1;
                ("completed", Value::Null)
            }
            Some(reason) => {
                self.cancelled += 1;
                ("cancelled", json!({"type": "cancelled", "reason": reason}))
            }
        };
        let mut output = vec![item];
        if cancel_reason.is_none() {
            output.extend(self.function_calls(&r));
        }
        let resp = self.response_json(&r, status, details, Value::Array(output), usage);
        self.send(json!({"type": "response.done", "response": resp}));
        self.send(json!({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 10000, "remaining": 9999, "reset_seconds": 0.006},
            {"name": "tokens", "limit": 2_000_000, "remaining": 1_995_000, "reset_seconds": 0.15}]}));
        self.responses_finished += 1;
        let n = self.responses_finished;
        let fire = !self.error_fault_fired
            && self
                .shared
                .cfg
                .faults
                .iter()
                .any(|f| matches!(f, Fault::ErrorAfterResponses(k) if *k == n));
        if fire {
            self.error_fault_fired = true;
            self.errors += 1;
            self.send(json!({"type": "error", "error": {"type": "server_error", "code": "server_error",
                "message": "The server had an error while processing your request. Sorry about that!",
                "param": null, "event_id": null}}));
        }
    }
}
