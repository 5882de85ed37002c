//! The real `callbridge` binary as a child process: given only the environment a test sets,
//! its output read as it runs (a full pipe would block it), killed when the test is done.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::WAIT;

pub const BIN: &str = env!("CARGO_BIN_EXE_callbridge");

/// A loopback port nothing listens on (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `cmd` (the binary, or a shell that execs it) with only these variables in its environment,
/// `RUST_LOG` set to `log` and listening on 127.0.0.1:`port`.
pub fn with_env(mut cmd: Command, port: u16, log: &str, env: &[(&str, &str)]) -> Command {
    cmd.env_clear()
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", log)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// `callbridge serve` (see [`with_env`]).
pub fn serve(port: u16, log: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve");
    with_env(cmd, port, log, env)
}

/// Polls `/healthz` on 127.0.0.1:`port` until it answers 2xx; fails after [`WAIT`].
pub async fn wait_healthy(port: u16) {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "bridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running child, killed when dropped.
pub struct Process {
    child: std::process::Child,
    /// Its stdout, line by line, as it prints.
    lines: mpsc::Receiver<String>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Process {
    /// Starts `cmd` with stdout and stderr piped and read as it runs.
    pub fn spawn(cmd: &mut Command) -> Process {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let (tx, lines) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            let mut line = Vec::new();
            while out.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).into_owned();
                all.push_str(&text);
                let _ = tx.send(text.trim_end().to_owned());
                line.clear();
            }
            all
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = err.read_to_end(&mut all);
            String::from_utf8_lossy(&all).into_owned()
        });
        Process {
            child,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout until a line satisfies `wanted` (true) or `within` has passed or stdout
    /// closed (false); the lines read before it go to `seen`.
    pub fn wait_for_line(
        &mut self,
        within: Duration,
        seen: &mut Vec<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> bool {
        let end = Instant::now() + within;
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            if wanted(&line) {
                return true;
            }
            seen.push(line);
        }
        false
    }

    /// Its exit status once it exits within `within`; `None` (and killed) if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Kills it (if it still runs) and returns all it printed: stdout, then stderr.
    pub fn output(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = self.stdout.take().map(|t| t.join().unwrap_or_default());
        let err = self.stderr.take().map(|t| t.join().unwrap_or_default());
        out.unwrap_or_default() + &err.unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `callbridge serve` on `port` with `env` (logging at `warn`), once `/healthz` answers.
pub async fn serve_healthy(port: u16, env: &[(&str, &str)]) -> Process {
    let process = Process::spawn(&mut serve(port, "warn", env));
    wait_healthy(port).await;
    process
}
