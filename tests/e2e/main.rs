//! End-to-end tests: the real `deployhost` binary, real plugins built from
//! `plugins/`, a real HTTP server on 127.0.0.1.

mod support;

mod bad_input;
mod ci;
mod commands;
mod database;
mod disk_full;
mod exec;
mod foreign_components;
mod health;
mod lifecycle;
mod pipeline_flow;
mod rollback;
mod sandbox;
mod sandbox_limits;
mod sandbox_net;
mod sandbox_paths;
mod secrets;
mod special_files;
