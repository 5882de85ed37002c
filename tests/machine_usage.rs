//! Token usage in the call machine, no sockets and no clock: every `response.done` that reports
//! `usage`, from the current session, a replaced one or after a re-dial, becomes one
//! `CallEvent::Usage` (summed by the shell); odd or missing usage never fails the event.

use callbridge::call::{CallConfig, CallEvent, Output, UpstreamLoss};
use callbridge::realtime::{ServerEvent, TokenUsage};
use serde_json::{json, Value};

mod support;
use support::call_harness::{events, H};

fn ev(h: &mut H, generation: u64, v: Value, ms: u64) -> Vec<Output> {
    let text = v.to_string();
    let ev = ServerEvent::parse(&text).expect("event parses, whatever its usage");
    h.call.on_realtime(generation, ev, h.at(ms));
    h.drain()
}

fn done(id: &str, usage: Value) -> Value {
    json!({"type": "response.done", "response": {"id": id, "status": "completed",
        "output": [], "usage": usage}})
}

/// A GA usage: `text`/`audio` input of which `ct`/`ca` cached, `ot`/`oa` output.
fn usage(text: u64, audio: u64, ct: u64, ca: u64, ot: u64, oa: u64) -> Value {
    json!({"total_tokens": text + audio + ot + oa, "input_tokens": text + audio,
        "output_tokens": ot + oa,
        "input_token_details": {"text_tokens": text, "audio_tokens": audio, "image_tokens": 0,
            "cached_tokens": ct + ca,
            "cached_tokens_details": {"text_tokens": ct, "audio_tokens": ca, "image_tokens": 0}},
        "output_token_details": {"text_tokens": ot, "audio_tokens": oa}})
}

/// The usages the outputs carry, with their generation.
fn usages(outs: &[Output]) -> Vec<(u64, TokenUsage)> {
    events(outs)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::Usage { generation, usage } => Some((generation, usage)),
            _ => None,
        })
        .collect()
}

fn responses_done(outs: &[Output]) -> usize {
    events(outs)
        .iter()
        .filter(|e| matches!(e, CallEvent::ResponseDone { .. }))
        .count()
}

#[test]
fn usage_from_two_sessions_is_reported_once_each_and_sums() {
    let mut h = H::new(CallConfig::default());
    h.start("{}");
    h.call.on_upstream_open(1, h.at(0));
    h.drain();
    let mut all = Vec::new();

    let outs = ev(&mut h, 1, done("r1", usage(100, 50, 0, 0, 10, 200)), 1_000);
    assert_eq!(responses_done(&outs), 1);
    all.extend(usages(&outs));
    let outs = ev(
        &mut h,
        1,
        done("r2", usage(160, 70, 100, 50, 12, 240)),
        3_000,
    );
    all.extend(usages(&outs));

    // The session drops; a new one is dialled and answers.
    h.call
        .on_upstream_lost(1, UpstreamLoss::Dropped("reset".into()), h.at(4_000));
    h.drain();
    h.call.on_upstream_open(2, h.at(4_100));
    h.drain();
    let outs = ev(&mut h, 2, done("r3", usage(300, 0, 0, 0, 8, 100)), 6_000);
    all.extend(usages(&outs));
    // A late response.done of the replaced session is billed too: counted, not acted on.
    let outs = ev(&mut h, 1, done("r2b", usage(1, 2, 0, 0, 3, 4)), 6_500);
    assert_eq!(responses_done(&outs), 0, "not the session in use");
    all.extend(usages(&outs));

    assert_eq!(
        all.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
        [1, 1, 2, 1],
        "one Usage per response.done, with its session"
    );
    let mut sum = TokenUsage::default();
    for (_, u) in &all {
        sum.add(u);
    }
    // Cached tokens are a subset of the input: 160 text of which 100 cached = 60 + 100.
    assert_eq!(
        sum,
        TokenUsage {
            input_text: 100 + 60 + 300 + 1,
            input_audio: 50 + 20 + 2,
            input_cached_text: 100,
            input_cached_audio: 50,
            output_text: 10 + 12 + 8 + 3,
            output_audio: 200 + 240 + 100 + 4,
        }
    );
}

#[test]
fn odd_or_missing_usage_is_tolerated() {
    let mut h = H::started(CallConfig::default(), "{}");
    let odd = [
        json!(null),
        json!("lots"),
        json!([1, 2]),
        json!({"input_token_details": "x", "output_token_details": {"audio_tokens": -5}}),
    ];
    for (i, u) in odd.iter().enumerate() {
        let outs = ev(&mut h, 1, done(&format!("r{i}"), u.clone()), 100 * i as u64);
        assert_eq!(responses_done(&outs), 1, "{u}: the response still ends");
        let got = usages(&outs);
        assert!(
            got.iter().all(|(_, u)| *u == TokenUsage::default()),
            "{u}: nothing counted: {got:?}"
        );
    }
    // No usage at all: no Usage event.
    let outs = ev(
        &mut h,
        1,
        json!({"type": "response.done", "response": {"id": "rx"}}),
        1_000,
    );
    assert_eq!(responses_done(&outs), 1);
    assert!(usages(&outs).is_empty());
    // Beta shape: cached_tokens without a split stays at the full rate (never double-counted).
    let beta = json!({"input_tokens": 30, "output_tokens": 5,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 20, "cached_tokens": 8},
        "output_token_details": {"text_tokens": 5, "audio_tokens": 0}});
    let outs = ev(&mut h, 1, done("rb", beta), 1_100);
    let [(_, u)] = usages(&outs)[..] else {
        panic!("one usage")
    };
    assert_eq!(u.counts(), [10, 20, 0, 0, 5, 0]);
}
