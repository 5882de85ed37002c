//! One floor step: the relay spawned and pinned in the bridge's place, the floor's peers
//! driving it, its cost sampled like the bridge's.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{caller, floor, measure, pin, traffic, Args};

/// A floor relay child process (this binary, `relay`): measured and killed like the bridge.
use crate::Bridge as Relay;

fn spawn_relay(
    cpus: &pin::Cpus,
    upstream: &str,
    pattern: &traffic::Pattern,
) -> Result<Relay, String> {
    let bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let pattern = serde_json::to_string(pattern).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    pin::pin_child(&mut cmd, cpus);
    let child = cmd
        .args(["relay", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", upstream, "--pattern", &pattern])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(Relay {
        child,
        url: format!("127.0.0.1:{port}"),
    })
}

pub async fn run_floor_step(
    args: &Args,
    cpus: &pin::Cpus,
    threads: usize,
    n: usize,
    pattern: traffic::Pattern,
) -> Result<measure::Step, String> {
    let t0 = Instant::now();
    let pattern = Arc::new(pattern);
    eprintln!(
        "floor pattern: {}",
        serde_json::to_string(&*pattern).unwrap_or_default()
    );
    let upstream = floor::Upstream::start(pattern.clone())
        .await
        .map_err(|e| format!("floor upstream: {e}"))?;
    let relay = spawn_relay(cpus, &upstream.url, &pattern)?;
    let pid = relay.child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&relay.url).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("relay at {} not up after 20 s", relay.url));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watch = measure::Watch::start(pid, threads, t0, "relay").await?;
    let duration = Duration::from_secs(args.duration);
    let ramp_gap = Duration::from_secs_f64(1.0 / args.ramp.clamp(0.1, 10_000.0));
    let url = format!("ws://{}/media", relay.url);
    let mut calls = tokio::task::JoinSet::new();
    let ramp_start = Instant::now();
    for i in 0..n {
        let phase = if args.same_phase {
            0
        } else {
            caller::phase_us(i)
        };
        calls.spawn(floor::caller(url.clone(), pattern.clone(), duration, phase));
        let next = ramp_start + ramp_gap * (i as u32 + 1);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let all_started = Instant::now();
    let (mut failed, mut errors, mut late) = (0, Vec::new(), Vec::new());
    let mut traffic = traffic::Traffic::default();
    while let Some(r) = calls.join_next().await {
        match r {
            Ok(o) => {
                if let Some(e) = o.error {
                    failed += 1;
                    if errors.len() < 5 {
                        errors.push(e);
                    }
                }
                late.extend_from_slice(&o.lateness_us);
                traffic.merge(&o.traffic);
            }
            Err(e) => {
                failed += 1;
                eprintln!("loadtest: floor call task: {e}");
            }
        }
    }
    let (placement, base, watched) = watch.stop().await;
    traffic.merge(&upstream.finish(Duration::from_secs(10)).await);
    drop(relay);
    Ok(measure::analyse_floor(measure::FloorInputs {
        placement,
        calls: n,
        pcm: args.mode == "pcm",
        window: measure::Window {
            t0,
            ramp_start,
            all_started,
            duration,
            base,
            samples: &watched.samples,
            tool_samples: &watched.tool_samples,
        },
        failed,
        errors,
        caller_lateness_us: late,
        monitor_lateness_us: watched.monitor_lateness_us,
        traffic,
    }))
}
