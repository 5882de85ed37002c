//! Settings: a TOML file, then `CALLBRIDGE_*` environment variables, then command-line flags,
//! each overriding the one before. Parsed and validated once at start-up; a wrong value is
//! refused naming the key and the values it allows. The rest of the code gets typed values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::call::CallConfig;

mod tools;
pub(crate) use tools::valid_name;

use crate::realtime::{AudioFormat, Dialect, SessionConfig, TurnDetection};
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

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

/// Every key of the file; each also reads `CALLBRIDGE_<KEY>` from the environment.
const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("public_url", Kind::Str),
    ("realtime_url", Kind::Str),
    ("openai_api_key", Kind::Str),
    ("auth", Kind::Str),
    ("audio_mode", Kind::Str),
    ("dialect", Kind::Str),
    ("model", Kind::Str),
    ("instructions", Kind::Str),
    ("voice", Kind::Str),
    ("vad", Kind::Str),
    ("vad_threshold", Kind::Float),
    ("vad_prefix_padding_ms", Kind::Int),
    ("vad_silence_duration_ms", Kind::Int),
    ("vad_idle_timeout_ms", Kind::Int),
    ("vad_eagerness", Kind::Str),
    ("vad_create_response", Kind::Bool),
    ("vad_interrupt_response", Kind::Bool),
    ("transcription_model", Kind::Str),
    ("max_output_tokens", Kind::Str),
    ("speed", Kind::Float),
    ("noise_reduction", Kind::Str),
    ("temperature", Kind::Float),
    ("greeting", Kind::Str),
    ("say_before_connect", Kind::Str),
    ("apology", Kind::Str),
    ("twiml_template", Kind::Str),
    ("barge_in", Kind::Bool),
    ("max_calls", Kind::Int),
    ("max_gap_fill_ms", Kind::Int),
    ("prebuffer_limit_ms", Kind::Int),
    ("upstream_connect_timeout_ms", Kind::Int),
    ("twilio_idle_timeout_ms", Kind::Int),
    ("record_dir", Kind::Str),
    ("log_format", Kind::Str),
    ("twilio_auth_token", Kind::Str),
    ("dtmf_to_model", Kind::Bool),
    ("dtmf_gap_ms", Kind::Int),
    ("upstream_retry_s", Kind::Int),
    ("session_rotate_after_secs", Kind::Int),
    ("twilio_webhook_shared_key", Kind::Str),
    ("end_call", Kind::Bool),
    ("transfer_targets", Kind::Str),
    ("transfer_caller_id", Kind::Str),
    ("filler_audio", Kind::Str),
    ("goodbye_timeout_ms", Kind::Int),
    ("allow_unsigned", Kind::Bool),
    ("reject_reason", Kind::Str),
    ("twilio_api_base", Kind::Str),
    ("twilio_api_key", Kind::Str),
    ("twilio_api_secret", Kind::Str),
    ("twilio_account_sid", Kind::Str),
    ("softphone", Kind::Bool),
    ("softphone_token", Kind::Str),
    ("console_token", Kind::Str),
    ("tool_secret", Kind::Str),
    ("report_url", Kind::Str),
    ("report_spool_dir", Kind::Str),
    ("report_retry_max_s", Kind::Int),
    ("report_retry_min_ms", Kind::Int),
    ("report_spool_max", Kind::Int),
    ("api_token", Kind::Str),
    ("twilio_recording", Kind::Str),
    ("setup_timeout_ms", Kind::Int),
    ("max_call_seconds", Kind::Int),
    ("drain_goodbye", Kind::Str),
    ("drain_goodbye_timeout_ms", Kind::Int),
    ("voicemail_message", Kind::Str),
];

/// What running calls are told when the drain period is over (`drain_goodbye`).
pub const DRAIN_GOODBYE: &str = "The service is being restarted and this call must end now: apologise briefly and say a short, polite goodbye, in one sentence.";

/// Short names operators already use, read as well as the `CALLBRIDGE_*` form.
const ALIASES: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "openai_api_key"),
    ("REALTIME_URL", "realtime_url"),
    ("PUBLIC_URL", "public_url"),
    ("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
    ("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
];

/// Every configuration key with its environment variable, for `serve --help`.
pub fn keys_help() -> String {
    let mut s = String::from(
        "Configuration keys (TOML file key / environment variable; see callbridge.toml.example):\n",
    );
    for (key, kind) in KEYS {
        let kind = match kind {
            Kind::Str => "text",
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "true|false",
        };
        let alias = ALIASES
            .iter()
            .find(|(_, k)| k == key)
            .map(|(var, _)| format!(" or {var}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {key:<28} CALLBRIDGE_{}{alias} ({kind})\n",
            key.to_ascii_uppercase()
        ));
    }
    s
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    public_url: Option<String>,
    realtime_url: Option<String>,
    openai_api_key: Option<String>,
    auth: Option<String>,
    audio_mode: Option<String>,
    dialect: Option<String>,
    model: Option<String>,
    instructions: Option<String>,
    voice: Option<String>,
    vad: Option<String>,
    vad_threshold: Option<f64>,
    vad_prefix_padding_ms: Option<i64>,
    vad_silence_duration_ms: Option<i64>,
    vad_idle_timeout_ms: Option<i64>,
    vad_eagerness: Option<String>,
    vad_create_response: Option<bool>,
    vad_interrupt_response: Option<bool>,
    transcription_model: Option<String>,
    max_output_tokens: Option<toml::Value>,
    speed: Option<f64>,
    noise_reduction: Option<String>,
    temperature: Option<f64>,
    greeting: Option<String>,
    say_before_connect: Option<String>,
    apology: Option<String>,
    twiml_template: Option<String>,
    barge_in: Option<bool>,
    max_calls: Option<i64>,
    max_gap_fill_ms: Option<i64>,
    prebuffer_limit_ms: Option<i64>,
    upstream_connect_timeout_ms: Option<i64>,
    twilio_idle_timeout_ms: Option<i64>,
    record_dir: Option<String>,
    log_format: Option<String>,
    twilio_auth_token: Option<String>,
    twilio_webhook_shared_key: Option<String>,
    dtmf_to_model: Option<bool>,
    dtmf_gap_ms: Option<i64>,
    tools: Option<Vec<tools::RawTool>>,
    end_call: Option<bool>,
    transfer_targets: Option<toml::Value>,
    transfer_caller_id: Option<String>,
    filler_audio: Option<String>,
    goodbye_timeout_ms: Option<i64>,
    allow_unsigned: Option<bool>,
    reject_reason: Option<String>,
    twilio_api_base: Option<String>,
    twilio_api_key: Option<String>,
    twilio_api_secret: Option<String>,
    twilio_account_sid: Option<String>,
    softphone: Option<bool>,
    softphone_token: Option<String>,
    console_token: Option<String>,
    tool_secret: Option<String>,
    report_url: Option<String>,
    report_spool_dir: Option<String>,
    report_retry_max_s: Option<i64>,
    report_retry_min_ms: Option<i64>,
    report_spool_max: Option<i64>,
    api_token: Option<String>,
    twilio_recording: Option<String>,
    setup_timeout_ms: Option<i64>,
    upstream_retry_s: Option<i64>,
    session_rotate_after_secs: Option<i64>,
    max_call_seconds: Option<i64>,
    drain_goodbye: Option<String>,
    drain_goodbye_timeout_ms: Option<i64>,
    voicemail_message: Option<String>,
}

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
    /// When the drain period is over, running calls are asked for this goodbye (instructions
    /// to the model) and end once it was heard; `None` (set to ""): they end at once.
    pub drain_goodbye: Option<String>,
    /// Longest wait for that goodbye to be heard.
    pub drain_goodbye_timeout: Duration,
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
        for (key, v) in &overrides.pairs {
            let kind = KEYS
                .iter()
                .find(|(k, _)| k == key)
                .map_or(Kind::Str, |(_, k)| *k);
            table.insert((*key).into(), typed(&format!("--{key}"), v, kind)?);
        }
        let profiles = table.remove("profiles");
        let default_profile = table.remove("default_profile");
        let parse = |t: toml::Table| -> Result<Raw, ConfigError> {
            toml::Value::Table(t)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.map_or_else(|| PathBuf::from("<environment>"), Path::to_path_buf),
                    message: e.to_string(),
                })
        };
        let mut cfg = Config::validate(parse(table.clone())?)?;
        cfg.profiles = crate::profile::parse(&table, profiles, default_profile, &|t| {
            Ok(Config::validate(parse(t)?)?.call)
        })?;
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

    fn validate(r: Raw) -> Result<Config, ConfigError> {
        let tool_secret = r.tool_secret.clone().filter(|s| !s.is_empty()).map(Secret);
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
        let public_url = r.public_url.filter(|s| !s.is_empty());
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
            .unwrap_or_else(|| DEFAULT_REALTIME_URL.into());
        if !(realtime_url.starts_with("wss://") || realtime_url.starts_with("ws://"))
            || realtime_url.parse::<http::Uri>().is_err()
        {
            return Err(invalid(
                "realtime_url",
                format!("{realtime_url:?} is not a ws:// or wss:// URL"),
            ));
        }
        let api_key = r.openai_api_key.filter(|k| !k.is_empty()).map(Secret);
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
        let audio_format = one_of(
            "audio_mode",
            r.audio_mode.as_deref().unwrap_or("pcmu"),
            &[("pcmu", AudioFormat::Pcmu), ("pcm", AudioFormat::Pcm24k)],
        )?;
        let dialect = one_of(
            "dialect",
            r.dialect.as_deref().unwrap_or("ga"),
            &[("ga", Dialect::Ga), ("beta", Dialect::Beta)],
        )?;
        let voice = r.voice.unwrap_or_else(|| "marin".into());
        if !VOICES.contains(&voice.as_str()) {
            return Err(invalid(
                "voice",
                format!("{voice:?}; allowed: {}", VOICES.join(", ")),
            ));
        }
        let create_response = r.vad_create_response.unwrap_or(true);
        let interrupt_response = r.vad_interrupt_response.unwrap_or(true);
        let turn_detection = match r.vad.as_deref().unwrap_or("server_vad") {
            "server_vad" => {
                if r.vad_eagerness.is_some() {
                    return Err(invalid(
                        "vad_eagerness",
                        "only applies to vad = semantic_vad",
                    ));
                }
                let threshold = r.vad_threshold.unwrap_or(0.5);
                if !(0.0..=1.0).contains(&threshold) {
                    return Err(invalid(
                        "vad_threshold",
                        format!("{threshold}; allowed: 0.0 to 1.0"),
                    ));
                }
                TurnDetection::ServerVad {
                    threshold: threshold as f32,
                    prefix_padding_ms: ms(
                        "vad_prefix_padding_ms",
                        r.vad_prefix_padding_ms,
                        300,
                        0,
                        10_000,
                    )? as u32,
                    silence_duration_ms: ms(
                        "vad_silence_duration_ms",
                        r.vad_silence_duration_ms,
                        500,
                        0,
                        10_000,
                    )? as u32,
                    idle_timeout_ms: match r.vad_idle_timeout_ms {
                        Some(v) => {
                            Some(ms("vad_idle_timeout_ms", Some(v), 0, 1, 3_600_000)? as u32)
                        }
                        None => None,
                    },
                    create_response,
                    interrupt_response,
                }
            }
            "semantic_vad" => {
                for (k, set) in [
                    ("vad_threshold", r.vad_threshold.is_some()),
                    ("vad_prefix_padding_ms", r.vad_prefix_padding_ms.is_some()),
                    (
                        "vad_silence_duration_ms",
                        r.vad_silence_duration_ms.is_some(),
                    ),
                    ("vad_idle_timeout_ms", r.vad_idle_timeout_ms.is_some()),
                ] {
                    if set {
                        return Err(invalid(k, "only applies to vad = server_vad"));
                    }
                }
                let eagerness = r.vad_eagerness.unwrap_or_else(|| "auto".into());
                one_of(
                    "vad_eagerness",
                    &eagerness,
                    &[("low", ()), ("medium", ()), ("high", ()), ("auto", ())],
                )?;
                TurnDetection::SemanticVad {
                    eagerness,
                    create_response,
                    interrupt_response,
                }
            }
            other => {
                return Err(invalid(
                    "vad",
                    format!("{other:?}; allowed: server_vad, semantic_vad"),
                ))
            }
        };
        let max_output_tokens = match r.max_output_tokens {
            None => None,
            Some(toml::Value::String(s)) if s == "inf" => Some(None),
            Some(toml::Value::Integer(n)) if (1..=4096).contains(&n) => Some(Some(n as u32)),
            Some(toml::Value::String(s))
                if s.parse::<u32>().is_ok_and(|n| (1..=4096).contains(&n)) =>
            {
                Some(s.parse::<u32>().ok())
            }
            Some(v) => {
                return Err(invalid(
                    "max_output_tokens",
                    format!("{v}; allowed: 1 to 4096, or \"inf\""),
                ))
            }
        };
        if let Some(s) = r.speed {
            if !(0.25..=1.5).contains(&s) {
                return Err(invalid("speed", format!("{s}; allowed: 0.25 to 1.5")));
            }
        }
        if let Some(n) = &r.noise_reduction {
            one_of(
                "noise_reduction",
                n,
                &[("near_field", ()), ("far_field", ())],
            )?;
        }
        if r.temperature.is_some() && dialect == Dialect::Ga {
            return Err(invalid(
                "temperature",
                "the GA Realtime API has no temperature; it applies to dialect = beta only",
            ));
        }
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
            tools: r.tools,
            tool_secret: r.tool_secret.clone(),
            end_call: r.end_call,
            transfer_targets: r.transfer_targets,
            transfer_caller_id: r.transfer_caller_id,
            filler_audio: r.filler_audio,
            goodbye_timeout_ms: r.goodbye_timeout_ms,
        })?;
        let session = SessionConfig {
            model: r.model.filter(|m| !m.is_empty()),
            instructions: r
                .instructions
                .unwrap_or_else(|| SessionConfig::default().instructions),
            voice,
            audio_format,
            turn_detection,
            transcription_model: r.transcription_model.filter(|m| !m.is_empty()),
            max_output_tokens,
            speed: r.speed.map(|s| s as f32),
            noise_reduction: r.noise_reduction,
            temperature: r.temperature.map(|t| t as f32),
            tools: tools_cfg.declarations(),
        };
        let call = CallConfig {
            dialect,
            session,
            greeting: r.greeting.filter(|g| !g.is_empty()),
            barge_in: r.barge_in.unwrap_or(true),
            max_gap_fill_ms: ms("max_gap_fill_ms", r.max_gap_fill_ms, 1000, 0, 60_000)?,
            prebuffer_limit_ms: ms(
                "prebuffer_limit_ms",
                r.prebuffer_limit_ms,
                10_000,
                0,
                120_000,
            )?,
            upstream_ready_timeout: Duration::from_millis(ms(
                "upstream_connect_timeout_ms",
                r.upstream_connect_timeout_ms,
                10_000,
                100,
                120_000,
            )?),
            twilio_idle_timeout: Duration::from_millis(ms(
                "twilio_idle_timeout_ms",
                r.twilio_idle_timeout_ms,
                20_000,
                1000,
                3_600_000,
            )?),
            dtmf_to_model: r.dtmf_to_model.unwrap_or(true),
            dtmf_gap: Duration::from_millis(ms("dtmf_gap_ms", r.dtmf_gap_ms, 1500, 100, 30_000)?),
            // 0 turns reconnecting off (the call ends when its upstream drops).
            upstream_retry: Duration::from_secs(ms(
                "upstream_retry_s",
                r.upstream_retry_s,
                10,
                0,
                300,
            )?),
            session_rotate_after: Duration::from_secs(ms(
                "session_rotate_after_secs",
                r.session_rotate_after_secs,
                3300,
                1,
                86_400,
            )?),
            tools: tools_cfg,
            voicemail_message: r.voicemail_message.filter(|m| !m.trim().is_empty()),
            // Absent or 0: no limit.
            max_call: match ms("max_call_seconds", r.max_call_seconds, 0, 0, 86_400)? {
                0 => None,
                n if n < 10 => {
                    return Err(invalid(
                        "max_call_seconds",
                        format!("{n}; allowed: 0 (no limit) or 10 to 86400"),
                    ))
                }
                n => Some(Duration::from_secs(n)),
            },
        };
        let twilio_api_base = r
            .twilio_api_base
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://api.twilio.com".into())
            .trim_end_matches('/')
            .to_owned();
        if !(twilio_api_base.starts_with("https://") || twilio_api_base.starts_with("http://"))
            || twilio_api_base.parse::<http::Uri>().is_err()
        {
            return Err(invalid(
                "twilio_api_base",
                format!("{twilio_api_base:?} is not an http:// or https:// URL"),
            ));
        }
        let twilio_api_key = r.twilio_api_key.filter(|s| !s.is_empty()).map(Secret);
        let twilio_api_secret = r.twilio_api_secret.filter(|s| !s.is_empty()).map(Secret);
        if twilio_api_key.is_some() != twilio_api_secret.is_some() {
            return Err(invalid(
                if twilio_api_key.is_some() {
                    "twilio_api_secret"
                } else {
                    "twilio_api_key"
                },
                "twilio_api_key and twilio_api_secret go together",
            ));
        }
        let twilio_account_sid = r.twilio_account_sid.filter(|s| !s.is_empty());
        if let Some(sid) = &twilio_account_sid {
            if !(sid.starts_with("AC")
                && sid.len() == 34
                && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    "twilio_account_sid",
                    format!("{sid:?} is not an account SID (AC + 32 hex digits)"),
                ));
            }
        }
        let has_rest_credentials = twilio_api_key.is_some()
            || r.twilio_auth_token
                .as_deref()
                .is_some_and(|t| !t.is_empty());
        if !has_rest_credentials {
            let key = if !call.tools.transfer_targets.is_empty() {
                Some("transfer_targets")
            } else if call.tools.end_call {
                Some("end_call")
            } else {
                None
            };
            if let Some(key) = key {
                return Err(invalid(
                    key,
                    "hanging up and transferring go through Twilio REST: set twilio_auth_token, or twilio_api_key + twilio_api_secret",
                ));
            }
        }
        let (softphone_token, console_token) =
            web_tokens(r.softphone, r.softphone_token, r.console_token)?;
        Ok(Config {
            softphone_token,
            console_token,
            profiles: Default::default(),
            tool_secret,
            callcenter,
            twilio_api_base,
            twilio_api_key,
            twilio_api_secret,
            twilio_account_sid,
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
            record_dir: r.record_dir.filter(|s| !s.is_empty()).map(PathBuf::from),
            log_format,
            twilio_auth_token: r.twilio_auth_token.filter(|t| !t.is_empty()).map(Secret),
            twilio_webhook_shared_key: r
                .twilio_webhook_shared_key
                .filter(|t| !t.is_empty())
                .map(Secret),
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
        })
    }
}

/// Browser pages: a token guards each, and the softphone needs `softphone = true` as well, so
/// a token left in the environment does not switch it on by itself.
fn web_tokens(
    softphone: Option<bool>,
    softphone_token: Option<String>,
    console_token: Option<String>,
) -> Result<(Option<Secret>, Option<Secret>), ConfigError> {
    const MIN: usize = 16;
    let softphone_token = softphone_token.filter(|t| !t.is_empty());
    let softphone_token = match (softphone.unwrap_or(false), softphone_token) {
        (false, _) => None,
        (true, None) => {
            return Err(invalid(
                "softphone_token",
                "softphone = true needs a softphone_token (at least 16 characters)",
            ))
        }
        (true, Some(t)) if t.len() < MIN => {
            return Err(invalid(
                "softphone_token",
                format!("too short ({} characters); use at least {MIN}", t.len()),
            ))
        }
        (true, Some(t)) => Some(Secret(t)),
    };
    let console_token = match console_token.filter(|t| !t.is_empty()) {
        Some(t) if t.len() < MIN => {
            return Err(invalid(
                "console_token",
                format!("too short ({} characters); use at least {MIN}", t.len()),
            ))
        }
        t => t.map(Secret),
    };
    Ok((softphone_token, console_token))
}

/// Reports, the outbound API and Twilio-side recording.
fn callcenter(r: &Raw, signed: bool) -> Result<CallCenter, ConfigError> {
    let report_url = r.report_url.clone().filter(|s| !s.is_empty());
    if let Some(u) = &report_url {
        if !(u.starts_with("https://") || u.starts_with("http://"))
            || u.parse::<http::Uri>().is_err()
        {
            return Err(invalid(
                "report_url",
                format!("{u:?} is not an http:// or https:// URL"),
            ));
        }
    }
    let report_spool_dir = r
        .report_spool_dir
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if report_url.is_some() {
        if report_spool_dir.is_none() {
            return Err(invalid(
                "report_spool_dir",
                "required with report_url: every report is written there before it is sent",
            ));
        }
        if !signed {
            return Err(invalid(
                "tool_secret",
                "required with report_url: reports are signed (X-Callbridge-Signature)",
            ));
        }
    }
    let twilio_recording = match r.twilio_recording.as_deref().unwrap_or("off") {
        "off" | "" => false,
        "dual" => true,
        other => {
            return Err(invalid(
                "twilio_recording",
                format!("{other:?}; allowed: off, dual"),
            ))
        }
    };
    Ok(CallCenter {
        report_url,
        report_spool_dir,
        report_retry_max: Duration::from_secs(ms(
            "report_retry_max_s",
            r.report_retry_max_s,
            86_400,
            1,
            30 * 86_400,
        )?),
        report_retry_min: Duration::from_millis(ms(
            "report_retry_min_ms",
            r.report_retry_min_ms,
            1000,
            1,
            600_000,
        )?),
        report_spool_max: ms(
            "report_spool_max",
            r.report_spool_max,
            10_000,
            1,
            10_000_000,
        )? as usize,
        api_token: r.api_token.clone().filter(|s| !s.is_empty()).map(Secret),
        twilio_recording,
        setup_timeout: Duration::from_millis(ms(
            "setup_timeout_ms",
            r.setup_timeout_ms,
            1500,
            1,
            60_000,
        )?),
    })
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

fn typed(name: &str, v: &str, kind: Kind) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        Kind::Str => toml::Value::String(v.to_owned()),
        Kind::Int => toml::Value::Integer(
            v.trim()
                .parse()
                .map_err(|_| invalid(name, format!("{v:?} is not a whole number")))?,
        ),
        Kind::Float => toml::Value::Float(
            v.trim()
                .parse()
                .map_err(|_| invalid(name, format!("{v:?} is not a number")))?,
        ),
        Kind::Bool => toml::Value::Boolean(match v.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(invalid(name, format!("{v:?}; allowed: true, false"))),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = std::env::temp_dir().join(format!("cb-cfg-{}", std::process::id()));
        // One file per call: tests run in parallel, and two files named alike (this used to
        // be the text's length) overwrote each other.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = file.map(|text| {
            let _ = std::fs::create_dir_all(&dir);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = dir.join(format!("{n}.toml"));
            std::fs::write(&p, text).unwrap();
            p
        });
        Config::load(
            path.as_deref(),
            &|k| env.get(k).cloned(),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_are_ga_pcmu_openai() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.realtime_url, DEFAULT_REALTIME_URL);
        assert_eq!(c.call.dialect, Dialect::Ga);
        assert_eq!(c.call.session.audio_format, AudioFormat::Pcmu);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.auth, AuthStyle::Bearer);
    }

    #[test]
    fn env_overrides_file_and_aliases_work() {
        let c = load(
            &[
                ("CALLBRIDGE_AUDIO_MODE", "pcm"),
                ("OPENAI_API_KEY", "sk-secret"),
                (
                    "REALTIME_URL",
                    "wss://x.openai.azure.com/openai/v1/realtime?model=d",
                ),
                ("CALLBRIDGE_VAD_THRESHOLD", "0.7"),
            ],
            Some("audio_mode = \"pcmu\"\nvoice = \"cedar\"\ndialect = \"beta\"\n"),
        )
        .unwrap();
        assert_eq!(c.call.session.audio_format, AudioFormat::Pcm24k);
        assert_eq!(c.call.session.voice, "cedar");
        assert_eq!(c.call.dialect, Dialect::Beta);
        assert_eq!(c.auth, AuthStyle::ApiKey, "Azure host means api-key auth");
        assert!(
            !format!("{c:?}").contains("sk-secret"),
            "the key is never printed"
        );
        match c.call.session.turn_detection {
            TurnDetection::ServerVad { threshold, .. } => assert!((threshold - 0.7).abs() < 1e-6),
            _ => panic!(),
        }
    }

    #[test]
    fn wrong_values_name_the_key_and_the_allowed_values() {
        for (env, key, allowed) in [
            (("CALLBRIDGE_AUDIO_MODE", "opus"), "audio_mode", "pcmu, pcm"),
            (("CALLBRIDGE_DIALECT", "v2"), "dialect", "ga, beta"),
            (("CALLBRIDGE_VOICE", "robot"), "voice", "marin"),
            (("CALLBRIDGE_SPEED", "3"), "speed", "0.25 to 1.5"),
            (
                ("CALLBRIDGE_VAD", "push"),
                "vad",
                "server_vad, semantic_vad",
            ),
            (("CALLBRIDGE_TEMPERATURE", "0.8"), "temperature", "beta"),
            (
                ("CALLBRIDGE_MAX_OUTPUT_TOKENS", "9999"),
                "max_output_tokens",
                "4096",
            ),
            (
                ("CALLBRIDGE_VAD_THRESHOLD", "abc"),
                "CALLBRIDGE_VAD_THRESHOLD",
                "number",
            ),
            (
                ("REALTIME_URL", "https://api.openai.com"),
                "realtime_url",
                "ws://",
            ),
        ] {
            let err = load(&[env], None).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
            assert!(err.contains(allowed), "{err}");
        }
    }

    #[test]
    fn tools_transfer_and_end_call_are_read_and_declared() {
        let c = load(
            &[
                (
                    "CALLBRIDGE_TRANSFER_TARGETS",
                    "sales=+15551230000, billing=sip:billing@pbx.example.com",
                ),
                ("TWILIO_AUTH_TOKEN", "token"),
            ],
            Some(
                r#"
tool_secret = "s3cret"
end_call = true
transfer_caller_id = "+15550001111"

[[tools]]
name = "lookup_order"
description = "Look up an order by its number"
parameters = { type = "object", properties = { order_id = { type = "string" } }, required = ["order_id"] }
url = "https://crm.example.com/tools/lookup_order"
timeout_ms = 5000
filler_after_ms = 1200
"#,
            ),
        )
        .unwrap();
        let t = &c.call.tools;
        assert_eq!(t.tools.len(), 1);
        assert_eq!(t.tools[0].timeout, Duration::from_millis(5000));
        assert_eq!(t.tools[0].parameters["required"][0], "order_id");
        assert!(t.end_call);
        assert_eq!(
            t.transfer_targets,
            [
                ("sales".to_string(), "+15551230000".to_string()),
                ("billing".into(), "sip:billing@pbx.example.com".into())
            ]
        );
        assert!(t.filler.is_some(), "the shipped filler by default");
        assert!(!format!("{c:?}").contains("s3cret"));
        let names: Vec<&str> = c
            .call
            .session
            .tools
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert_eq!(names, ["lookup_order", "end_call", "transfer_call"]);
        let transfer = &c.call.session.tools[2];
        assert_eq!(
            transfer["parameters"]["properties"]["destination"]["enum"],
            serde_json::json!(["sales", "billing"])
        );
    }

    #[test]
    fn bad_tool_settings_name_the_key() {
        let tool = |extra: &str| {
            format!("tool_secret = \"k\"\n[[tools]]\nname = \"t\"\nurl = \"https://x.example.com/t\"\n{extra}")
        };
        for (file, key) in [
            (
                "[[tools]]\nname = \"bad name\"\nurl = \"https://x.example.com\"\n".to_string(),
                "tools[0].name",
            ),
            (
                "tool_secret = \"k\"\n[[tools]]\nname = \"end_call\"\nurl = \"https://x.example.com\"\n".into(),
                "tools[0].name",
            ),
            (
                "[[tools]]\nname = \"t\"\nurl = \"https://x.example.com/t\"\n".into(),
                "tool_secret",
            ),
            (tool("timeout_ms = 5"), "tools[0].timeout_ms"),
            (tool("parameters = { type = \"string\" }"), "tools[0].parameters"),
            (
                "tool_secret = \"k\"\n[[tools]]\nname = \"t\"\nurl = \"ftp://x.example.com/t\"\n".into(),
                "tools[0].url",
            ),
            (
                "transfer_targets = { sales = \"5551234\" }\n".into(),
                "transfer_targets",
            ),
            ("transfer_caller_id = \"sales\"\n".into(), "transfer_caller_id"),
            ("end_call = true\n".into(), "end_call"),
            (
                "transfer_targets = { sales = \"+15551230000\" }\n".into(),
                "transfer_targets",
            ),
        ] {
            let err = load(&[], Some(&file)).unwrap_err().to_string();
            assert!(err.starts_with(key), "{file}: {err}");
        }
        let twice = format!(
            "{}\n[[tools]]\nname = \"t\"\nurl = \"https://y.example.com\"\n",
            tool("")
        );
        let err = load(&[], Some(&twice)).unwrap_err().to_string();
        assert!(
            err.starts_with("tools[1].name") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn web_pages_are_off_by_default_and_need_a_long_token() {
        let c = load(&[], None).unwrap();
        assert!(c.softphone_token.is_none() && c.console_token.is_none());
        // A token alone does not switch the softphone on.
        let c = load(&[("CALLBRIDGE_SOFTPHONE_TOKEN", "0123456789abcdef")], None).unwrap();
        assert!(c.softphone_token.is_none());
        let c = load(
            &[
                ("CALLBRIDGE_SOFTPHONE", "true"),
                ("CALLBRIDGE_SOFTPHONE_TOKEN", "0123456789abcdef"),
                ("CALLBRIDGE_CONSOLE_TOKEN", "fedcba9876543210"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.softphone_token, Some(Secret("0123456789abcdef".into())));
        assert_eq!(c.console_token, Some(Secret("fedcba9876543210".into())));
        for (env, key) in [
            (vec![("CALLBRIDGE_SOFTPHONE", "true")], "softphone_token"),
            (
                vec![
                    ("CALLBRIDGE_SOFTPHONE", "true"),
                    ("CALLBRIDGE_SOFTPHONE_TOKEN", "short"),
                ],
                "softphone_token",
            ),
            (vec![("CALLBRIDGE_CONSOLE_TOKEN", "short")], "console_token"),
        ] {
            let err = load(&env, None).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = load(&[], Some("voise = \"marin\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("voise"), "{err}");
    }

    #[test]
    fn report_settings_need_a_spool_and_a_secret() {
        let err = load(
            &[("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r")],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("report_spool_dir"), "{err}");
        let err = load(
            &[
                ("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r"),
                ("CALLBRIDGE_REPORT_SPOOL_DIR", "/tmp/x"),
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("tool_secret"), "{err}");
        let err = load(&[("CALLBRIDGE_REPORT_URL", "crm")], None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("report_url"), "{err}");
        let err = load(&[("CALLBRIDGE_TWILIO_RECORDING", "mono")], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("twilio_recording") && err.contains("dual"),
            "{err}"
        );
        let c = load(
            &[
                ("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r"),
                ("CALLBRIDGE_REPORT_SPOOL_DIR", "/tmp/x"),
                ("CALLBRIDGE_TOOL_SECRET", "s"),
                ("CALLBRIDGE_REPORT_RETRY_MAX_S", "60"),
                ("CALLBRIDGE_API_TOKEN", "tok"),
            ],
            Some("twilio_recording = \"dual\"\n"),
        )
        .unwrap();
        assert_eq!(c.callcenter.report_retry_max, Duration::from_secs(60));
        assert!(c.callcenter.twilio_recording);
        assert!(
            !format!("{c:?}").contains("tok\""),
            "the API token is never printed"
        );
    }
}
