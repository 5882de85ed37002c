//! G.711 μ-law ⇄ linear PCM16, as a thin batch layer over `audio-codec-algorithms`.
//!
//! # Which μ-law convention
//!
//! `audio_codec_algorithms::encode_ulaw` follows ITU-T G.191 (the ITU reference software): the
//! 16-bit input is shifted to 14 bits and negative values are folded with the *ones'*
//! complement, so -1..=-4 encode to 0x7F ("negative zero", decodes to 0).
//!
//! CPython's `audioop.lin2ulaw` (the Sun `g711.c` lineage) folds negatives with the *two's*
//! complement instead. Measured over all 65536 inputs (see `tests/audio.rs`,
//! `tests/data/gen_g711_reference.py`) the two agree exactly for every `x >= 0`, and for
//! `x < 0` the G.191 code of `x` equals the audioop code of `x + 4`: the decision thresholds of
//! negative values sit 4 LSBs (one 14-bit step) apart, which changes 508 of the 65536 codes by
//! one quantisation step. The decoders agree on all 256 codes. Either is a valid G.711 encoder;
//! we use the crate's (G.191) one and the tests pin that relation down.

use audio_codec_algorithms::{decode_ulaw, encode_ulaw};

/// Decode μ-law bytes and append the PCM16 samples to `out`.
///
/// Reserves once for the whole slice (the iterator is exact-size), so it never reallocates if
/// `out` already has the capacity.
pub fn decode_into(ulaw: &[u8], out: &mut Vec<i16>) {
    out.extend(ulaw.iter().map(|&b| decode_ulaw(b)));
}

/// Encode PCM16 samples to μ-law and append the bytes to `out`.
pub fn encode_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| encode_ulaw(s)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_decodes_to_zero() {
        let mut pcm = Vec::new();
        decode_into(&[crate::audio::ULAW_SILENCE, 0x7F], &mut pcm);
        assert_eq!(pcm, [0, 0]);
        let mut ulaw = Vec::new();
        encode_into(&[0], &mut ulaw);
        assert_eq!(ulaw, [crate::audio::ULAW_SILENCE]);
    }

    #[test]
    fn decode_appends_without_realloc() {
        let mut pcm = Vec::with_capacity(320);
        pcm.push(7);
        let ptr = pcm.as_ptr();
        decode_into(&[0u8; 160], &mut pcm);
        assert_eq!(pcm.len(), 161);
        assert_eq!(pcm[0], 7);
        assert_eq!(ptr, pcm.as_ptr());
    }
}
