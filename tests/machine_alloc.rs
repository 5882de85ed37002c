//! No heap allocation per 20 ms frame once a call is warm: the uplink (Twilio `media` JSON →
//! `input_audio_buffer.append` JSON) allocates nothing, the downlink (a model delta → Twilio
//! frames) allocates nothing per frame. Counted with a global allocator that counts only
//! while this thread has counting switched on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use callbridge::call::bargein::BargeInConfig;
use callbridge::call::{Call, CallConfig, CallEvent, Output};
use callbridge::realtime::{AudioFormat, Dialect, ServerEvent};
use callbridge::twilio::{Inbound, Outbound};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Per thread: tests run in parallel, and one test's allocations are not another's.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get) - before)
}

// The steady-state call and its messages, shared with the hot-path benchmark.
#[path = "support/hot_path.rs"]
mod hot_path;
use hot_path::{delta_msg, steady_call, steady_call_with, write_mark_echo, SID};

fn media_msgs() -> Vec<String> {
    (0..2000u64)
        .map(|i| {
            let frame: Vec<u8> = (0..160u64).map(|j| ((i * 7 + j * 37) % 256) as u8).collect();
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}}}}"#,
                i + 2,
                i + 1,
                i * 20,
                B64.encode(frame)
            )
        })
        .collect()
}

/// Writes outputs as the server shell does (into one reused String); returns (frames, mark).
fn drain(call: &mut Call, sid_json: &str, text: &mut String, mark: &mut String) -> usize {
    let mut frames = 0;
    while let Some(out) = call.poll_output() {
        match out {
            Output::ToTwilio(m) => {
                m.write_json(sid_json, text);
                match m {
                    Outbound::Media(_) => frames += 1,
                    Outbound::Mark(name) => {
                        mark.clear();
                        mark.push_str(&name);
                    }
                    Outbound::Clear => {}
                }
            }
            Output::ToRealtime { event: ev, .. } => ev.write_json(Dialect::Ga, text),
            // Once per response, at its first frames (turn latency): allocates nothing.
            Output::Event(CallEvent::AgentAudio { .. }) => {}
            Output::Event(e) => panic!("unexpected event in steady state: {e:?}"),
            Output::Hangup(r) => panic!("hangup: {r:?}"),
            Output::Upstream(e) => panic!("unexpected upstream effect in steady state: {e:?}"),
            Output::Effect { effect, .. } => panic!("effect in steady state: {effect:?}"),
        }
    }
    frames
}

#[test]
fn steady_state_allocates_nothing_per_frame() {
    let sid_json = serde_json::to_string(SID).expect("sid");
    let msgs = media_msgs();
    for format in [AudioFormat::Pcmu, AudioFormat::Pcm24k] {
        let t0 = Instant::now();
        let mut call = steady_call(format, t0);
        let mut text = String::with_capacity(8192);
        let mut mark = String::with_capacity(64);
        let at = |i: usize| t0 + Duration::from_millis(20 * i as u64);

        // Uplink: warm up on the first 200 frames, then count 1800.
        for (i, m) in msgs[..200].iter().enumerate() {
            call.on_twilio(Inbound::parse(m).expect("media"), at(i));
            drain(&mut call, &sid_json, &mut text, &mut mark);
        }
        let (_, n) = count(|| {
            for (i, m) in msgs[200..].iter().enumerate() {
                call.on_twilio(Inbound::parse(m).expect("media"), at(200 + i));
                drain(&mut call, &sid_json, &mut text, &mut mark);
            }
        });
        assert_eq!(n, 0, "{format:?}: allocations in 1800 uplink frames");

        // Downlink: 100 ms deltas, each mark echoed back as Twilio does.
        let delta = delta_msg(format);
        let mut echo = String::with_capacity(256);
        let mut one_delta = |call: &mut Call, k: usize| -> usize {
            let now = at(2000 + k * 5);
            call.on_realtime(1, ServerEvent::parse(&delta).expect("delta"), now);
            let frames = drain(call, &sid_json, &mut text, &mut mark);
            write_mark_echo(&mut echo, &mark);
            call.on_twilio(Inbound::parse(&echo).expect("mark"), now);
            frames
        };
        for k in 0..20 {
            one_delta(&mut call, k);
        }
        let (frames, n) = count(|| (20..120).map(|k| one_delta(&mut call, k)).sum::<usize>());
        assert!(frames >= 490, "{format:?}: {frames} frames");
        // What remains is per delta, not per frame: the mark's name (`Outbound::Mark(String)`).
        assert!(
            n <= 100,
            "{format:?}: {n} allocations for 100 deltas ({frames} frames)"
        );
        eprintln!("{format:?}: downlink {n} allocations for 100 deltas / {frames} frames");
    }
}

/// With confirmed barge-in the caller's audio is scored by the voice activity model while the
/// agent is audible: that too allocates nothing per frame (the detector is boxed once per call,
/// the agent's unplayed audio kept in a buffer that grows per answer, not per frame).
#[test]
fn confirmed_barge_in_scores_the_caller_without_allocating_per_frame() {
    let t0 = Instant::now();
    let mut cfg = CallConfig {
        barge_in: BargeInConfig::confirm(),
        ..CallConfig::default()
    };
    cfg.session.bridge_decides_turns();
    let mut call = steady_call_with(cfg, t0);
    // A minute of the agent's audio queued at Twilio (no mark echoed): audible throughout.
    let delta = delta_msg(AudioFormat::Pcmu);
    for _ in 0..600 {
        call.on_realtime(1, ServerEvent::parse(&delta).expect("delta"), t0);
    }
    while call.poll_output().is_some() {}
    let msgs = media_msgs();
    let at = |i: usize| t0 + Duration::from_millis(20 * i as u64);
    let feed = |call: &mut Call, range: std::ops::Range<usize>| {
        for i in range {
            call.on_twilio(Inbound::parse(&msgs[i]).expect("media"), at(i));
            while let Some(out) = call.poll_output() {
                assert!(
                    !matches!(out, Output::ToTwilio(Outbound::Clear)),
                    "the agent was not interrupted"
                );
            }
        }
    };
    feed(&mut call, 0..200);
    let (_, n) = count(|| feed(&mut call, 200..2000));
    assert_eq!(
        n, 0,
        "allocations in 1800 caller frames scored over the agent"
    );
}
