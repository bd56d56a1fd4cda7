//! Command-line arguments (docs/running.md and docs/runs.md describe the commands).
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// swdl runs YAML workflows: DAGs of stages with expressions, retries, gates and Lua hooks.
#[derive(Debug, Parser)]
#[command(name = "swdl", version, about, max_term_width = 100)]
pub(crate) struct Cli {
  /// When to colour output: on a terminal unless `NO_COLOR` is set (auto), always, never.
  #[arg(long, value_enum, global = true, default_value_t, value_name = "WHEN")]
  pub color: crate::color::ColorChoice,
  /// What to do.
  #[command(subcommand)]
  pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
  /// Check workflow files: schema, expressions and the DAG (exit 2 when invalid).
  Validate {
    /// Workflow files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
  },
  /// Show the plan without running it: batches, critical path, gates, limits, estimate.
  Plan {
    /// Workflow file.
    file: PathBuf,
    /// Parameter values.
    #[command(flatten)]
    params: ParamArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
  },
  /// Run a workflow (exit 0 completed, 1 failed, 2 invalid, 3 cancelled or rejected, 4 suspended).
  Run(RunArgs),
  /// Run history from the store; with a run id, its stages, attempts, decisions and logs.
  Runs {
    /// Show this run in detail.
    run_id: Option<String>,
    /// Only runs with this status (running, paused, waiting, crashed, completed, failed,
    /// cancelled).
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The run store directory (default: `SWDL_STORE`, else the nearest `.swdl/` here or above).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
  },
  /// Continue a suspended or crashed run here, or tell a paused live run to go on.
  Resume(ResumeArgs),
  /// Run a finished run's workflow again, reusing what completed and did not change.
  Retry(RetryArgs),
  /// Approve a gate or risky stage a run waits at; then `swdl resume` a suspended run.
  Approve(DecideArgs),
  /// Reject a gate or risky stage a run waits at; then `swdl resume` a suspended run.
  Reject(DecideArgs),
  /// Step through a workflow like a debugger (commands from a pipe run one per line).
  Repl {
    /// Workflow file to load.
    file: Option<PathBuf>,
    /// Parameter values.
    #[command(flatten)]
    params: ParamArgs,
  },
  /// Re-validate and re-plan (or re-run) whenever the file, its skills or hook files change.
  Watch {
    /// Workflow file.
    file: PathBuf,
    /// Run the workflow after each change (stopping a run still going from the last one).
    #[arg(long)]
    run: bool,
  },
  /// Ask a model for a workflow over the available skills; writes it once it is valid.
  Decompose {
    /// What the workflow should do, in a sentence or two.
    task: String,
    /// Directories of skills the workflow may use (default: ./skills); repeatable.
    #[arg(long = "skills", value_name = "DIR")]
    skills: Vec<PathBuf>,
    /// Write the workflow here (default: stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// How many times the model may repair an invalid answer.
    #[arg(long, value_name = "N", default_value_t = 3)]
    repairs: u32,
    /// The model (default: `SWDL_LLM_MODEL`).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// The server's base URL with `/v1` (default: `SWDL_LLM_URL`).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
  },
  /// Cancel a run: one executing in another process, or a suspended or crashed one.
  Cancel {
    /// The run.
    run_id: String,
    /// The run store directory (default: `SWDL_STORE`, else the nearest `.swdl/` here or above).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
  },
  /// Pause a run executing in another process: no new stages start until `swdl resume`.
  Pause {
    /// The run.
    run_id: String,
    /// The run store directory (default: `SWDL_STORE`, else the nearest `.swdl/` here or above).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
  },
  /// The skill registry: built-in skills and those found in skills directories.
  Skills {
    /// What to show (default: list).
    #[command(subcommand)]
    action: Option<SkillsAction>,
    /// Directories to search for skills (default: ./skills); repeatable.
    #[arg(long = "skills", value_name = "DIR", global = true)]
    dirs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
  },
  /// Evaluate one expression and print its value as JSON.
  Eval {
    /// The expression, with or without the `$<< >>` delimiters.
    #[arg(allow_hyphen_values = true)]
    expr: String,
    /// A JSON object whose keys become namespaces (`parameters`, `stages`, ...).
    #[arg(long, value_name = "FILE.json")]
    context: Option<PathBuf>,
  },
}

/// `swdl skills` actions.
#[derive(Debug, Subcommand)]
pub(crate) enum SkillsAction {
  /// List skills, optionally selected by domain, language and a token budget.
  List {
    /// Keep skills in any of these domains (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Keep skills for any of these languages (repeatable).
    #[arg(long = "language", value_name = "LANGUAGE")]
    languages: Vec<String>,
    /// Take skills in order while their token estimates fit in this budget.
    #[arg(long, value_name = "N")]
    max_tokens: Option<u64>,
  },
  /// Show one skill: its source, metadata, inputs and outputs.
  Show {
    /// The skill's name.
    name: String,
  },
}

/// Report formats for `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
  /// For people.
  Text,
  /// One JSON document on stdout.
  Json,
}

/// Output formats for `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlanFormat {
  /// Readable batches and summary.
  Text,
  /// The plan as JSON.
  Json,
  /// Graphviz DOT.
  Dot,
  /// A Mermaid flowchart.
  Mermaid,
}

/// Parameter values, as `run`, `plan` and `repl` take them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ParamArgs {
  /// A parameter value, `name=value` (repeatable; wins over `--params`).
  #[arg(long = "param", value_name = "NAME=VALUE")]
  pub params: Vec<String>,
  /// A YAML or JSON file of parameter values.
  #[arg(long = "params", value_name = "FILE")]
  pub params_file: Option<PathBuf>,
}

/// Options of `swdl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
  /// Workflow file.
  pub file: PathBuf,
  /// Parameter values.
  #[command(flatten)]
  pub params: ParamArgs,
  /// Stages executing at once (overrides `config.max_parallel`).
  #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
  pub max_parallel: Option<u32>,
  /// An extra Lua hook file (policies, recovery strategies), loaded after `config.hooks`.
  #[arg(long = "lua", value_name = "FILE")]
  pub lua: Vec<PathBuf>,
  /// What `run` and `resume` share.
  #[command(flatten)]
  pub flags: RunFlags,
}

/// Options of `swdl resume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
  /// The run.
  pub run_id: String,
  /// A value for a secret parameter (the store keeps secrets masked), `name=value`.
  #[arg(long = "param", value_name = "NAME=VALUE")]
  pub params: Vec<String>,
  /// What `run` and `resume` share.
  #[command(flatten)]
  pub flags: RunFlags,
}

/// Options of `swdl retry`.
#[derive(Debug, clap::Args)]
pub(crate) struct RetryArgs {
  /// The finished run to retry.
  pub run_id: String,
  /// Run this stage and everything downstream of it again, even if they completed.
  #[arg(long, value_name = "STAGE")]
  pub from: Option<String>,
  /// A parameter value for the new run, over the retried run's (secrets must be given
  /// again: the store keeps them masked), `name=value`.
  #[arg(long = "param", value_name = "NAME=VALUE")]
  pub params: Vec<String>,
  /// What `run` and `resume` share.
  #[command(flatten)]
  pub flags: RunFlags,
}

/// The options `swdl run` and `swdl resume` share: where events and progress go, decisions
/// made up front, the final record and the store.
#[derive(Debug, clap::Args)]
pub(crate) struct RunFlags {
  /// Write this execution's events as JSON Lines to FILE, or to stdout with `-`.
  #[arg(long, value_name = "FILE|-")]
  pub events: Option<String>,
  /// Progress display: live on a terminal, plain lines otherwise, or none.
  #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
  pub progress: ProgressArg,
  /// Approve this gate or risky stage up front (repeatable).
  #[arg(long, value_name = "STAGE")]
  pub approve: Vec<String>,
  /// Reject this gate or risky stage up front (repeatable).
  #[arg(long, value_name = "STAGE")]
  pub reject: Vec<String>,
  /// Approve every gate and risky stage.
  #[arg(long)]
  pub approve_all: bool,
  /// Wait at an undecided gate for `swdl approve|reject` from another process (or the gate's
  /// timeout) instead of suspending the run.
  #[arg(long)]
  pub wait: bool,
  /// Print the final run record, with workflow outputs, as JSON on stdout.
  #[arg(long, value_enum)]
  pub output: Option<OutputArg>,
  /// The run store directory, or (for `run`) `none` to keep the run in memory only (default:
  /// `SWDL_STORE`, else the nearest `.swdl/` here or above).
  #[arg(long, value_name = "DIR|none")]
  pub store: Option<PathBuf>,
}

/// Options of `swdl approve` and `swdl reject`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecideArgs {
  /// The run.
  pub run_id: String,
  /// The gate or risky stage.
  pub stage: String,
  /// Why (kept with the decision).
  #[arg(long, value_name = "TEXT")]
  pub reason: Option<String>,
  /// A value for one of the gate's `inputs`, `name=value` (JSON, else text; repeatable).
  #[arg(long = "input", value_name = "NAME=VALUE")]
  pub inputs: Vec<String>,
  /// The run store directory (default: `SWDL_STORE`, else the nearest `.swdl/` here or above).
  #[arg(long, value_name = "DIR")]
  pub store: Option<PathBuf>,
}

/// `--progress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressArg {
  /// Live display on a terminal, plain lines otherwise.
  Auto,
  /// Timestamped lines.
  Plain,
  /// Nothing.
  None,
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputArg {
  /// The run record as JSON.
  Json,
}
