//! swdl: a workflow engine for YAML-declared DAGs of stages, with an expression language,
//! a tokio runtime and Lua hooks.

pub(crate) mod analyzer;
pub mod builtin;
pub(crate) mod cli;
pub(crate) mod color;
pub mod compose;
pub(crate) mod dag;
pub(crate) mod decision;
pub mod diagnostic;
pub(crate) mod duration;
pub mod error_kind;
pub mod event;
mod event_text;
pub mod executor;
pub mod expr;
pub(crate) mod hooks;
pub(crate) mod http;
mod launch;
pub(crate) mod llm;
pub(crate) mod loader;
pub mod lua;
pub mod mask;
pub mod params;
pub mod plan;
pub(crate) mod process;
pub(crate) mod progress;
mod prompt;
mod repl;
pub mod runtime;
pub(crate) mod skills;
pub mod source;
pub mod state;
pub mod store;
pub(crate) mod suggest;
pub mod workflow;
pub(crate) mod yaml;

mod commands;
#[cfg(test)]
mod fuzz;

pub(crate) use {
  crate::{
    decision::{GateDecision, PriorDecision},
    diagnostic::{Diagnostic, Diagnostics},
    error_kind::ErrorKind,
    source::{Source, Span},
  },
  std::{fmt, sync::Arc},
};

pub use commands::{exit, run};
