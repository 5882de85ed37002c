//! The tool-call scaffolding the `machine_tools` and `machine_hangup` tests share: a call
//! configured with two tools, `end_call` and two transfer targets; the model calling tools the
//! three ways the API shows it; what the call asked the shell to do and told the model (the
//! wrap-up tests use those, and the goodbye that ends a call).

use std::sync::Arc;
use std::time::Duration;

use callbridge::call::effects::{CallUpdateRequest, Effect, EffectId, EffectResult, ToolOutcome};
use callbridge::call::tools::{ToolSpec, ToolsConfig};
use callbridge::call::{CallConfig, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use serde_json::{json, Value};

use super::call_harness::{marks, H};

/// The caller's `customParameters` in Twilio's `start`.
pub const CALLER: &str = r#"{"From":"+15550001","To":"+15559999","Tier":"gold"}"#;

pub fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: "d".into(),
        parameters: json!({"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}),
        url: format!("http://127.0.0.1:9/{name}"),
        timeout: Duration::from_millis(5000),
        filler_after: Duration::from_millis(1200),
    }
}

pub fn config() -> CallConfig {
    CallConfig {
        tools: ToolsConfig {
            tools: vec![tool("lookup_order"), tool("check_stock")],
            end_call: true,
            transfer_targets: vec![
                ("sales".into(), "+15551230000".into()),
                ("billing".into(), "sip:billing@pbx.example.com".into()),
            ],
            transfer_caller_id: Some("+15550001111".into()),
            send_dtmf: false,
            goodbye_timeout: Duration::from_secs(10),
            filler: Some(Arc::new(vec![0x55; 400])),
        },
        ..Default::default()
    }
}

impl H {
    /// The goodbye plays: `ms_audio` of response `resp` sent at `ms`. Time alone (at `tick_ms`)
    /// hangs nothing up; once its marks echo (at `heard_ms`) this call is updated once through
    /// Twilio REST: that update's id and update.
    pub fn goodbye_heard(
        &mut self,
        resp: &str,
        item: &str,
        ms_audio: usize,
        ms: u64,
        tick_ms: u64,
        heard_ms: u64,
    ) -> (EffectId, CallUpdate) {
        let outs = self.speak(resp, item, ms_audio, ms);
        let m = marks(&outs);
        assert!(!m.is_empty());
        assert!(call_updates(&outs).is_empty());
        assert!(
            call_updates(&self.tick(tick_ms)).is_empty(),
            "time alone is no proof"
        );
        let outs = self.echo_all(&m, heard_ms);
        let up = call_updates(&outs);
        assert_eq!(up.len(), 1, "{outs:?}");
        up[0].clone()
    }
    pub fn done(&mut self, id: EffectId, r: EffectResult, ms: u64) -> Vec<Output> {
        self.call.on_effect_done(id, r, self.at(ms));
        self.drain()
    }
    /// A function call seen the three ways the API shows it, then the response's end.
    pub fn model_calls(
        &mut self,
        resp: &str,
        calls: &[(&str, &str, &str)],
        status: &str,
        ms: u64,
    ) -> Vec<Output> {
        let mut outs = self.created(resp, ms);
        let mut items = Vec::new();
        for (call_id, name, args) in calls {
            outs.extend(self.rt(json!({"type":"response.function_call_arguments.done","response_id":resp,"item_id":format!("it_{call_id}"),"output_index":0,"call_id":call_id,"name":name,"arguments":args}), ms));
            let item = json!({"id":format!("it_{call_id}"),"type":"function_call","status":"completed","name":name,"call_id":call_id,"arguments":args});
            outs.extend(self.rt(json!({"type":"response.output_item.done","response_id":resp,"output_index":0,"item":item}), ms));
            items.push(item);
        }
        outs.extend(self.rt(
            json!({"type":"response.done","response":{"id":resp,"status":status,"output":items}}),
            ms,
        ));
        outs
    }

    /// The model's first answer (`r1`, at 100 ms) made the function calls `calls` and
    /// completed.
    pub fn first_answer_calls(&mut self, calls: &[(&str, &str, &str)]) -> Vec<Output> {
        self.model_calls("r1", calls, "completed", 100)
    }
}

/// The effects the call asked the shell to perform, with their ids.
pub fn effects(outs: &[Output]) -> Vec<(EffectId, Effect)> {
    super::call_harness::pick(outs, |o| match o {
        Output::Effect { id, effect } => Some((*id, effect.clone())),
        _ => None,
    })
}

/// The updates of this call (CA1) through Twilio REST that `outs` asks for: id and update.
pub fn call_updates(outs: &[Output]) -> Vec<(EffectId, CallUpdate)> {
    effects(outs)
        .into_iter()
        .filter_map(|(id, e)| match e {
            Effect::UpdateCall(CallUpdateRequest {
                call_sid, update, ..
            }) if call_sid == "CA1" => Some((id, update)),
            _ => None,
        })
        .collect()
}

pub fn tool_body(e: &Effect) -> Value {
    match e {
        Effect::RunTool(r) => serde_json::from_str(&r.body).expect("body is JSON"),
        other => panic!("not a tool run: {other:?}"),
    }
}

/// `(call_id, output)` of every function_call_output, and the number of response.create.
pub fn to_model(outs: &[Output]) -> (Vec<(String, Value)>, usize) {
    let mut fco = Vec::new();
    let mut creates = 0;
    for o in outs {
        match o {
            Output::ToRealtime {
                event: ClientEvent::FunctionCallOutput { call_id, output },
                ..
            } => fco.push((
                call_id.clone(),
                serde_json::from_str(output).expect("output is JSON"),
            )),
            Output::ToRealtime {
                event: ClientEvent::ResponseCreate { .. },
                ..
            } => creates += 1,
            _ => {}
        }
    }
    (fco, creates)
}

/// A started call (see [`config`]) whose model called `lookup_order` for order 1 (call `c1`
/// in response `r1`, completed, at 100 ms): the call, and the id of the effect running the
/// tool.
pub fn lookup_running() -> (H, EffectId) {
    let (h, effects) = lookup_called("c1", r#"{"order_id":"1"}"#);
    (h, effects[0].0)
}

/// A started call (see [`config`]) whose model called `lookup_order` with `arguments` (call
/// `call_id` in response `r1`, completed, at 100 ms): the call, and the effects that asked for.
pub fn lookup_called(call_id: &str, arguments: &str) -> (H, Vec<(EffectId, Effect)>) {
    let mut h = H::started(config(), CALLER);
    let outs = h.first_answer_calls(&[(call_id, "lookup_order", arguments)]);
    let effects = effects(&outs);
    (h, effects)
}

impl H {
    /// The tool behind effect `id` answered `answer` (JSON) at `ms`.
    pub fn tool_answered(&mut self, id: EffectId, answer: &str, ms: u64) -> Vec<Output> {
        self.done(id, EffectResult::Tool(ToolOutcome::Ok(answer.into())), ms)
    }
}

/// Asserts that `outs` holds one effect: `update` of this call (AC1/CA1) through Twilio REST;
/// its id.
pub fn assert_call_update(outs: &[Output], update: CallUpdate) -> EffectId {
    let eff = effects(outs);
    assert_eq!(
        eff,
        [(
            eff[0].0,
            Effect::UpdateCall(CallUpdateRequest {
                account_sid: "AC1".into(),
                call_sid: "CA1".into(),
                update
            })
        )]
    );
    eff[0].0
}
