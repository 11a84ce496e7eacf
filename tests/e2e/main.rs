//! End-to-end tests: the real `deployhost` binary, real plugins built from
//! `plugins/`, a real HTTP server on 127.0.0.1.

mod support;

mod approvals;
mod authoring;
mod bad_input;
mod cache;
mod ci;
mod commands;
mod confine;
mod crash;
mod database;
mod disk_full;
mod doctor;
mod exec;
mod faults;
mod foreign_components;
mod health;
mod init;
mod install;
mod ledger;
mod lifecycle;
mod lint;
mod lock_timeout;
mod output;
mod pgtap;
mod pipeline_flow;
mod prod_pipeline;
mod python_plugin;
mod rollback;
mod sandbox;
mod sandbox_limits;
mod sandbox_net;
mod sandbox_paths;
mod secrets;
mod seed;
mod shared_state;
mod snapshots;
mod special_files;
mod stage_plugins;
mod supabase;
mod supabase_history;
mod verify;
