//! Test harness: a recording mock upstream, the real `switchyard` binary on free ports, and a
//! small HTTP/1.1 client that can send exact bytes (chunked uploads, `Expect`) and read a
//! response progressively.
// Harness code is test code: failing loudly is what it should do.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod mock;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod strict;
pub use mock::*;

// ---------------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------------

/// The real `switchyard` binary, running on a free port with a temporary config.
pub struct Gateway {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub child: Child,
    pub dir: PathBuf,
    /// The config file and what was written to it.
    pub conf: PathBuf,
    pub config: Value,
    log: PathBuf,
}

/// A config file ready to run: the model listener on a free port of 127.0.0.1, and private
/// metrics port, pid file and upgrade socket, in a fresh directory.
pub struct Prepared {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub config: Value,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    pub pid_file: PathBuf,
}

impl Prepared {
    pub fn new(config: &Value, files: &[(&str, &str)]) -> Prepared {
        let dir = temp_dir("gw");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        // Two different ports: both held while the second is picked.
        let (port, metrics_port) = {
            let a = StdListener::bind("127.0.0.1:0").unwrap();
            let b = StdListener::bind("127.0.0.1:0").unwrap();
            (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            )
        };
        let mut config = config.clone();
        // The model listener the test gave (if any), moved to 127.0.0.1 on a free port.
        let mut listener = config["listeners"]
            .get(0)
            .cloned()
            .unwrap_or(serde_json::json!({"name": "llm", "type": "model"}));
        listener["address"] = "127.0.0.1".into();
        listener["port"] = port.into();
        config["listeners"] = serde_json::json!([listener]);
        let server = config
            .as_object_mut()
            .unwrap()
            .entry("server")
            .or_insert(serde_json::json!({}));
        server["threads"] = 1.into();
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        server["metrics_address"] = metrics_addr.to_string().into();
        let pid_file = dir.join("switchyard.pid");
        server["pid_file"] = pid_file.to_string_lossy().into_owned().into();
        server["upgrade_sock"] = dir
            .join("upgrade.sock")
            .to_string_lossy()
            .into_owned()
            .into();
        let conf = dir.join("config.yaml");
        std::fs::write(&conf, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        Prepared {
            log: dir.join("switchyard.log"),
            dir,
            conf,
            config,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics_addr,
            pid_file,
        }
    }

    /// The pid in the pid file, once it is there.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether process `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// A server program the tests start: `$ENV_VAR`, else `name` on the PATH; fails (never skips)
/// when it does not run, saying which Debian package `scripts/setup --for-tests` installs.
pub fn required_binary(env_var: &str, name: &str, package: &str) -> String {
    let bin = std::env::var(env_var).unwrap_or_else(|_| name.into());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{bin}` not found: run scripts/setup --for-tests (Debian package {package})"
    );
    bin
}

/// How many of `statuses` are each status.
pub fn tally(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0) += 1;
    }
    counts
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("switchyard-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Gateway {
    /// Starts the gateway on `config` with `env` as extra environment variables. The model
    /// listener is moved to a free port and the `server` block gets private pid/socket paths.
    pub fn start(config: &Value, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with_files(config, env, &[])
    }

    /// Like `start`, with extra files (such as `.env`) written next to the config first.
    pub fn start_with_files(
        config: &Value,
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Gateway {
        // Free ports are picked by binding port 0 and letting go: a test running beside this
        // one may take the same port first. The gateway then exits at once (preflight), and it
        // starts again on other ports.
        for _ in 0..5 {
            let prepared = Prepared::new(config, files);
            let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .arg("-c")
                .arg(&prepared.conf)
                .envs(env.iter().copied())
                .env("RUST_LOG", "info")
                .stdout(std::fs::File::create(&prepared.log).unwrap())
                .stderr(std::fs::File::create(prepared.dir.join("stderr.log")).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let mut gw = Gateway {
                addr: prepared.addr,
                metrics_addr: prepared.metrics_addr,
                child,
                dir: prepared.dir,
                conf: prepared.conf,
                config: prepared.config,
                log: prepared.log,
            };
            if gw.wait_ready() {
                return gw;
            }
        }
        panic!("the gateway could not start on free ports five times");
    }

    /// Waits until this gateway serves: its own log says it listens (so the port is not
    /// another process's) and it answers `/healthz`. False when it exited because a port was
    /// taken; a gateway that fails otherwise fails the test.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let logs = self.logs();
                if logs.contains("cannot listen on") {
                    return false;
                }
                panic!("gateway exited ({status}): {logs}");
            }
            if self.logs().contains("switchyard listening on")
                && TcpStream::connect(self.metrics_addr).is_ok()
                && request(self.addr, "GET", "/healthz", &[], b"").status == 200
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway did not become ready: {}", self.logs());
    }

    /// Rewrites the config file (not yet reloaded: see `signal`).
    pub fn rewrite(&mut self, edit: impl FnOnce(&mut Value)) {
        edit(&mut self.config);
        let tmp = self.dir.join("config.yaml.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.config).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.conf).unwrap();
    }

    /// Sends a signal (`HUP`, `TERM`, `QUIT`) to the gateway process.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// What the gateway printed on stderr (its log).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// What the gateway printed on stdout (the access log).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `n` chat requests have their access-log line: what is done when a request
    /// is logged (settling its tokens) is done by then.
    pub fn wait_logged(&self, n: usize) {
        wait_for("the access-log lines", Duration::from_secs(3), || {
            self.access_log()
                .lines()
                .filter(|l| l.contains("/v1/chat/completions"))
                .count()
                >= n
        });
    }

    /// A scrape of the metrics endpoint.
    pub fn metrics(&self) -> String {
        let resp = request(self.metrics_addr, "GET", "/metrics", &[], b"");
        assert_eq!(resp.status, 200);
        String::from_utf8(resp.body).unwrap()
    }

    /// The value of one sample (`name{labels}` exactly as exposed, labels sorted), or 0.
    pub fn metric(&self, sample: &str) -> f64 {
        sample_value(&self.metrics(), sample)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `done` every 20 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends signal `sig` (`HUP`, `TERM`, …) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {sig} {pid} failed");
}

/// The value of `sample` (e.g. `x_total{a="b"}`) in a Prometheus text scrape, or 0 if absent.
pub fn sample_value(scrape: &str, sample: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Parses config text (YAML) into JSON, which is also valid YAML, so tests can edit it.
pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("test config parses")
}

/// Points every provider's `base_url` at `url`.
pub fn point_providers_at(config: &mut Value, url: &str) {
    for p in providers(config) {
        p["base_url"] = url.into();
    }
}

pub fn providers(config: &mut Value) -> Vec<&mut Value> {
    config["model_providers"]
        .as_array_mut()
        .expect("model_providers")
        .iter_mut()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request with a Content-Length body and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut conn = Conn::open(addr);
    conn.send_head(method, path, headers, Some(body.len()));
    conn.stream.write_all(body).unwrap();
    conn.read_response()
}

/// A POST of a JSON body to `path`.
pub fn post_json(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, body.to_string().as_bytes())
}

/// A POST of a JSON body that is answered with a stream: its events, each (event name, data as
/// JSON or, when not JSON, as text). Asserts a 200 with `text/event-stream`.
pub fn post_stream(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Vec<(Option<String>, Value)> {
    let body = body.to_string();
    let mut conn = Conn::open(addr);
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    conn.send_head("POST", path, &all, Some(body.len()));
    conn.stream.write_all(body.as_bytes()).unwrap();
    let (status, head) = conn.read_head();
    assert_eq!(status, 200);
    assert!(head
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    let mut text = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        text.extend(chunk);
    }
    String::from_utf8(text)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, data)
        })
        .collect()
}

/// A POST of a JSON body to `/v1/chat/completions`.
pub fn chat(addr: SocketAddr, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        &all,
        body.to_string().as_bytes(),
    )
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Whether a kept connection is still open (nothing to read, no end of stream): what SDKs
    /// check before reusing a pooled connection.
    pub fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        self.stream.set_nonblocking(true).unwrap();
        let open = matches!(self.stream.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).unwrap();
        open
    }

    /// Writes a request head; `content_length: None` sends `Transfer-Encoding: chunked`.
    pub fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_length: Option<usize>,
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: switchyard.test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match content_length {
            Some(n) => head.push_str(&format!("content-length: {n}\r\n")),
            None => head.push_str("transfer-encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).unwrap();
    }

    /// Writes `body` as chunks of `size` bytes, then the last chunk.
    pub fn send_chunked(&mut self, body: &[u8], size: usize) {
        for piece in body.chunks(size) {
            self.stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .unwrap();
            self.stream.write_all(piece).unwrap();
            self.stream.write_all(b"\r\n").unwrap();
        }
        self.stream.write_all(b"0\r\n\r\n").unwrap();
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads a response head (skipping any `100 Continue`) without its body.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = parsed.parse(&self.buf) {
                let status = parsed.code.unwrap();
                let headers = lowercase(parsed.headers);
                self.buf.drain(..len);
                if status == 100 {
                    continue;
                }
                return (status, headers);
            }
            assert!(self.fill() > 0, "connection closed before a response head");
        }
    }

    /// Reads the next piece of a chunked body: `Some(bytes)` for a chunk, `None` for the final
    /// chunk. Panics if the connection closes first (a cut stream).
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        self.try_read_chunk().expect("connection closed mid-body")
    }

    /// Like `read_chunk`, but `Err(())` when the connection closes before the final chunk.
    pub fn try_read_chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..end]).unwrap().trim(),
                    16,
                )
                .unwrap();
                if size == 0 {
                    if self.buf.len() >= end + 4 {
                        self.buf.drain(..end + 4);
                        return Ok(None);
                    }
                } else if self.buf.len() >= end + 2 + size + 2 {
                    let data = self.buf[end + 2..end + 2 + size].to_vec();
                    self.buf.drain(..end + 2 + size + 2);
                    return Ok(Some(data));
                }
            }
            if self.fill() == 0 {
                return Err(());
            }
        }
    }

    /// Reads a whole response.
    pub fn read_response(&mut self) -> Response {
        let (status, headers) = self.read_head();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(chunk) = self.read_chunk() {
                body.extend_from_slice(&chunk);
            }
            body
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                assert!(self.fill() > 0, "connection closed mid-body");
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill() > 0 {}
            std::mem::take(&mut self.buf)
        };
        Response {
            status,
            headers,
            body,
        }
    }
}

/// The smallest chat-completions body the real API (and so the strict mock) accepts, for
/// `model`.
pub fn ask(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}
