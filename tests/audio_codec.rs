//! `callbridge::audio`'s codec side: G.711 μ-law against an independent reference (CPython's
//! `audioop`), and the framer that cuts the model's audio into Twilio's 20 ms frames.

use callbridge::audio::{g711, Framer, FRAME_BYTES, ULAW_SILENCE};

mod support;
use support::Rng;

// ---------------------------------------------------------------------------------------------
// 1. G.711 against CPython's audioop (tests/data/gen_g711_reference.py).

const AUDIOOP_DECODE: &[u8] = include_bytes!("data/ulaw_decode_audioop.bin");
const AUDIOOP_ENCODE: &[u8] = include_bytes!("data/ulaw_encode_audioop.bin");

#[test]
fn ulaw_decode_matches_audioop_for_all_256_codes() {
    let codes: Vec<u8> = (0..=255).collect();
    let mut pcm = Vec::new();
    g711::decode_into(&codes, &mut pcm);
    assert_eq!(pcm.len(), 256);
    for (code, got) in pcm.iter().enumerate() {
        let want = i16::from_le_bytes([AUDIOOP_DECODE[2 * code], AUDIOOP_DECODE[2 * code + 1]]);
        assert_eq!(*got, want, "code {code:#04x}");
    }
    // Spot values from the G.711 table itself, independent of audioop.
    assert_eq!(
        (pcm[0x00], pcm[0x80], pcm[0xFF], pcm[0x7F]),
        (-32124, 32124, 0, 0)
    );
}

/// audio-codec-algorithms implements the ITU-T G.191 encoder; audioop the Sun g711.c one. They
/// differ only in how negative inputs are folded to a magnitude (ones' vs two's complement of
/// the 14-bit value), which moves every negative decision threshold by 4 LSBs. So: identical
/// for x >= 0; for x < 0 ours(x) == audioop(x + 4), and -4..=-1 give 0x7F (negative zero)
/// where audioop gives 0x7E (-8). Anything else would be a real bug.
#[test]
fn ulaw_encode_matches_audioop_for_all_65536_inputs_modulo_g191_negative_folding() {
    let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    let mut ours = Vec::with_capacity(all.len());
    g711::encode_into(&all, &mut ours);
    assert_eq!(ours.len(), 65536);
    let audioop = |x: i32| AUDIOOP_ENCODE[(x + 32768) as usize];
    let mut differing = 0;
    for (i, &code) in ours.iter().enumerate() {
        let x = i as i32 - 32768;
        if code != audioop(x) {
            differing += 1;
        }
        let want = match x {
            0.. => audioop(x),
            -4..=-1 => 0x7F,
            _ => audioop(x + 4),
        };
        assert_eq!(code, want, "input {x}");
    }
    // The two conventions disagree on exactly 508 inputs (4 per negative threshold, 127
    // thresholds), each by one quantisation step.
    assert_eq!(differing, 508);
}

#[test]
fn ulaw_encode_of_decoded_value_is_identity() {
    let codes: Vec<u8> = (0..=255).collect();
    let mut pcm = Vec::new();
    g711::decode_into(&codes, &mut pcm);
    let mut back = Vec::new();
    g711::encode_into(&pcm, &mut back);
    for (code, got) in back.iter().enumerate() {
        // 0x7F (negative zero) decodes to 0, which encodes as 0xFF (positive zero).
        let want = if code == 0x7F { 0xFF } else { code as u8 };
        assert_eq!(*got, want, "code {code:#04x}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Framer.

#[test]
fn framer_emits_exact_frames_from_arbitrary_pushes() {
    let data: Vec<u8> = (0..10_007u32).map(|i| (i * 7 % 251) as u8).collect();
    for seed in 1..30 {
        let mut rng = Rng(seed);
        let mut framer = Framer::new();
        let mut got: Vec<u8> = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = [0, 1, 7, 159, 160, 161, 320, 4800][rng.below(8)].min(rest.len());
            framer.push(&rest[..n], |f| {
                assert_eq!(f.len(), FRAME_BYTES);
                got.extend_from_slice(f);
            });
            rest = &rest[n..];
            assert!(framer.pending() < FRAME_BYTES);
            assert_eq!(got.len() + framer.pending(), data.len() - rest.len());
        }
        assert_eq!(framer.pending(), data.len() % FRAME_BYTES);
        let last = framer.flush().unwrap();
        got.extend_from_slice(&last);
        assert_eq!(got.len(), data.len().div_ceil(FRAME_BYTES) * FRAME_BYTES);
        assert_eq!(&got[..data.len()], &data[..]);
        assert!(got[data.len()..].iter().all(|&b| b == ULAW_SILENCE));
        assert_eq!(framer.pending(), 0);
        assert!(framer.flush().is_none());
    }
}

#[test]
fn framer_flush_and_clear() {
    let mut framer = Framer::new();
    assert!(framer.flush().is_none());
    framer.push(&[1, 2, 3], |_| panic!("no full frame yet"));
    assert_eq!(framer.pending(), 3);
    let f = framer.flush().unwrap();
    assert_eq!(&f[..3], &[1, 2, 3]);
    assert!(f[3..].iter().all(|&b| b == 0xFF));
    framer.push(&[9; 100], |_| panic!("no full frame yet"));
    framer.clear();
    assert_eq!(framer.pending(), 0);
    let mut n = 0;
    framer.push(&[5; 160], |f| {
        assert!(f.iter().all(|&b| b == 5), "stale bytes after clear");
        n += 1;
    });
    assert_eq!(n, 1);
}
