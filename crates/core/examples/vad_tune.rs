//! How the voice activity model scores each clip of the barge-in corpus's `tune` half, at a few
//! thresholds: the measurement behind `BargeInConfig`'s defaults.
//! `cargo run -p callbridge-core --example vad_tune -- fixtures/bargein`
use callbridge_core::audio::SpeechDetector;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let manifest = std::fs::read_to_string(format!("{dir}/manifest.tsv")).unwrap();
    for th in [0.6f32, 0.7, 0.75] {
        println!("threshold {th}");
        for line in manifest.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 || f[3] != "tune" {
                continue;
            }
            let clip = std::fs::read(format!("{dir}/{}.ulaw", f[0])).unwrap();
            let mut d = SpeechDetector::new(th);
            // longest onset: speech ms accumulated with gaps < 160 ms
            let (mut best, mut cur, mut quiet, mut total, mut first) =
                (0u64, 0u64, 0u64, 0u64, None);
            let mut t = 0u64;
            for fr in clip.chunks(160) {
                d.push(fr, |s| {
                    t += 16;
                    if s {
                        if first.is_none() {
                            first = Some(t)
                        }
                        cur += 16;
                        quiet = 0;
                        total += 16;
                    } else {
                        quiet += 16;
                        if quiet >= 200 {
                            cur = 0;
                        }
                    }
                    best = best.max(cur);
                });
            }
            println!(
                "  {:40} {:>6} ms clip, speech {:>5} ms, longest run {:>5} ms, first {:?}",
                f[0],
                clip.len() / 8,
                total,
                best,
                first
            );
        }
    }
}
