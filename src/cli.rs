//! Command-line arguments (SPEC section 2).
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// swdl runs YAML workflows: DAGs of stages with expressions, retries, gates and Lua hooks.
#[derive(Debug, Parser)]
#[command(name = "swdl", version, about, max_term_width = 100)]
pub struct Cli {
  /// What to do.
  #[command(subcommand)]
  pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// A parameter value, `name=value` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
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

/// Report formats for `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
  /// For people.
  Text,
  /// One JSON document on stdout.
  Json,
}

/// Output formats for `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
  /// Readable batches and summary.
  Text,
  /// The plan as JSON.
  Json,
  /// Graphviz DOT.
  Dot,
  /// A Mermaid flowchart.
  Mermaid,
}
