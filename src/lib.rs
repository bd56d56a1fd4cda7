//! swdl: a workflow engine for YAML-declared DAGs of stages, with an expression language,
//! a tokio runtime and Lua hooks.

pub mod analyzer;
pub mod builtin;
pub mod cli;
pub mod color;
pub mod compose;
pub mod dag;
pub mod decision;
pub mod diagnostic;
pub mod duration;
pub mod error_kind;
pub mod event;
mod event_text;
pub mod executor;
pub mod expr;
pub mod hooks;
pub mod http;
mod launch;
pub mod llm;
pub mod loader;
pub mod lua;
pub mod mask;
pub mod params;
pub mod plan;
pub mod process;
pub mod progress;
mod prompt;
mod repl;
pub mod runtime;
pub mod skills;
pub mod source;
pub mod state;
pub mod store;
pub mod suggest;
pub mod workflow;
pub mod yaml;

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
