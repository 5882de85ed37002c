//! TEMP STUB (not committed): replaced by the audio branch.
pub const ULAW_SILENCE: u8 = 0xFF;
pub const FRAME_BYTES: usize = 160;
pub mod g711 {
    pub fn decode_into(u: &[u8], out: &mut Vec<i16>) {
        out.extend(u.iter().map(|b| audio_codec_algorithms::decode_ulaw(*b)));
    }
    pub fn encode_into(p: &[i16], out: &mut Vec<u8>) {
        out.extend(p.iter().map(|s| audio_codec_algorithms::encode_ulaw(*s)));
    }
}
#[derive(Debug, thiserror::Error)]
#[error("resample")]
pub struct ResampleError;
pub struct Upsampler;
impl Upsampler {
    pub fn new() -> Result<Self, ResampleError> {
        Ok(Upsampler)
    }
    pub fn process(&mut self, i: &[i16], o: &mut Vec<i16>) -> Result<(), ResampleError> {
        for s in i {
            o.extend([*s, *s, *s]);
        }
        Ok(())
    }
}
pub struct Downsampler {
    phase: usize,
}
impl Downsampler {
    pub fn new() -> Result<Self, ResampleError> {
        Ok(Downsampler { phase: 0 })
    }
    pub fn process(&mut self, i: &[i16], o: &mut Vec<i16>) -> Result<(), ResampleError> {
        for s in i {
            if self.phase == 0 {
                o.push(*s);
            }
            self.phase = (self.phase + 1) % 3;
        }
        Ok(())
    }
    pub fn flush(&mut self, _o: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.phase = 0;
        Ok(())
    }
    pub fn reset(&mut self) {
        self.phase = 0;
    }
    pub fn delay_ms(&self) -> u64 {
        0
    }
}
pub struct Framer {
    buf: [u8; 160],
    len: usize,
}
impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}
impl Framer {
    pub fn new() -> Self {
        Framer {
            buf: [0; 160],
            len: 0,
        }
    }
    pub fn push(&mut self, mut b: &[u8], mut emit: impl FnMut(&[u8; 160])) {
        while !b.is_empty() {
            let n = (160 - self.len).min(b.len());
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
            if self.len == 160 {
                emit(&self.buf);
                self.len = 0;
            }
        }
    }
    pub fn flush(&mut self) -> Option<[u8; 160]> {
        if self.len == 0 {
            return None;
        }
        let mut f = [0xFFu8; 160];
        f[..self.len].copy_from_slice(&self.buf[..self.len]);
        self.len = 0;
        Some(f)
    }
    pub fn pending(&self) -> usize {
        self.len
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
}
