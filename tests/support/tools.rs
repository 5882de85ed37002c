//! External tools some tests drive (Prometheus, promtool, kubernetes-validate, hadolint).
//! `.ci/run` installs them. On a developer machine without one, the test says so plainly and
//! passes without checking; under CI (`CI=true`) a missing tool fails the test.

use std::path::PathBuf;

/// The tool's path on `PATH`, or `None` (after saying so) when it is missing outside CI.
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "`{name}` is not installed, and under CI a missing tool is a failure: {install}"
        );
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (NOT CHECKED): `{name}` is not installed on this machine; install it to run this test: {install}"
        );
    }
    found
}

/// The repository root (tests run with the package root as working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
