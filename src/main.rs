//! The `switchyard` binary: parse the command line, load the config, run or validate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

// jemalloc instead of glibc's malloc: the request path allocates many small, short-lived
// objects across Pingora's tasks (+20% throughput at the same memory, README "Performance").
// Without the feature, glibc's: what valgrind's dhat counts allocations in (bench/allocs).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use switchyard::config::Config;
use switchyard::server::{self, Launch};

/// An edge gateway for LLM traffic, configured with Plano's YAML.
///
/// The config file is a Plano config (version, listeners, model_providers, model_aliases, …)
/// plus an optional `server` block for process settings (threads, metrics_address, access_log,
/// pid_file, upgrade_sock, grace_period, max_request_body, header_timeout, keepalive_timeout,
/// max_connections). `$VAR` and `${VAR}` in access_key, base_url, http_host and headers are read
/// from the environment, else from the `.env` file beside the config.
///
/// Signals: SIGHUP reloads the config file (and the `.env` beside it) without dropping anything;
/// SIGTERM drains and exits (in-flight requests get up to `server.grace_period`); SIGINT stops at
/// once; SIGQUIT hands the listeners to a process started with `-u` (which sends it itself).
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, verbatim_doc_comment)]
struct Cli {
    /// The config file.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    conf: PathBuf,

    /// Validate the config file (and the pid file's and upgrade socket's directories) and exit:
    /// 0 if valid, 1 with every problem (key path and line).
    #[arg(short = 't', long = "test")]
    test: bool,

    /// Graceful upgrade: take the listening sockets over from the instance in `server.pid_file`
    /// (signalled once this one is ready), which then drains (README, Operations).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,

    /// Run in the background: returns once the daemon serves, or exits 1 with the reason. The
    /// daemon keeps this process's stdout (access log) and stderr (process log).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    switchyard::lifecycle::ignore_hangups_until_reload_runs();
    switchyard::logs::init();
    // A bug must still read as one line an operator can report, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error, please report it: {info}");
    }));
    // A daemon runs from `/`: reloads must find the same file (and its `.env`) as at start.
    let path = match std::path::absolute(&cli.conf) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("error: {}: {e}", cli.conf.display());
            return ExitCode::FAILURE;
        }
    };

    let config = match Config::load(&cli.conf) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        if cli.test {
            eprintln!("warning: {warning}");
        } else {
            log::warn!("{}: {warning}", cli.conf.display());
        }
    }
    if cli.test {
        let problems = switchyard::preflight::problems(&config, false);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("error: {p}");
            }
            return ExitCode::FAILURE;
        }
        println!(
            "{}: configuration is valid ({} model provider{}, {} warning{})",
            cli.conf.display(),
            config.providers.len(),
            if config.providers.len() == 1 { "" } else { "s" },
            config.warnings.len(),
            if config.warnings.len() == 1 { "" } else { "s" },
        );
        return ExitCode::SUCCESS;
    }
    server::run(
        config,
        path,
        Launch {
            upgrade: cli.upgrade,
            daemon: cli.daemon,
        },
    )
}
