//! How the voice activity model scores each clip of the barge-in corpus, at a few thresholds:
//! the measurement behind `BargeInConfig`'s defaults. For each clip: the speech an onset gathers
//! (speech blocks, gaps under the 200 ms hangover allowed: what `bargein_min_speech_ms` is
//! compared with) and its span (onset to last speech: what `bargein_max_backchannel_ms` is
//! compared with).
//!
//! `cargo run -p callbridge-core --example vad_tune -- DIR [tune|heldout]` where DIR holds the
//! corpus's `manifest.tsv` (name, class, level, half, ...) and `NAME.ulaw` clips. Tune on
//! `tune`; report `heldout` without changing anything.

use callbridge_core::audio::vad::BLOCK_MS;
use callbridge_core::audio::SpeechDetector;

const HANGOVER_MS: u64 = 200;

/// (most speech one onset gathered, that onset's span) in ms.
fn score(clip: &[u8], threshold: f32) -> (u64, u64) {
    let mut d = SpeechDetector::new(threshold);
    let (mut best, mut best_span) = (0, 0);
    let (mut speech, mut since, mut span, mut quiet) = (0u64, 0u64, 0u64, 0u64);
    for frame in clip.chunks(160) {
        d.push(frame, |s| {
            if speech == 0 && !s {
                return;
            }
            since += BLOCK_MS;
            if s {
                speech += BLOCK_MS;
                span = since;
                quiet = 0;
            } else {
                quiet += BLOCK_MS;
            }
            if speech > best {
                (best, best_span) = (speech, span);
            }
            if quiet >= HANGOVER_MS {
                (speech, since, span, quiet) = (0, 0, 0, 0);
            }
        });
    }
    (best, best_span)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: vad_tune DIR [tune|heldout]");
        std::process::exit(2);
    };
    let half = args.next().unwrap_or_else(|| "tune".into());
    let manifest = match std::fs::read_to_string(format!("{dir}/manifest.tsv")) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{dir}/manifest.tsv: {e}");
            std::process::exit(1);
        }
    };
    for threshold in [0.6f32, 0.7, 0.75, 0.8] {
        println!("threshold {threshold} ({half})");
        for line in manifest.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 || f[3] != half {
                continue;
            }
            match std::fs::read(format!("{dir}/{}.ulaw", f[0])) {
                Ok(clip) => {
                    let (speech, span) = score(&clip, threshold);
                    println!(
                        "  {:42} {:>5} ms clip  onset speech {speech:>5} ms  span {span:>5} ms",
                        f[0],
                        clip.len() / 8
                    );
                }
                Err(e) => eprintln!("  {}: {e}", f[0]),
            }
        }
    }
}
