//! The conversation's items: created, deleted and truncated by the client, and the events
//! that announce a new one.

use super::*;

impl Session {
    pub(super) fn last_item_id(&self) -> Value {
        self.items
            .last()
            .map(|i| Value::String(i.id.clone()))
            .unwrap_or(Value::Null)
    }

    pub(super) fn item_added(&mut self, previous: Value, item: Value) {
        if self.beta {
            self.send(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
        } else {
            self.send(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item.clone()}));
            self.send(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
        }
    }

    pub(super) fn on_item_create(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(item) = ev.get("item").and_then(Value::as_object) else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                Some("item"),
            );
            return self.error(e, eid);
        };
        let ty = item.get("type").and_then(Value::as_str);
        let role = item.get("role").and_then(Value::as_str);
        let ok = match ty {
            Some("message") => matches!(role, Some("user" | "assistant" | "system")),
            Some("function_call" | "function_call_output") => true,
            _ => false,
        };
        if !ok {
            let e = ApiError::invalid(
                "invalid_value",
                "Invalid 'item': type must be 'message' (role user|assistant|system), 'function_call' or 'function_call_output'.",
                Some("item.type"),
            );
            return self.error(e, eid);
        }
        let previous = match ev.get("previous_item_id") {
            None | Some(Value::Null) => self.last_item_id(),
            Some(Value::String(p)) if p == "root" || self.items.iter().any(|i| &i.id == p) => {
                Value::String(p.clone())
            }
            Some(p) => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Invalid 'previous_item_id': item {p} not found."),
                    Some("previous_item_id"),
                );
                return self.error(e, eid);
            }
        };
        let id = match item.get("id").and_then(Value::as_str) {
            Some(id) if self.items.iter().any(|i| i.id == id) => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Item with id '{id}' already exists."),
                    Some("item.id"),
                );
                return self.error(e, eid);
            }
            Some(id) => id.to_string(),
            None => self.new_id("item_"),
        };
        let call_id = item
            .get("call_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if ty == Some("function_call_output") {
            let known = call_id
                .as_deref()
                .is_some_and(|c| self.items.iter().any(|i| i.call_id.as_deref() == Some(c)));
            if !known || !item.get("output").is_some_and(Value::is_string) {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!(
                        "Invalid 'item.call_id': no function call with call_id {:?} in the conversation (and 'output' must be a string).",
                        call_id.unwrap_or_default()
                    ),
                    Some("item.call_id"),
                );
                return self.error(e, eid);
            }
        }
        let mut full: Map<String, Value> = item.clone();
        full.insert("id".into(), Value::String(id.clone()));
        full.insert("object".into(), json!("realtime.item"));
        full.insert("status".into(), json!("completed"));
        self.items.push(Item {
            id,
            assistant: role == Some("assistant"),
            call_id: if ty == Some("function_call") {
                call_id
            } else {
                None
            },
            audio_ms: 0,
        });
        self.item_added(previous, Value::Object(full));
    }

    pub(super) fn on_item_delete(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(id) = get_str(ev, "item_id") else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item_id'.",
                Some("item_id"),
            );
            return self.error(e, eid);
        };
        match self.items.iter().position(|i| i.id == id) {
            Some(p) => {
                let item = self.items.remove(p);
                self.send(json!({"type": "conversation.item.deleted", "item_id": item.id}));
            }
            None => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Item with item_id '{id}' not found."),
                    Some("item_id"),
                );
                self.error(e, eid)
            }
        }
    }

    pub(super) fn on_truncate(&mut self, ev: &Value, eid: Option<Value>) {
        let (Some(item_id), Some(content_index), Some(audio_end_ms)) = (
            get_str(ev, "item_id"),
            ev.get("content_index").and_then(Value::as_u64),
            ev.get("audio_end_ms").and_then(Value::as_u64),
        ) else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "conversation.item.truncate needs 'item_id' (string), 'content_index' and 'audio_end_ms' (non-negative integers).",
                None,
            );
            return self.error(e, eid);
        };
        let item_id = item_id.to_string();
        let verdict = self.check_truncate(&item_id, content_index, audio_end_ms);
        self.truncates.push(Truncate {
            item_id: item_id.clone(),
            content_index,
            audio_end_ms,
            accepted: verdict.is_ok(),
        });
        match verdict {
            Err(e) => self.error(e, eid),
            Ok(()) => {
                if let Some(it) = self.items.iter_mut().rev().find(|i| i.id == item_id) {
                    it.audio_ms = audio_end_ms;
                }
                self.send(
                    json!({"type": "conversation.item.truncated", "item_id": item_id,
                    "content_index": content_index, "audio_end_ms": audio_end_ms}),
                );
            }
        }
    }

    pub(super) fn check_truncate(
        &self,
        item_id: &str,
        content_index: u64,
        audio_end_ms: u64,
    ) -> Result<(), ApiError> {
        let active = self.resp.as_ref().filter(|r| r.item_id == item_id);
        let (assistant, have_ms) = match (active, self.items.iter().rev().find(|i| i.id == item_id))
        {
            (Some(r), _) => (true, (r.sent_bytes / r.format.bytes_per_ms()) as u64),
            (None, Some(i)) => (i.assistant, i.audio_ms),
            (None, None) => {
                return Err(ApiError::invalid(
                    "invalid_value",
                    format!("Item with item_id '{item_id}' not found."),
                    Some("item_id"),
                ))
            }
        };
        if !assistant {
            return Err(ApiError::invalid(
                "invalid_value",
                "Only assistant messages can be truncated.",
                Some("item_id"),
            ));
        }
        if content_index != 0 {
            return Err(ApiError::invalid(
                "invalid_value",
                format!("Invalid 'content_index': {content_index}; item '{item_id}' has one content part (index 0)."),
                Some("content_index"),
            ));
        }
        if audio_end_ms > have_ms {
            return Err(ApiError::invalid(
                "invalid_value",
                format!("audio_end_ms {audio_end_ms} is beyond the audio of item '{item_id}' ({have_ms} ms sent)."),
                Some("audio_end_ms"),
            ));
        }
        Ok(())
    }
}
