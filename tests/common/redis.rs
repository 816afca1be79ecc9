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
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Redis {
    pub fn start() -> Redis {
        let bin = std::env::var("SWITCHYARD_REDIS").unwrap_or_else(|_| "redis-server".into());
        let found = Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{bin}` not found: run scripts/setup --for-tests (Debian package redis-server)"
        );
        let mut redis = Redis {
            addr: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
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
        let bin = std::env::var("SWITCHYARD_REDIS").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
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
