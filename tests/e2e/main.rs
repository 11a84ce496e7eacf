//! End-to-end tests: the real `deployhost` binary, real plugins built from
//! `plugins/`, a real HTTP server on 127.0.0.1.

mod support;

mod bad_input;
mod ci;
mod commands;
mod database;
mod exec;
mod health;
mod lifecycle;
mod pipeline_flow;
mod python_plugin;
mod rollback;
mod sandbox;
mod secrets;
