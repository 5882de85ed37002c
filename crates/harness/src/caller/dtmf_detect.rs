//! A DTMF receiver for what the fake caller heard: which keys were played, when, how long, how
//! loud. Written from the textbook Goertzel algorithm and the ITU-T Q.23 table, sharing nothing
//! with the bridge's generator (`callbridge_core::audio::dtmf`), so a test that decodes the
//! generator's tones with it checks the generator rather than agreeing with itself.
//!
//! How it listens: the μ-law audio is decoded and cut into sounding stretches by its 1 ms
//! energy (a stretch ends at 2 ms below the threshold, so a key's edges are found to the ms);
//! each stretch is then measured as a whole with Goertzel filters. A stretch is a key when its
//! strongest low-group and high-group frequencies carry nearly all of its energy (speech and
//! noise do not) and each stands well clear of the others in its group.

use audio_codec_algorithms::decode_ulaw;

/// Q.23 low group (rows) and high group (columns), Hz.
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
const RATE: f64 = 8000.0;
/// Samples per ms at 8 kHz.
const MS: usize = 8;
/// Peak of a 0 dBm0 sine on the 16-bit scale. G.711 (μ-law) puts its largest code, 8159 in
/// 14 bits (32636 in 16), at +3.17 dBm0.
const DBM0_PEAK: f64 = 32636.0 / 1.440_1;
/// A millisecond is sounding above this RMS: −40 dBm0.
const SOUNDING_RMS: f64 = DBM0_PEAK / std::f64::consts::SQRT_2 / 100.0;
/// The two tones must carry this share of a stretch's energy to make it a key.
const MIN_TONE_SHARE: f64 = 0.9;
/// Each tone must be this many dB above the next strongest of its group.
const MIN_GROUP_MARGIN_DB: f64 = 10.0;
/// Stretches shorter than this (clicks) are not looked at.
const MIN_STRETCH_MS: usize = 10;

/// One sounding stretch of the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// The key, if the stretch is one (`None`: speech, noise, anything else).
    pub key: Option<char>,
    /// Where it starts and ends, ms from the start of the audio.
    pub start_ms: usize,
    pub end_ms: usize,
    /// The strongest frequency near each group's winner (1 Hz steps), Hz.
    pub low_hz: f64,
    pub high_hz: f64,
    /// Each tone's level, dBm0.
    pub low_dbm0: f64,
    pub high_dbm0: f64,
}

impl Heard {
    pub fn duration_ms(&self) -> usize {
        self.end_ms - self.start_ms
    }

    /// High-group level over low-group level, dB ("twist").
    pub fn twist_db(&self) -> f64 {
        self.high_dbm0 - self.low_dbm0
    }
}

/// Every sounding stretch of `ulaw` (8 kHz μ-law), in order.
pub fn listen(ulaw: &[u8]) -> Vec<Heard> {
    let pcm: Vec<f64> = ulaw.iter().map(|&b| f64::from(decode_ulaw(b))).collect();
    stretches(&pcm)
        .into_iter()
        .filter(|(a, b)| b - a >= MIN_STRETCH_MS)
        .map(|(a, b)| measure(&pcm[a * MS..b * MS], a, b))
        .collect()
}

/// The keys heard in `ulaw`, in order, with their stretches.
pub fn keys(ulaw: &[u8]) -> Vec<Heard> {
    listen(ulaw)
        .into_iter()
        .filter(|h| h.key.is_some())
        .collect()
}

/// The keys heard, as a string.
pub fn key_string(ulaw: &[u8]) -> String {
    keys(ulaw).iter().filter_map(|h| h.key).collect()
}

/// Sounding stretches as (start ms, end ms): runs of loud milliseconds, a run ending after
/// 2 quiet ms (a tone's sum can dip for an instant where its two sines cancel).
fn stretches(pcm: &[f64]) -> Vec<(usize, usize)> {
    let loud: Vec<bool> = pcm
        .chunks_exact(MS)
        .map(|ms| (ms.iter().map(|s| s * s).sum::<f64>() / MS as f64).sqrt() > SOUNDING_RMS)
        .collect();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quiet = 0;
    for (i, &l) in loud.iter().enumerate() {
        match (l, start) {
            (true, None) => {
                start = Some(i);
                quiet = 0;
            }
            (true, Some(_)) => quiet = 0,
            (false, Some(s)) => {
                quiet += 1;
                if quiet == 2 {
                    out.push((s, i - 1));
                    start = None;
                }
            }
            (false, None) => {}
        }
    }
    if let Some(s) = start {
        out.push((s, loud.len() - quiet));
    }
    out
}

/// Amplitude of the sine at `hz` in `x` (Goertzel: the DFT term at `hz`, |X| = A·N/2).
fn amplitude(x: &[f64], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / RATE;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// The group's strongest frequency (index, amplitude) and its margin over the next, dB.
fn strongest(x: &[f64], group: &[f64; 4]) -> (usize, f64, f64) {
    let mut amps: Vec<(usize, f64)> = group
        .iter()
        .enumerate()
        .map(|(i, &f)| (i, amplitude(x, f)))
        .collect();
    amps.sort_by(|a, b| b.1.total_cmp(&a.1));
    let margin = 20.0 * (amps[0].1 / amps[1].1.max(1e-9)).log10();
    (amps[0].0, amps[0].1, margin)
}

/// The frequency with the most energy within ±40 Hz of `around`, in 1 Hz steps.
fn peak_near(x: &[f64], around: f64) -> f64 {
    (-40..=40)
        .map(|d| around + f64::from(d))
        .max_by(|a, b| amplitude(x, *a).total_cmp(&amplitude(x, *b)))
        .unwrap_or(around)
}

fn dbm0(amplitude: f64) -> f64 {
    20.0 * (amplitude.max(1e-9) / DBM0_PEAK).log10()
}

fn measure(x: &[f64], start_ms: usize, end_ms: usize) -> Heard {
    let (r, low_amp, low_margin) = strongest(x, &ROWS);
    let (c, high_amp, high_margin) = strongest(x, &COLS);
    let mean_square = x.iter().map(|s| s * s).sum::<f64>() / x.len() as f64;
    let tone_share = (low_amp * low_amp + high_amp * high_amp) / 2.0 / mean_square.max(1e-9);
    let is_key = tone_share >= MIN_TONE_SHARE
        && low_margin >= MIN_GROUP_MARGIN_DB
        && high_margin >= MIN_GROUP_MARGIN_DB;
    Heard {
        key: is_key.then_some(KEYS[r][c]),
        start_ms,
        end_ms,
        low_hz: peak_near(x, ROWS[r]),
        high_hz: peak_near(x, COLS[c]),
        low_dbm0: dbm0(low_amp),
        high_dbm0: dbm0(high_amp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_codec_algorithms::encode_ulaw;

    /// `ms` of the two sines at these amplitudes, as μ-law.
    fn tone(lo: f64, hi: f64, amp: f64, ms: usize) -> Vec<u8> {
        (0..ms * MS)
            .map(|n| {
                let t = n as f64 / RATE;
                let s = amp
                    * ((std::f64::consts::TAU * lo * t).sin()
                        + (std::f64::consts::TAU * hi * t).sin());
                encode_ulaw(s as i16)
            })
            .collect()
    }

    #[test]
    fn hears_a_key_with_its_timing_and_not_a_single_sine() {
        let mut a = vec![0xFFu8; 50 * MS];
        a.extend(tone(852.0, 1477.0, 5000.0, 70));
        a.extend(vec![0xFF; 30 * MS]);
        a.extend(tone(1000.0, 1000.0, 3000.0, 100)); // one sine, twice: not a key
        a.extend(vec![0xFF; 10 * MS]);
        let heard = listen(&a);
        assert_eq!(heard.len(), 2);
        assert_eq!(heard[0].key, Some('9'));
        assert_eq!((heard[0].start_ms, heard[0].end_ms), (50, 120));
        assert!((heard[0].twist_db()).abs() < 0.5);
        assert_eq!(heard[1].key, None);
    }
}
