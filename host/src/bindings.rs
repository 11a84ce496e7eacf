//! Host bindings for the `deployhost:plugin/step` world in `wit/`: a leaf
//! the capabilities implement and the sandbox links.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The host side of the `deployhost:plugin/sql` `connection` resource: an
/// open connection handed to a step (`capabilities::sql` opens and uses it).
pub struct SqlConnection {
    pub database: String,
    pub roles: Vec<String>,
    pub client: tokio_postgres::Client,
    /// The server process serving it (`pg_backend_pid()`): whom it waits
    /// for is looked up with `pg_blocking_pids` while a statement waits.
    pub pid: Option<i32>,
    /// Counts against the step's open connections until dropped.
    pub slot: ConnectionSlot,
}

/// One of a step's connection slots, given back when its connection is dropped.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// Takes a slot already counted in `open`.
    pub fn new(open: Arc<AtomicUsize>) -> ConnectionSlot {
        ConnectionSlot(open)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

wasmtime::component::bindgen!({
    world: "step",
    path: "wit",
    imports: { default: async },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "deployhost:plugin/sql.connection": SqlConnection,
    },
});
