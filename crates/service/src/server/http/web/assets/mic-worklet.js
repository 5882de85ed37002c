// callbridge softphone audio: two AudioWorklet processors.
//
// "mic": microphone at the context's rate -> low-pass -> 8 kHz -> 20 ms frames of G.711
// mu-law (160 bytes), posted to the page with the frame's level.
// "player": the agent's 8 kHz mu-law frames -> a small jitter buffer -> the speakers at the
// context's rate. Marks travel in the same queue as the audio, so a mark is reported exactly
// when this playout reaches it (what Twilio does); "clear" drops the queue at once and reports
// the marks that were pending (Twilio echoes them too).

const FRAME = 160; // 20 ms at 8 kHz

function linearToUlaw(x) {
  // x in [-1, 1] -> G.711 mu-law byte.
  let s = Math.max(-32635, Math.min(32635, Math.round(x * 32767)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s += 0x84;
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
  const mant = (s >> (exp + 3)) & 0x0f;
  return ~(sign | (exp << 4) | mant) & 0xff;
}

const ULAW_TABLE = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const sign = u & 0x80;
  const exp = (u >> 4) & 0x07;
  const mant = u & 0x0f;
  let s = ((mant << 3) + 0x84) << exp;
  s -= 0x84;
  ULAW_TABLE[i] = (sign ? -s : s) / 32768;
}

// A 2nd-order low-pass (RBJ cookbook); two in series keep 8 kHz's alias band out.
class Biquad {
  constructor(rate, cutoff) {
    const w = (2 * Math.PI * cutoff) / rate;
    const alpha = Math.sin(w) / (2 * Math.SQRT1_2);
    const c = Math.cos(w);
    const a0 = 1 + alpha;
    this.b0 = (1 - c) / 2 / a0;
    this.b1 = (1 - c) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * c) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
  step(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

class Mic extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 8000; // input samples per output sample
    this.lp1 = new Biquad(sampleRate, 3400);
    this.lp2 = new Biquad(sampleRate, 3400);
    this.pos = 0; // position of the next output sample, in input samples from `prev`
    this.prev = 0;
    this.frame = new Uint8Array(FRAME);
    this.n = 0;
    this.energy = 0;
    this.muted = false;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === 'mute') this.muted = !!e.data.muted;
    };
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const x = this.lp2.step(this.lp1.step(this.muted ? 0 : ch[i]));
      // Emit every output sample that falls between the previous input sample and this one.
      while (this.pos <= 1) {
        const y = this.prev + (x - this.prev) * this.pos;
        this.energy += y * y;
        this.frame[this.n++] = linearToUlaw(y);
        if (this.n === FRAME) {
          const rms = Math.sqrt(this.energy / FRAME);
          this.port.postMessage({ type: 'frame', bytes: this.frame, rms }, [this.frame.buffer]);
          this.frame = new Uint8Array(FRAME);
          this.n = 0;
          this.energy = 0;
        }
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = x;
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    // Start (or restart after running dry) once this much is queued, or at a mark (the end
    // of an answer may be shorter than the jitter buffer).
    this.startAfter = Math.round(((o.jitterMs || 60) / 1000) * 8000);
    this.queue = []; // {samples: Float32Array} | {mark: name}
    this.head = 0; // read position in queue[0].samples
    this.queued = 0; // 8 kHz samples queued
    this.playing = false;
    this.pos = 0; // fractional position between `cur` and the next 8 kHz sample
    this.cur = 0;
    this.next = 0;
    this.step = 8000 / sampleRate;
    this.playedSamples = 0; // agent samples actually sent to the speakers
    this.sinceReport = 0;
    this.peak = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }
  onMessage(m) {
    if (m.type === 'frame') {
      const f = new Float32Array(m.bytes.length);
      for (let i = 0; i < f.length; i++) f[i] = ULAW_TABLE[m.bytes[i]];
      this.queue.push({ samples: f });
      this.queued += f.length;
    } else if (m.type === 'mark') {
      this.queue.push({ mark: m.name });
      if (!this.playing && this.queued > 0) this.playing = true;
      this.reachMarks();
    } else if (m.type === 'clear') {
      const dropped = this.queued;
      const marks = this.queue.filter((q) => q.mark !== undefined).map((q) => q.mark);
      this.queue = [];
      this.head = 0;
      this.queued = 0;
      this.playing = false;
      this.cur = this.next = 0;
      this.port.postMessage({ type: 'cleared', droppedMs: dropped / 8, marks });
    }
  }
  // Marks at the head of the queue are reached: nothing of theirs is left to play.
  reachMarks() {
    while (this.queue.length && this.queue[0].mark !== undefined) {
      this.port.postMessage({ type: 'played', name: this.queue.shift().mark });
    }
  }
  nextSample() {
    this.reachMarks();
    if (!this.queue.length) return null;
    const q = this.queue[0];
    const s = q.samples[this.head++];
    if (this.head >= q.samples.length) {
      this.queue.shift();
      this.head = 0;
      this.reachMarks();
    }
    this.queued--;
    return s;
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued >= this.startAfter) this.playing = true;
    let played = 0;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing) {
        out[i] = 0;
        continue;
      }
      this.pos += this.step;
      while (this.pos >= 1) {
        this.pos -= 1;
        this.cur = this.next;
        const s = this.nextSample();
        if (s === null) {
          // Ran dry: wait for the jitter buffer to fill again.
          this.playing = false;
          this.next = 0;
          break;
        }
        this.next = s;
        played++;
      }
      const y = this.cur + (this.next - this.cur) * this.pos;
      out[i] = y;
      if (Math.abs(y) > this.peak) this.peak = Math.abs(y);
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.playedSamples += played;
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) {
      this.port.postMessage({
        type: 'stats',
        playedMs: this.playedSamples / 8,
        queuedMs: this.queued / 8,
        playing: this.playing,
        peak: this.peak,
      });
      this.sinceReport = 0;
      this.peak = 0;
    }
    return true;
  }
}

registerProcessor('mic', Mic);
registerProcessor('player', Player);
