//! `switchyard -u`: the whole graceful upgrade in one command.
//!
//! Pingora's hand-over needs two steps in this order: the new process listens on
//! `server.upgrade_sock`, then the running one gets SIGQUIT and sends its listening sockets there.
//! Done by hand the order is easy to get wrong, and either mistake is an outage (a new process
//! gives up after about 5 s alone; an old one told to quit with nobody waiting stops serving).
//! So `-u` does both: it finds the running instance through `server.pid_file`, and signals it
//! only once its own upgrade socket is listening. The running instance also refuses a SIGQUIT
//! while nobody waits on the socket (lifecycle).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{error, info};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// How long the new process waits for its own upgrade socket to appear (Pingora binds it at
/// once; this only bounds a failure).
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// The running instance, found through its pid file.
#[derive(Debug)]
pub struct Running {
    pid: Pid,
}

/// Finds the running instance to take over; an error says why there is none.
pub fn running(pid_file: &Path) -> Result<Running, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "-u: no running instance to take over: cannot read {}: {e}",
            pid_file.display()
        )
    })?;
    let pid: i32 = text.trim().parse().map_err(|_| {
        format!(
            "-u: {} does not hold a process id: {:?}",
            pid_file.display(),
            text.trim()
        )
    })?;
    let pid = Pid::from_raw(pid);
    if pid == Pid::this() || pid.as_raw() <= 0 {
        return Err(format!(
            "-u: {} names this process or no process",
            pid_file.display()
        ));
    }
    kill(pid, None).map_err(|e| {
        format!(
            "-u: the instance in {} (pid {pid}) is not running: {e}",
            pid_file.display()
        )
    })?;
    Ok(Running { pid })
}

impl Running {
    /// Tells the running instance to hand its sockets over as soon as `upgrade_sock` listens:
    /// from a thread, because Pingora's bootstrap blocks on that socket meanwhile.
    pub fn signal_when_listening(self, upgrade_sock: PathBuf) {
        // A socket file left by an earlier attempt would look ready; Pingora replaces it anyway.
        if is_socket(&upgrade_sock) {
            let _ = std::fs::remove_file(&upgrade_sock);
        }
        std::thread::spawn(move || {
            let deadline = Instant::now() + SOCKET_WAIT;
            while !is_socket(&upgrade_sock) {
                if Instant::now() > deadline {
                    error!(
                        "-u: {} never appeared; the running instance was not signalled",
                        upgrade_sock.display()
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match kill(self.pid, Signal::SIGQUIT) {
                Ok(()) => info!(
                    "-u: asked the running instance (pid {}) for its listeners",
                    self.pid
                ),
                Err(e) => error!("-u: cannot signal pid {}: {e}", self.pid),
            }
        });
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Says "listening" once this process really listens, and with `-d` tells the launcher. Pingora's
/// launching process exits as soon as it has forked, before the daemon has even written its pid
/// file; a caller that then reads the pid file (`systemctl reload` with `PIDFile=`, or the next
/// `-u`) finds none. With Pingora's `daemon_wait_for_ready` the launcher waits for SIGUSR1
/// instead, which this sends once the model port listens on a socket of this process (taken
/// over, or bound by the listening service): another process on the port does not count. A
/// process that cannot listen exits 1 rather than linger serving metrics alone.
pub struct Ready {
    /// The process that was started and waits (`-d`), else `None`.
    pub launcher: Option<Pid>,
    pub port: u16,
    /// What the log line says: the listener and the metrics address.
    pub listening: String,
}

/// How long to wait for this process's listener: longer than Pingora's own retries of a taken
/// port (30 × 1 s), which end in an error.
const LISTEN_WAIT: Duration = Duration::from_secs(35);

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let deadline = Instant::now() + LISTEN_WAIT;
        while !listening_here(self.port) {
            if Instant::now() > deadline {
                error!("port {} never listened in this process; exiting", self.port);
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!("switchyard listening on {}", self.listening);
        let Some(launcher) = self.launcher.filter(|l| *l != Pid::this()) else {
            return; // not daemonized: nobody waits
        };
        // The launcher waits for this; had it died and its pid been reused, SIGUSR1 would end
        // whatever runs there now: only a process running this very binary is told.
        if !same_binary(launcher) {
            return;
        }
        if let Err(e) = kill(launcher, Signal::SIGUSR1) {
            error!("-d: cannot tell the launching process (pid {launcher}) that we serve: {e}");
        }
    }
}

/// Whether process `pid` runs the same executable as this one (the daemon is a fork of its
/// launcher).
fn same_binary(pid: Pid) -> bool {
    let exe = |p: String| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    exe("self".into()).is_some_and(|mine| exe(pid.to_string()) == Some(mine))
}

/// Whether this process has a socket listening on TCP `port` (IPv4 or IPv6). Read from the
/// kernel's tables rather than probed: a test connection would count as a client, a test bind
/// could take the port from under the listening service.
fn listening_here(port: u16) -> bool {
    let ours = own_sockets();
    port == 0
        || ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
            std::fs::read_to_string(table).is_ok_and(|text| table_listens_on(&text, port, &ours))
        })
}

/// The inodes of this process's sockets (`/proc/self/fd/N -> socket:[inode]`).
fn own_sockets() -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Whether a `/proc/net/tcp{,6}` table has a socket in state LISTEN (`0A`) on local `port`
/// whose inode is one of `inodes`.
fn table_listens_on(table: &str, port: u16, inodes: &[u64]) -> bool {
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        let inode = fields.get(9).and_then(|i| i.parse::<u64>().ok());
        fields.get(3) == Some(&"0A")
            && local_port == Some(port)
            && inode.is_some_and(|i| inodes.contains(&i))
    })
}

/// Writes this process's id to `pid_file` (in the foreground; `-d` writes it when it forks),
/// so that the next `-u` and `kill -HUP $(cat …)` find it the same way in both modes.
pub fn write_pid_file(pid_file: &Path) {
    if let Err(e) = std::fs::write(pid_file, format!("{}\n", std::process::id())) {
        error!("cannot write pid file {}: {e}", pid_file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_by_port_state_and_owner() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2EE0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41 1 0 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:2EE0 01 00000000:00000000 00:00000000 00000000  1000        0 42 1 0 20 4 30 10 -1
";
        assert!(table_listens_on(table, 12000, &[41]));
        // Another process's listener on the port is not ours.
        assert!(!table_listens_on(table, 12000, &[7]));
        // A connected socket on the port is not a listener.
        assert!(!table_listens_on(table, 0xA1B2, &[42]));
        assert!(!table_listens_on(table, 12001, &[41]));
        assert!(!table_listens_on("", 12000, &[41]));
    }

    #[test]
    fn a_port_this_process_listens_on_is_seen_and_another_process_port_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_here(port));
        drop(l);
        assert!(!listening_here(port));
        // The port taken by another process (`-d` must not take it for its own).
        let mut other = std::process::Command::new("python3")
            .args(["-c", "import socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\nprint(s.getsockname()[1], flush=True); time.sleep(10)"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(other.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let seen = listening_here(port);
        let _ = other.kill();
        let _ = other.wait();
        assert!(!seen, "another process's listener counted as ours");
    }

    #[test]
    fn only_a_process_of_this_binary_counts_as_the_launcher() {
        assert!(same_binary(Pid::this()));
        assert!(!same_binary(Pid::from_raw(1)) || Pid::this().as_raw() == 1);
        assert!(!same_binary(Pid::from_raw(i32::MAX)));
    }

    #[test]
    fn no_pid_file_means_nothing_to_take_over() {
        let err = running(Path::new("/nonexistent/switchyard.pid")).unwrap_err();
        assert!(err.contains("no running instance"), "{err}");
    }

    #[test]
    fn a_pid_file_with_garbage_is_refused() {
        let path = std::env::temp_dir().join(format!("sy-upgrade-{}.pid", std::process::id()));
        std::fs::write(&path, "not a pid\n").unwrap();
        let err = running(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("does not hold a process id"), "{err}");
    }

    #[test]
    fn our_own_pid_is_not_an_instance_to_take_over() {
        let path = std::env::temp_dir().join(format!("sy-upgrade-self-{}.pid", std::process::id()));
        write_pid_file(&path);
        let err = running(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("names this process"), "{err}");
    }
}
