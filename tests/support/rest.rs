//! The fake Twilio REST API as the wrap-up tests run it: one account, reached with an API key,
//! and one call on it.

use callbridge::sim::twilio_rest::FakeTwilio;

pub const API_KEY: &str = "SK00000000000000000000000000000001";
pub const API_SECRET: &str = "api-secret-for-tests";
pub const ACCOUNT: &str = "AC00000000000000000000000000000001";
pub const CALL_SID: &str = "CA00000000000000000000000000000001";

/// The fake Twilio REST API, taking the API key (its auth token unused).
pub async fn fake_twilio() -> FakeTwilio {
    FakeTwilio::spawn_with_key(ACCOUNT, "unused-token", Some((API_KEY, API_SECRET)))
        .await
        .expect("fake twilio")
}

/// The bridge's settings that send its REST requests to the fake at `base`.
pub fn env(base: &str) -> [(&'static str, &str); 4] {
    [
        ("CALLBRIDGE_TWILIO_API_BASE", base),
        ("CALLBRIDGE_TWILIO_API_KEY", API_KEY),
        ("CALLBRIDGE_TWILIO_API_SECRET", API_SECRET),
        ("CALLBRIDGE_TWILIO_ACCOUNT_SID", ACCOUNT),
    ]
}
