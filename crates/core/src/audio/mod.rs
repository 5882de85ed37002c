//! Audio between the two protocols: G.711 μ-law, 8 kHz ⇄ 24 kHz resampling, 20 ms framing.
//!
//! Nothing here knows about JSON or sockets. Everything that runs per frame is allocation-free
//! once warmed up and logs nothing above `trace`.

pub mod dtmf;
pub mod echo;
pub mod framer;
pub mod g711;
pub mod resample;
pub mod vad;

pub use framer::{Framer, FRAME_BYTES};
pub use resample::{Downsampler, ResampleError, Upsampler};
pub use vad::SpeechDetector;

/// μ-law code for digital silence. 0xFF is "positive zero" (0x7F, "negative zero", decodes to
/// 0 as well); 0xFF is what Twilio and most PBXes pad with, so use it for fill.
pub const ULAW_SILENCE: u8 = 0xFF;
