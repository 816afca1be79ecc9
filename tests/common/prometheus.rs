//! A real Prometheus (Debian's package, installed by `scripts/setup --for-tests`) scraping one
//! target every second, for the tests that query it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::request;

pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = super::temp_dir("prometheus");
    let config = dir.join("prometheus.yaml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: switchyard\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
    let child = Command::new(super::required_binary(
        "SWITCHYARD_PROMETHEUS",
        "prometheus",
        "prometheus",
    ))
    .arg(format!("--config.file={}", config.display()))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address={addr}"))
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
    .spawn()
    .unwrap();
    let prometheus = Prometheus { addr, child };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(addr).is_ok()
            && request(addr, "GET", "/-/ready", &[], b"").status == 200
        {
            return prometheus;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not start: {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
