//! Slow, silent, idle, numerous and pipelining clients against the real binary: each limit of
//! the `server` block closes what it should, says so in `/metrics`, and nothing else is touched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{chat, wait_for, yaml, Gateway, Mock};
use serde_json::{json, Value};

fn config(mock: &Mock, server: &str) -> Value {
    yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}'}}\nserver: {{{server}}}\n",
        mock.url()
    ))
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the gateway closes the connection; returns what came and how long it took.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, start.elapsed()),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (all, start.elapsed())
            }
            Err(e) => panic!(
                "the connection was not closed: {e} after {:?}",
                start.elapsed()
            ),
        }
    }
}

fn closed_at(gw: &Gateway, reason: &str) -> f64 {
    gw.metric(&format!(
        r#"switchyard_downstream_connections_closed_total{{reason="{reason}"}}"#
    ))
}

#[test]
fn a_request_shorter_than_the_http2_preface_is_answered() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, ""), &[]);
    let mut s = connect(&gw);
    // 18 bytes, complete; the gateway must not wait for 24 to rule out HTTP/2.
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let (answer, _) = read_to_close(&mut s);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains(r#""error""#), "{answer}");
}

#[test]
fn a_silent_connection_is_closed_at_the_header_timeout() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, "header_timeout: 1s"), &[]);
    let (answer, took) = read_to_close(&mut connect(&gw));
    assert!(answer.is_empty());
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(closed_at(&gw, "header_timeout"), 1.0);
}

#[test]
fn a_slowloris_head_is_cut_at_the_header_timeout() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, "header_timeout: 1s"), &[]);
    let mut s = connect(&gw);
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
    let start = Instant::now();
    let mut cut = false;
    for byte in head {
        // A byte every 100 ms: each read is quick, the head as a whole is not.
        if s.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !cut {
        let (answer, _) = read_to_close(&mut s);
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(closed_at(&gw, "header_timeout"), 1.0);
    assert!(mock.received().is_empty());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_keepalive_timeout() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, "keepalive_timeout: 1s"), &[]);
    let mut s = connect(&gw);
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (rest, took) = read_to_close(&mut s);
    assert!(rest.is_empty());
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(closed_at(&gw, "keepalive_timeout"), 1.0);
    // A connection in use is not idle: a 2 s answer on a 1 s keep-alive passes.
    let resp = chat(gw.addr, &[("x-mock", "delay_ms=2000")], &common::ask("m"));
    assert_eq!(resp.status, 200);
}

#[test]
fn connections_over_max_connections_are_closed_and_counted() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, "max_connections: 3"), &[]);
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&gw)).collect();
    wait_for("3 open connections", Duration::from_secs(5), || {
        gw.metric("switchyard_downstream_connections") >= 3.0
    });
    let mut over = connect(&gw);
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let (answer, _) = read_to_close(&mut over);
    assert!(answer.is_empty());
    assert_eq!(closed_at(&gw, "max_connections"), 1.0);
    drop(held);
    wait_for("the places freed", Duration::from_secs(5), || {
        gw.metric("switchyard_downstream_connections") == 0.0
    });
    assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
}

#[test]
fn an_http2_preface_then_silence_is_closed_at_the_header_timeout() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, "header_timeout: 1s"), &[]);
    let mut s = connect(&gw);
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let (_, took) = read_to_close(&mut s);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(closed_at(&gw, "header_timeout"), 1.0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, ""), &[]);
    let mut s = connect(&gw);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "third"}]});
    let body = body.to_string();
    let three = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n\
         POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(three.as_bytes()).unwrap();
    let (all, _) = read_to_close(&mut s);
    let all = String::from_utf8_lossy(&all);
    let statuses: Vec<usize> = all.match_indices("HTTP/1.1 200").map(|(i, _)| i).collect();
    assert_eq!(statuses.len(), 3, "{all}");
    let health = all.find(r#"{"status":"ok"}"#).unwrap();
    let models = all.find(r#""object":"list""#).unwrap();
    let completion = all.find("chat.completion").unwrap();
    assert!(health < statuses[1] && statuses[1] < models, "{all}");
    assert!(models < statuses[2] && statuses[2] < completion, "{all}");
    assert_eq!(mock.received().len(), 1);
}
