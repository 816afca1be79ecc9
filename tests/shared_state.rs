//! State shared by replicas through a real `redis-server`: two switchyard processes share one
//! limit and one budget exactly (`state.redis`), and preference routing's session pins and
//! decisions (Plano's `routing.session_cache: {type: redis}`); with Redis killed every request
//! still ends within the timeout (plus a second) as `on_error` says; with Redis back, sharing
//! resumes without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::{Duration, Instant};

use common::redis::{Redis, PASSWORD};
use common::{wait_for, yaml, Gateway, Mock, Response};
use serde_json::{json, Value};

fn body(max_tokens: u64) -> Value {
    json!({"model": "openai/gpt-4o", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

/// A config whose clients count in Redis, waiting at most `timeout` for it. Tests of exact
/// counts wait long (a loaded machine must not turn a slow answer into a policy decision);
/// tests of an outage wait 100 ms.
fn config(mock: &Mock, clients: &str, on_error: &str, timeout: &str) -> Value {
    yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}\nclients:\n{clients}state:\n  redis: {{url: $REDIS_URL, timeout: {timeout}, on_error: {on_error}}}\n",
        url = mock.url()
    ))
}

fn start(config: &Value, redis: &Redis, keys: &[(&str, &str)]) -> Gateway {
    let url = redis.url();
    let mut env = vec![("REDIS_URL", url.as_str())];
    env.extend_from_slice(keys);
    Gateway::start(config, &env)
}

fn send(gw: &Gateway, key: &str, extra: &[(&str, &str)], max_tokens: u64) -> Response {
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    common::chat(gw.addr, &headers, &body(max_tokens))
}

/// 2N concurrent requests split across two replicas under one client's limit of N: exactly N
/// pass, whichever replica they reached; a budget overrun on one replica is refused on the other.
#[test]
fn two_replicas_share_one_limit_and_one_budget_exactly() {
    let redis = Redis::start();
    let mock = Mock::start();
    let clients = "  - {name: alice, key: $ALICE_KEY, limits: {requests_per_minute: 10}}\n  - {name: bob, key: $BOB_KEY, budgets: {tokens_per_day: 1000}}\n";
    let config = config(&mock, clients, "open", "2s");
    let keys = [("ALICE_KEY", "sk-gw-alice"), ("BOB_KEY", "sk-gw-bob")];
    let one = start(&config, &redis, &keys);
    let two = start(&config, &redis, &keys);

    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let gw = if i % 2 == 0 { &one } else { &two };
                s.spawn(move || send(gw, "sk-gw-alice", &[], 5).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(common::tally(&statuses), [(200, 10), (429, 10)].into());
    assert_eq!(
        mock.received().len(),
        10,
        "refused requests never go upstream"
    );
    let refused = send(&two, "sk-gw-alice", &[], 5);
    assert_eq!(refused.status, 429);
    let wait_ms: u64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(wait_ms > 0 && wait_ms <= 6_000, "the next slot: {wait_ms}");

    // Bob overruns his budget through one replica; the other refuses him.
    let overrun = send(
        &one,
        "sk-gw-bob",
        &[("x-mock", "completion_tokens=1500")],
        100,
    );
    assert_eq!(overrun.status, 200);
    one.wait_logged(11);
    // The settle runs after the answer; give it its round trip.
    wait_for("the settled budget", Duration::from_secs(3), || {
        send(&two, "sk-gw-bob", &[], 10).status == 429
    });
    let refused = send(&two, "sk-gw-bob", &[], 10);
    assert_eq!(refused.json()["error"]["code"], "insufficient_quota");

    // The counts are in Redis, under the documented prefix and names.
    assert_eq!(
        redis
            .command(&["EXISTS", "switchyard:client:alice:requests_per_minute"])
            .as_deref(),
        Some(":1")
    );
    assert_eq!(
        redis
            .command(&["HGET", "switchyard:client:bob:tokens_per_day", "used"])
            .map(|_| ()),
        Some(())
    );
    for gw in [&one, &two] {
        let scrape = gw.metrics();
        assert!(
            common::sample_value(
                &scrape,
                r#"switchyard_state_store_duration_seconds_count{op="check"}"#
            ) >= 5.0,
            "{scrape}"
        );
        assert!(!scrape.contains(PASSWORD) && !gw.logs().contains(PASSWORD));
    }
    let settles = common::sample_value(
        &one.metrics(),
        r#"switchyard_state_store_duration_seconds_count{op="settle"}"#,
    );
    assert!(settles >= 1.0, "bob's reservation was settled in Redis");
}

/// Redis killed mid-run: every request ends within `timeout` + 1 s under each policy (`open`
/// passes unchecked, `closed` refuses with 503, `local` counts in the process); Redis back:
/// the replicas count in it again, without a restart.
#[test]
fn redis_down_is_bounded_by_the_policy_and_sharing_resumes() {
    for policy in ["open", "closed", "local"] {
        let mut redis = Redis::start();
        let mock = Mock::start();
        let clients = "  - {name: alice, key: $ALICE_KEY, limits: {requests_per_minute: 3}}\n";
        let gw = start(
            &config(&mock, clients, policy, "100ms"),
            &redis,
            &[("ALICE_KEY", "sk-gw-alice")],
        );
        assert_eq!(send(&gw, "sk-gw-alice", &[], 5).status, 200, "{policy}");
        let key = "switchyard:client:alice:requests_per_minute";
        assert_eq!(redis.command(&["EXISTS", key]).as_deref(), Some(":1"));

        redis.stop();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let resp = send(&gw, "sk-gw-alice", &[], 5);
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(1_100),
                "{policy}: a request took {took:?} with Redis down"
            );
            if resp.status == 503 {
                assert_eq!(resp.json()["error"]["code"], "limits_unavailable");
            }
            statuses.push(resp.status);
        }
        let expected: &[u16] = match policy {
            "open" => &[200, 200, 200, 200, 200],
            "closed" => &[503, 503, 503, 503, 503],
            // Counted here alone: 3 per minute, from nothing.
            _ => &[200, 200, 200, 429, 429],
        };
        assert_eq!(statuses, expected, "{policy}");
        assert!(
            gw.logs().contains("state store: Redis"),
            "the outage is logged"
        );
        let health = common::request(gw.addr, "GET", "/healthz", &[], b"");
        assert_eq!(health.status, 200, "alive: the policy decides meanwhile");
        assert_eq!(
            health.json()["state_store"],
            json!({"kind": "redis", "reachable": false})
        );

        // Redis back (empty): after the rest that follows a failure, counts go to it again.
        redis.resume();
        wait_for(
            "requests counted in Redis again",
            Duration::from_secs(10),
            || {
                let _ = send(&gw, "sk-gw-alice", &[], 5);
                redis.command(&["EXISTS", key]).as_deref() == Some(":1")
            },
        );
        assert!(gw.logs().contains("Redis answers again"), "{policy}");
        let health = common::request(gw.addr, "GET", "/healthz", &[], b"");
        assert_eq!(health.json()["state_store"]["reachable"], true);
    }
}

/// Plano's `routing.session_cache: {type: redis, url}`: a session pinned by one replica stays
/// pinned on the other, and a question one replica asked the router is not asked again by the
/// other.
#[test]
fn replicas_share_session_pins_and_router_answers() {
    let redis = Redis::start();
    let (router, quick, long) = (Mock::start(), Mock::start(), Mock::start());
    let config = yaml(&format!(
        r#"
overrides:
  llm_routing_model: plano/Plano-Orchestrator
model_providers:
  - {{model: plano/Plano-Orchestrator, base_url: '{router}'}}
  - {{model: openai/gpt-4o-mini, base_url: '{quick}', access_key: k}}
  - {{model: openai/gpt-4o, base_url: '{long}', access_key: k}}
routing_preferences:
  - {{name: quick tasks, description: short factual questions, models: [openai/gpt-4o-mini]}}
  - {{name: long context, description: summarizing long documents, models: [openai/gpt-4o]}}
routing:
  session_cache: {{type: redis, url: $REDIS_URL}}
"#,
        router = router.url(),
        quick = quick.url(),
        long = long.url(),
    ));
    let one = start(&config, &redis, &[]);
    let two = start(&config, &redis, &[]);
    let ask = |gw: &Gateway, session: Option<&str>, text: &str| {
        let mut headers = vec![];
        if let Some(s) = session {
            headers.push(("x-model-affinity", s));
        }
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]});
        let resp = common::chat(gw.addr, &headers, &body);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        resp.header("x-switchyard-route").unwrap_or("").to_owned()
    };
    let stored = |pattern: &str, n: usize| {
        wait_for("the shared decision", Duration::from_secs(3), || {
            redis.command(&["KEYS", pattern]).as_deref() == Some(format!("*{n}").as_str())
        })
    };

    router.set_mode(r#"reply={"route": ["long context"]}"#);
    assert_eq!(
        ask(&one, Some("s1"), "Summarize this long report."),
        "long context (router)"
    );
    stored("switchyard:routing:pin:*", 1);
    // The router would now say otherwise; the session stays where it started, on either replica.
    router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    assert_eq!(
        ask(&two, Some("s1"), "And what is 2+2?"),
        "long context (pinned)"
    );
    assert_eq!(
        router.received().len(),
        1,
        "a pinned session does not ask the router"
    );

    // One question, asked on one replica, is answered from the store on the other.
    assert_eq!(ask(&one, None, "What is 3+3?"), "quick tasks (router)");
    stored("switchyard:routing:answer:*", 2);
    router.set_mode(r#"reply={"route": ["long context"]}"#);
    assert_eq!(ask(&two, None, "What is 3+3?"), "quick tasks (cache)");
    assert_eq!(router.received().len(), 2);
    assert_eq!(long.received().len(), 2);
    assert_eq!(quick.received().len(), 2);
}

/// `rediss://` with a password: the gateway verifies Redis's certificate (here against the test
/// CA, given as `SSL_CERT_FILE` as to any rustls client using the system's roots) and counts in
/// it.
#[test]
fn redis_over_tls_with_a_password_counts_the_same() {
    let redis = Redis::start_tls();
    let mock = Mock::start();
    let clients = "  - {name: alice, key: $ALICE_KEY, limits: {requests_per_minute: 2}}\n";
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let url = redis.tls_url();
    let gw = Gateway::start(
        &config(&mock, clients, "closed", "2s"),
        &[
            ("REDIS_URL", &url),
            ("ALICE_KEY", "sk-gw-alice"),
            ("SSL_CERT_FILE", &ca),
        ],
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| send(&gw, "sk-gw-alice", &[], 5).status)
        .collect();
    // `closed`: had TLS failed, every request would be a 503.
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        redis
            .command(&["EXISTS", "switchyard:client:alice:requests_per_minute"])
            .as_deref(),
        Some(":1")
    );
    assert!(!gw.logs().contains(PASSWORD));
}

/// A SIGHUP that raises a client's limit keeps what was counted, in the process and in Redis:
/// after 3 of 3, a limit of 4 lets exactly one more through (not 4 more).
#[test]
fn a_reload_that_changes_a_limit_keeps_what_was_counted() {
    let redis = Redis::start();
    for shared in [false, true] {
        let mock = Mock::start();
        let clients = "  - {name: alice, key: $ALICE_KEY, limits: {requests_per_minute: 3}}\n";
        let mut config = config(&mock, clients, "closed", "2s");
        if !shared {
            config.as_object_mut().unwrap().remove("state");
        }
        let mut gw = start(&config, &redis, &[("ALICE_KEY", "sk-gw-alice")]);
        let statuses = |gw: &Gateway, n: usize| -> Vec<u16> {
            (0..n)
                .map(|_| send(gw, "sk-gw-alice", &[], 5).status)
                .collect()
        };
        assert_eq!(statuses(&gw, 4), [200, 200, 200, 429], "shared: {shared}");
        gw.rewrite(|c| c["clients"][0]["limits"]["requests_per_minute"] = json!(4));
        gw.signal("HUP");
        wait_for("the reload", Duration::from_secs(5), || {
            gw.metric(r#"switchyard_config_reloads_total{result="success"}"#) == 1.0
        });
        assert_eq!(statuses(&gw, 2), [200, 429], "shared: {shared}");
        // (Each round's keys are its own: flush between them.)
        redis.command(&["FLUSHALL"]);
    }
}

/// A Redis that answers late (busy for 1.5 s) costs a request at most the timeout: it passes
/// under `on_error: open`, and later requests skip Redis while it rests.
#[test]
fn a_slow_redis_costs_a_request_at_most_the_timeout() {
    let redis = Redis::start();
    let mock = Mock::start();
    let clients = "  - {name: alice, key: $ALICE_KEY, limits: {requests_per_minute: 100}}\n";
    let gw = start(
        &config(&mock, clients, "open", "100ms"),
        &redis,
        &[("ALICE_KEY", "sk-gw-alice")],
    );
    assert_eq!(send(&gw, "sk-gw-alice", &[], 5).status, 200);
    std::thread::scope(|s| {
        let sleeping = s.spawn(|| redis.command(&["DEBUG", "SLEEP", "1.5"]));
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(send(&gw, "sk-gw-alice", &[], 5).status, 200);
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(600),
                "{took:?} while Redis sleeps"
            );
        }
        assert_eq!(sleeping.join().unwrap().as_deref(), Some("+OK"));
    });
    assert!(
        common::sample_value(
            &gw.metrics(),
            r#"switchyard_ratelimit_decisions_total{client="alice",decision="unchecked",limit="requests_per_minute"}"#
        ) >= 3.0
    );
}
