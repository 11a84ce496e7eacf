//! Host bindings for the `deployhost:plugin/step` world in `wit/`.

wasmtime::component::bindgen!({
    world: "step",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "deployhost:plugin/sql.connection": crate::capabilities::sql::Connection,
    },
});
