//! The process log: env_logger (`RUST_LOG`, default `info`) on stderr, with the one message of
//! Pingora's that every successful `-u` prints at ERROR, although it is the expected wait for
//! the running instance's listeners, said at INFO instead.

use log::{Level, Log, Metadata, Record};

/// Installs the process log.
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    log::set_max_level(inner.filter());
    // Only fails when a logger is already set, and then that one keeps logging.
    let _ = log::set_boxed_logger(Box::new(Logs { inner }));
}

struct Logs {
    inner: env_logger::Logger,
}

/// Where Pingora logs its wait for the listening sockets during an upgrade.
const TRANSFER: &str = "pingora_core::server::transfer_fd";

impl Log for Logs {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if expected_wait(record) {
            let message = format!(
                "-u: waiting for the running instance's listeners ({})",
                record.args()
            );
            let info = Metadata::builder()
                .level(Level::Info)
                .target(record.target())
                .build();
            if self.inner.enabled(&info) {
                self.inner.log(
                    &Record::builder()
                        .metadata(info)
                        .module_path(record.module_path())
                        .file(record.file())
                        .line(record.line())
                        .args(format_args!("{message}"))
                        .build(),
                );
            }
            return;
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Pingora's "No incoming socket transfer, sleep 1s and try again": the new process asked
/// before the old one had sent its sockets, as it always does once.
fn expected_wait(record: &Record<'_>) -> bool {
    record.level() == Level::Error
        && record.target() == TRANSFER
        && record
            .args()
            .as_str()
            .map_or_else(|| record.args().to_string(), str::to_owned)
            .starts_with("No incoming socket transfer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pingoras_expected_upgrade_wait_is_lowered() {
        let args = format_args!("No incoming socket transfer, sleep 1s and try again");
        let wait = Record::builder()
            .level(Level::Error)
            .target(TRANSFER)
            .args(args)
            .build();
        assert!(expected_wait(&wait));
        let other = format_args!("Error accepting socket transfer: EBADF");
        let real = Record::builder()
            .level(Level::Error)
            .target(TRANSFER)
            .args(other)
            .build();
        assert!(!expected_wait(&real));
        let elsewhere = Record::builder()
            .level(Level::Error)
            .target("switchyard::upgrade")
            .args(args)
            .build();
        assert!(!expected_wait(&elsewhere));
    }
}
