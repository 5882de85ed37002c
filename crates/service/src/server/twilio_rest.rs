//! The Twilio REST client: sends the shapes of [`crate::twilio::rest`] with the shared HTTP
//! client. Credentials are the account SID + auth token, or an API key SID + secret; they go in
//! the basic-auth header only and never into an error or a log line.

use std::time::Duration;

use crate::config::{Config, Secret};
use crate::twilio::rest::{
    call_path, calls_path, CallResource, CallUpdate, CreateCall, TwilioError,
};

/// A REST request that takes longer than this is given up (a hang-up or a transfer must not
/// hold a call's resources indefinitely).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Twilio's answers are small JSON documents.
const MAX_ANSWER: usize = 64 * 1024;

pub struct TwilioRest {
    http: reqwest::Client,
    base: String,
    auth_token: Option<Secret>,
    api_key: Option<(Secret, Secret)>,
}

impl std::fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl TwilioRest {
    pub fn new(http: reqwest::Client, cfg: &Config) -> TwilioRest {
        TwilioRest {
            http,
            base: cfg.twilio_api_base.clone(),
            auth_token: cfg.twilio_auth_token.clone(),
            api_key: cfg
                .twilio_api_key
                .clone()
                .zip(cfg.twilio_api_secret.clone()),
        }
    }

    /// Whether any credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.auth_token.is_some() || self.api_key.is_some()
    }

    /// Hangs up, redirects or re-scripts the call `call_sid`.
    pub async fn update_call(
        &self,
        account_sid: &str,
        call_sid: &str,
        update: &CallUpdate,
    ) -> Result<(), TwilioError> {
        self.post(
            account_sid,
            &call_path(account_sid, call_sid),
            &update.form(),
        )
        .await
        .map(|_| ())
    }

    /// Creates an outbound call; answers with the new call's SID.
    pub async fn create_call(
        &self,
        account_sid: &str,
        req: &CreateCall,
    ) -> Result<CallResource, TwilioError> {
        let body = self
            .post(account_sid, &calls_path(account_sid), &req.form())
            .await?;
        serde_json::from_slice::<CallResource>(&body)
            .map_err(|_| TwilioError::from_response(201, &body))
    }

    async fn post(
        &self,
        account_sid: &str,
        path: &str,
        form: &[(&'static str, String)],
    ) -> Result<Vec<u8>, TwilioError> {
        let (user, password) = match (&self.api_key, &self.auth_token) {
            (Some((key, secret)), _) => (key.0.as_str(), secret.0.as_str()),
            (None, Some(token)) => (account_sid, token.0.as_str()),
            (None, None) => {
                return Err(TwilioError::transport(
                    "no Twilio credentials configured (twilio_auth_token, or twilio_api_key + twilio_api_secret)",
                ))
            }
        };
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| TwilioError::transport(format!("cannot encode the form: {e}")))?;
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(user, Some(password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            // reqwest's errors name the URL, never the basic-auth header.
            .map_err(|e| TwilioError::transport(describe(&e)))?;
        let status = resp.status().as_u16();
        let bytes = read_limited(resp, MAX_ANSWER)
            .await
            .map_err(TwilioError::transport)?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(TwilioError::from_response(status, &bytes))
        }
    }
}

/// A response body of at most `limit` bytes (a peer that sends more is cut off, not buffered).
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(format!("answer larger than {limit} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(describe(&e)),
        }
    }
}

/// The host a redirect pointed to (for the log line; never followed).
pub fn redirect_host(resp: &reqwest::Response) -> Option<String> {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    match resp.url().join(loc) {
        Ok(u) => u.host_str().map(str::to_owned),
        Err(_) => Some("(unparsable Location)".into()),
    }
}

/// A short description of a transport error (timeout, refused, reset) for logs and outputs.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "bad answer body".into()
    } else {
        let mut s = e.to_string();
        if let Some(src) = std::error::Error::source(e) {
            s.push_str(&format!(": {src}"));
        }
        s
    }
}

/// The shared HTTP client: one connection pool for every outgoing request of the process.
///
/// It follows **no redirect**: every request it makes is signed (tools, setup lookups,
/// reports: `X-Callbridge-Signature`) or authenticated (Twilio REST: basic auth), and a
/// followed redirect would carry the body (307/308) or the headers to a host nobody
/// configured — an integrator's endpoint could point the bridge anywhere (SSRF). A 3xx comes
/// back as the answer, and each caller treats it as an error with its own log line.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("callbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building fails only without a TLS backend, which is compiled in; fall back to the
        // default client rather than panic.
        .unwrap_or_default()
}
