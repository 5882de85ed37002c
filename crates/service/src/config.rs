//! Settings: a TOML file, then `CALLBRIDGE_*` environment variables, then command-line flags,
//! each overriding the one before. Parsed and validated once at start-up; a wrong value is
//! refused naming the key and the values it allows. The rest of the code gets typed values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::call::CallConfig;

pub mod analysis;
mod bargein;
mod call;
mod callcenter;
mod cluster;
mod keys;
mod prewarm;
mod pricing;
mod profiles;
mod redact;
mod settings;
mod silence;
mod tools;
mod twilio;
use callcenter::{callcenter, web_tokens};
pub use cluster::{redacted as redacted_url, ClusterConfig};
pub use keys::keys_help;
use keys::{typed, Kind, Raw, ALIASES, KEYS};
pub use prewarm::Prewarm;
pub use pricing::{url_model, ModelPrice, Prices};
pub use settings::config_pairs as settings_config_pairs;
pub(crate) use tools::valid_name;

pub use tools::DEFAULT_FILLER;

pub const DEFAULT_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1";

/// Voices the Realtime API offers (protocol.md). An unknown voice is a start-up error, not a
/// failure at the first call.
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The URL schemes a key accepts, and how its error names them.
struct Schemes(&'static [&'static str], &'static str);
const HTTP: Schemes = Schemes(&["http://", "https://"], "an http:// or https://");
const WS: Schemes = Schemes(&["ws://", "wss://"], "a ws:// or wss://");

/// `key`'s value `url` parses as a URI and starts with one of `schemes`, or the error that says
/// which URL the key wants.
fn require_url(key: &str, url: &str, schemes: Schemes) -> Result<(), ConfigError> {
    if schemes.0.iter().any(|s| url.starts_with(s)) && url.parse::<http::Uri>().is_ok() {
        return Ok(());
    }
    Err(invalid(key, format!("{url:?} is not {} URL", schemes.1)))
}

/// A key holding names and string values: a table `{ sales = "+1555..." }` in the file, or
/// `sales=+1555...,billing=sip:...` from the environment. `what` names the value in errors
/// ("target", "value"); a wrong value is reported under `key.name`.
fn name_value_pairs(
    key: &str,
    what: &str,
    v: Option<toml::Value>,
) -> Result<Vec<(String, String)>, ConfigError> {
    match v {
        None => Ok(Vec::new()),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k, s)),
                other => Err(invalid(
                    &format!("{key}.{k}"),
                    format!("{other}: the {what} must be a string"),
                )),
            })
            .collect(),
        Some(toml::Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
                None => Err(invalid(key, format!("{p:?}: expected name={what}"))),
            })
            .collect(),
        Some(other) => Err(invalid(
            key,
            format!("{other}: expected a table of name = \"{what}\""),
        )),
    }
}

/// What running calls are told when the drain period is over (`drain_goodbye`).
pub const DRAIN_GOODBYE: &str = "The service is being restarted and this call must end now: apologise briefly and say a short, polite goodbye, in one sentence.";

/// How the upstream is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI, Azure with Entra tokens, most servers).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI keys).
    ApiKey,
}

/// An API key: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// A key's secret value; an empty value is no secret.
    fn given(value: Option<String>) -> Option<Secret> {
        value.filter(|v| !v.is_empty()).map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub realtime_url: String,
    pub api_key: Option<Secret>,
    pub auth: AuthStyle,
    pub call: CallConfig,
    pub say_before_connect: Option<String>,
    pub apology: String,
    pub twiml_template: String,
    pub max_calls: usize,
    /// HTTP connections served at once (webhooks, API, pages, media sockets until they
    /// upgrade); past it, new connections wait in the listen backlog.
    pub max_http_connections: usize,
    /// A request head must arrive within this; a keep-alive connection idle this long closes.
    pub http_header_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub record_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    /// When set, every `/twiml`, `/incoming-call` and `/media` request must carry a valid
    /// `X-Twilio-Signature`.
    pub twilio_auth_token: Option<Secret>,
    /// The shared key of a Twilio Webhooks Rule (HMAC-SHA256 signatures), if one applies.
    pub twilio_webhook_shared_key: Option<Secret>,
    /// Accept unsigned Twilio requests even though the upstream is remote and no
    /// `twilio_auth_token` is set (`serve` refuses to start otherwise; warned at every start).
    pub allow_unsigned: bool,
    /// `<Reject reason>` answered by the webhook when `max_calls` calls are running.
    pub reject_reason: &'static str,
    /// Where Twilio's REST API is (tests point it at a local fake).
    pub twilio_api_base: String,
    /// An API key SID + secret for Twilio REST, used instead of account SID + auth token.
    pub twilio_api_key: Option<Secret>,
    pub twilio_api_secret: Option<Secret>,
    /// The account outbound calls are made from (inbound calls name theirs in `start`).
    pub twilio_account_sid: Option<String>,
    /// `/softphone` is served (and its signed tickets open `/media`) when set.
    pub softphone_token: Option<Secret>,
    /// `/console` and `/console/events` are served when set.
    pub console_token: Option<Secret>,
    /// Signs the bridge's requests to the integrator (tools, reports): `X-Callbridge-Signature`.
    pub tool_secret: Option<Secret>,
    /// Call reports, outbound calls, Twilio-side recording (issue 8).
    pub callcenter: CallCenter,
    /// Agent profiles (`[profiles.NAME]`, `default_profile`).
    pub profiles: crate::profile::Profiles,
    /// USD per 1M tokens by model, for the report's `cost_usd` (`[prices."MODEL"]`).
    pub prices: Prices,
    /// What transcripts lose before they are stored or logged (`redact`); a profile's own
    /// `redact` replaces it for its calls.
    pub redact: callbridge_core::redact::Redact,
    /// When the drain period is over, running calls are asked for this goodbye (instructions
    /// to the model) and end once it was heard; `None` (set to ""): they end at once.
    pub drain_goodbye: Option<String>,
    /// Longest wait for that goodbye to be heard.
    pub drain_goodbye_timeout: Duration,
    /// Replicas sharing callbacks, outbound calls, reports, the console and a call cap over
    /// NATS (`cluster_url`); `None`: this process alone, as without a cluster.
    pub cluster: Option<ClusterConfig>,
    /// Calls warmed up at the TwiML webhook (`prewarm`, `prewarm_ttl_s`).
    pub prewarm: Prewarm,
}

/// Settings of call reports and outbound calls.
#[derive(Debug, Clone, Default)]
pub struct CallCenter {
    /// Where reports are POSTed; no reports without it.
    pub report_url: Option<String>,
    /// Reports not yet delivered live here (one file each; `dead/` holds refused ones).
    pub report_spool_dir: Option<PathBuf>,
    /// A report is retried this long after it was written, then moved to `dead/`.
    pub report_retry_max: Duration,
    /// The first retry waits about this long; each next one twice as long (with jitter).
    pub report_retry_min: Duration,
    /// Reports kept in the spool at most; past it the oldest are dropped (logged as errors).
    pub report_spool_max: usize,
    /// Reports kept in `dead/` at most (each with its answer); past it the earliest buried go.
    pub report_dead_max: usize,
    /// Bytes of `dead/` (reports and answers) at most; past it the earliest buried go.
    pub report_dead_max_bytes: u64,
    /// A report stays in `dead/` this long after it was moved there.
    pub report_dead_max_age: Duration,
    /// `Authorization: Bearer` token of `POST /v1/calls`; the API is off without it.
    pub api_token: Option<Secret>,
    /// Twilio records both channels of every call (`twilio_recording = "dual"`).
    pub twilio_recording: bool,
    /// A profile's setup lookup gets this long; then the call goes on without it.
    pub setup_timeout: Duration,
}

impl Config {
    /// The names of the configured agent profiles.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.by_name.keys().map(String::as_str)
    }
}

/// Values given on the command line (they win over file and environment).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub pairs: Vec<(&'static str, String)>,
}

impl Config {
    /// File (if any) < environment < `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (var, key) in ALIASES {
            if let Some(v) = env(var) {
                table.insert((*key).into(), toml::Value::String(v));
            }
        }
        for (key, kind) in KEYS {
            let var = format!("CALLBRIDGE_{}", key.to_ascii_uppercase());
            if let Some(v) = env(&var) {
                table.insert((*key).into(), typed(&var, &v, *kind)?);
            }
        }
        cluster::read_env(&mut table, env)?;
        for (key, v) in &overrides.pairs {
            let kind = KEYS
                .iter()
                .find(|(k, _)| k == key)
                .map_or(Kind::Str, |(_, k)| *k);
            table.insert((*key).into(), typed(&format!("--{key}"), v, kind)?);
        }
        let cluster = cluster::take(&mut table, env("HOSTNAME"))?;
        let profiles = table.remove("profiles");
        let default_profile = table.remove("default_profile");
        let prices = Prices::parse(table.remove("prices"))?;
        let redact = redact::parse("redact", table.remove("redact"))?.unwrap_or_default();
        let parse = |t: toml::Table| -> Result<Raw, ConfigError> {
            toml::Value::Table(t)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.map_or_else(|| PathBuf::from("<environment>"), Path::to_path_buf),
                    message: e.to_string(),
                })
        };
        let mut cfg = Config::validate(parse(table.clone())?)?;
        cfg.prewarm = cfg.prewarm.with_cluster(cluster.is_some());
        cfg.cluster = cluster;
        cfg.profiles = profiles::parse(&table, profiles, default_profile, &|t| {
            Ok(Config::validate(parse(t)?)?.call)
        })?;
        cfg.prices = prices;
        cfg.redact = redact;
        if cfg.tool_secret.is_none() {
            if let Some(p) = cfg
                .profiles
                .by_name
                .values()
                .find(|p| p.setup_url.is_some())
            {
                return Err(invalid(
                    "tool_secret",
                    format!(
                        "required with profiles.{}.setup_url: setup lookups are signed",
                        p.name
                    ),
                ));
            }
        }
        Ok(cfg)
    }

    /// The configuration from the process environment and an optional file.
    pub fn from_env(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load(file, &|k| std::env::var(k).ok(), overrides)
    }

    fn validate(mut r: Raw) -> Result<Config, ConfigError> {
        let tool_secret = callcenter::chosen_secret("tool_secret", r.tool_secret.as_deref())?;
        let callcenter = callcenter(&r, tool_secret.is_some())?;
        let listen = r
            .listen
            .as_deref()
            .unwrap_or("0.0.0.0:8080")
            .parse::<SocketAddr>()
            .map_err(|e| {
                invalid(
                    "listen",
                    format!("{e} (expected HOST:PORT, e.g. 0.0.0.0:8080)"),
                )
            })?;
        let public_url = r.public_url.take().filter(|s| !s.is_empty());
        if let Some(p) = &public_url {
            if crate::twilio::twiml::stream_url(p, "/media").is_none() {
                return Err(invalid(
                    "public_url",
                    format!("{p:?} is not a URL like https://bridge.example.com"),
                ));
            }
        }
        let realtime_url = r
            .realtime_url
            .take()
            .unwrap_or_else(|| DEFAULT_REALTIME_URL.into());
        require_url("realtime_url", &realtime_url, WS)?;
        let api_key = Secret::given(r.openai_api_key.take());
        let auth = match r.auth.as_deref().unwrap_or("auto") {
            "auto" if realtime_url.contains(".openai.azure.com") => AuthStyle::ApiKey,
            "auto" | "bearer" => AuthStyle::Bearer,
            "api-key" => AuthStyle::ApiKey,
            other => {
                return Err(invalid(
                    "auth",
                    format!("{other:?}; allowed: auto, bearer, api-key"),
                ))
            }
        };
        let session_keys = call::session_keys(&mut r)?;
        let twiml_template = match &r.twiml_template {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| invalid("twiml_template", format!("{path}: {e}")))?,
            None => crate::twilio::twiml::DEFAULT_TEMPLATE.to_owned(),
        };
        for needed in ["{{stream_url}}"] {
            if !twiml_template.contains(needed) {
                return Err(invalid(
                    "twiml_template",
                    format!("template lacks {needed}"),
                ));
            }
        }
        let log_format = one_of(
            "log_format",
            r.log_format.as_deref().unwrap_or("text"),
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )?;
        let (tools_cfg, _) = tools::validate(tools::RawToolKeys {
            tools: r.tools.take(),
            tool_secret: r.tool_secret.clone(),
            end_call: r.end_call,
            send_dtmf: r.send_dtmf,
            transfer_targets: r.transfer_targets.take(),
            transfer_caller_id: r.transfer_caller_id.take(),
            filler_audio: r.filler_audio.take(),
            goodbye_timeout_ms: r.goodbye_timeout_ms,
        })?;
        let call = call::call_config(&mut r, session_keys, tools_cfg)?;
        let prewarm = prewarm::prewarm(&r)?;
        let twilio_rest = twilio::twilio_rest(&mut r, &call)?;
        let (softphone_token, console_token) =
            web_tokens(r.softphone, r.softphone_token, r.console_token)?;
        Ok(Config {
            softphone_token,
            console_token,
            profiles: Default::default(),
            prices: Prices::default(),
            redact: Default::default(),
            tool_secret,
            callcenter,
            twilio_api_base: twilio_rest.api_base,
            twilio_api_key: twilio_rest.api_key,
            twilio_api_secret: twilio_rest.api_secret,
            twilio_account_sid: twilio_rest.account_sid,
            listen,
            public_url,
            realtime_url,
            api_key,
            auth,
            upstream_connect_timeout: call.upstream_ready_timeout,
            call,
            say_before_connect: r.say_before_connect.filter(|s| !s.is_empty()),
            apology: r.apology.unwrap_or_else(|| {
                "Sorry, the assistant is unavailable right now. Please call again later.".into()
            }),
            twiml_template,
            max_calls: ms("max_calls", r.max_calls, 2000, 1, 1_000_000)? as usize,
            max_http_connections: ms(
                "max_http_connections",
                r.max_http_connections,
                1024,
                1,
                1_000_000,
            )? as usize,
            http_header_timeout: Duration::from_millis(ms(
                "http_header_timeout_ms",
                r.http_header_timeout_ms,
                10_000,
                100,
                300_000,
            )?),
            record_dir: r.record_dir.filter(|s| !s.is_empty()).map(PathBuf::from),
            log_format,
            twilio_auth_token: Secret::given(r.twilio_auth_token),
            twilio_webhook_shared_key: Secret::given(r.twilio_webhook_shared_key),
            allow_unsigned: r.allow_unsigned.unwrap_or(false),
            drain_goodbye: match r.drain_goodbye {
                None => Some(DRAIN_GOODBYE.into()),
                Some(g) if g.trim().is_empty() => None,
                Some(g) => Some(g),
            },
            drain_goodbye_timeout: Duration::from_millis(ms(
                "drain_goodbye_timeout_ms",
                r.drain_goodbye_timeout_ms,
                8000,
                1000,
                60_000,
            )?),
            reject_reason: one_of(
                "reject_reason",
                r.reject_reason.as_deref().unwrap_or("busy"),
                &[("busy", "busy"), ("rejected", "rejected")],
            )?,
            cluster: None,
            prewarm,
        })
    }
}

/// The value named `v` among `options`, or an error naming the key and every allowed value.
fn one_of<T: Copy>(key: &str, v: &str, options: &[(&str, T)]) -> Result<T, ConfigError> {
    match options.iter().find(|(name, _)| *name == v) {
        Some((_, t)) => Ok(*t),
        None => {
            let allowed: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            Err(invalid(
                key,
                format!("{v:?}; allowed: {}", allowed.join(", ")),
            ))
        }
    }
}

fn ms(key: &str, v: Option<i64>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if n >= min as i64 && n <= max as i64 => Ok(n as u64),
        Some(n) => Err(invalid(key, format!("{n}; allowed: {min} to {max}"))),
    }
}

#[cfg(test)]
mod tests;
