//! Pingora's plain proxy path with nothing on top: the floor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
    async fn upstream_request_filter(
        &self,
        _s: &mut Session,
        r: &mut RequestHeader,
        _c: &mut (),
    ) -> Result<()> {
        r.insert_header("authorization", "Bearer sk-bench")
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap();
    let upstream = args.next().unwrap().parse().unwrap();
    let conf = ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut svc = http_proxy_service(&server.configuration, Bare(upstream));
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
