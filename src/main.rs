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

#[cfg(feature = "harness")]
mod harness_commands;

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
    #[cfg(feature = "harness")]
    /// Run the in-repo Realtime API simulator (no key, no network): point `serve` at it with
    /// REALTIME_URL to take local calls.
    Sim(harness_commands::SimArgs),
    #[cfg(feature = "harness")]
    /// Place one simulated Twilio call against a running bridge: speaks, listens, barges in,
    /// and prints what the caller experienced.
    Call(harness_commands::CallArgs),
    #[cfg(feature = "harness")]
    /// Replay recorded calls (fixtures) against the bridge and compare what it sends with the
    /// recording. Exits non-zero on a mismatch.
    Replay(harness_commands::ReplayArgs),
    #[cfg(feature = "harness")]
    /// Offline demo: bridge + Realtime simulator + a simulated caller speaking recorded
    /// speech, with a live transcript, latencies and a barge-in. No key, no phone, no network.
    Demo(harness_commands::DemoArgs),
    /// Place an outbound call through a running bridge (POST /v1/calls): Twilio dials --to
    /// and connects the answered call to the agent. Prints the call SID.
    Dial(DialArgs),
    #[cfg(feature = "harness")]
    /// Measure barge-in: corpus clips over agent answers and speakerphone echo calls through
    /// the real bridge (docs/interruptions.md); prints markdown tables.
    BargeinBench(harness_commands::BargeinBenchArgs),
    #[cfg(feature = "harness")]
    /// Regenerate fixtures/ (run by scripts/make-fixtures.sh).
    #[command(hide = true)]
    GenFixtures(harness_commands::GenArgs),
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
    #[arg(long = "var", value_parser = callbridge::place_call::parse_var)]
    vars: Vec<(String, String)>,
    /// Answering machine detection: Enable or DetectMessageEnd.
    #[arg(long)]
    machine_detection: Option<String>,
    /// The bridge's api_token.
    #[arg(long, env = "CALLBRIDGE_API_TOKEN", hide_env_values = true)]
    api_token: String,
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
        #[cfg(feature = "harness")]
        Command::Sim(args) => harness_commands::sim(args),
        #[cfg(feature = "harness")]
        Command::Call(args) => harness_commands::call(args),
        #[cfg(feature = "harness")]
        Command::Replay(args) => harness_commands::replay(args),
        #[cfg(feature = "harness")]
        Command::Demo(args) => harness_commands::demo(args),
        #[cfg(feature = "harness")]
        Command::BargeinBench(args) => harness_commands::bargein_bench(args),
        #[cfg(feature = "harness")]
        Command::GenFixtures(args) => harness_commands::gen_fixtures(args),
        Command::Dial(args) => dial(args),
    }
}

fn dial(args: DialArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    callbridge::server::init_tls();
    let d = callbridge::place_call::Dial {
        to: args.to,
        from: args.from,
        profile: args.profile,
        variables: args.vars.into_iter().collect(),
        machine_detection: args.machine_detection,
    };
    match rt.block_on(callbridge::place_call::dial(
        &args.bridge,
        &args.api_token,
        &d,
    )) {
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
    if let Err(e) = callbridge::server::http::unsigned::check(&cfg) {
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
