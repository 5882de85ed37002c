//! The cluster's settings (`cluster_*`): where NATS is, how the bridge authenticates to it, and
//! the knobs of what the replicas share. Read from the file or `CALLBRIDGE_CLUSTER_*` like every
//! key, but kept apart from [`super::keys::Raw`]: without `cluster_url` none of it exists.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::keys::{typed, Kind};
use super::{invalid, ms, ConfigError, Secret};

/// Every cluster key; each also reads `CALLBRIDGE_<KEY>` from the environment.
pub(super) const KEYS: &[(&str, Kind)] = &[
    ("cluster_url", Kind::Str),
    ("cluster_creds", Kind::Str),
    ("cluster_token_file", Kind::Str),
    ("cluster_tls_ca", Kind::Str),
    ("cluster_pod", Kind::Str),
    ("cluster_max_calls", Kind::Int),
    ("cluster_replicas", Kind::Int),
    ("cluster_inflight_ttl_s", Kind::Int),
    ("cluster_report_ack_wait_ms", Kind::Int),
    ("cluster_heartbeat_ms", Kind::Int),
];

/// Validated cluster settings; present only when `cluster_url` is set.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS servers (`nats://` or `tls://`), tried in order.
    pub urls: Vec<String>,
    /// A NATS credentials file (JWT + nkey seed), read at connect time.
    pub creds: Option<PathBuf>,
    /// A token read from this file at start-up (never logged).
    pub token: Option<Secret>,
    /// A root certificate for `tls://` servers signed by a private CA.
    pub tls_ca: Option<PathBuf>,
    /// This replica's name in the console and the call-count heartbeats (the pod's name).
    pub pod: String,
    /// Calls running across every replica at most; over it the webhook answers `<Reject>`.
    pub max_calls: Option<usize>,
    /// JetStream replicas of the report stream and the key-value buckets (1, 3 or 5).
    pub replicas: usize,
    /// How long an outbound call placed by `POST /v1/calls` is remembered for its status.
    pub inflight_ttl: Duration,
    /// A report taken by a replica that stops answering is offered to another after this.
    pub report_ack_wait: Duration,
    /// Each replica publishes its call count this often; a count not renewed for five
    /// periods is gone (its replica died).
    pub heartbeat: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    cluster_url: Option<String>,
    cluster_creds: Option<String>,
    cluster_token_file: Option<String>,
    cluster_tls_ca: Option<String>,
    cluster_pod: Option<String>,
    cluster_max_calls: Option<i64>,
    cluster_replicas: Option<i64>,
    cluster_inflight_ttl_s: Option<i64>,
    cluster_report_ack_wait_ms: Option<i64>,
    cluster_heartbeat_ms: Option<i64>,
}

/// `url` as logs may show it: a `user:password@` or `token@` in it is replaced by `***@`.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

/// Moves the `cluster_*` keys of the environment into `table` (typed like the others).
pub(super) fn read_env(
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, kind) in KEYS {
        let var = format!("CALLBRIDGE_{}", key.to_ascii_uppercase());
        if let Some(v) = env(&var) {
            table.insert((*key).into(), typed(&var, &v, *kind)?);
        }
    }
    Ok(())
}

/// Takes the `cluster_*` keys out of `table` and validates them; `None` without `cluster_url`.
/// `hostname` names the replica when `cluster_pod` is not set (Kubernetes sets it to the
/// pod's name).
pub(super) fn take(
    table: &mut toml::Table,
    hostname: Option<String>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let mut mine = toml::Table::new();
    for (key, _) in KEYS {
        if let Some(v) = table.remove(*key) {
            mine.insert((*key).into(), v);
        }
    }
    let r: Raw = toml::Value::Table(mine)
        .try_into()
        .map_err(|e: toml::de::Error| invalid("cluster", e.to_string()))?;
    let Some(url) = r.cluster_url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let urls: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
    for u in &urls {
        let scheme_ok = ["nats://", "tls://"].iter().any(|s| u.starts_with(s));
        if !scheme_ok || u.parse::<async_nats::ServerAddr>().is_err() {
            return Err(invalid(
                "cluster_url",
                format!(
                    "{:?} is not a NATS URL like nats://nats:4222 or tls://nats:4222",
                    redacted(u)
                ),
            ));
        }
    }
    let path = |p: Option<String>| p.filter(|s| !s.is_empty()).map(PathBuf::from);
    let token = match path(r.cluster_token_file) {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(&p)
                .map_err(|e| invalid("cluster_token_file", format!("{}: {e}", p.display())))?;
            Some(Secret(t.trim().to_owned())).filter(|s| !s.0.is_empty())
        }
    };
    let replicas = ms("cluster_replicas", r.cluster_replicas, 1, 1, 5)? as usize;
    let pod = r
        .cluster_pod
        .or(hostname)
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| format!("pod-{}", std::process::id()));
    if !pod
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "cluster_pod",
            format!("{pod:?}: letters, digits, - and _ only (it is a NATS key)"),
        ));
    }
    Ok(Some(ClusterConfig {
        urls,
        creds: path(r.cluster_creds),
        token,
        tls_ca: path(r.cluster_tls_ca),
        pod,
        max_calls: match r.cluster_max_calls {
            None => None,
            Some(_) => {
                Some(ms("cluster_max_calls", r.cluster_max_calls, 0, 1, 10_000_000)? as usize)
            }
        },
        replicas,
        inflight_ttl: Duration::from_secs(ms(
            "cluster_inflight_ttl_s",
            r.cluster_inflight_ttl_s,
            4 * 3600,
            10,
            7 * 24 * 3600,
        )?),
        report_ack_wait: Duration::from_millis(ms(
            "cluster_report_ack_wait_ms",
            r.cluster_report_ack_wait_ms,
            30_000,
            200,
            600_000,
        )?),
        heartbeat: Duration::from_millis(ms(
            "cluster_heartbeat_ms",
            r.cluster_heartbeat_ms,
            2000,
            100,
            60_000,
        )?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, toml::Value)]) -> toml::Table {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            redacted("nats://alice:s3cret@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(redacted("tls://tok@nats:4222"), "tls://***@nats:4222");
        assert_eq!(redacted("nats://nats:4222"), "nats://nats:4222");
        let mut t = table(&[(
            "cluster_url",
            toml::Value::String("http://u:s3cret@x".into()),
        )]);
        let e = take(&mut t, None).expect_err("refused").to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn without_a_url_there_is_no_cluster_and_the_keys_are_taken_out() {
        let mut t = table(&[("cluster_replicas", toml::Value::Integer(3))]);
        assert!(take(&mut t, None).expect("valid").is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn urls_replicas_and_pod_names_are_checked() {
        let s = |v: &str| toml::Value::String(v.into());
        let mut t = table(&[("cluster_url", s("nats://a:4222, tls://b:4222"))]);
        let c = take(&mut t, Some("bridge-7f9".into()))
            .expect("valid")
            .expect("set");
        assert_eq!(c.urls, ["nats://a:4222", "tls://b:4222"]);
        assert_eq!((c.pod.as_str(), c.replicas), ("bridge-7f9", 1));
        assert_eq!(c.max_calls, None);
        for bad in [
            ("cluster_url", s("http://a")),
            ("cluster_replicas", toml::Value::Integer(7)),
            ("cluster_pod", s("a.b")),
            ("cluster_max_calls", toml::Value::Integer(0)),
        ] {
            let mut t = table(&[("cluster_url", s("nats://a:4222")), bad.clone()]);
            let e = take(&mut t, None).expect_err("refused").to_string();
            assert!(e.starts_with(bad.0), "{e}");
        }
    }
}
