//! The `callbridge` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    /// TOML config file (keys: see README "Configuration").
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
    /// Seconds running calls get to finish after SIGTERM/Ctrl-C before they are ended.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sim(args) => sim(args),
        Command::Call(args) => call(args),
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut ov = Overrides::default();
    for (key, v) in [
        ("listen", args.listen),
        ("public_url", args.public_url),
        ("realtime_url", args.realtime_url),
        ("audio_mode", args.audio_mode),
        ("dialect", args.dialect),
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
        tracing::info!(
            listen = %listener.local_addr()?,
            realtime_url = %cfg.realtime_url,
            audio_mode = ?cfg.call.session.audio_format,
            dialect = ?cfg.call.dialect,
            "callbridge serving: POST /twiml (or /incoming-call), WS /media"
        );
        let signal = async move {
            shutdown_signal().await;
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
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
