//! What the runtime itself finds wrong while a run goes on (as opposed to a skill's own error):
//! typed, with one `Display` for the event stream, and the span of the expression or key that
//! caused it, so the command line can point at it with `FILE:LINE:COL` and a caret.
use super::*;
use crate::{duration::format_duration, expr::ExprErrorKind};
use std::time::Duration;

/// A failure the runtime found on its own account.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
  /// An expression in a stage's (or a compensation's) `with` failed.
  #[error("inputs could not be evaluated: {0}")]
  Inputs(ExprFailure),
  /// A stage's `if` failed.
  #[error("`if` could not be evaluated: {}", .0.kind)]
  Condition(ExprFailure),
  /// An entry of `config.env` failed.
  #[error("config.env.{key}: {failure}")]
  Env {
    /// The variable.
    key: String,
    /// Why.
    failure: ExprFailure,
  },
  /// An entry of a stage's `env` failed.
  #[error("env.{key}: {failure}")]
  StageEnv {
    /// The variable.
    key: String,
    /// Why.
    failure: ExprFailure,
  },
  /// A workflow output failed.
  #[error("workflow output `{name}` could not be evaluated: {failure}")]
  Output {
    /// The output.
    name: String,
    /// Why.
    failure: ExprFailure,
  },
  /// `config.timeout` passed.
  #[error("the run timed out after {}", format_duration(*limit))]
  RunTimedOut {
    /// The run's time limit.
    limit: Duration,
  },
  /// A recovery strategy asked for more attempts than the stage may take.
  #[error(
    "stage `{stage}`: recovery `{strategy}` asked for attempt {asked} but at most {cap} are \
     allowed"
  )]
  RecoveryCap {
    /// The stage.
    stage: String,
    /// The strategy.
    strategy: String,
    /// The attempt it asked for.
    asked: u32,
    /// The most attempts allowed.
    cap: u32,
  },
  /// The store stopped recording.
  #[error("the run store could not record the run's events; the run stopped")]
  StoreFailed,
}

impl RunError {
  /// The expression failure inside, if the error came from one.
  pub fn expression(&self) -> Option<&ExprFailure> {
    match self {
      Self::Inputs(failure)
      | Self::Condition(failure)
      | Self::Env { failure, .. }
      | Self::StageEnv { failure, .. }
      | Self::Output { failure, .. } => Some(failure),
      Self::RunTimedOut { .. } | Self::RecoveryCap { .. } | Self::StoreFailed => None,
    }
  }

  /// The error at its place in the workflow file, for errors that have one.
  pub fn diagnostic(&self, stage: Option<&str>, source: &Arc<Source>) -> Option<Diagnostic> {
    let failure = self.expression()?;
    Some(Diagnostic::new(
      source,
      failure.span,
      ErrorKind::Run {
        stage: stage.map(str::to_string),
        message: self.at_caret(),
      },
    ))
  }
}

impl RunError {
  /// The message beside a caret under the expression: the expression's text left out.
  fn at_caret(&self) -> String {
    match self {
      Self::Inputs(f) => format!("inputs could not be evaluated: {}", f.kind),
      Self::Env { key, failure } => format!("config.env.{key}: {}", failure.kind),
      Self::StageEnv { key, failure } => format!("env.{key}: {}", failure.kind),
      Self::Output { name, failure } => {
        format!(
          "workflow output `{name}` could not be evaluated: {}",
          failure.kind
        )
      }
      other => other.to_string(),
    }
  }
}

/// An expression that failed at run time: its text as written, what went wrong, and where in
/// the file the failing part is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{text}`: {kind}")]
pub struct ExprFailure {
  /// The string as written in the file.
  pub text: String,
  /// What went wrong.
  pub kind: ExprErrorKind,
  /// The failing part, as a span of the workflow file.
  pub span: Span,
}

impl ExprFailure {
  /// `error`, raised by `expression`, placed in the file `source`.
  pub fn new(expression: &workflow::Expression, error: expr::ExprError, source: &Source) -> Self {
    Self {
      text: expression.text.clone(),
      span: expression.file_span(source, 0, error.span),
      kind: error.kind,
    }
  }
}
