//! The harness's subcommands (`sim`, `call`, `replay`, `demo`, `bargein-bench`,
//! `gen-fixtures`): in the binary with the default `harness` feature, absent from the production
//! build.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::{init_logging, runtime};
use callbridge::config::LogFormat;

#[derive(Args)]
pub struct ReplayArgs {
    /// Fixture files (JSON Lines).
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
    /// Send each recorded message as soon as the bridge has caught up instead of at its
    /// recorded time (skips the timing checks).
    #[arg(long)]
    fast: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write caller.wav, agent.wav and call.jsonl.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
}

#[derive(Args)]
pub struct GenArgs {
    #[arg(long, default_value = "fixtures")]
    out: PathBuf,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Args)]
pub struct SimArgs {
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
pub struct CallArgs {
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

pub fn sim(args: SimArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let cfg = callbridge::sim::SimConfig {
        response_audio_ms: args.response_ms,
        pace: args.pace,
        ..Default::default()
    };
    run_to_exit("sim", callbridge::sim::run_standalone(&args.listen, cfg))
}

/// Runs `work` to its end on a new runtime: success, or the error printed after
/// `callbridge <command>:` and a failure exit.
fn run_to_exit<E: std::fmt::Display>(
    command: &str,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn call(args: CallArgs) -> ExitCode {
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

pub fn replay(args: ReplayArgs) -> ExitCode {
    use callbridge::fixture::replay::{replay, ReplayOptions};
    use callbridge::recording::RecordedCall;
    // The bridge's own logs would drown the diff: warnings only unless RUST_LOG says otherwise.
    callbridge::logging::init_with_default(LogFormat::Text, "error");
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let opts = ReplayOptions {
        fast: args.fast,
        ..Default::default()
    };
    let mut failed = 0;
    for path in &args.fixtures {
        let fx = match RecordedCall::load(path) {
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

pub fn demo(args: DemoArgs) -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        init_logging(LogFormat::Text);
    }
    run_to_exit("demo", callbridge::demo::run(&args.out))
}

pub fn gen_fixtures(args: GenArgs) -> ExitCode {
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

#[derive(Args)]
pub struct BargeinBenchArgs {
    /// The bridge's `barge_in` setting for every call (e.g. `server`, `confirm`); without it,
    /// the bridge's default. Also names the rows of the table.
    #[arg(long)]
    barge_in: Option<String>,
    /// A bridge config file (callbridge.toml) for every call.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any other bridge setting, `key=value` (config-file keys; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The labelled corpus.
    #[arg(long, default_value = "fixtures/bargein")]
    corpus: PathBuf,
    /// Calls at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Only the clips whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Length of each speakerphone echo call, in seconds (0: no echo calls).
    #[arg(long, default_value_t = 30)]
    echo_secs: u64,
}

pub fn bargein_bench(args: BargeinBenchArgs) -> ExitCode {
    use callbridge::bargein_bench::{bench, render, BenchOptions};
    // The bridge's per-call logs would bury the table: errors only unless RUST_LOG says more.
    callbridge::logging::init_with_default(LogFormat::Text, "error");
    let mut opts = BenchOptions::full(args.corpus);
    opts.config_file = args.config;
    opts.concurrency = args.concurrency;
    opts.only = args.only;
    opts.echo_call = Duration::from_secs(args.echo_secs);
    if args.echo_secs == 0 {
        opts.echo_paths.clear();
    }
    for kv in &args.set {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("callbridge bargein-bench: --set {kv:?}: expected KEY=VALUE");
            return ExitCode::FAILURE;
        };
        opts.settings
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if let Some(mode) = &args.barge_in {
        opts.settings.push(("barge_in".into(), mode.clone()));
    }
    let mode = args.barge_in.unwrap_or_else(|| "(default)".into());
    let started = std::time::Instant::now();
    run_to_exit("bargein-bench", async {
        let summary = bench(&opts).await?;
        print!("{}", render(&mode, &summary));
        println!(
            "\n{} s, {} calls at once.",
            started.elapsed().as_secs(),
            opts.concurrency
        );
        Ok::<(), callbridge::bargein_bench::BenchError>(())
    })
}
