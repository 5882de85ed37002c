//! Turning both sides' records into the numbers.
//!
//! Correlation (callers and simulator share one process and one monotonic clock):
//! - **Uplink** (caller frame written → `input_audio_buffer.append` read by the simulator): by
//!   byte offset. Caller frame j ends at byte (j+1)·160 of the upstream audio in pcmu, and at
//!   (j+1)·960 − 12 in pcm (the upsampler yields 474 samples for the very first frame, then
//!   480 per frame), so an append whose running total ends there carries frame j. In pcmu the
//!   bytes pass through, so each frame also carries its number in its first 6 bytes and the
//!   simulator checks it (`seq_mismatches`: reordered, duplicated or corrupted audio).
//!   Appends longer than one frame are the bridge's pre-session buffer being flushed (by
//!   design) and are not timed.
//! - **Downlink** (delta written by the simulator → first Twilio frame of it read by the
//!   caller): the bridge sends each delta's frames followed by a mark named `item:bytes`
//!   (bytes of that item framed so far). The caller groups frames between marks; the delta at
//!   output-byte offset `o` of the session's n-th audio response is carried first by the
//!   first group of item n whose end is past `o` (pcm: `o` counted in μ-law bytes, i.e.
//!   PCM16 24 kHz bytes / 6).
//! - **Barge-in**: each `clear` the caller reads is matched with the latest
//!   `speech_started` the simulator wrote on that call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::caller::{Group, Outcome};
use crate::probe::SimSide;
use crate::traffic::Traffic;

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub at_us: u64,
    /// CPU time of all the process's threads, ns.
    pub cpu_ns: u64,
    /// User and system CPU time of the process, clock ticks (/proc/PID/stat; coarser than
    /// `cpu_ns`, fine over a steady window of seconds).
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub rss_kib: u64,
    /// The anonymous part of `rss_kib` (`RssAnon`: heap and stacks). The rest is file pages,
    /// mostly the binary's code, paged in once as code paths first run: not memory per call.
    pub anon_kib: u64,
}

fn read_user_sys_ticks(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at `state` (field 3);
    // utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime = f.next()?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The 1-minute load average (the machine is shared: a busy one makes every number noisier).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// Where each side ran.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `Cpus_allowed_list` of the measured process (bridge or floor relay).
    pub measured_cpus: String,
    /// Of the load tool's threads (distinct lists joined by ` | `).
    pub tool_cpus: String,
    pub tool_threads: usize,
}

fn read_cpu_ns(pid: u32) -> Option<u64> {
    // Per-thread schedstat is in ns (stat's utime/stime tick at 10 ms, too coarse for one call).
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = t.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

/// `VmRSS` and `RssAnon` from /proc/PID/status, KiB.
fn read_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let (utime_ticks, stime_ticks) = read_user_sys_ticks(pid)?;
    let (rss_kib, anon_kib) = read_rss_kib(pid)?;
    Some(ProcSample {
        at_us: 0,
        cpu_ns: read_cpu_ns(pid)?,
        utime_ticks,
        stime_ticks,
        rss_kib,
        anon_kib,
    })
}

/// Samples the bridge's CPU and RSS twice a second.
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<ProcSample>>,
}

impl Sampler {
    pub fn start(pid: u32, t0: Instant) -> Sampler {
        let (stop, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut v = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {
                        if let Some(mut s) = proc_sample(pid) {
                            s.at_us = t0.elapsed().as_micros() as u64;
                            v.push(s);
                        }
                    }
                }
            }
            v
        });
        Sampler { stop, task }
    }

    pub async fn stop(self) -> Vec<ProcSample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// A task that sleeps 10 ms at a time and records how late it wakes: this process's
/// scheduling lag, which would otherwise show up as bridge latency.
pub struct LatenessMonitor {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<u32>>,
}

impl LatenessMonitor {
    pub fn start() -> LatenessMonitor {
        let (stop, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut v = Vec::new();
            loop {
                let due = Instant::now() + Duration::from_millis(10);
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {
                        v.push(Instant::now().saturating_duration_since(due).as_micros() as u32);
                    }
                }
            }
            v
        });
        LatenessMonitor { stop, task }
    }

    pub async fn stop(self) -> Vec<u32> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The measured process (bridge or floor relay) and the load tool, watched while the calls run.
pub struct Watch {
    pub placement: Placement,
    /// The measured process before the calls (what RSS per call is counted from).
    pub base: ProcSample,
    sampler: Sampler,
    tool_sampler: Sampler,
    lateness: LatenessMonitor,
}

/// What a [`Watch`] saw.
pub struct Watched {
    pub samples: Vec<ProcSample>,
    pub tool_samples: Vec<ProcSample>,
    pub monitor_lateness_us: Vec<u32>,
}

impl Watch {
    /// Notes where both sides run, lets the measured process (`what`, for the error) settle,
    /// then samples both processes and the load tool's own lateness.
    pub async fn start(
        pid: u32,
        tool_threads: usize,
        t0: Instant,
        what: &str,
    ) -> Result<Watch, String> {
        let placement = Placement {
            measured_cpus: crate::pin::allowed_list(pid),
            tool_cpus: crate::pin::allowed_list_all_threads(std::process::id()),
            tool_threads,
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sampler = Sampler::start(pid, t0);
        let tool_sampler = Sampler::start(std::process::id(), t0);
        let lateness = LatenessMonitor::start();
        let base = proc_sample(pid).ok_or_else(|| format!("cannot read /proc for the {what}"))?;
        Ok(Watch {
            placement,
            base,
            sampler,
            tool_sampler,
            lateness,
        })
    }

    pub async fn stop(self) -> (Placement, ProcSample, Watched) {
        let watched = Watched {
            samples: self.sampler.stop().await,
            tool_samples: self.tool_sampler.stop().await,
            monitor_lateness_us: self.lateness.stop().await,
        };
        (self.placement, self.base, watched)
    }
}

/// p50 / p99 / max in ms, and the count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    fn of(mut v: Vec<u32>) -> Dist {
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Dist {
            n: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"n": self.n, "p50_ms": self.p50, "p99_ms": self.p99, "max_ms": self.max})
    }

    pub fn cell(&self) -> String {
        if self.n == 0 {
            return "–".into();
        }
        format!("{:.2} / {:.2} / {:.1}", self.p50, self.p99, self.max)
    }
}

pub struct Inputs {
    pub placement: Placement,
    pub calls: usize,
    pub pcm: bool,
    pub t0: Instant,
    pub ramp_start: Instant,
    pub all_started: Instant,
    pub duration: Duration,
    pub outcomes: Vec<Outcome>,
    pub sims: Vec<SimSide>,
    pub base: ProcSample,
    pub samples: Vec<ProcSample>,
    pub tool_samples: Vec<ProcSample>,
    pub monitor_lateness_us: Vec<u32>,
    pub failed_setup: usize,
}

#[derive(Debug, Default)]
pub struct Step {
    /// `bridge` or `floor`.
    pub target: &'static str,
    /// What crossed the measured process's sockets, and over how many call-seconds.
    pub traffic: Traffic,
    pub call_s: f64,
    pub placement: Placement,
    pub loadavg: f64,
    pub calls: usize,
    pub pcm: bool,
    pub failed: usize,
    pub errors: Vec<String>,
    pub uplink: Dist,
    pub downlink: Dist,
    pub clear: Dist,
    pub up_lost: u64,
    pub up_dup: u64,
    pub up_seq_mismatch: u64,
    pub up_misaligned: u64,
    pub up_prebuffer_flushes: u64,
    pub up_prebuffered: u64,
    pub down_lost: u64,
    pub down_dup: u64,
    pub down_unmatched: u64,
    pub odd_frames: u64,
    pub bad_messages: u64,
    pub clears_unmatched: u64,
    pub frames_sent: u64,
    pub marks_echoed: u64,
    pub window_s: f64,
    pub cpu_ms_per_call_s: f64,
    pub cpu_user_ms_per_call_s: f64,
    pub cpu_sys_ms_per_call_s: f64,
    pub tool_cpu_ms_per_call_s: f64,
    pub rss_base_kib: u64,
    pub rss_kib: u64,
    pub rss_kib_per_call: f64,
    /// The same for `RssAnon` (heap and stacks, without the binary's code pages).
    pub anon_kib_per_call: f64,
    pub caller_late: Dist,
    pub monitor_late: Dist,
}

fn cum_end(pcm: bool, frame: u64) -> u64 {
    if pcm {
        (frame + 1) * 960 - 12
    } else {
        (frame + 1) * 160
    }
}

fn frame_of(pcm: bool, cum: u64) -> Option<u64> {
    if pcm {
        (cum + 12).is_multiple_of(960).then(|| (cum + 12) / 960 - 1)
    } else {
        (cum.is_multiple_of(160) && cum > 0).then(|| cum / 160 - 1)
    }
}

pub fn analyse(i: Inputs) -> Step {
    let mut st = Step {
        target: "bridge",
        call_s: i.calls as f64 * i.duration.as_secs_f64(),
        placement: i.placement.clone(),
        loadavg: loadavg(),
        calls: i.calls,
        pcm: i.pcm,
        failed: i.failed_setup + i.calls.saturating_sub(i.outcomes.len()),
        ..Step::default()
    };
    let mut sims: HashMap<usize, SimSide> = HashMap::new();
    for s in i.sims {
        if let Some(c) = s.call {
            sims.insert(c, s);
        }
    }
    let (mut up, mut down, mut clear, mut late) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let one_frame = if i.pcm { 960 } else { 160 };
    for o in &i.outcomes {
        st.odd_frames += o.odd_frames;
        st.bad_messages += o.bad_messages;
        st.frames_sent += o.send_us.len() as u64;
        st.marks_echoed += o.marks_echoed;
        st.traffic.merge(&o.traffic);
        late.extend_from_slice(&o.lateness_us);
        if let Some(e) = &o.error {
            st.failed += 1;
            if st.errors.len() < 5 {
                st.errors.push(format!("call {}: {e}", o.id));
            }
        }
        let Some(sim) = sims.get(&o.id) else {
            if o.error.is_none() {
                st.failed += 1;
                if st.errors.len() < 5 {
                    st.errors
                        .push(format!("call {}: no upstream session seen", o.id));
                }
            }
            continue;
        };
        st.traffic.merge(&sim.traffic);
        // Uplink.
        st.up_seq_mismatch += sim.seq_mismatches;
        for a in &sim.appends {
            if a.len > one_frame {
                st.up_prebuffer_flushes += 1;
                continue;
            }
            let ready = sim.session_update_us.unwrap_or(u32::MAX);
            match frame_of(i.pcm, a.cum_end).and_then(|j| o.send_us.get(j as usize)) {
                Some(&sent) if sent < ready => st.up_prebuffered += 1,
                Some(&sent) => up.push(a.at_us.saturating_sub(sent)),
                None => st.up_misaligned += 1,
            }
        }
        let expected = match o.send_us.len() as u64 {
            0 => 0,
            n => cum_end(i.pcm, n - 1),
        };
        let appended = sim.appends.last().map_or(0, |a| a.cum_end);
        st.up_lost += expected.saturating_sub(appended);
        st.up_dup += appended.saturating_sub(expected);

        // Downlink: the caller's groups per item, in order.
        let mut items: HashMap<u32, Vec<Group>> = HashMap::new();
        for g in &o.groups {
            items.entry(g.item).or_default().push(*g);
        }
        // Deltas after the last one whose frames reached the caller were still in flight when
        // it hung up: not counted. An unmatched delta before a matched one is lost audio.
        let find = |d: &crate::probe::Delta| {
            let o_ulaw = if i.pcm { d.offset / 6 } else { d.offset };
            items
                .get(&d.response)
                .and_then(|gs| gs.iter().find(|g| g.end > o_ulaw))
                .copied()
        };
        let last_matched = sim.deltas.iter().rposition(|d| find(d).is_some());
        let mut sent_per_item: HashMap<u32, (u64, bool)> = HashMap::new();
        for (k, d) in sim.deltas.iter().enumerate() {
            let e = sent_per_item.entry(d.response).or_insert((0, true));
            e.0 += u64::from(d.len);
            if last_matched.is_none_or(|m| k > m) {
                e.1 = false;
                continue;
            }
            match find(d) {
                Some(g) => down.push(g.first_us.saturating_sub(d.at_us)),
                None => st.down_unmatched += 1,
            }
        }
        for (item, (sent, complete)) in sent_per_item {
            if !complete {
                continue;
            }
            let sent = if i.pcm { sent / 6 } else { sent };
            let got: u64 = items
                .get(&item)
                .map_or(0, |gs| gs.iter().map(|g| u64::from(g.bytes)).sum());
            // pcmu: deltas are whole frames, so exactly what was sent arrives. pcm: the
            // resampler's 12-sample trim and tail, and the last frame's padding, allow ±1 frame.
            let slack = if i.pcm { 172 } else { 0 };
            st.down_lost += sent.saturating_sub(got + slack);
            st.down_dup += got.saturating_sub(sent + if i.pcm { 160 } else { 0 });
        }
        // Barge-in.
        for &c in &o.clears_us {
            match sim.speech_started_us.iter().rev().find(|&&s| s <= c) {
                Some(&s) => clear.push(c - s),
                None => st.clears_unmatched += 1,
            }
        }
    }
    st.uplink = Dist::of(up);
    st.downlink = Dist::of(down);
    st.clear = Dist::of(clear);
    st.caller_late = Dist::of(late);
    st.monitor_late = Dist::of(i.monitor_lateness_us);

    cost(
        &mut st,
        &Window {
            t0: i.t0,
            ramp_start: i.ramp_start,
            all_started: i.all_started,
            duration: i.duration,
            base: i.base,
            samples: &i.samples,
            tool_samples: &i.tool_samples,
        },
    );
    st
}

/// When the run was steady, and the measured process's samples.
pub struct Window<'a> {
    pub t0: Instant,
    pub ramp_start: Instant,
    pub all_started: Instant,
    pub duration: Duration,
    pub base: ProcSample,
    pub samples: &'a [ProcSample],
    /// The load tool's own CPU (its cost per call, for profiling it).
    pub tool_samples: &'a [ProcSample],
}

/// CPU and RSS of the measured process over the steady window.
fn cost(st: &mut Step, w: &Window) {
    // Steady state: every call started, none ended yet.
    let from = w.all_started.saturating_duration_since(w.t0) + Duration::from_secs(2);
    let to = (w.ramp_start + w.duration)
        .saturating_duration_since(w.t0)
        .saturating_sub(Duration::from_secs(1));
    let in_window: Vec<&ProcSample> = w
        .samples
        .iter()
        .filter(|s| s.at_us >= from.as_micros() as u64 && s.at_us <= to.as_micros() as u64)
        .collect();
    st.rss_base_kib = w.base.rss_kib;
    if let (Some(a), Some(b)) = (in_window.first(), in_window.last()) {
        let secs = (b.at_us - a.at_us) as f64 / 1e6;
        if secs > 0.0 {
            st.window_s = secs;
            let call_s = secs * st.calls as f64;
            st.cpu_ms_per_call_s = (b.cpu_ns - a.cpu_ns) as f64 / 1e6 / call_s;
            let tick_ms = 1000.0 / ticks_per_s();
            st.cpu_user_ms_per_call_s =
                b.utime_ticks.saturating_sub(a.utime_ticks) as f64 * tick_ms / call_s;
            st.cpu_sys_ms_per_call_s =
                b.stime_ticks.saturating_sub(a.stime_ticks) as f64 * tick_ms / call_s;
        }
        let mut rss: Vec<u64> = in_window.iter().map(|s| s.rss_kib).collect();
        rss.sort_unstable();
        st.rss_kib = rss[rss.len() / 2];
        let tool: Vec<&ProcSample> = w
            .tool_samples
            .iter()
            .filter(|s| s.at_us >= from.as_micros() as u64 && s.at_us <= to.as_micros() as u64)
            .collect();
        if let (Some(a), Some(b)) = (tool.first(), tool.last()) {
            let call_s = (b.at_us - a.at_us) as f64 / 1e6 * st.calls as f64;
            if call_s > 0.0 {
                st.tool_cpu_ms_per_call_s = (b.cpu_ns - a.cpu_ns) as f64 / 1e6 / call_s;
            }
        }
        st.rss_kib_per_call = st.rss_kib.saturating_sub(w.base.rss_kib) as f64 / st.calls as f64;
        let mut anon: Vec<u64> = in_window.iter().map(|s| s.anon_kib).collect();
        anon.sort_unstable();
        st.anon_kib_per_call =
            anon[anon.len() / 2].saturating_sub(w.base.anon_kib) as f64 / st.calls as f64;
    }
}

/// A floor run's step: the relay's cost, the load tool's lateness, the relay's traffic.
pub struct FloorInputs<'a> {
    pub placement: Placement,
    pub calls: usize,
    pub pcm: bool,
    pub window: Window<'a>,
    pub failed: usize,
    pub errors: Vec<String>,
    pub caller_lateness_us: Vec<u32>,
    pub monitor_lateness_us: Vec<u32>,
    pub traffic: Traffic,
}

pub fn analyse_floor(i: FloorInputs) -> Step {
    let mut st = Step {
        target: "floor",
        traffic: i.traffic,
        call_s: i.calls as f64 * i.window.duration.as_secs_f64(),
        placement: i.placement,
        loadavg: loadavg(),
        calls: i.calls,
        pcm: i.pcm,
        failed: i.failed,
        errors: i.errors,
        caller_late: Dist::of(i.caller_lateness_us),
        monitor_late: Dist::of(i.monitor_lateness_us),
        ..Step::default()
    };
    st.frames_sent = st.traffic.tw_in_media.msgs;
    st.marks_echoed = st.traffic.tw_in_other.msgs;
    cost(&mut st, &i.window);
    st
}
