//! The tests' mock provider as a standalone server, for benchmarks (`bench/run`).
//!
//! `cargo run --release --example mock_provider -- 127.0.0.1:18090 [MODE]`
//!
//! MODE is the default answer (see `tests/common/mock.rs`, `Mock`): empty for an OpenAI chat
//! completion with usage, `sse=N,gap_ms=M` for a stream, `delay_ms=M`, `status=429,retry_after=S`,
//! `anthropic`, … A request's `x-mock` header overrides it. Nothing is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test tool

#[path = "../tests/common/mock.rs"]
mod mock;
#[path = "../tests/common/strict.rs"]
mod strict;

use mock::Received;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let mock = mock::Mock::start_for_benchmarks(&addr);
    if let Some(mode) = args.next() {
        mock.set_mode(&mode);
    }
    println!("mock provider on http://{}", mock.addr);
    loop {
        std::thread::park();
    }
}
