//! Reports with a cluster survive what a single process cannot: a replica killed with its
//! spool deleted (another replica delivers from the stream), NATS killed while calls end
//! (they spool locally and move to the stream when NATS is back), and NATS restarted from its
//! store (nothing stored is lost). Every report reaches the receiver accepted once, with one
//! Idempotency-Key.

use std::time::Duration;

use callbridge::caller::{self, CallerOptions, Step};
use callbridge::sim::receiver::{Received, Receiver};
use callbridge::sim::SimConfig;

mod support;
use support::binary::{self, Process};
use support::nats::{replica_env, start_replica, wait_joined, Nats};
use support::reports::{env as env_for, receiver_and_spool};
use support::spooled;
use support::{bridge, eventually, simulator, TempDir, WAIT};

async fn short_call(bridge_url: &str, call_sid: &str) {
    caller::run(CallerOptions {
        bridge: bridge_url.to_owned(),
        call_sid: call_sid.to_owned(),
        script: vec![Step::Say(caller::synthetic_speech(400))],
        ..CallerOptions::default()
    })
    .await
    .expect("the call runs");
}

/// The receiver (answering 200 again) gets each of `call_sids` accepted, and a moment later
/// (for a late duplicate) still each exactly once.
async fn assert_delivered_once_each(rx: &Receiver, call_sids: &[&str]) {
    let got = rx
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.answered == 200).count() >= call_sids.len()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = if got.is_empty() { got } else { rx.received() };
    assert_each_accepted_once(&got, call_sids);
}

/// Each of `call_sids` reported: accepted exactly once, every try of a report with the same
/// Idempotency-Key (its report id).
fn assert_each_accepted_once(got: &[Received], call_sids: &[&str]) {
    let mut accepted: Vec<String> = Vec::new();
    for r in got.iter().filter(|r| r.answered == 200) {
        let doc = r.json();
        assert_eq!(r.idempotency_key.as_deref(), doc["report_id"].as_str());
        assert!(r.signature_ok);
        accepted.push(doc["call_sid"].as_str().unwrap_or_default().to_owned());
    }
    accepted.sort();
    assert_eq!(accepted, call_sids, "each accepted once: {got:?}");
    for sid in call_sids {
        let mut keys: Vec<&str> = got
            .iter()
            .filter(|r| r.json()["call_sid"] == *sid)
            .filter_map(|r| r.idempotency_key.as_deref())
            .collect();
        keys.dedup();
        assert_eq!(keys.len(), 1, "one Idempotency-Key for {sid}: {keys:?}");
    }
}

/// A (a real `callbridge serve`) ends a call while the receiver answers 503, and is killed with
/// SIGKILL; its spool directory is deleted (a deleted pod's emptyDir). B delivers the report
/// once the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_a_killed_replica_is_delivered_by_another() {
    let Some(nats) = Nats::start("sigkill") else {
        return;
    };
    let (rx, spool_a, report_url) = receiver_and_spool(&[503; 1000], "cluster-kill-a").await;
    let spool_b = TempDir::new("cluster-kill-b");
    let nats_url = nats.url();
    let start = |pod: &'static str, spool: &TempDir| {
        let mut env = env_for(&report_url, spool);
        env.extend(replica_env(&nats_url, pod));
        let port = binary::free_port();
        (Process::spawn(&mut binary::serve(port, "warn", &env)), port)
    };
    let (a, port_a) = start("pod-a", &spool_a);
    let (_b, port_b) = start("pod-b", &spool_b);
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    binary::wait_healthy(port_a).await;
    binary::wait_healthy(port_b).await;
    wait_joined(&url_a).await;
    wait_joined(&url_b).await;
    short_call(&url_a, "CAkilled1").await;
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 503))
        .await;
    a.kill();
    drop(spool_a);
    rx.script(&[]);
    let got = rx
        .wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    // Late duplicates would show up within the ack wait (1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = if got.is_empty() { got } else { rx.received() };
    assert_each_accepted_once(&got, &["CAkilled1"]);
    assert!(spooled(&spool_b).is_empty(), "B spooled nothing");
}

/// NATS is killed (SIGKILL) with one report in its stream and a call running: the call goes
/// on and ends, its report spools locally. NATS restarts from its store: the spooled report
/// moves into the stream, and both are delivered once the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_survive_nats_killed_mid_call_and_restarted_from_its_store() {
    let Some(mut nats) = Nats::start("restart") else {
        return;
    };
    let sim = simulator(SimConfig::default()).await;
    let (rx, spool, report_url) = receiver_and_spool(&[503; 1000], "cluster-nats-restart").await;
    let sim_url = sim.url();
    let mut env = env_for(&report_url, &spool);
    env.push(("REALTIME_URL", &sim_url));
    let (a, metrics) = start_replica(&nats.url(), "pod-a", &env, None).await;
    short_call(&a.url(""), "CAbefore").await;
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 503))
        .await;
    assert!(spooled(&spool).is_empty(), "in the stream, not the spool");

    let url = a.url("");
    let during = tokio::spawn(async move {
        caller::run(CallerOptions {
            bridge: url,
            call_sid: "CAduring".into(),
            script: vec![
                Step::Say(caller::synthetic_speech(400)),
                Step::Silence(Duration::from_millis(2500)),
            ],
            ..CallerOptions::default()
        })
        .await
    });
    let running = eventually(WAIT, async || sim.session(1).is_some()).await;
    assert!(running, "the second call reached the model");
    nats.kill();
    let lost = bridge::eventually_has_line(&metrics, "callbridge_cluster_connected 0").await;
    assert!(lost, "the bridge noticed NATS is gone");
    let ready = reqwest::get(a.url("/readyz")).await.expect("readyz");
    assert_eq!(
        ready.status().as_u16(),
        200,
        "still ready: calls are served"
    );
    let detail = ready.text().await.unwrap_or_default();
    assert!(detail.contains("cluster degraded"), "{detail}");
    let call = during.await.expect("join").expect("the call runs on");
    assert!(call.media_received > 0, "the agent was heard: {call:?}");
    let spooled_now = eventually(WAIT, async || spooled(&spool).len() == 1).await;
    assert!(spooled_now, "the report of the call is spooled");

    nats.run();
    let moved = eventually(WAIT, async || spooled(&spool).is_empty()).await;
    assert!(moved, "moved into the stream: {:?}", spooled(&spool));
    rx.script(&[]);
    assert_delivered_once_each(&rx, &["CAbefore", "CAduring"]).await;
    bridge::stop_both(a, sim).await;
}

/// Three JetStream servers and `cluster_replicas = 3`: one is killed while a report waits in
/// the stream (the receiver answers 503); a call ending after that is stored on the two left.
/// Nothing is lost: both are delivered once when the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_node_lost_loses_no_report() {
    let Some(mut servers) = Nats::three("node-lost") else {
        return;
    };
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let (rx, spool, report_url) = receiver_and_spool(&[503; 1000], "cluster-node-lost").await;
    let mut env = env_for(&report_url, &spool);
    env.push(("CALLBRIDGE_CLUSTER_REPLICAS", "3"));
    let (a, _) = start_replica(&urls, "pod-a", &env, None).await;
    short_call(&a.url(""), "CAnode1").await;
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 503))
        .await;
    assert!(spooled(&spool).is_empty(), "in the stream, not the spool");
    servers[0].kill();
    short_call(&a.url(""), "CAnode2").await;
    rx.script(&[]);
    assert_delivered_once_each(&rx, &["CAnode1", "CAnode2"]).await;
    a.stop(Duration::from_secs(1)).await;
}

/// A receiver refusing a report (400) with the cluster: tried once, then kept in the
/// dead-letter stream (`cluster_reports_dead`), not retried and not left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_goes_to_the_dead_letter_stream() {
    let Some(nats) = Nats::start("dead") else {
        return;
    };
    let (rx, spool, report_url) = receiver_and_spool(&[400], "cluster-dead").await;
    let env = env_for(&report_url, &spool);
    let (a, metrics) = start_replica(&nats.url(), "pod-a", &env, None).await;
    short_call(&a.url(""), "CArefused").await;
    let page = |m: &callbridge::metrics::Metrics| m.render();
    let buried = eventually(WAIT, async || {
        let p = page(&metrics);
        p.lines().any(|l| l == "callbridge_cluster_reports_dead 1")
            && p.lines()
                .any(|l| l == "callbridge_cluster_reports_waiting 0")
    })
    .await;
    assert!(buried, "in the dead letters:\n{}", page(&metrics));
    assert!(page(&metrics)
        .lines()
        .any(|l| l == "callbridge_reports_total{result=\"dead\"} 1"));
    let got = rx.received();
    assert_eq!(got.len(), 1, "refused once, not retried: {got:?}");
    assert_eq!(got[0].answered, 400);
    assert!(spooled(&spool).is_empty());
    a.stop(Duration::from_secs(1)).await;
}
