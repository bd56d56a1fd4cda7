//! Integration tests: every test drives the real `swdl` binary.
#![allow(
  unreachable_pub,
  reason = "a test binary has no public API: `pub` is how its modules share helpers"
)]

mod cli;
mod common;
mod eval;
mod examples;
mod hardening;
mod http;
mod invalid;
mod lua;
mod models;
mod plan;
mod readme;
mod repl;
mod run;
mod runtime_errors;
mod server;
mod skills;
mod store;
mod test;
mod validate;
mod watch;
