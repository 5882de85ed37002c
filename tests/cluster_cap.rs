//! `cluster_max_calls` across replicas, and a cluster whose NATS is not there at start-up.

use std::time::Duration;

use callbridge::caller::{self, CallerOptions, Step};
use callbridge::sim::SimConfig;

mod support;
use support::nats::{joined, replica_env, start_replica, Nats};
use support::reports::{self, receiver_and_spool};
use support::{binary, bridge, eventually, nats, simulator, WAIT};

async fn webhook(base: &str) -> String {
    reqwest::Client::new()
        .post(format!("{base}/twiml"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("CallSid=CAprobe&From=%2B15550001111&To=%2B15551230000")
        .send()
        .await
        .expect("the webhook answers")
        .text()
        .await
        .unwrap_or_default()
}

const BUSY: &str = "<Reject reason=\"busy\"";

/// With `cluster_max_calls = 1`, one call running on A makes both A and B answer
/// `<Reject reason="busy"/>`; once it ended, both take calls again (the count did not leak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_cap_rejects_on_every_replica_while_reached() {
    let Some(nats) = Nats::start("cap") else {
        return;
    };
    let sim = simulator(SimConfig::default()).await;
    let (sim_url, nats_url) = (sim.url(), nats.url());
    let env = [
        ("REALTIME_URL", sim_url.as_str()),
        ("CALLBRIDGE_CLUSTER_MAX_CALLS", "1"),
    ];
    let (a, _) = start_replica(&nats_url, "pod-a", &env, None).await;
    let (b, b_metrics) = start_replica(&nats_url, "pod-b", &env, None).await;
    assert!(!webhook(&b.url("")).await.contains(BUSY), "no call yet");

    let a_url = a.url("");
    let call = tokio::spawn(async move {
        caller::run(CallerOptions {
            bridge: a_url,
            call_sid: "CAcap1".into(),
            script: vec![Step::Silence(Duration::from_secs(4))],
            ..CallerOptions::default()
        })
        .await
    });
    let counted = bridge::eventually_has_line(&b_metrics, "callbridge_cluster_calls 1").await;
    assert!(counted, "B counts A's call:\n{}", b_metrics.render());
    assert!(webhook(&b.url("")).await.contains(BUSY), "B rejects");
    assert!(webhook(&a.url("")).await.contains(BUSY), "A rejects");
    call.await.expect("join").expect("the call runs");
    let free = eventually(WAIT, async || !webhook(&b.url("")).await.contains(BUSY)).await;
    assert!(free, "B takes calls again once A's call ended");
    a.stop(Duration::from_secs(1)).await;
    bridge::stop_both(b, sim).await;
}

/// NATS down when the bridge starts: it starts and serves calls anyway, `/readyz` is 200 and
/// says the cluster is degraded, a call's report is delivered from the local spool; once NATS
/// comes up the bridge joins without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_starts_and_serves_calls_while_nats_is_down() {
    let Some(mut nats) = Nats::start("down-at-start") else {
        return;
    };
    nats.kill();
    let (rx, spool, report_url) = receiver_and_spool(&[], "cluster-down-at-start").await;
    let nats_url = nats.url();
    let mut env = replica_env(&nats_url, "pod-a");
    env.extend(reports::env(&report_url, &spool));
    let port = binary::free_port();
    let mut bridge = binary::Process::spawn(&mut binary::serve(port, "info", &env));
    binary::wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    nats::assert_degraded(&base).await;
    caller::run(CallerOptions {
        bridge: base.clone(),
        call_sid: "CAnonats".into(),
        script: vec![Step::Say(caller::synthetic_speech(400))],
        ..CallerOptions::default()
    })
    .await
    .expect("the call runs");
    let got = rx
        .wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    assert_eq!(got[0].json()["call_sid"], "CAnonats");

    nats.run();
    if !joined(&base).await {
        panic!(
            "the bridge did not join once NATS came:\n{}",
            bridge.output()
        );
    }
    let mut seen = Vec::new();
    let logged = bridge.wait_for_line(WAIT, &mut seen, |l| {
        l.contains("cluster: connected to NATS")
    });
    assert!(logged, "the join is logged: {seen:?}");
}
