//! The Twilio REST client against the fake Twilio REST server: paths, basic auth, form fields,
//! Twilio's error documents, a peer that is not there.

use callbridge::config::{Config, Overrides};
use callbridge::server::twilio_rest::{http_client, TwilioRest};
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::twilio::rest::{CallUpdate, CreateCall};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tok-secret-123";

fn config(pairs: &[(&'static str, &str)]) -> Config {
    let overrides = Overrides {
        pairs: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    };
    Config::load(None, &|_| None, &overrides).expect("config")
}

#[tokio::test]
async fn hangup_and_twiml_updates_reach_the_call_with_basic_auth() {
    let fake = FakeTwilio::spawn(ACCOUNT, TOKEN).await.unwrap();
    let cfg = config(&[
        ("twilio_api_base", &fake.base_url()),
        ("twilio_auth_token", TOKEN),
    ]);
    let rest = TwilioRest::new(http_client(), &cfg);
    rest.update_call(ACCOUNT, "CA1", &CallUpdate::Hangup)
        .await
        .unwrap();
    let dial = "<Response><Dial><Number>+15551230000</Number></Dial></Response>";
    rest.update_call(ACCOUNT, "CA1", &CallUpdate::Twiml(dial.into()))
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/CA1.json")
    );
    assert!(reqs[0].auth_ok && reqs[0].user.as_deref() == Some(ACCOUNT));
    assert_eq!(reqs[0].field("Status"), Some("completed"));
    assert_eq!(reqs[1].field("Twiml"), Some(dial));
}

#[tokio::test]
async fn create_call_returns_the_sid_and_sends_every_field() {
    let fake = FakeTwilio::spawn_with_key(ACCOUNT, TOKEN, Some(("SK1", "keysecret")))
        .await
        .unwrap();
    let cfg = config(&[
        ("twilio_api_base", &fake.base_url()),
        ("twilio_api_key", "SK1"),
        ("twilio_api_secret", "keysecret"),
    ]);
    let rest = TwilioRest::new(http_client(), &cfg);
    let call = rest
        .create_call(
            ACCOUNT,
            &CreateCall {
                to: "+15551230000".into(),
                from: "+15550001111".into(),
                twiml: "<Response/>".into(),
                status_callback: Some("https://bridge.example.com/twilio/status".into()),
                status_callback_events: vec!["completed".into()],
                machine_detection: Some("Enable".into()),
                async_amd_status_callback: Some("https://bridge.example.com/twilio/amd".into()),
            },
        )
        .await
        .unwrap();
    assert!(
        call.sid.starts_with("CA") && call.sid.len() == 34,
        "{call:?}"
    );
    let r = &fake.requests()[0];
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"));
    assert!(
        r.auth_ok && r.user.as_deref() == Some("SK1"),
        "API key used as the user"
    );
    assert_eq!(r.field("MachineDetection"), Some("Enable"));
    assert_eq!(r.field("AsyncAmd"), Some("true"));
}

#[tokio::test]
async fn twilio_errors_come_back_with_their_code_and_never_the_token() {
    let fake = FakeTwilio::spawn(ACCOUNT, TOKEN).await.unwrap();
    let cfg = config(&[
        ("twilio_api_base", &fake.base_url()),
        ("twilio_auth_token", "wrong"),
    ]);
    let rest = TwilioRest::new(http_client(), &cfg);
    let e = rest
        .update_call(ACCOUNT, "CA1", &CallUpdate::Hangup)
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (401, Some(20003)));
    assert!(!format!("{e} {e:?}").contains("wrong"));

    let cfg = config(&[
        ("twilio_api_base", &fake.base_url()),
        ("twilio_auth_token", TOKEN),
    ]);
    let rest = TwilioRest::new(http_client(), &cfg);
    fake.fail_next(400, 21211, "The 'To' number is not valid.");
    let e = rest
        .create_call(
            ACCOUNT,
            &CreateCall {
                to: "x".into(),
                from: "y".into(),
                twiml: "<Response/>".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, Some(21211));
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error_not_a_hang() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(&[
        ("twilio_api_base", &format!("http://127.0.0.1:{port}")),
        ("twilio_auth_token", TOKEN),
    ]);
    let rest = TwilioRest::new(http_client(), &cfg);
    let e = rest
        .update_call(ACCOUNT, "CA1", &CallUpdate::Hangup)
        .await
        .unwrap_err();
    assert_eq!(e.status, 0);
    assert!(!e.to_string().contains(TOKEN));
}

#[test]
fn config_checks_the_twilio_rest_keys() {
    let err = |pairs: &[(&'static str, &str)]| {
        let overrides = Overrides {
            pairs: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        Config::load(None, &|_| None, &overrides)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("twilio_api_base", "ftp://x")]).starts_with("twilio_api_base"));
    assert!(err(&[("twilio_api_key", "SK1")]).starts_with("twilio_api_secret"));
    assert!(err(&[("twilio_account_sid", "123")]).starts_with("twilio_account_sid"));
}
