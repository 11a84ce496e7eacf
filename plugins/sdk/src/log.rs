//! Log lines for the step log; `warn` and `error` also reach the audit log.
use crate::bindings::deployhost::plugin::log::{Level, log};

pub fn debug(message: &str) {
    log(Level::Debug, message);
}
pub fn info(message: &str) {
    log(Level::Info, message);
}
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
pub fn error(message: &str) {
    log(Level::Error, message);
}
