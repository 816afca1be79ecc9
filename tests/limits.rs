//! Budgets, per-model limits and Plano's `ratelimits`, counted in one process, on the real
//! binary: what passes, what is refused with which wait, what the upstream received, and what
//! `/metrics` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::Duration;

use common::{yaml, Gateway, Mock, Response};
use serde_json::{json, Value};

fn body(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

fn send(gw: &Gateway, headers: &[(&str, &str)], body: &Value) -> Response {
    common::chat(gw.addr, headers, body)
}

fn message(resp: &Response) -> String {
    resp.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `budgets.tokens_per_day`: an answer longer than reserved is settled as debt; the next
/// request is refused until midnight UTC with `insufficient_quota` and `x-should-retry: false`,
/// nothing sent upstream. A streamed answer is settled from its final usage the same way.
#[test]
fn a_daily_budget_is_spent_by_real_usage_streams_included() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}\nclients:\n  - {{name: alice, key: $ALICE_KEY, budgets: {{tokens_per_day: 1000}}}}\n  - {{name: bob, key: $BOB_KEY, budgets: {{tokens_per_day: 1000}}}}\n",
        url = mock.url()
    ));
    let gw = Gateway::start(
        &config,
        &[("ALICE_KEY", "sk-gw-alice"), ("BOB_KEY", "sk-gw-bob")],
    );
    let alice = [
        ("authorization", "Bearer sk-gw-alice"),
        ("x-mock", "completion_tokens=1500"),
    ];
    // About 110 reserved, 1,503 used: the budget is overrun, and that is counted.
    assert_eq!(send(&gw, &alice, &body("openai/gpt-4o", 100)).status, 200);
    gw.wait_logged(1);
    let refused = send(&gw, &alice[..1], &body("openai/gpt-4o", 10));
    assert_eq!(refused.status, 429, "{}", message(&refused));
    assert_eq!(refused.json()["error"]["code"], "insufficient_quota");
    assert_eq!(refused.header("x-should-retry"), Some("false"));
    assert!(
        message(&refused).contains("budget of 1000 tokens per day of client `alice` is spent"),
        "{}",
        message(&refused)
    );
    // The wait is until midnight UTC: more than zero, at most a day.
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    assert_eq!(
        mock.received().len(),
        1,
        "the refused request never went upstream"
    );

    // A stream: 7 + 990 tokens in its final usage chunk leave 3 of bob's 1,000.
    let bob = [
        ("authorization", "Bearer sk-gw-bob"),
        ("x-mock", "sse=3,usage,completion_tokens=990"),
    ];
    let mut streamed = body("openai/gpt-4o", 50);
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = send(&gw, &bob, &streamed);
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8_lossy(&resp.body).contains("[DONE]"));
    gw.wait_logged(3);
    let refused = send(&gw, &bob[..1], &body("openai/gpt-4o", 10));
    assert_eq!(refused.status, 429, "{}", message(&refused));
    let scrape = gw.metrics();
    for line in [
        r#"switchyard_budget_remaining_tokens{client="bob"} 3"#,
        r#"switchyard_budget_remaining_tokens{client="alice"} 0"#,
        r#"switchyard_ratelimit_decisions_total{client="alice",decision="refused",limit="tokens_per_day"} 1"#,
        r#"switchyard_ratelimit_decisions_total{client="bob",decision="allowed",limit="tokens_per_day"} 1"#,
    ] {
        assert!(scrape.contains(line), "missing `{line}` in\n{scrape}");
    }
    assert!(
        scrape.contains(
            r#"client="alice",model="openai/gpt-4o",provider="openai",status_class="2xx"} 1"#
        ),
        "requests carry the client's name:\n{scrape}"
    );
    assert!(!scrape.contains("sk-gw-"), "no key in /metrics");
    assert_eq!(mock.received().len(), 2);
}

/// `model_limits`: a client's limit on one model (named by its alias) holds for that model
/// however the request names it, and leaves the client's other models alone.
#[test]
fn a_clients_limit_on_one_model_leaves_its_other_models_alone() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o-mini, base_url: '{url}', access_key: k}}\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: k}}\nmodel_aliases: {{fast: {{target: openai/gpt-4o-mini}}}}\nclients:\n  - {{name: carol, key: $CAROL_KEY, model_limits: {{fast: {{requests_per_minute: 2}}}}}}\n",
        url = mock.url()
    ));
    let gw = Gateway::start(&config, &[("CAROL_KEY", "sk-gw-carol")]);
    let carol = [("x-api-key", "sk-gw-carol")];
    // On success the provider's own rate-limit headers reach the client untouched.
    let first = send(
        &gw,
        &[carol[0], ("x-mock", "ratelimit_headers")],
        &body("fast", 5),
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("5000"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("4999"));
    assert_eq!(
        send(&gw, &carol, &body("gpt-4o-mini", 5)).status,
        200,
        "the alias's target is the same model"
    );
    let refused = send(&gw, &carol, &body("openai/gpt-4o-mini", 5));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["code"], "rate_limit_exceeded");
    assert!(
        message(&refused).contains("2 requests per minute of client `carol` on `fast`"),
        "{}",
        message(&refused)
    );
    let wait_ms: u64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(
        wait_ms > 0 && wait_ms <= 30_000,
        "the next slot, not the minute: {wait_ms}"
    );
    assert_eq!(send(&gw, &carol, &body("openai/gpt-4o", 5)).status, 200);
    assert_eq!(mock.received().len(), 3);
}

/// Plano's documented `ratelimits` example, loaded unchanged, works as Plano documents it:
/// `value: "*"` is one limit per user, the `provider/model` form matches a request for the bare
/// id, no `x-arch-ratelimit-selector` is needed, a request without the header is not limited,
/// and the answer counts too. A `second` rule refills after its window.
#[test]
fn plano_ratelimits_work_as_documented_and_refill() {
    let mock = Mock::start();
    let config = yaml(&format!(
        r#"
model_providers:
  - {{model: openai/gpt-4o, base_url: '{url}', access_key: k}}
  - {{model: openai/gpt-4o-mini, base_url: '{url}', access_key: k}}
ratelimits:
  - model: openai/gpt-4o
    selector:
      key: x-user-id
      value: "*"
    limit:
      tokens: 1000
      unit: hour
  - model: openai/gpt-4o-mini
    selector:
      key: x-org-id
      value: acme-corp
    limit:
      tokens: 500000
      unit: day
  - model: openai/gpt-4o
    selector: {{key: x-team, value: "*"}}
    limit: {{tokens: 1000, unit: second}}
"#,
        url = mock.url()
    ));
    let gw = Gateway::start(&config, &[]);
    // 1,503 tokens used by bob's first request: over his 1,000 per hour.
    let bob = [("x-user-id", "bob"), ("x-mock", "completion_tokens=1500")];
    assert_eq!(send(&gw, &bob, &body("gpt-4o", 100)).status, 200);
    gw.wait_logged(1);
    let refused = send(&gw, &bob[..1], &body("gpt-4o", 100));
    assert_eq!(refused.status, 429);
    assert!(
        message(&refused).contains("1000 tokens per hour of `x-user-id: bob` on `openai/gpt-4o`"),
        "{}",
        message(&refused)
    );
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), Some("1000"));
    // Another user, and a request without the header, are not limited by bob's use.
    assert_eq!(
        send(&gw, &[("x-user-id", "carol")], &body("gpt-4o", 100)).status,
        200
    );
    assert_eq!(send(&gw, &[], &body("gpt-4o", 100)).status, 200);
    // The rule on another model does not apply; acme's own does and passes.
    assert_eq!(
        send(&gw, &[("x-org-id", "acme-corp")], &body("gpt-4o-mini", 100)).status,
        200
    );

    // Refill: 1,503 used at 1,000 per second is ~0.5 s of debt beyond the second's allowance.
    let team = [("x-team", "red"), ("x-mock", "completion_tokens=1500")];
    assert_eq!(send(&gw, &team, &body("gpt-4o", 100)).status, 200);
    gw.wait_logged(5);
    let refused = send(&gw, &team[..1], &body("gpt-4o", 100));
    assert_eq!(refused.status, 429);
    let wait_ms: u64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(wait_ms > 100 && wait_ms <= 1_600, "{wait_ms}");
    std::thread::sleep(Duration::from_millis(wait_ms + 100));
    assert_eq!(
        send(&gw, &team[..1], &body("gpt-4o", 100)).status,
        200,
        "the bucket refilled"
    );
    assert_eq!(mock.received().len(), 6);
    let scrape = gw.metrics();
    assert!(
        scrape.contains(r#"switchyard_ratelimit_decisions_total{client="anonymous",decision="refused",limit="ratelimits"} 2"#),
        "{scrape}"
    );
}

/// A request counts once against its client's limits, whatever its retries and fallbacks: two
/// requests that each took three attempts (a 503, a retry, a fallback) fit a limit of 2.
#[test]
fn retries_and_fallbacks_are_not_charged_again() {
    let (failing, good) = (Mock::start(), Mock::start());
    failing.set_mode("status=503");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: alpha/m1, base_url: '{bad}', retry: {{attempts: 2, on: [5xx], backoff: {{base: 1ms, max: 1ms}}}}, fallbacks: [beta/m2]}}\n  - {{model: beta/m2, base_url: '{ok}'}}\nclients:\n  - {{name: erin, key: $ERIN_KEY, limits: {{requests_per_minute: 2, tokens_per_minute: 100000}}}}\n",
        bad = failing.url(),
        ok = good.url()
    ));
    let gw = Gateway::start(&config, &[("ERIN_KEY", "sk-gw-erin")]);
    let erin = [("authorization", "Bearer sk-gw-erin")];
    for _ in 0..2 {
        assert_eq!(send(&gw, &erin, &body("alpha/m1", 5)).status, 200);
    }
    assert_eq!(
        failing.received().len(),
        4,
        "two attempts each on the failing model"
    );
    assert_eq!(good.received().len(), 2, "then the fallback");
    let refused = send(&gw, &erin, &body("alpha/m1", 5));
    assert_eq!(
        refused.status, 429,
        "the third request, not the third attempt"
    );
    assert_eq!(failing.received().len(), 4);
}
