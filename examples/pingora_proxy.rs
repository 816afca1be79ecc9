//! Pingora's stock proxy path with nothing on top, for benchmarks (`bench/run`): every request
//! goes to one upstream with a fixed `Authorization`, the body streamed through unread. It is
//! the floor for any gateway built on Pingora 0.9.1's `ProxyHttp`, measured next to switchyard.
//!
//! `cargo run --release --example pingora_proxy -- LISTEN_ADDR UPSTREAM_ADDR`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark tool

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Plain(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        _: &mut (),
    ) -> Result<()> {
        req.insert_header("authorization", "Bearer sk-bench")
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("LISTEN_ADDR");
    let upstream = args
        .next()
        .expect("UPSTREAM_ADDR")
        .parse()
        .expect("UPSTREAM_ADDR is ip:port");
    let conf = ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = http_proxy_service(&server.configuration, Plain(upstream));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
