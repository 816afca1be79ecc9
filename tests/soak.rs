//! The soak and abuse run (`scripts/soak`; not part of `scripts/test`): for `SOAK_SECONDS`
//! (default 180) the real binary serves keep-alive and new-connection clients and SSE streams
//! while it is reloaded 50 times and upgraded 3 times, slowloris and silent clients hold
//! connections, random bytes are posted as bodies, and one of the model's two endpoints keeps
//! failing (500s, 429s, answers slower than the timeout). It asserts that no well-formed request failed, that no
//! malformed one reached an upstream or got a 5xx, and prints the figures README "Operations"
//! quotes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{alive, chat, request, Conn, Mock, Prepared};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    streams: AtomicU64,
    fuzzed: AtomicU64,
    fuzz_5xx: AtomicU64,
    slow_cut: AtomicU64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A tiny xorshift for the fuzzer: reproducible, no dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn spawn_gateway(prepared: &Prepared, upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    if upgrade {
        cmd.arg("-u");
    }
    cmd.arg("-c")
        .arg(&prepared.conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(prepared.dir.join("stderr.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "minutes long: run with scripts/soak"]
fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let (good, flaky) = (Mock::start(), Arc::new(Mock::start()));
    let config = common::yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', name: good, retry: {{attempts: 3, on: [connect, timeout, 429, 5xx], backoff: {{base: 10ms, max: 50ms}}}}, timeouts: {{first_byte: 2s}}}}\n  - {{model: custom/m, base_url: '{}', name: flaky, retry: {{attempts: 3, on: [connect, timeout, 429, 5xx], backoff: {{base: 10ms, max: 50ms}}}}, timeouts: {{first_byte: 2s}}}}\nserver: {{grace_period: 10s, header_timeout: 2s, access_log: 'off'}}\n",
        good.url(),
        flaky.url()
    ));
    let prepared = Prepared::new(&config, &[]);
    let addr = prepared.addr;
    let mut child = spawn_gateway(&prepared, false);
    common::wait_for("the gateway", Duration::from_secs(20), || {
        std::panic::catch_unwind(|| request(addr, "GET", "/healthz", &[], b""))
            .is_ok_and(|r| r.status == 200)
    });
    let rss_start = rss_kib(child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut threads = Vec::new();

    // Well-formed clients: keep-alive, new connections, streams. Every one must succeed.
    for kind in 0..7 {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(std::thread::spawn(move || {
            let mut kept: Option<Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
                        0..=2 => keep_alive_request(addr, &mut kept),
                        3 | 4 => chat(addr, &[], &common::ask("m")).status == 200,
                        _ => stream(addr),
                    }));
                let counter = match result {
                    Ok(true) if kind >= 5 => &counts.streams,
                    Ok(true) => &counts.ok,
                    _ => {
                        kept = None;
                        &counts.failed
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Slowloris and silent clients: cut by header_timeout, never answered.
    for slow in 0..8 {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                if slow % 2 == 0 {
                    for b in b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" {
                        if s.write_all(&[*b]).is_err() || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
                let mut buf = [0u8; 64];
                if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
                    counts.slow_cut.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Fuzzed bodies: random bytes and broken JSON; a 4xx each, never a 5xx, never upstream.
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                let len = (next(&mut seed) % 512) as usize;
                let mut body: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
                if next(&mut seed).is_multiple_of(2) {
                    body = format!("{{\"model\": {}", String::from_utf8_lossy(&body)).into_bytes();
                }
                let path = ["/v1/chat/completions", "/v1/messages"][(next(&mut seed) % 2) as usize];
                let status = std::panic::catch_unwind(|| {
                    request(
                        addr,
                        "POST",
                        path,
                        &[("content-type", "application/json")],
                        &body,
                    )
                    .status
                });
                counts.fuzzed.fetch_add(1, Ordering::Relaxed);
                if !matches!(status, Ok(400..=499)) {
                    counts.fuzz_5xx.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The flaky endpoint cycles through its faults.
    {
        let stop = stop.clone();
        let flaky = flaky.clone();
        threads.push(std::thread::spawn(move || {
            // Faults the retry policy covers (an upstream that hangs up after reading a request
            // may have acted on it: that one is the client's to see, never re-sent).
            let modes = ["status=500", "status=429", "", "delay_ms=3000"];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                flaky.set_mode(modes[i % modes.len()]);
                i += 1;
                std::thread::sleep(Duration::from_millis(700));
            }
        }));
    }

    // Operations: 50 reloads and 3 upgrades spread over the run.
    let started = Instant::now();
    let total = Duration::from_secs(seconds);
    let (mut reloads, mut upgrades) = (0, 0);
    while started.elapsed() < total {
        let due_upgrades = (started.elapsed().as_secs_f64() / total.as_secs_f64() * 4.0) as u32;
        if upgrades < 3 && due_upgrades > upgrades {
            let old = child.id();
            let new = spawn_gateway(&prepared, true);
            common::wait_for("the old process to exit", Duration::from_secs(30), || {
                !alive(old)
            });
            let _ = child.wait();
            child = new;
            upgrades += 1;
        } else if reloads < 50 {
            common::signal(child.id(), "HUP");
            reloads += 1;
        }
        std::thread::sleep(total / 60);
    }
    while reloads < 50 {
        common::signal(child.id(), "HUP");
        reloads += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let rss_end = rss_kib(child.id());
    let reload_ok = common::sample_value(
        &String::from_utf8_lossy(&request(prepared.metrics_addr, "GET", "/metrics", &[], b"").body),
        r#"switchyard_config_reloads_total{result="success"}"#,
    );
    common::signal(child.id(), "TERM");
    let _ = child.wait();

    let fuzzed_upstream = good
        .received()
        .iter()
        .chain(flaky.received().iter())
        .filter(|r| serde_json::from_slice::<serde_json::Value>(&r.body).is_err())
        .count();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak {seconds}s: {} requests and {} streams ok, {} failed; {reloads} reloads ({reload_ok} since the last upgrade), {upgrades} upgrades; {} fuzzed bodies ({} not 4xx, {fuzzed_upstream} reached an upstream); {} slow or silent connections cut; flaky endpoint saw {} requests; RSS {} -> {} KiB (last process)",
        c(&counts.ok),
        c(&counts.streams),
        c(&counts.failed),
        c(&counts.fuzzed),
        c(&counts.fuzz_5xx),
        c(&counts.slow_cut),
        flaky.received().len(),
        rss_start,
        rss_end,
    );
    assert_eq!(c(&counts.failed), 0, "well-formed requests failed");
    assert_eq!(
        c(&counts.fuzz_5xx),
        0,
        "a fuzzed body got something other than a 4xx"
    );
    assert_eq!(fuzzed_upstream, 0, "a fuzzed body reached an upstream");
    assert_eq!(upgrades, 3);
}

fn keep_alive_request(addr: SocketAddr, kept: &mut Option<Conn>) -> bool {
    let mut conn = match kept.take() {
        Some(c) if c.still_open() => c,
        _ => Conn::open(addr),
    };
    let body = br#"{"model":"m","messages":[]}"#;
    conn.send_head("POST", "/v1/chat/completions", &[], Some(body.len()));
    conn.stream.write_all(body).unwrap();
    let resp = conn.read_response();
    if resp.header("connection") != Some("close") {
        *kept = Some(conn);
    }
    resp.status == 200
}

fn stream(addr: SocketAddr) -> bool {
    let mut conn = Conn::open(addr);
    let body = br#"{"model":"m","stream":true}"#;
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", "sse=10,gap_ms=50")],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    if conn.read_head().0 != 200 {
        return false;
    }
    let mut text = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        text.extend(chunk);
    }
    String::from_utf8_lossy(&text).ends_with("data: [DONE]\n\n")
}
