//! The tests' OTLP/gRPC trace receiver as a standalone server, for benchmarks (`bench/tracing`):
//! it answers every export with success and keeps nothing but their count, printed every 10 s.
//!
//! `cargo run --release --example otlp_receiver -- 127.0.0.1:4317`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test tool

#[path = "../tests/common/mock.rs"]
mod mock;
#[path = "../tests/common/otlp.rs"]
mod otlp;
#[path = "../tests/common/strict.rs"]
mod strict;

use mock::Received;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into());
    let collector = otlp::Collector::grpc_for_benchmarks(&addr);
    println!("OTLP/gRPC receiver on {}", collector.addr);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        println!("{} exports", collector.paths().len());
    }
}
