//! The bridge under test as a real server in this process, on 127.0.0.1:0, configured the way
//! operators do it (environment variables, optionally a config file), with the in-repo
//! Realtime simulator as its model when it needs one; and its metrics page.

use std::path::Path;
use std::sync::Arc;

use callbridge::config::{Config, Overrides};
use callbridge::metrics::Metrics;
use callbridge::server::Running;
use callbridge::sim::{SimConfig, Simulator};

/// An upstream on loopback where nothing listens. A bridge that needs no model gets this one:
/// a loopback upstream keeps `serve` from refusing to start without a Twilio token (secure by
/// default).
pub const NO_UPSTREAM: &str = "ws://127.0.0.1:9/v1/realtime";

/// `Config::load` with these variables as the environment (a later pair overrides an earlier
/// one) and the config file, if any; the error as text.
pub fn load(env: &[(&str, &str)], file: Option<&Path>) -> Result<Config, String> {
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    Config::load(file, &lookup, &Overrides::default()).map_err(|e| e.to_string())
}

/// The config a test's bridge runs with: `env` over two defaults, listening on 127.0.0.1:0
/// and, when `REALTIME_URL` is not given, [`NO_UPSTREAM`].
pub fn config(env: &[(&str, &str)], file: Option<&Path>) -> Config {
    let defaults = [
        ("CALLBRIDGE_LISTEN", "127.0.0.1:0"),
        ("REALTIME_URL", NO_UPSTREAM),
    ];
    let env: Vec<(&str, &str)> = defaults.iter().chain(env).copied().collect();
    load(&env, file).expect("config")
}

/// The real server started in this process with [`config`], and its metrics.
pub async fn start(env: &[(&str, &str)], file: Option<&Path>) -> (Running, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let server = callbridge::server::spawn(config(env, file), metrics.clone())
        .await
        .expect("bridge starts");
    (server, metrics)
}

/// A Realtime simulator (`sim`) on 127.0.0.1:0, and a bridge dialling it (`env` over that,
/// see [`start`]).
pub async fn with_simulator(
    sim: SimConfig,
    env: &[(&str, &str)],
) -> (Simulator, Running, Arc<Metrics>) {
    let sim = super::simulator(sim).await;
    let url = sim.url();
    let env: Vec<(&str, &str)> = [("REALTIME_URL", url.as_str())]
        .iter()
        .chain(env)
        .copied()
        .collect();
    let (server, metrics) = start(&env, None).await;
    (sim, server, metrics)
}

/// The real server dialling the simulator `sim`, configured by the file `file`.
pub async fn on_simulator(sim: &Simulator, file: &Path) -> Running {
    let url = sim.url();
    start(
        &[("REALTIME_URL", &url), ("OPENAI_API_KEY", "sk-test")],
        Some(file),
    )
    .await
    .0
}

/// Writes `request` (an HTTP/1.1 request spelled out by the test) to `addr` as it is, and
/// reads the answer until the server closes the connection.
pub async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The server's `/metrics` answer, as a scraper sees it (status line and headers included).
pub async fn scrape(server: &Running) -> String {
    raw(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// Waits (up to 5 s) until the server's metrics page holds one of `needles`; fails showing
/// the page if it does not.
pub async fn assert_metric(server: &Running, needles: &[&str]) {
    let held = super::eventually(std::time::Duration::from_secs(5), async || {
        let page = scrape(server).await;
        needles.iter().any(|n| page.contains(n))
    })
    .await;
    assert!(held, "none of {needles:?} in:\n{}", scrape(server).await);
}

/// The value on the first line of a metrics page that starts with `series` (a name, with its
/// labels or the start of them), or 0 when there is none.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// [`with_simulator`] with a simulator whose answers are `response_audio_ms` of audio.
pub async fn with_answers_of(
    response_audio_ms: u32,
    env: &[(&str, &str)],
) -> (Simulator, Running, Arc<Metrics>) {
    let sim = SimConfig {
        response_audio_ms,
        ..SimConfig::default()
    };
    with_simulator(sim, env).await
}

/// Whether the metrics page of `m` has the line `line`, exactly.
pub fn has_line(m: &Metrics, line: &str) -> bool {
    m.render().lines().any(|l| l == line)
}

/// Whether the metrics page of `m` shows the line `line` within [`super::WAIT`].
pub async fn eventually_has_line(m: &Metrics, line: &str) -> bool {
    super::eventually(super::WAIT, async || has_line(m, line)).await
}

/// Stops the bridge (a one-second drain), then the simulator behind it.
pub async fn stop_both(server: Running, sim: Simulator) {
    server.stop(std::time::Duration::from_secs(1)).await;
    sim.shutdown().await;
}
