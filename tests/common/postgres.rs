//! A real PostgreSQL server for the tests (Debian's package: `scripts/setup --for-tests`), in a
//! fresh cluster under a temporary directory, on a port of its own, trusting local clients.
//! PostgreSQL refuses to run as root: as root, it runs as the package's `postgres` user.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub addr: SocketAddr,
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of PostgreSQL's programs: `SWITCHYARD_POSTGRES_BIN`, else the newest under
/// /usr/lib/postgresql.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHYARD_POSTGRES_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL not found: run scripts/setup --for-tests (Debian package postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` from PostgreSQL's directory, as the `postgres` user when this is root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = super::temp_dir("postgres");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot hand {} to the postgres user", dir.display());
        }
        let data = dir.join("data");
        let out = pg_command(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "switchyard", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            addr: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            dir,
            bin,
            child: None,
        };
        pg.resume();
        pg
    }

    /// Starts the server (again) on the same port and data, and waits until it answers.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("postgres.log")).unwrap();
        let child = pg_command(&self.bin, "postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.addr.port().to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.query("SELECT 1").as_deref() != Some("1") {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no goodbye to its clients). The
    /// child is `runuser` as root, which would leave the server running if killed itself.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
        // The postmaster's children go with it; wait until the port is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgresql://switchyard@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://switchyard@{}/postgres", self.addr)
    }

    /// Runs `sql` with psql; the answer's rows, one per line, columns split by `|`.
    pub fn query(&self, sql: &str) -> Option<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-U", "switchyard", "-d", "postgres", "-At", "-c", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}
