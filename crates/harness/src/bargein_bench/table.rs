//! The bench's numbers: per class and half of the corpus, per echo condition, and the markdown
//! tables of docs/interruptions.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{ClipClass, Half, Outcome, Trial, KEY_ECHO};

/// Clip trials of one class and half.
#[derive(Debug, Clone, Default)]
pub struct ClassStats {
    pub trials: usize,
    /// Playback was stopped (`clear`) by the clip.
    pub cut: usize,
    /// The answer was given up (truncated or cancelled).
    pub given_up: usize,
    /// Stopped AND given up: what an interruption should do.
    pub stopped_and_given_up: usize,
    /// Caller turns the model saw.
    pub caller_turns: usize,
    /// Onset → `clear`, sorted.
    pub onset_to_clear: Vec<Duration>,
}

impl ClassStats {
    pub fn cut_pct(&self) -> f64 {
        pct(self.cut, self.trials)
    }
    pub fn given_up_pct(&self) -> f64 {
        pct(self.given_up, self.trials)
    }
    pub fn caught_pct(&self) -> f64 {
        pct(self.stopped_and_given_up, self.trials)
    }
    /// Nearest-rank percentile of onset → `clear`, ms.
    pub fn onset_to_clear_ms(&self, p: f64) -> Option<f64> {
        let v = &self.onset_to_clear;
        if v.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        Some(v[rank.min(v.len()) - 1].as_secs_f64() * 1000.0)
    }
}

/// Speakerphone calls at one echo condition.
#[derive(Debug, Clone, Default)]
pub struct EchoStats {
    pub calls: usize,
    pub call_secs: f64,
    /// `clear`s: the agent cut off by its own voice.
    pub cuts: usize,
    /// Caller turns committed although the caller never spoke: echo that reached the model.
    pub turns: usize,
}

/// Everything the bench measured.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub clips: BTreeMap<(ClipClass, Half), ClassStats>,
    /// By (delay ms, level dB × 10, to order them).
    pub echo: BTreeMap<(u64, i32), EchoStats>,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let mut s = Summary::default();
        for o in outcomes {
            match &o.trial {
                Trial::Clip { clip, .. } => {
                    let c = s.clips.entry((clip.class, clip.half)).or_default();
                    c.trials += 1;
                    c.cut += usize::from(o.onset_to_clear.is_some());
                    c.given_up += usize::from(o.given_up);
                    c.stopped_and_given_up += usize::from(o.onset_to_clear.is_some() && o.given_up);
                    c.caller_turns += o.caller_turns;
                    c.onset_to_clear.extend(o.onset_to_clear);
                    c.onset_to_clear.sort();
                }
                Trial::Echo { echo, length } => {
                    let key = (
                        echo.delay.as_millis() as u64,
                        (echo.level_db * 10.0).round() as i32,
                    );
                    let e = s.echo.entry(key).or_default();
                    e.calls += 1;
                    e.call_secs += length.as_secs_f64();
                    e.cuts += o.clears;
                    e.turns += o.caller_turns;
                }
            }
        }
        s
    }

    /// One class over both halves.
    pub fn class(&self, class: ClipClass) -> ClassStats {
        let mut all = ClassStats::default();
        for ((c, _), s) in &self.clips {
            if *c == class {
                all.trials += s.trials;
                all.cut += s.cut;
                all.given_up += s.given_up;
                all.stopped_and_given_up += s.stopped_and_given_up;
                all.caller_turns += s.caller_turns;
                all.onset_to_clear.extend(&s.onset_to_clear);
            }
        }
        all.onset_to_clear.sort();
        all
    }

    /// The echo condition the target names (−12 dB / 150 ms).
    pub fn key_echo(&self) -> Option<&EchoStats> {
        self.echo.get(&(
            KEY_ECHO.delay.as_millis() as u64,
            (KEY_ECHO.level_db * 10.0).round() as i32,
        ))
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

fn ratio(n: usize, of: usize) -> String {
    format!("{n}/{of} ({:.0} %)", pct(n, of))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

/// The markdown tables, `mode` naming the bridge's configuration in the first column.
pub fn render(mode: &str, s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| barge_in | half | answers cut by noise | answers given up on backchannels | real interruptions caught | caller onset → `clear` p50 / p95 (ms) |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let halves = [
        (Some(Half::Tune), "tune"),
        (Some(Half::Heldout), "heldout"),
        (None, "both"),
    ];
    for (half, label) in halves {
        let get = |class| match half {
            Some(h) => s.clips.get(&(class, h)).cloned().unwrap_or_default(),
            None => s.class(class),
        };
        let (noise, back, inter) = (
            get(ClipClass::Noise),
            get(ClipClass::Backchannel),
            get(ClipClass::Interruption),
        );
        let _ = writeln!(
            out,
            "| {mode} | {label} | {} | {} | {} | {} / {} |",
            ratio(noise.cut, noise.trials),
            ratio(back.given_up, back.trials),
            ratio(inter.stopped_and_given_up, inter.trials),
            ms(inter.onset_to_clear_ms(50.0)),
            ms(inter.onset_to_clear_ms(95.0)),
        );
    }
    out.push('\n');
    let _ = writeln!(out, "| barge_in | class | half | trials | playback stopped (`clear`) | answer given up | caller turns the model saw | onset → `clear` p50 / p95 (ms) |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for ((class, half), c) in &s.clips {
        let _ = writeln!(
            out,
            "| {mode} | {} | {} | {} | {:.0} % | {:.0} % | {} | {} / {} |",
            class.name(),
            half.name(),
            c.trials,
            c.cut_pct(),
            c.given_up_pct(),
            c.caller_turns,
            ms(c.onset_to_clear_ms(50.0)),
            ms(c.onset_to_clear_ms(95.0)),
        );
    }
    out.push('\n');
    let _ = writeln!(out, "| barge_in | speakerphone echo | calls | echo cuts (`clear`) | echo turns that reached the model |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for ((delay, level), e) in &s.echo {
        let _ = writeln!(
            out,
            "| {mode} | {:.0} dB / {delay} ms | {} × {:.0} s | {} | {} |",
            *level as f64 / 10.0,
            e.calls,
            e.call_secs / e.calls.max(1) as f64,
            e.cuts,
            e.turns,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let c = ClassStats {
            onset_to_clear: (1..=20).map(Duration::from_millis).collect(),
            ..ClassStats::default()
        };
        assert_eq!(c.onset_to_clear_ms(50.0), Some(10.0));
        assert_eq!(c.onset_to_clear_ms(95.0), Some(19.0));
        assert_eq!(ClassStats::default().onset_to_clear_ms(95.0), None);
    }
}
