//! The `callbridge` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use callbridge::config::{Config, LogFormat, Overrides};
use callbridge::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "callbridge",
    version,
    about = "Puts the OpenAI Realtime API on the phone: Twilio Media Streams ⇄ Realtime bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take calls: answer Twilio's webhook with TwiML and bridge each media stream to the
    /// Realtime API. Every config-file key can also be set as CALLBRIDGE_<KEY> (e.g.
    /// CALLBRIDGE_VOICE=cedar); flags win over the environment, which wins over the file.
    Serve(ServeArgs),
    /// Run the in-repo Realtime API simulator (no key, no network): point `serve` at it with
    /// REALTIME_URL to take local calls.
    Sim(SimArgs),
    /// Place one simulated Twilio call against a running bridge: speaks, listens, barges in,
    /// and prints what the caller experienced.
    Call(CallArgs),
    /// Replay recorded calls (fixtures) against the bridge and compare what it sends with the
    /// recording. Exits non-zero on a mismatch.
    Replay(ReplayArgs),
    /// Offline demo: bridge + Realtime simulator + a simulated caller speaking recorded
    /// speech, with a live transcript, latencies and a barge-in. No key, no phone, no network.
    Demo(DemoArgs),
    /// Place an outbound call through a running bridge (POST /v1/calls): Twilio dials --to
    /// and connects the answered call to the agent. Prints the call SID.
    Dial(DialArgs),
    /// Regenerate fixtures/ (run by scripts/make-fixtures.sh).
    #[command(hide = true)]
    GenFixtures(GenArgs),
}

#[derive(Args)]
struct ReplayArgs {
    /// Fixture files (JSON Lines).
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
    /// Send each recorded message as soon as the bridge has caught up instead of at its
    /// recorded time (skips the timing checks).
    #[arg(long)]
    fast: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to write caller.wav, agent.wav and call.jsonl.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
}

#[derive(Args)]
struct GenArgs {
    #[arg(long, default_value = "fixtures")]
    out: PathBuf,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Args)]
struct SimArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Audio length of each response, in ms.
    #[arg(long, default_value_t = 3000)]
    response_ms: u32,
    /// Speed of audio deltas relative to real time (0 = as fast as possible).
    #[arg(long, default_value_t = 4.0)]
    pace: f32,
}

#[derive(Args)]
struct DialArgs {
    /// The bridge's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    bridge: String,
    /// The number to call (E.164, e.g. +15551230000).
    #[arg(long)]
    to: String,
    /// The caller ID: a Twilio number of the account (E.164).
    #[arg(long)]
    from: String,
    /// The agent profile for the call.
    #[arg(long)]
    profile: Option<String>,
    /// A variable for the agent's instructions, NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = callbridge::dial::parse_var)]
    vars: Vec<(String, String)>,
    /// Answering machine detection: Enable or DetectMessageEnd.
    #[arg(long)]
    machine_detection: Option<String>,
    /// The bridge's api_token.
    #[arg(long, env = "CALLBRIDGE_API_TOKEN", hide_env_values = true)]
    api_token: String,
}

#[derive(Args)]
struct CallArgs {
    /// The bridge's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    bridge: String,
    /// How long the caller speaks in each turn, in ms.
    #[arg(long, default_value_t = 1500)]
    say_ms: u32,
    /// Talk over the agent after hearing this much of its answer (ms); 0 = never barge in.
    #[arg(long, default_value_t = 1000)]
    barge_in_after_ms: u64,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys: see docs/configuration.md).
    #[arg(long, env = "CALLBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address [env: CALLBRIDGE_LISTEN] [default: 0.0.0.0:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Public base URL put in TwiML, e.g. https://bridge.example.com [env: PUBLIC_URL]
    #[arg(long)]
    public_url: Option<String>,
    /// Realtime WebSocket URL (OpenAI, Azure OpenAI or a compatible server) [env: REALTIME_URL]
    /// [default: wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1]
    #[arg(long)]
    realtime_url: Option<String>,
    /// pcmu (μ-law passthrough, default) or pcm (PCM16 24 kHz, resampled) [env: CALLBRIDGE_AUDIO_MODE]
    #[arg(long)]
    audio_mode: Option<String>,
    /// ga (default) or beta (self-hosted compatible servers only) [env: CALLBRIDGE_DIALECT]
    #[arg(long)]
    dialect: Option<String>,
    /// Record every call as a fixture (JSON Lines) in this directory [env: CALLBRIDGE_RECORD_DIR]
    #[arg(long)]
    record_dir: Option<String>,
    /// Seconds running calls get to finish after SIGTERM/Ctrl-C before they are ended.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
}

fn main() -> ExitCode {
    // `serve --help` lists every configuration key with its environment variable.
    let matches = Cli::command()
        .mut_subcommand("serve", |c| {
            c.after_long_help(callbridge::config::keys_help())
        })
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sim(args) => sim(args),
        Command::Call(args) => call(args),
        Command::Replay(args) => replay(args),
        Command::Demo(args) => demo(args),
        Command::GenFixtures(args) => gen_fixtures(args),
        Command::Dial(args) => dial(args),
    }
}

fn dial(args: DialArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    callbridge::server::init_tls();
    let d = callbridge::dial::Dial {
        to: args.to,
        from: args.from,
        profile: args.profile,
        variables: args.vars.into_iter().collect(),
        machine_detection: args.machine_detection,
    };
    match rt.block_on(callbridge::dial::dial(&args.bridge, &args.api_token, &d)) {
        Ok(sid) => {
            println!("{sid}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callbridge dial: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("callbridge: cannot start the runtime: {e}");
            None
        }
    }
}

fn sim(args: SimArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let cfg = callbridge::sim::SimConfig {
        response_audio_ms: args.response_ms,
        pace: args.pace,
        ..Default::default()
    };
    match rt.block_on(callbridge::sim::run_standalone(&args.listen, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn call(args: CallArgs) -> ExitCode {
    use callbridge::caller::{self, CallerOptions, Step};
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let mut script = vec![
        Step::Silence(Duration::from_millis(300)),
        Step::Say(caller::synthetic_speech(args.say_ms)),
    ];
    if args.barge_in_after_ms > 0 {
        script.push(Step::WaitAgentAudio {
            heard: Duration::from_millis(args.barge_in_after_ms),
            timeout: Duration::from_secs(15),
        });
        script.push(Step::Say(caller::synthetic_speech(args.say_ms)));
    }
    script.push(Step::WaitAgentDone {
        quiet: Duration::from_millis(800),
        timeout: Duration::from_secs(20),
    });
    let report = rt.block_on(caller::run(CallerOptions {
        bridge: args.bridge,
        script,
        ..Default::default()
    }));
    match report {
        Ok(r) => {
            println!("stream url        {}", r.stream_url);
            println!("call duration     {:.1} s", r.duration.as_secs_f64());
            println!("frames sent       {} (20 ms μ-law)", r.frames_sent);
            println!(
                "agent audio heard {:.1} s in {} frames ({} not 160 bytes)",
                r.bytes_played as f64 / 8000.0,
                r.media_received,
                r.odd_frames
            );
            println!(
                "marks             {} received, {} echoed",
                r.marks_received, r.marks_echoed
            );
            for (i, l) in r.response_latencies.iter().enumerate() {
                println!(
                    "turn {}            caller stopped → agent audio: {} ms",
                    i + 1,
                    l.as_millis()
                );
            }
            for c in &r.clears {
                println!("barge-in          clear at {:.2} s after {:.0} ms of the answer; {} bytes dropped", c.at.as_secs_f64(), c.heard_in_stretch_ms, c.discarded_bytes);
            }
            for v in &r.protocol_violations {
                println!("PROTOCOL VIOLATION {v}");
            }
            if r.closed_by_bridge {
                println!("the bridge ended the call");
            }
            if r.protocol_violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("callbridge call: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay(args: ReplayArgs) -> ExitCode {
    use callbridge::fixture::replay::{replay, ReplayOptions};
    use callbridge::recording::Fixture;
    // The bridge's own logs would drown the diff: warnings only unless RUST_LOG says otherwise.
    if std::env::var_os("RUST_LOG").is_none() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
            .try_init();
    } else {
        init_logging(LogFormat::Text);
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let opts = ReplayOptions {
        fast: args.fast,
        ..Default::default()
    };
    let mut failed = 0;
    for path in &args.fixtures {
        let fx = match Fixture::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("callbridge replay: {e}");
                failed += 1;
                continue;
            }
        };
        match rt.block_on(replay(&fx, &opts)) {
            Ok(r) => {
                print!("{}", r.render());
                if !r.ok() {
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("callbridge replay: {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    println!(
        "{} of {} replays matched",
        args.fixtures.len() - failed,
        args.fixtures.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(args: DemoArgs) -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        init_logging(LogFormat::Text);
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(callbridge::demo::run(&args.out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen_fixtures(args: GenArgs) -> ExitCode {
    use callbridge::fixture::generate::{generate, scenarios};
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("callbridge gen-fixtures: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let list: Vec<_> = scenarios()
        .into_iter()
        .filter(|s| args.only.as_deref().is_none_or(|o| s.name.contains(o)))
        .collect();
    // In parallel: each call is real time, and independent of the others.
    let results = rt.block_on(async {
        let tasks: Vec<_> = list
            .iter()
            .cloned()
            .map(|sc| {
                let out = args.out.clone();
                tokio::spawn(async move { generate(&sc, &out).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await);
        }
        results
    });
    let mut ok = true;
    for (sc, r) in list.iter().zip(results) {
        match r {
            Ok(Ok(path)) => {
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                println!("{:<40} {:>7} KB", path.display(), size / 1024);
            }
            Ok(Err(e)) => {
                eprintln!("{}: {e}", sc.name);
                ok = false;
            }
            Err(e) => {
                eprintln!("{}: {e}", sc.name);
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_logging(format: LogFormat) {
    callbridge::logging::init(format);
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut ov = Overrides::default();
    for (key, v) in [
        ("listen", args.listen),
        ("public_url", args.public_url),
        ("realtime_url", args.realtime_url),
        ("audio_mode", args.audio_mode),
        ("dialect", args.dialect),
        ("record_dir", args.record_dir),
    ] {
        if let Some(v) = v {
            ov.pairs.push((key, v));
        }
    }
    let cfg = match Config::from_env(args.config.as_deref(), &ov) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("callbridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_format);
    // Checked again (and logged) when serving starts; refused here first so that the exit
    // status and message are those of any other configuration error.
    if let Err(e) = callbridge::server::unsigned::check(&cfg) {
        eprintln!("callbridge: configuration error: {e}");
        return ExitCode::from(2);
    }
    if cfg.api_key.is_none() {
        tracing::warn!(
            "OPENAI_API_KEY is not set: the upstream will be called without credentials"
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let drain = Duration::from_secs(args.drain_seconds);
    let result = rt.block_on(async move {
        let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        // Installed before "serving" is logged: a SIGTERM right after it must drain, not kill.
        let stop = shutdown_signal();
        tracing::info!(
            listen = %listener.local_addr()?,
            realtime_url = %cfg.realtime_url,
            audio_mode = ?cfg.call.session.audio_format,
            dialect = ?cfg.call.dialect,
            "callbridge serving: POST /twiml (or /incoming-call), WS /media"
        );
        let signal = async move {
            stop.await;
            drain
        };
        callbridge::server::serve_on(listener, cfg, metrics, signal).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            eprintln!("callbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Registers the SIGTERM handler at once (inside the runtime); the future resolves on
/// SIGTERM or Ctrl-C.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown signal: draining calls");
    }
}
