//! `loadtest`: N concurrent simulated Twilio calls against a real `callbridge serve` process
//! whose upstream is the in-repo Realtime simulator, with the bridge's added latency, barge-in
//! reaction, audio accounting and CPU/RSS measured from outside.
//!
//! ```text
//! cargo build --release --bins
//! target/release/loadtest --calls 1,100,250,500,1000 --mode pcmu --json load-pcmu.json
//! ```
//!
//! One process holds the simulator and the callers, so both ends of the bridge read the same
//! clock; the bridge runs as a child process so its CPU and RSS can be read from /proc. See
//! `measure.rs` for how events on the two sides are correlated.

mod caller;
mod floor;
mod floor_run;
mod measure;
mod pin;
mod probe;
mod relay;
mod report;
mod traffic;

// The allocator the bridge runs with, so that the floor relay (this binary) is measured on
// the same footing; the load tool itself uses it too.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use callbridge_harness::sim::{ProbeHandle, SimConfig, Simulator};

/// The load tool's sockets: tungstenite zero-fills its whole read buffer on every read, and
/// with the 128 KiB default that memset was 39% of the tool's CPU (perf, 200 calls).
pub fn small_reads() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadtest",
    about = "Load, latency and cost of a callbridge server"
)]
pub struct Args {
    /// Concurrent calls; a comma-separated list runs a sweep (a fresh bridge per step).
    #[arg(long, value_delimiter = ',', default_value = "1,100,250,500,1000")]
    calls: Vec<usize>,
    /// Bridge audio mode.
    #[arg(long, default_value = "pcmu", value_parser = ["pcmu", "pcm"])]
    mode: String,
    /// Length of each call, seconds (every call talks, listens and barges in, in a loop).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Calls started per second while ramping up.
    #[arg(long, default_value_t = 100.0)]
    ramp: f64,
    /// The `callbridge` binary to spawn (default: next to this one).
    #[arg(long)]
    bridge_bin: Option<PathBuf>,
    /// RUST_LOG for the bridge (its log goes to a file in the temp dir).
    #[arg(long, default_value = "info")]
    bridge_log: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads of this process (simulator + callers); default 2, or one per core of
    /// `--pin-tool`.
    #[arg(long)]
    threads: Option<usize>,
    /// Pin the bridge (every thread, from exec) to these CPUs, e.g. `0` or `0-1`.
    #[arg(long, value_name = "CPUS")]
    pin_bridge: Option<pin::Cpus>,
    /// Pin this process (simulator + callers, every thread) to these CPUs, e.g. `1`.
    #[arg(long, value_name = "CPUS")]
    pin_tool: Option<pin::Cpus>,
    /// What to measure: the bridge; the floor (a minimal relay with the bridge's socket
    /// traffic, see `relay.rs`); or both, each row the bridge and then the floor under the
    /// same load, with the bridge's CPU as a multiple of the floor's.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "floor", "both"])]
    target: String,
    /// Short for `--target floor`.
    #[arg(long)]
    floor: bool,
    /// Start every call's 20 ms frame clock as soon as it connects, as the tool did before:
    /// calls ramped 10 ms apart then tick on two phases only, and frames arrive in bursts.
    /// By default each call gets its own phase, spread over the 20 ms, as real calls have.
    #[arg(long)]
    same_phase: bool,
    /// Twilio's delay between the TwiML answer and opening the media socket, ms (real calls:
    /// ~600).
    #[arg(long, default_value_t = 0)]
    stream_delay_ms: u64,
    /// The simulated model's socket takes this long to open, ms (real API: ~250).
    #[arg(long, default_value_t = 0)]
    connect_delay_ms: u32,
    /// The simulated model's delay from `response.create` to its first audio, ms (real: ~300).
    #[arg(long, default_value_t = 0)]
    response_latency_ms: u32,
    /// The bridge's `prewarm` (calls warmed up at the webhook).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    prewarm: bool,
}

fn main() -> std::process::ExitCode {
    // `loadtest relay ...`: the floor relay, spawned by a floor run.
    if std::env::args().nth(1).as_deref() == Some("relay") {
        return relay::main(relay::RelayArgs::parse_from(std::env::args().skip(1)));
    }
    let args = Args::parse();
    if args.calls.iter().any(|&n| n == 0 || n > 5000) || args.duration < 5 || args.duration > 3600 {
        eprintln!("loadtest: calls must be 1..=5000 and duration 5..=3600 s");
        return std::process::ExitCode::FAILURE;
    }
    // The measured process gets `--pin-bridge`, or else every CPU this process had before it
    // pinned itself (a child would otherwise inherit the tool's pinning).
    let unpinned = pin::current();
    let bridge_cpus = args.pin_bridge.clone().unwrap_or(unpinned);
    if let Some(cpus) = &args.pin_tool {
        // Before the runtime exists, so that every worker and blocking thread inherits it.
        if let Err(e) = pin::pin_self(cpus) {
            eprintln!("loadtest: pinning to CPUs {cpus}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    // One worker per core the tool may use: more workers than cores on a pinned tool only add
    // context switches and work-stealing wake-ups.
    let threads = args
        .threads
        .unwrap_or(args.pin_tool.as_ref().map_or(2, |c| c.0.len()))
        .clamp(1, 16);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let target = if args.floor {
        "floor"
    } else {
        args.target.as_str()
    };
    let (run_bridge, run_floor) = (target != "floor", target != "bridge");
    let mut results = Vec::new();
    let mut floors = Vec::new();
    for &n in &args.calls {
        eprintln!(
            "== {n} calls, {} mode, {} s each, {target}",
            args.mode, args.duration
        );
        let mut pattern = traffic::Pattern::nominal(args.mode == "pcm");
        if run_bridge {
            match rt.block_on(run_step(&args, &bridge_cpus, threads, n)) {
                Ok(r) => {
                    eprintln!("{}", report::table(std::slice::from_ref(&r)));
                    // The floor replays what this bridge run did.
                    pattern = traffic::Pattern::from_traffic(&r.traffic, r.call_s);
                    results.push(r);
                }
                Err(e) => {
                    eprintln!("loadtest: {n} calls: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        if run_floor {
            match rt.block_on(floor_run::run_floor_step(
                &args,
                &bridge_cpus,
                threads,
                n,
                pattern,
            )) {
                Ok(r) => {
                    eprintln!("{}", report::table(std::slice::from_ref(&r)));
                    floors.push(r);
                }
                Err(e) => {
                    eprintln!("loadtest: floor, {n} calls: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    let pairs: Vec<(&measure::Step, &measure::Step)> = results.iter().zip(floors.iter()).collect();
    let versus = (!pairs.is_empty()).then(|| report::versus(&pairs));
    let growth = report::growth(if results.is_empty() {
        &floors
    } else {
        &results
    });
    results.append(&mut floors);
    println!("{}", machine_line());
    println!("{}", report::table(&results));
    println!("{growth}");
    if let Some(v) = versus {
        println!("{v}");
    }
    println!("{}", report::traffic(&results));
    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "machine": machine_line(),
            "mode": args.mode,
            "duration_s": args.duration,
            "ramp_per_s": args.ramp,
            "steps": results.iter().map(measure::Step::to_json).collect::<Vec<_>>(),
        });
        if let Err(e) = std::fs::write(path, format!("{v:#}\n")) {
            eprintln!("loadtest: writing {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn machine_line() -> String {
    let cpu = pin::proc_field("/proc/cpuinfo".as_ref(), "model name")
        .unwrap_or_else(|| "unknown CPU".into());
    // Online CPUs, not `available_parallelism` (which is this process's pinning).
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("machine: {cores} cores, {cpu}")
}

/// The bridge (or floor relay) child process; killed when dropped.
pub(crate) struct Bridge {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_bridge(
    args: &Args,
    cpus: &pin::Cpus,
    realtime_url: &str,
    n: usize,
) -> Result<Bridge, String> {
    let bin = match &args.bridge_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("callbridge"),
    };
    // A free loopback port: bind, read, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log_path = std::env::temp_dir().join(format!("loadtest-bridge-{n}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    pin::pin_child(&mut cmd, cpus);
    let child = cmd
        .arg("serve")
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("REALTIME_URL", realtime_url)
        .env("CALLBRIDGE_AUDIO_MODE", &args.mode)
        .env("CALLBRIDGE_MAX_CALLS", (n + 10).to_string())
        .env("CALLBRIDGE_PREWARM", args.prewarm.to_string())
        .env("RUST_LOG", &args.bridge_log)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(Bridge {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn wait_healthy(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if callbridge_harness::caller::post_form(url, "/twiml", &[("CallSid", "CAhealth")])
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("bridge at {url} not up after 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_step(
    args: &Args,
    bridge_cpus: &pin::Cpus,
    threads: usize,
    n: usize,
) -> Result<measure::Step, String> {
    let pcm = args.mode == "pcm";
    let t0 = Instant::now();
    let (probe, mut opened) = probe::LoadProbe::new(t0, pcm);
    let sim_cfg = SimConfig {
        // Lean: no event log, no transcripts nobody reads.
        record_events: false,
        always_transcribe: false,
        response_audio_ms: 3000,
        delta_ms: vec![100],
        pace: 4.0,
        connect_delay_ms: args.connect_delay_ms,
        response_latency_ms: args.response_latency_ms,
        probe: Some(ProbeHandle(probe.clone())),
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", sim_cfg)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    let bridge = spawn_bridge(args, bridge_cpus, &sim.url(), n)?;
    let pid = bridge.child.id();
    wait_healthy(&bridge.url).await?;
    let watch = measure::Watch::start(pid, threads, t0, "bridge").await?;

    let speech = Arc::new(callbridge_harness::caller::synthetic_speech(1200));
    let duration = Duration::from_secs(args.duration);
    let mut calls = tokio::task::JoinSet::new();
    let ramp_gap = Duration::from_secs_f64(1.0 / args.ramp.clamp(0.1, 10_000.0));
    let mut failed_setup = 0usize;
    let ramp_start = Instant::now();
    for i in 0..n {
        probe.expect_call(i);
        let opts = caller::Opts {
            id: i,
            bridge: bridge.url.clone(),
            t0,
            duration,
            speech: speech.clone(),
            spread_phases: !args.same_phase,
            stream_delay: Duration::from_millis(args.stream_delay_ms),
        };
        calls.spawn(caller::run(opts));
        // Calls are opened one at a time so that the simulator's next session is this call's
        // upstream (the bridge dials it when the media socket opens).
        match tokio::time::timeout(Duration::from_secs(10), opened.recv()).await {
            Ok(Some(_)) => {}
            _ => {
                failed_setup += 1;
                probe.forget_expected();
            }
        }
        let next = ramp_start + ramp_gap * (i as u32 + 1);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let all_started = Instant::now();
    let mut outcomes = Vec::with_capacity(n);
    while let Some(r) = calls.join_next().await {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => eprintln!("loadtest: call task: {e}"),
        }
    }
    let (placement, base, watched) = watch.stop().await;
    // Let every simulator session read what is left and see the close (a lagging load tool
    // may still hold unread appends).
    let opened_sessions = n - failed_setup;
    let wait_until = Instant::now() + Duration::from_secs(15);
    while probe.sessions_done() < opened_sessions && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
    let sims = probe.take_sessions();
    drop(bridge);
    Ok(measure::analyse(measure::Inputs {
        placement,
        calls: n,
        pcm,
        t0,
        ramp_start,
        all_started,
        duration,
        outcomes,
        sims,
        base,
        samples: watched.samples,
        tool_samples: watched.tool_samples,
        monitor_lateness_us: watched.monitor_lateness_us,
        failed_setup,
    }))
}
