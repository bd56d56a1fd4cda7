//! swdl: a workflow engine for YAML-declared DAGs of stages, with an expression language,
//! a tokio runtime and Lua hooks.

pub mod analyzer;
pub mod builtin;
pub mod cli;
pub mod dag;
mod decompose;
pub mod diagnostic;
pub mod duration;
pub mod error_kind;
pub mod event;
pub mod executor;
pub mod expr;
mod headless;
pub mod hooks;
pub mod http;
pub mod llm;
pub mod loader;
pub mod lua;
pub mod mask;
pub mod params;
pub mod plan;
pub mod process;
pub mod progress;
mod repl;
mod runs;
pub mod runtime;
pub mod skills;
pub mod source;
pub mod state;
pub mod store;
pub mod suggest;
mod watch;
pub mod workflow;
pub mod yaml;

mod commands;
#[cfg(test)]
mod fuzz;

pub(crate) use {
  crate::{
    diagnostic::{Diagnostic, Diagnostics},
    error_kind::ErrorKind,
    source::{Source, Span},
  },
  std::{fmt, sync::Arc},
};

pub use commands::run;

/// Process exit codes (SPEC section 2).
pub mod exit {
  /// Success.
  pub const OK: i32 = 0;
  /// The run failed.
  pub const FAILED: i32 = 1;
  /// Invalid input: a bad file, expression or argument.
  pub const INVALID: i32 = 2;
  /// Cancelled or rejected.
  pub const CANCELLED: i32 = 3;
  /// Suspended at a gate.
  pub const SUSPENDED: i32 = 4;
}
