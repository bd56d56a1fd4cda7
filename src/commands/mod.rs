//! The commands, one file each, and their dispatcher: the one place that prints errors and
//! turns how a command ended into the process exit code.
use super::*;
use crate::{
  cli::{Cli, Command},
  compose::LoadError,
  event::RunStatus,
  runtime::RunOutcome,
};
use clap::Parser as _;
use std::{ffi::OsString, io::Write, path::Path};

mod cancel;
mod decide;
mod decompose;
mod eval;
mod param_args;
mod pause;
mod plan;
mod resume;
mod retry;
mod run;
mod runs;
mod skills;
mod validate;
mod watch;

pub(crate) use skills::describe_from_lua;

/// Process exit codes (docs/running.md, "Exit codes").
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

  /// The exit code of a run that ended with `status`, a gate or approval rejected or not.
  pub fn of_run(status: crate::event::RunStatus, rejected: bool) -> i32 {
    use crate::event::RunStatus;
    match status {
      RunStatus::Completed if !rejected => OK,
      RunStatus::Cancelled => CANCELLED,
      _ if rejected => CANCELLED,
      RunStatus::Waiting => SUSPENDED,
      _ => FAILED,
    }
  }
}

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
  /// It did what was asked.
  Ok,
  /// `validate` found an invalid file (and reported it).
  Invalid,
  /// A run ended so; `store_failed` when the store could not record all of it.
  Run {
    /// The run's final status.
    status: RunStatus,
    /// A gate or approval was rejected.
    rejected: bool,
    /// The store failed to record the run.
    store_failed: bool,
  },
}

impl Done {
  /// How `outcome` ended, and whether the store failed to record it.
  pub(crate) fn run(outcome: &RunOutcome, store_failed: bool) -> Self {
    Self::Run {
      status: outcome.state.status,
      rejected: outcome.rejected,
      store_failed,
    }
  }

  fn exit_code(self) -> i32 {
    match self {
      Self::Ok => exit::OK,
      Self::Invalid => exit::INVALID,
      Self::Run {
        status,
        rejected,
        store_failed,
      } => {
        let code = exit::of_run(status, rejected);
        // A run the store lost part of has failed at least.
        if store_failed {
          code.max(exit::FAILED)
        } else {
          code
        }
      }
    }
  }
}

/// Failures of a command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
  /// Errors with positions in a file or argument.
  #[error("{0}")]
  Diagnostics(Diagnostics),
  /// A file that could not be read.
  #[error("{path}: {message}")]
  Io {
    /// The path.
    path: String,
    /// The reason.
    message: String,
  },
  /// Options that cannot be used together.
  #[error("{0}")]
  Usage(String),
  /// Writing output failed (a closed pipe, usually).
  #[error("cannot write output: {0}")]
  Output(#[from] std::io::Error),
  /// The run store refused or failed.
  #[error("{0}")]
  Store(#[from] store::StoreError),
  /// The command ran but could not do its job (`decompose` found no valid workflow).
  #[error("{0}")]
  Failed(String),
}

impl From<LoadError> for Error {
  fn from(error: LoadError) -> Self {
    match error {
      LoadError::Io { path, error } => Self::Io {
        path,
        message: error.to_string(),
      },
      LoadError::Invalid(d) => Self::Diagnostics(d),
    }
  }
}

impl Error {
  fn exit_code(&self) -> i32 {
    match self {
      Self::Diagnostics(_) | Self::Io { .. } | Self::Usage(_) | Self::Store(_) => exit::INVALID,
      Self::Output(_) | Self::Failed(_) => exit::FAILED,
    }
  }

  /// The error as the user sees it: diagnostics with their source lines and carets, anything
  /// else on one `error:` line.
  pub(crate) fn render(&self, color: bool) -> String {
    match self {
      Self::Diagnostics(d) => d.render(color),
      // Store errors hold paths and commands to copy: those are never cut.
      Self::Store(store) => format!("error: {store}\n"),
      other => format!("error: {}\n", diagnostic::shorten(&other.to_string())),
    }
  }
}

/// Parses `args` (program name first), runs the command and returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
  I: IntoIterator<Item = T>,
  T: Into<OsString> + Clone,
{
  let cli = match Cli::try_parse_from(args) {
    Ok(cli) => cli,
    Err(error) => {
      let _ = error.print();
      return error.exit_code();
    }
  };
  color::choose(cli.color);
  match dispatch(cli.command) {
    Ok(done) => done.exit_code(),
    // The reader stopped reading (`swdl runs | head`): what it wanted was written.
    Err(Error::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
    Err(error) => {
      let _ = std::io::stderr().write_all(error.render(color::stderr()).as_bytes());
      error.exit_code()
    }
  }
}

fn dispatch(command: Command) -> Result<Done, Error> {
  match command {
    Command::Validate { files, format } => validate::validate(&files, format),
    Command::Plan {
      file,
      params,
      format,
    } => plan::plan(&file, &params, format),
    Command::Run(args) => run::run(&args),
    Command::Resume(args) => resume::resume(&args),
    Command::Retry(args) => retry::retry(&args),
    Command::Runs {
      run_id,
      status,
      format,
      store,
    } => runs::list_or_show(
      run_id.as_deref(),
      status.as_deref(),
      format,
      store.as_deref(),
    ),
    Command::Approve(args) => decide::decide(&args, decision::GateDecision::Approve),
    Command::Reject(args) => decide::decide(&args, decision::GateDecision::Reject),
    Command::Cancel { run_id, store } => cancel::cancel(&run_id, store.as_deref()),
    Command::Pause { run_id, store } => pause::pause(&run_id, store.as_deref()),
    Command::Repl { file, params } => repl::run(file.as_deref(), &params),
    Command::Watch { file, run } => watch::watch(&file, run),
    Command::Decompose {
      task,
      skills,
      output,
      repairs,
      model,
      url,
    } => decompose::run(&decompose::Args {
      task: &task,
      skills: &skills,
      output: output.as_deref(),
      repairs,
      model: model.as_deref(),
      url: url.as_deref(),
    }),
    Command::Skills {
      action,
      dirs,
      format,
    } => skills::skills(action, &dirs, format),
    Command::Eval { expr, context } => eval::eval(&expr, context.as_deref()),
  }
}

/// The store a command reads or steers (refusing `--store none`, which keeps no runs), if it
/// exists: these commands never create one. Also its directory, for messages.
fn existing_store(dir: Option<&Path>) -> Result<(std::path::PathBuf, Option<store::Store>), Error> {
  let dir = store::resolve_dir(dir)
    .ok_or_else(|| Error::Usage("`--store none` keeps no runs: name a store directory".into()))?;
  let store = store::Store::open_existing(&dir)?;
  Ok((dir, store))
}

/// The store that should hold run `run_id`, for commands about one run; without a store the
/// run cannot be there, and the error says where swdl looked.
fn store_of_run(dir: Option<&Path>, run_id: &str) -> Result<store::Store, Error> {
  let (dir, store) = existing_store(dir)?;
  store.ok_or_else(|| {
    Error::Store(store::StoreError::Refused(format!(
      "no run `{run_id}`: there is no run store at {} (runs are recorded in the nearest \
       `.swdl/` of the directory `swdl run` ran in; --store or SWDL_STORE name another)",
      dir.display()
    )))
  })
}

/// Reads a file given on the command line into a [`Source`] for positioned errors.
pub(crate) fn read_source(path: &Path) -> Result<Arc<Source>, Error> {
  let name = path.display().to_string();
  let text = source::read_text(path).map_err(|e| Error::Io {
    path: name.clone(),
    message: e.to_string(),
  })?;
  Ok(Source::new(name, text))
}
