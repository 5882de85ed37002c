//! The step results as the tables, lines and JSON the load tool prints and writes.

use serde_json::json;

use crate::measure::Step;

impl Step {
    /// Total (user / system), or why there is none: the ramp did not finish 3 s before the
    /// calls began to end (a saturated load tool opens calls slowly).
    fn cpu_cell(&self) -> String {
        if self.window_s > 0.0 {
            format!(
                "{:.3} ({:.2} / {:.2})",
                self.cpu_ms_per_call_s, self.cpu_user_ms_per_call_s, self.cpu_sys_ms_per_call_s
            )
        } else {
            "– (no steady window)".into()
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "traffic_per_call_second": self.traffic.to_json(self.call_s),
            "calls": self.calls,
            "mode": if self.pcm { "pcm" } else { "pcmu" },
            "failed_calls": self.failed,
            "errors": self.errors,
            "uplink_ms": self.uplink.json(),
            "downlink_ms": self.downlink.json(),
            "speech_started_to_clear_ms": self.clear.json(),
            "uplink_bytes_lost": self.up_lost,
            "uplink_bytes_duplicated": self.up_dup,
            "uplink_seq_mismatches": self.up_seq_mismatch,
            "uplink_appends_misaligned": self.up_misaligned,
            "uplink_prebuffer_flushes": self.up_prebuffer_flushes,
            "uplink_frames_prebuffered": self.up_prebuffered,
            "downlink_bytes_lost": self.down_lost,
            "downlink_bytes_duplicated": self.down_dup,
            "downlink_deltas_unmatched": self.down_unmatched,
            "odd_frames": self.odd_frames,
            "bad_messages": self.bad_messages,
            "clears_unmatched": self.clears_unmatched,
            "frames_sent": self.frames_sent,
            "marks_echoed": self.marks_echoed,
            "steady_window_s": self.window_s,
            "bridge_cpus": self.placement.measured_cpus,
            "loadtool_cpus": self.placement.tool_cpus,
            "loadtool_worker_threads": self.placement.tool_threads,
            "loadavg_1min_at_end": self.loadavg,
            "loadtool_cpu_ms_per_call_second": self.tool_cpu_ms_per_call_s,
            "bridge_cpu_ms_per_call_second": self.cpu_ms_per_call_s,
            "bridge_cpu_user_ms_per_call_second": self.cpu_user_ms_per_call_s,
            "bridge_cpu_system_ms_per_call_second": self.cpu_sys_ms_per_call_s,
            "bridge_rss_base_kib": self.rss_base_kib,
            "bridge_rss_kib": self.rss_kib,
            "bridge_rss_kib_per_call": self.rss_kib_per_call,
            "bridge_rss_anon_kib_per_call": self.anon_kib_per_call,
            "loadtool_frame_timer_lateness_ms": self.caller_late.json(),
            "loadtool_monitor_lateness_ms": self.monitor_late.json(),
        })
    }
}

pub fn table(steps: &[Step]) -> String {
    let mut s = String::from(
        "| target | calls | mode | failed | uplink ms p50/p99/max | downlink ms p50/p99/max | speech_started→clear ms p50/p99/max | lost/dup bytes up, down | bridge CPU ms per call-s (user / sys) | bridge RSS KiB per call (all / anon) | load-tool lateness ms p99/max |\n\
         |---|---:|---|---:|---|---|---|---|---:|---:|---|\n",
    );
    for st in steps {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{}, {}/{} | {} | {} | {:.2} / {:.1} |\n",
            st.target,
            st.calls,
            if st.pcm { "pcm" } else { "pcmu" },
            st.failed,
            st.uplink.cell(),
            st.downlink.cell(),
            st.clear.cell(),
            st.up_lost,
            st.up_dup,
            st.down_lost,
            st.down_dup,
            st.cpu_cell(),
            if st.window_s > 0.0 {
                format!("{:.1} / {:.1}", st.rss_kib_per_call, st.anon_kib_per_call)
            } else {
                "–".into()
            },
            st.caller_late.p99.max(st.monitor_late.p99),
            st.caller_late.max.max(st.monitor_late.max),
        ));
    }
    for st in steps {
        s.push_str(&format!(
            "{} {} calls: measured process on CPUs {}, load tool on CPUs {} ({} worker threads, {:.3} ms CPU per call-s), load average {:.2}\n",
            st.target,
            st.calls,
            st.placement.measured_cpus,
            st.placement.tool_cpus,
            st.placement.tool_threads,
            st.tool_cpu_ms_per_call_s,
            st.loadavg
        ));
    }
    for st in steps {
        let checks = [
            ("seq mismatches", st.up_seq_mismatch),
            ("misaligned appends", st.up_misaligned),
            ("unmatched deltas", st.down_unmatched),
            ("unmatched clears", st.clears_unmatched),
            ("odd frames", st.odd_frames),
            ("bad messages", st.bad_messages),
        ];
        let bad: Vec<String> = checks
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !bad.is_empty() || !st.errors.is_empty() {
            s.push_str(&format!(
                "{} calls: {} {}\n",
                st.calls,
                bad.join(", "),
                st.errors.join("; ")
            ));
        }
    }
    s
}

/// How CPU per call and p99 grow with the number of calls, relative to the 100-call step.
pub fn growth(steps: &[Step]) -> String {
    let Some(base) = steps
        .iter()
        .find(|s| s.calls >= 100)
        .filter(|s| s.cpu_ms_per_call_s > 0.0)
    else {
        return String::new();
    };
    let mut s = format!("growth vs {} calls:", base.calls);
    for st in steps.iter().filter(|s| s.calls > base.calls) {
        s.push_str(&format!(
            " {} calls: CPU/call ×{:.2}, uplink p99 {:.2}→{:.2} ms, downlink p99 {:.2}→{:.2} ms;",
            st.calls,
            st.cpu_ms_per_call_s / base.cpu_ms_per_call_s,
            base.uplink.p99,
            st.uplink.p99,
            base.downlink.p99,
            st.downlink.p99
        ));
    }
    s
}

/// The bridge against the floor, row by row (runs of the same size under the same load).
pub fn versus(pairs: &[(&Step, &Step)]) -> String {
    let mut s = String::from(
        "| calls | mode | bridge CPU ms per call-s (user / sys) | floor CPU ms per call-s (user / sys) | bridge ÷ floor (user / sys) | RSS KiB per call bridge / floor | load-tool lateness p99 ms bridge / floor |\n\
         |---:|---|---|---|---|---|---|\n",
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    for (b, f) in pairs {
        s.push_str(&format!(
            "| {} | {} | {:.3} ({:.2} / {:.2}) | {:.3} ({:.2} / {:.2}) | **{:.2}×** ({:.2}× / {:.2}×) | {:.1} / {:.1} | {:.2} / {:.2} |\n",
            b.calls,
            if b.pcm { "pcm" } else { "pcmu" },
            b.cpu_ms_per_call_s,
            b.cpu_user_ms_per_call_s,
            b.cpu_sys_ms_per_call_s,
            f.cpu_ms_per_call_s,
            f.cpu_user_ms_per_call_s,
            f.cpu_sys_ms_per_call_s,
            ratio(b.cpu_ms_per_call_s, f.cpu_ms_per_call_s),
            ratio(b.cpu_user_ms_per_call_s, f.cpu_user_ms_per_call_s),
            ratio(b.cpu_sys_ms_per_call_s, f.cpu_sys_ms_per_call_s),
            b.rss_kib_per_call,
            f.rss_kib_per_call,
            b.caller_late.p99.max(b.monitor_late.p99),
            f.caller_late.p99.max(f.monitor_late.p99),
        ));
    }
    s
}

/// Per call-second traffic of each step (the floor's should match the bridge's).
pub fn traffic(steps: &[Step]) -> String {
    let mut s = String::from("traffic per call-second (messages × average payload):\n");
    for st in steps {
        s.push_str(&format!(
            "{} {} calls:\n{}\n",
            st.target,
            st.calls,
            st.traffic.describe(st.call_s)
        ));
    }
    s
}
