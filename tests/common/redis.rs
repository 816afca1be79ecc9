//! A real `redis-server` (Debian's package, installed by `scripts/setup --for-tests`) on a free
//! port of 127.0.0.1, with a password and persistence off, that a test can stop and start again
//! on the same port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "redis-test-secret-7f3a";

pub struct Redis {
    pub addr: SocketAddr,
    /// With [`Redis::start_tls`]: the TLS port (the test CA's `localhost` certificate).
    pub tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    /// The redis-server program, found once.
    bin: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(false)
    }

    /// Also serving TLS on another port, with `tests/fixtures/tls/server.pem` (signed by
    /// `ca.pem`, for `localhost` and 127.0.0.1).
    pub fn start_tls() -> Redis {
        Redis::start_with(true)
    }

    /// `rediss://:password@localhost:tls_port/0`.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://:{PASSWORD}@localhost:{}/0",
            self.tls_port.unwrap()
        )
    }

    fn start_with(tls: bool) -> Redis {
        let mut redis = Redis {
            bin: super::required_binary("SWITCHYARD_REDIS", "redis-server", "redis-server"),
            addr: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            tls_port: tls.then(super::free_port),
            dir: super::temp_dir("redis"),
            child: None,
        };
        redis.resume();
        redis
    }

    /// `redis://:password@127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://:{PASSWORD}@{}/0", self.addr)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers.
    pub fn resume(&mut self) {
        let mut command = Command::new(&self.bin);
        if let Some(port) = self.tls_port {
            let fixture =
                |f: &str| format!("{}/tests/fixtures/tls/{f}", env!("CARGO_MANIFEST_DIR"));
            command
                .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .args(["--tls-cert-file", &fixture("server.pem")])
                .args(["--tls-key-file", &fixture("server.key")])
                .args(["--tls-ca-cert-file", &fixture("ca.pem")]);
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            // DEBUG SLEEP: a Redis that is slow rather than gone.
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::fs::File::create(self.dir.join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command (after AUTH) and returns the first line of the answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut wire = resp(&["AUTH", PASSWORD]);
        wire.extend(resp(args));
        s.write_all(&wire).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // "+OK\r\n" for AUTH, then the answer's first line.
        while buf.windows(2).filter(|w| w == b"\r\n").count() < 2 {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.split("\r\n").nth(1).map(str::to_owned)
    }
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}
