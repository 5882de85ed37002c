//! The cluster's NATS connection authenticated: a bridge with the token (`cluster_token_file`)
//! joins, one without it is refused by NATS and serves on degraded, and the token appears in
//! nothing either bridge prints.

mod support;
use support::binary::{self, Process};
use support::nats::{replica_env, wait_joined, Nats};
use support::{bridge, TempDir};

const TOKEN: &str = "nats-token-for-tests-6d1f3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_bridge_with_the_token_joins_and_the_token_is_never_printed() {
    let Some(nats) = Nats::with_token("auth", TOKEN) else {
        return;
    };
    let dir = TempDir::new("cluster-auth");
    let token_file = dir.file("nats.token", &format!("{TOKEN}\n"));
    let url = nats.url();
    let token_path = token_file.to_str().expect("a UTF-8 path");
    let start = |pod: &'static str, with_token: bool| {
        let mut env = replica_env(&url, pod);
        env.extend([
            ("REALTIME_URL", bridge::NO_UPSTREAM),
            ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ]);
        if with_token {
            env.push(("CALLBRIDGE_CLUSTER_TOKEN_FILE", token_path));
        }
        let port = binary::free_port();
        (
            Process::spawn(&mut binary::serve(port, "trace", &env)),
            port,
        )
    };
    let (member, member_port) = start("pod-a", true);
    let (outsider, outsider_port) = start("pod-b", false);
    binary::wait_healthy(member_port).await;
    binary::wait_healthy(outsider_port).await;
    wait_joined(&format!("http://127.0.0.1:{member_port}")).await;
    // The outsider is refused by NATS: serving, and saying it is degraded.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{outsider_port}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let detail = ready.text().await.unwrap_or_default();
    assert!(detail.contains("cluster degraded"), "{detail}");
    for (name, out) in [("member", member.output()), ("outsider", outsider.output())] {
        assert!(!out.contains(TOKEN), "the {name} printed the token:\n{out}");
    }
}
