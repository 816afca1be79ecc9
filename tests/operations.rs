//! Zero-downtime operations on the real binary with real signals: SIGHUP reload under continuous
//! load (and right after start), a broken config on reload, key rotation through `.env`, the
//! graceful upgrade (`-u`) with streams and keep-alive clients in flight, and stopping
//! (SIGTERM's drain, SIGINT, a SIGQUIT nobody can answer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{alive, chat, request, wait_for, yaml, Conn, Gateway, Mock, Prepared};
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
    /// `clients` clients, each opening a new connection per request.
    fn start(addr: SocketAddr, clients: usize) -> Load {
        Load::spawn(addr, clients, false)
    }

    /// `clients` clients that keep their connection open across requests, as SDKs do: they
    /// reconnect only when the gateway said `Connection: close` or closed an idle connection
    /// (which they notice before sending, like urllib3 and hyper). A request lost on a kept
    /// connection is a failure: a POST is not retried.
    fn start_keep_alive(addr: SocketAddr, clients: usize) -> Load {
        Load::spawn(addr, clients, true)
    }

    fn spawn(addr: SocketAddr, clients: usize, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut kept: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let reused = kept.take().filter(|c| keep_alive && c.still_open());
                        let result = std::panic::catch_unwind(move || {
                            let mut conn = reused.unwrap_or_else(|| Conn::open(addr));
                            let body = json!({"model": "m", "messages": []}).to_string();
                            conn.send_head(
                                "POST",
                                "/v1/chat/completions",
                                &[("content-type", "application/json")],
                                Some(body.len()),
                            );
                            conn.stream.write_all(body.as_bytes()).unwrap();
                            let resp = conn.read_response();
                            let close = resp.header("connection") == Some("close");
                            (resp.status, (!close).then_some(conn))
                        });
                        match result {
                            Ok((200, conn)) => {
                                kept = conn;
                                ok.fetch_add(1, Ordering::Relaxed)
                            }
                            other => {
                                let status = other.map(|(status, _)| status);
                                eprintln!("load request failed: {status:?}");
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
    let resp = chat(addr, &[], &common::ask("m"));
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
    assert_eq!(chat(gw.addr, &[], &common::ask("gpt-4o")).status, 200);
    std::fs::write(gw.dir.join(".env"), "# rotated\nROTATING_KEY=sk-new-0002\n").unwrap();
    gw.signal("HUP");
    wait_for("the new key", Duration::from_secs(5), || {
        chat(gw.addr, &[], &common::ask("gpt-4o"));
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

/// Waits for process `pid` to be gone; panics after `within`. Returns how long it took.
fn wait_exit(pid: u32, within: Duration) -> Duration {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < within,
            "pid {pid} still running after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn graceful_upgrade_under_load_keeps_every_request_and_stream() {
    let mock = Mock::start();
    let mut old = Gateway::start(&config_for(&mock), &[]);
    let fresh = Load::start(old.addr, 2);
    let kept = Load::start_keep_alive(old.addr, 3);
    let mut stream = open_stream(old.addr, 30, 100);
    std::thread::sleep(Duration::from_millis(300));

    // One command: the new process takes the listeners over and tells the old one to drain.
    let new_log = old.dir.join("new.log");
    let mut new = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-u", "-c"])
        .arg(&old.conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();

    let text = read_stream(&mut stream);
    assert_eq!(
        text.matches("data: ").count(),
        32, // 30 deltas, the finish chunk, [DONE]
        "the stream was cut: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));

    // The old process exits once drained (after Pingora's 5 s hand-over window).
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exited.success(), "{exited:?}");
    // The new process serves on the same address.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = fresh.finish();
    let (kept_ok, kept_failed) = kept.finish();
    let after = chat(old.addr, &[], &common::ask("m"));
    let _ = new.kill();
    let _ = new.wait();
    eprintln!("upgrade under load: new connections {ok} ok, {failed} failed; keep-alive {kept_ok} ok, {kept_failed} failed");
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert_eq!(
        kept_failed, 0,
        "keep-alive clients: {kept_ok} requests succeeded, {kept_failed} failed"
    );
    assert!(
        ok > 50 && kept_ok > 50,
        "too little load to prove anything: {ok}, {kept_ok}"
    );
    assert_eq!(
        after.status,
        200,
        "{}",
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
}

/// README's upgrade, exactly as documented: the running daemon, then `switchyard -u -c F -d`.
#[test]
fn the_documented_upgrade_command_hands_over_without_a_failed_request() {
    let mock = Mock::start();
    let prepared = Prepared::new(&config_for(&mock), &[]);
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let conf = prepared.conf.display().to_string();
    // The daemon keeps what it inherits open: its output goes to files, not to pipes.
    let sh = |line: &str| {
        let status = Command::new("sh")
            .args(["-c", line])
            .stdout(std::fs::File::create(prepared.dir.join("sh.out")).unwrap())
            .stderr(std::fs::File::create(prepared.dir.join("sh.err")).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(prepared.dir.join("sh.err")).unwrap_or_default();
        assert!(status.success(), "`{line}` failed: {status:?}: {err}");
    };
    sh(&format!("{bin} -c {conf} -d"));
    // `-d` returns once the daemon serves: its pid file is there and it answers, with no waiting.
    let old = prepared.pid().expect("the pid file exists when -d returns");
    assert!(alive(old));
    assert_eq!(
        request(prepared.addr, "GET", "/healthz", &[], b"").status,
        200
    );
    let kept = Load::start_keep_alive(prepared.addr, 3);
    std::thread::sleep(Duration::from_millis(300));

    sh(&format!("{bin} -u -c {conf} -d"));
    let new = prepared
        .pid()
        .expect("the pid file exists when -u -d returns");
    assert_ne!(new, old, "the pid file names the new process");
    assert!(alive(new));
    wait_exit(old, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = kept.finish();
    let after = chat(prepared.addr, &[], &common::ask("m"));
    common::signal(new, "TERM");
    wait_exit(new, Duration::from_secs(10));
    // Both daemons logged into sh.err: a successful upgrade has nothing to report as an error.
    let logs = std::fs::read_to_string(prepared.dir.join("sh.err")).unwrap_or_default();
    assert!(!logs.contains(" ERROR "), "{logs}");
    eprintln!("documented upgrade: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert!(ok > 50, "too little load to prove anything: {ok}");
    assert_eq!(after.status, 200);
}

#[test]
fn upgrade_without_a_running_instance_changes_nothing() {
    let prepared = Prepared::new(&config_for(&Mock::start()), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-u", "-c"])
        .arg(&prepared.conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no running instance"), "{stderr}");
    assert!(std::net::TcpStream::connect(prepared.addr).is_err());
}

#[test]
fn sigquit_with_no_new_process_waiting_is_refused_and_serving_goes_on() {
    let mock = Mock::start();
    let gw = Gateway::start(&config_for(&mock), &[]);
    gw.signal("QUIT");
    // Pingora alone would retry the hand-over for about 5 s, then stop serving.
    std::thread::sleep(Duration::from_millis(6500));
    assert!(
        gw.child.id() > 0 && alive(gw.child.id()),
        "the process stopped"
    );
    assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
    assert!(gw.logs().contains("SIGQUIT refused"), "{}", gw.logs());
}

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once() {
    let mock = Mock::start();
    let mut config = config_for(&mock);
    config["server"]["grace_period"] = "30s".into();
    let gw = Gateway::start(&config, &[]);
    assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
    gw.signal("TERM");
    let took = wait_exit(gw.child.id(), Duration::from_secs(10));
    eprintln!("idle SIGTERM: exited after {took:?}");
}

#[test]
fn requests_that_finish_during_the_drain_get_their_access_log_line() {
    let mock = Mock::start();
    let mut gw = Gateway::start(&config_for(&mock), &[]);
    let mut stream = open_stream(gw.addr, 10, 100);
    gw.signal("TERM");
    read_stream(&mut stream);
    wait_exit(gw.child.id(), Duration::from_secs(10));
    let _ = gw.child.wait();
    let log = gw.access_log();
    let line = log
        .lines()
        .find(|l| l.contains("/v1/chat/completions"))
        .unwrap_or_else(|| panic!("no access-log line for the stream: {log}"));
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["status"], 200, "{line}");
}

#[test]
fn a_response_finished_while_draining_closes_its_connection() {
    let mock = Mock::start();
    let gw = Gateway::start(&config_for(&mock), &[]);
    let mut conn = Conn::open(gw.addr);
    let body = br#"{"model":"m"}"#;
    conn.send_head("POST", "/v1/chat/completions", &[], Some(body.len()));
    conn.stream.write_all(body).unwrap();
    let before = conn.read_response();
    assert_eq!(before.status, 200);
    assert_eq!(before.header("connection"), Some("keep-alive"));
    // The next answer is slow; the stop signal comes while the upstream thinks.
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", "delay_ms=1000")],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    gw.signal("TERM");
    let during = conn.read_response();
    assert_eq!(during.status, 200);
    assert_eq!(during.header("connection"), Some("close"));
}

#[test]
fn sigint_always_ends_the_process_promptly_and_quietly() {
    let mock = Mock::start();
    for round in 0..10 {
        let gw = Gateway::start(&config_for(&mock), &[]);
        let mut stream = open_stream(gw.addr, 3, 10);
        read_stream(&mut stream);
        wait_for("the stream's metrics", Duration::from_secs(5), || {
            gw.metrics().contains("switchyard_requests_total")
        });
        gw.signal("INT");
        wait_exit(gw.child.id(), Duration::from_secs(3));
        let logged = std::fs::metadata(gw.dir.join("stderr.log")).unwrap().len();
        assert!(logged < 100_000, "round {round}: {logged} bytes of log");
    }
}

#[test]
fn sighup_right_after_the_pid_file_appears_is_safe() {
    let mock = Mock::start();
    for round in 0..6 {
        let prepared = Prepared::new(&config_for(&mock), &[]);
        let status = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["-d", "-c"])
            .arg(&prepared.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        // `-d` returns once the daemon serves: its pid file is there already.
        let pid = prepared
            .pid()
            .unwrap_or_else(|| panic!("round {round}: -d returned before the pid file existed"));
        common::signal(pid, "HUP");
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(pid), "round {round}: SIGHUP killed the daemon");
        common::signal(pid, "TERM");
        wait_exit(pid, Duration::from_secs(10));
    }
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

/// Runs the binary with `args` from `dir`, its output in files (a daemon keeps what it
/// inherits, so pipes would never close): exit status, stdout + stderr, and how long it took.
fn run_in(dir: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String, Duration) {
    let out = dir.join("run.out");
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(dir)
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("run.err")).unwrap())
        .status()
        .unwrap();
    let took = started.elapsed();
    let text = std::fs::read_to_string(&out).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("run.err")).unwrap_or_default();
    (status, text, took)
}

/// `-d` on a port another process holds fails at once with the reason, and leaves nothing
/// running; so does the foreground, which never says it listens.
#[test]
fn a_taken_port_fails_the_start_at_once_with_the_reason() {
    let prepared = Prepared::new(&config_for(&Mock::start()), &[]);
    let holder = std::net::TcpListener::bind(prepared.addr).unwrap();
    let conf = prepared.conf.to_str().unwrap();
    for args in [vec!["-d", "-c", conf], vec!["-c", conf]] {
        let (status, out, took) = run_in(&prepared.dir, &args);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        assert!(
            out.contains(&format!("cannot listen on {}", prepared.addr))
                && out.contains("another process holds it"),
            "{args:?}: {out}"
        );
        assert!(!out.contains("listening on"), "{args:?}: {out}");
        assert!(prepared.pid().is_none(), "{args:?}: a pid file was written");
    }
    drop(holder);
}

/// A pid file in a directory that does not exist: `-t` says so, `-d` fails at once, and no
/// panic or backtrace reaches the operator.
#[test]
fn a_pid_file_in_a_missing_directory_is_refused_by_t_and_d() {
    let mut config = config_for(&Mock::start());
    config["server"]["pid_file"] = "/nonexistent-switchyard-dir/sy.pid".into();
    let prepared = Prepared::new(&config, &[]);
    // Prepared writes its own pid file path: put the broken one back.
    let mut written: Value =
        serde_json::from_str(&std::fs::read_to_string(&prepared.conf).unwrap()).unwrap();
    written["server"]["pid_file"] = "/nonexistent-switchyard-dir/sy.pid".into();
    std::fs::write(&prepared.conf, written.to_string()).unwrap();
    let conf = prepared.conf.to_str().unwrap();
    for args in [vec!["-t", "-c", conf], vec!["-d", "-c", conf]] {
        let (status, out, took) = run_in(&prepared.dir, &args);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        assert!(
            out.contains("server.pid_file: /nonexistent-switchyard-dir/sy.pid: the directory /nonexistent-switchyard-dir does not exist"),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains("panicked") && !out.contains("backtrace"),
            "{out}"
        );
    }
    assert!(std::net::TcpStream::connect(prepared.addr).is_err());
}

/// `-d -c` with a relative path: the daemon runs from `/`, yet SIGHUP reloads the same file.
#[test]
fn a_daemon_started_with_a_relative_config_path_reloads_it() {
    let (a, b) = (Mock::start(), Mock::start());
    let prepared = Prepared::new(&config_for(&a), &[]);
    let (status, out, _) = run_in(&prepared.dir, &["-d", "-c", "config.yaml"]);
    assert!(status.success(), "{out}");
    let pid = prepared.pid().expect("the pid file exists when -d returns");
    assert_eq!(served_by(prepared.addr), a.addr.port());
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&prepared.conf).unwrap()).unwrap();
    config["model_providers"][0]["base_url"] = b.url().into();
    std::fs::write(&prepared.conf, config.to_string()).unwrap();
    common::signal(pid, "HUP");
    wait_for("the reload", Duration::from_secs(5), || {
        served_by(prepared.addr) == b.addr.port()
    });
    common::signal(pid, "TERM");
    wait_exit(pid, Duration::from_secs(10));
}
