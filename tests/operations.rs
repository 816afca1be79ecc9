//! Zero-downtime operations on the real binary with real signals: SIGHUP reload under continuous
//! load, a broken config on reload, key rotation through `.env`, graceful upgrade (`-u` +
//! SIGQUIT) with a stream in flight, and SIGTERM with a stream in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{chat, request, wait_for, yaml, Conn, Gateway, Mock};
use serde_json::{json, Value};

fn config_for(upstream: &Mock) -> Value {
    yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}'}}\nserver: {{grace_period: 3s}}\n",
        upstream.url()
    ))
}

/// Clients sending requests back to back until stopped; they count what failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let result = std::panic::catch_unwind(|| {
                            chat(addr, &[], &json!({"model": "m", "messages": []})).status
                        });
                        match result {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            other => {
                                eprintln!("load request failed: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; returns (succeeded, failed).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Which mock served a request to model `m`.
fn served_by(addr: SocketAddr) -> u16 {
    let resp = chat(addr, &[], &json!({"model": "m"}));
    assert_eq!(resp.status, 200);
    resp.header("x-mock-port").unwrap().parse().unwrap()
}

#[test]
fn sighup_reloads_under_continuous_load_without_failing_a_request() {
    let (a, b) = (Mock::start(), Mock::start());
    let mut gw = Gateway::start(&config_for(&a), &[]);
    assert_eq!(served_by(gw.addr), a.addr.port());

    let load = Load::start(gw.addr, 4);
    for flip in 0..20 {
        let target = if flip % 2 == 0 { &b } else { &a };
        let url = target.url();
        gw.rewrite(|c| c["model_providers"][0]["base_url"] = url.into());
        gw.signal("HUP");
        // Every flip is observed.
        wait_for(&format!("flip {flip}"), Duration::from_secs(5), || {
            served_by(gw.addr) == target.addr.port()
        });
        // Let the clients run on this config for a moment before the next reload.
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (ok, failed) = load.finish();
    eprintln!("20 reloads under load: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert!(ok > 200, "too little load to prove anything: {ok}");
    assert!(!a.received().is_empty() && !b.received().is_empty());
    assert_eq!(
        gw.metric(r#"switchyard_config_reloads_total{result="success"}"#),
        20.0
    );
    assert_eq!(
        gw.metric(r#"switchyard_config_reloads_total{result="failure"}"#),
        0.0
    );
}

#[test]
fn a_broken_config_on_reload_changes_nothing() {
    let (a, b) = (Mock::start(), Mock::start());
    let mut gw = Gateway::start(&config_for(&a), &[]);
    let before = gw.metric("switchyard_config_last_reload_success_timestamp_seconds");
    let url = b.url();
    gw.rewrite(|c| {
        c["model_providers"][0]["base_url"] = url.into();
        c["model_providers"][0]["acess_key"] = "typo".into();
        c["model_aliases"] = json!({"fast": {"target": "nope"}});
    });
    gw.signal("HUP");
    wait_for(
        "the failed reload to be counted",
        Duration::from_secs(5),
        || gw.metric(r#"switchyard_config_reloads_total{result="failure"}"#) == 1.0,
    );
    // Still alive, still routing to the old upstream.
    assert_eq!(served_by(gw.addr), a.addr.port());
    assert!(b.received().is_empty());
    assert!(gw.child.try_wait().unwrap().is_none(), "the process died");
    assert_eq!(
        gw.metric(r#"switchyard_config_reloads_total{result="success"}"#),
        0.0
    );
    assert_eq!(
        gw.metric("switchyard_config_last_reload_success_timestamp_seconds"),
        before
    );
    // The log names every problem with its key path and line.
    let logs = gw.logs();
    assert!(logs.contains("config reload failed"), "{logs}");
    assert!(
        logs.contains("model_providers[0].acess_key (line"),
        "{logs}"
    );
    assert!(logs.contains("model_aliases.fast.target (line"), "{logs}");

    // A good config afterwards applies.
    gw.rewrite(|c| {
        c["model_providers"][0]
            .as_object_mut()
            .unwrap()
            .remove("acess_key");
        c.as_object_mut().unwrap().remove("model_aliases");
    });
    gw.signal("HUP");
    wait_for("the good reload", Duration::from_secs(5), || {
        served_by(gw.addr) == b.addr.port()
    });
}

#[test]
fn keys_rotate_through_dotenv_and_sighup() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: $ROTATING_KEY}}\n",
        mock.url()
    ));
    let gw = Gateway::start_with_files(&config, &[], &[(".env", "ROTATING_KEY=sk-old-0001\n")]);
    assert_eq!(chat(gw.addr, &[], &json!({"model": "gpt-4o"})).status, 200);
    std::fs::write(gw.dir.join(".env"), "# rotated\nROTATING_KEY=sk-new-0002\n").unwrap();
    gw.signal("HUP");
    wait_for("the new key", Duration::from_secs(5), || {
        chat(gw.addr, &[], &json!({"model": "gpt-4o"}));
        mock.received().last().unwrap().header("authorization") == Some("Bearer sk-new-0002")
    });
    assert_eq!(
        mock.received()[0].header("authorization"),
        Some("Bearer sk-old-0001")
    );
    assert!(!gw.logs().contains("sk-new-0002") && !gw.logs().contains("sk-old-0001"));
}

/// Opens an SSE request that streams `events` events `gap_ms` apart; returns it once the
/// response head has arrived.
fn open_stream(addr: SocketAddr, events: u32, gap_ms: u64) -> Conn {
    let mut conn = Conn::open(addr);
    let body = br#"{"model":"m","stream":true}"#;
    let mode = format!("sse={events},gap_ms={gap_ms}");
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", &mode)],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    assert_eq!(conn.read_head().0, 200);
    conn
}

/// Reads a stream to its final chunk; returns its text (panics if it was cut).
fn read_stream(conn: &mut Conn) -> String {
    let mut text = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        text.extend(chunk);
    }
    String::from_utf8(text).unwrap()
}

#[test]
fn graceful_upgrade_under_load_keeps_every_request_and_stream() {
    let mock = Mock::start();
    let mut old = Gateway::start(&config_for(&mock), &[]);
    let load = Load::start(old.addr, 3);
    let mut stream = open_stream(old.addr, 30, 100);

    // The new process waits on the upgrade socket for the listeners; then the old one is told.
    let new_log = old.dir.join("new.log");
    let mut new = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-u", "-c"])
        .arg(&old.conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    old.signal("QUIT");

    let text = read_stream(&mut stream);
    assert_eq!(
        text.matches("data: ").count(),
        32, // 30 deltas, the finish chunk, [DONE]
        "the stream was cut: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));

    // The old process exits (after Pingora's 5 s hand-over window and the grace period).
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exited.success() || exited.code().is_some(), "{exited:?}");
    // The new process serves on the same address.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    let after = chat(old.addr, &[], &json!({"model": "m"}));
    let _ = new.kill();
    let _ = new.wait();
    eprintln!("upgrade under load: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert!(ok > 50, "too little load to prove anything: {ok}");
    assert_eq!(
        after.status,
        200,
        "{}",
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_within_the_grace_period() {
    let mock = Mock::start();
    let mut gw = Gateway::start(&config_for(&mock), &[]);
    let mut stream = open_stream(gw.addr, 15, 100);
    let signalled = Instant::now();
    gw.signal("TERM");
    let text = read_stream(&mut stream);
    assert_eq!(
        text.matches("data: ").count(),
        17, // 15 deltas, the finish chunk, [DONE]
        "the stream was cut: {text}"
    );
    // grace_period is 3 s; Pingora then allows its runtimes 5 s more to stop.
    let deadline = signalled + Duration::from_secs(3 + 5 + 2);
    loop {
        if gw.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the grace period"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(request_fails(gw.addr), "still accepting after exit");
}

fn request_fails(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).is_err()
        || std::panic::catch_unwind(|| request(addr, "GET", "/healthz", &[], b"")).is_err()
}
