//! Deterministic "voiced speech" used as the simulator's response audio.
//!
//! A 170–230 Hz gliding fundamental with four harmonics, amplitude-modulated into 250 ms
//! syllables (200 ms voiced, 50 ms gap). Peak well below full scale, never clipped. The maths
//! is plain IEEE arithmetic (no libm calls), so the bytes are identical on every platform and
//! tests may compare them with [`render`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An audio encoding the simulator can read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// PCM16 little-endian mono at 24 kHz (GA `audio/pcm` rate 24000, beta `pcm16`).
    Pcm16,
    /// G.711 μ-law at 8 kHz (GA `audio/pcmu`, beta `g711_ulaw`).
    Pcmu,
    /// G.711 A-law at 8 kHz (GA `audio/pcma`, beta `g711_alaw`).
    Pcma,
}

impl AudioFormat {
    /// Samples per second.
    pub fn rate(self) -> u32 {
        match self {
            AudioFormat::Pcm16 => 24_000,
            AudioFormat::Pcmu | AudioFormat::Pcma => 8_000,
        }
    }

    /// Encoded bytes per millisecond of audio (48 for PCM16 24 kHz, 8 for G.711).
    pub fn bytes_per_ms(self) -> usize {
        match self {
            AudioFormat::Pcm16 => 48,
            AudioFormat::Pcmu | AudioFormat::Pcma => 8,
        }
    }

    /// Bytes per sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            AudioFormat::Pcm16 => 2,
            AudioFormat::Pcmu | AudioFormat::Pcma => 1,
        }
    }
}

/// sin(2π·x) for x in turns, by range reduction and a Taylor polynomial (error < 1e-7).
fn sin_turns(x: f64) -> f64 {
    let mut r = x - x.round(); // [-0.5, 0.5]
    if r > 0.25 {
        r = 0.5 - r;
    } else if r < -0.25 {
        r = -0.5 - r;
    }
    let a = r * std::f64::consts::TAU; // |a| <= π/2
    let a2 = a * a;
    a * (1.0
        - a2 / 6.0
            * (1.0
                - a2 / 20.0
                    * (1.0
                        - a2 / 42.0 * (1.0 - a2 / 72.0 * (1.0 - a2 / 110.0 * (1.0 - a2 / 156.0))))))
}

const SYLLABLE_S: f64 = 0.25;
const VOICED_S: f64 = 0.20;
const PEAK: f64 = 9000.0;
const HARMONICS: [f64; 5] = [1.0, 0.55, 0.35, 0.2, 0.12];

/// The i-th sample (from the start of a response) at `rate` Hz, as linear PCM16.
pub fn sample(n: u64, rate: u32) -> i16 {
    let t = n as f64 / rate as f64;
    // Syllable envelope: sin² bump over the voiced part, silence in the gap.
    let syl = t / SYLLABLE_S;
    let p = (syl - syl.floor()) * SYLLABLE_S;
    if p >= VOICED_S {
        return 0;
    }
    let e = sin_turns(p / VOICED_S / 2.0);
    let env = e * e;
    // f0(t) = 200 + 30·sin(2π·0.8·t)  →  phase (in turns) = 200t + 30/(2π·0.8)·(1 − cos(2π·0.8·t)).
    let glide = 30.0 / (std::f64::consts::TAU * 0.8);
    let phase = 200.0 * t + glide * (1.0 - sin_turns(0.8 * t + 0.25));
    let mut acc = 0.0;
    for (h, a) in HARMONICS.iter().enumerate() {
        acc += a * sin_turns(phase * (h + 1) as f64);
    }
    let norm: f64 = HARMONICS.iter().sum();
    (acc / norm * PEAK * env) as i16
}

/// `ms` milliseconds of the response voice, encoded in `format`.
pub fn render(format: AudioFormat, ms: u32) -> Vec<u8> {
    let rate = format.rate();
    let samples = rate as u64 * ms as u64 / 1000;
    let mut out = Vec::with_capacity(samples as usize * format.sample_bytes());
    for n in 0..samples {
        let s = sample(n, rate);
        match format {
            AudioFormat::Pcm16 => out.extend_from_slice(&s.to_le_bytes()),
            AudioFormat::Pcmu => out.push(audio_codec_algorithms::encode_ulaw(s)),
            AudioFormat::Pcma => out.push(audio_codec_algorithms::encode_alaw(s)),
        }
    }
    out
}

/// μ-law 8 kHz audio (a recorded clip) in `format`. PCM16 24 kHz is upsampled by linear
/// interpolation: the simulator only needs speech that a listener recognises, not a
/// measured resampler (the bridge's own resamplers are the ones under test).
pub fn convert_ulaw(ulaw: &[u8], format: AudioFormat) -> Vec<u8> {
    match format {
        AudioFormat::Pcmu => ulaw.to_vec(),
        AudioFormat::Pcma => ulaw
            .iter()
            .map(|&b| audio_codec_algorithms::encode_alaw(audio_codec_algorithms::decode_ulaw(b)))
            .collect(),
        AudioFormat::Pcm16 => {
            let mut out = Vec::with_capacity(ulaw.len() * 6);
            for (i, &b) in ulaw.iter().enumerate() {
                let a = audio_codec_algorithms::decode_ulaw(b) as i32;
                let c = ulaw
                    .get(i + 1)
                    .map_or(a, |&n| audio_codec_algorithms::decode_ulaw(n) as i32);
                for k in 0..3 {
                    let s = (a * (3 - k) + c * k) / 3;
                    out.extend_from_slice(&(s as i16).to_le_bytes());
                }
            }
            out
        }
    }
}

/// Rendered voice shared by all sessions: one growing buffer per format, since every response
/// starts at sample 0 and a shorter response is a prefix of a longer one.
#[derive(Default)]
pub(crate) struct VoiceCache {
    by_format: Mutex<HashMap<AudioFormat, Arc<Vec<u8>>>>,
}

impl VoiceCache {
    /// At least `ms` of voice in `format` (the buffer may be longer).
    pub(crate) fn get(&self, format: AudioFormat, ms: u32) -> Arc<Vec<u8>> {
        let need = ms as usize * format.bytes_per_ms();
        let mut map = match self.by_format.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(buf) = map.get(&format) {
            if buf.len() >= need {
                return buf.clone();
            }
        }
        let buf = Arc::new(render(format, ms));
        map.insert(format, buf.clone());
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_is_accurate() {
        for i in 0..1000 {
            let x = i as f64 / 997.0 - 0.3;
            assert!((sin_turns(x) - (x * std::f64::consts::TAU).sin()).abs() < 1e-6);
        }
    }

    #[test]
    fn voice_is_loud_unclipped_and_syllabic() {
        let pcm: Vec<i16> = (0..24_000).map(|n| sample(n, 24_000)).collect();
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 5000 && peak < 12_000, "peak {peak}");
        // The gap of each syllable is silent, the middle is loud.
        let rms = |a: usize, b: usize| {
            let e: f64 = pcm[a..b].iter().map(|&s| (s as f64) * (s as f64)).sum();
            (e / (b - a) as f64).sqrt()
        };
        assert!(rms(2400 - 240, 2400 + 240) > 2000.0);
        assert_eq!(rms(4900, 5900), 0.0);
    }

    #[test]
    fn lengths() {
        assert_eq!(render(AudioFormat::Pcmu, 1000).len(), 8000);
        assert_eq!(render(AudioFormat::Pcm16, 1000).len(), 48_000);
        let c = VoiceCache::default();
        assert!(c.get(AudioFormat::Pcmu, 100).len() >= 800);
        assert_eq!(
            &c.get(AudioFormat::Pcmu, 300)[..800],
            &render(AudioFormat::Pcmu, 100)[..]
        );
    }
}
