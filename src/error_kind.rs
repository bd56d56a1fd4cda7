use super::*;

/// Everything that can be wrong with a workflow file or its inputs; all wording lives here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
  /// YAML syntax.
  #[error("invalid YAML: {0}")]
  Yaml(String),
  /// Nothing in the file.
  #[error("the workflow file is empty")]
  EmptyFile,
  /// A value of the wrong type.
  #[error("`{field}` must be {expected}, found {found}")]
  WrongType {
    /// The key whose value is wrong.
    field: String,
    /// What was expected, with article.
    expected: &'static str,
    /// What was found, with article.
    found: &'static str,
  },
  /// A key that is not part of the format.
  #[error("unknown key `{key}` in {context}{}{}", did_you_mean(suggestion), note.map(|n| format!(": {n}")).unwrap_or_default())]
  UnknownKey {
    /// The key as written.
    key: String,
    /// Where it appeared.
    context: String,
    /// The closest valid key, or what a GitHub Actions key is written as here.
    suggestion: Option<String>,
    /// Why there is nothing to suggest, for a GitHub Actions key swdl has no counterpart of.
    note: Option<&'static str>,
  },
  /// A mapping key that is not text.
  #[error("keys in `{context}` must be strings, found {found}")]
  NonStringKey {
    /// The mapping.
    context: String,
    /// What the key is, with article.
    found: &'static str,
  },
  /// A key given twice in one mapping.
  #[error("duplicate key `{key}`")]
  DuplicateKey {
    /// The key.
    key: String,
  },
  /// A required key is absent.
  #[error("missing required key `{key}` in {context}")]
  MissingKey {
    /// The key.
    key: &'static str,
    /// Where it is missing.
    context: String,
  },
  /// A name or id with characters outside the allowed set.
  #[error("invalid {what} `{name}`: {}", name_rule(what))]
  InvalidName {
    /// Which kind of name.
    what: &'static str,
    /// The name as written.
    name: String,
  },
  /// A bad duration.
  #[error("{0}")]
  InvalidDuration(String),
  /// `swdl:` other than 1.
  #[error("unsupported format version {0}: this swdl reads `swdl: 1`")]
  UnsupportedVersion(String),
  /// A number out of range.
  #[error("`{field}` {message}")]
  OutOfRange {
    /// The key.
    field: String,
    /// What is wrong.
    message: String,
  },
  /// A string outside its allowed set.
  #[error("`{field}` must be one of {}, found `{value}`{}", allowed.join(", "), did_you_mean(suggestion))]
  InvalidChoice {
    /// The key.
    field: String,
    /// The value written.
    value: String,
    /// The allowed values.
    allowed: &'static [&'static str],
    /// The closest allowed value.
    suggestion: Option<String>,
  },
  /// `stages: []`.
  #[error("`stages` must list at least one stage")]
  NoStages,
  /// Two stages with one id.
  #[error("duplicate stage id `{id}` (first defined on line {first_line})")]
  DuplicateStage {
    /// The id.
    id: String,
    /// Line of the first definition.
    first_line: usize,
  },
  /// `uses` and `gate` together.
  #[error("stage `{id}` has both `gate` and `uses`: a stage is either a gate or a skill stage")]
  GateAndSkill {
    /// The stage.
    id: String,
  },
  /// Both `for_each` and `matrix` on one stage.
  #[error("stage `{id}` has both `for_each` and `matrix`: a stage fans out over one of them")]
  ForEachAndMatrix {
    /// The stage.
    id: String,
  },
  /// `max_parallel` or `fail_fast` on a stage that does not fan out.
  #[error(
    "`{key}` applies to the items of a fanned-out stage, and stage `{id}` has no `for_each` or `matrix`"
  )]
  NeedsFanOut {
    /// The key.
    key: &'static str,
    /// The stage.
    id: String,
  },
  /// More items than one stage may have.
  #[error(
    "{count} items: a fanned-out stage has at most {} (docs/running.md, \"Limits\")",
    workflow::MAX_ITEMS
  )]
  TooManyItems {
    /// How many there would be.
    count: usize,
  },
  /// `matrix: {}`.
  #[error("`matrix` needs at least one dimension (a key with a list of values)")]
  EmptyMatrix,
  /// `item`, `index` or `matrix` where no item exists.
  #[error("`{name}` is only defined {where_}")]
  NoItem {
    /// The name as written.
    name: String,
    /// Where it is defined.
    where_: &'static str,
  },
  /// `matrix.X` for an X the matrix does not have.
  #[error("the matrix has no dimension `{name}`{}; it has {}", did_you_mean(suggestion), known.join(", "))]
  UnknownDimension {
    /// The name as written.
    name: String,
    /// The closest dimension.
    suggestion: Option<String>,
    /// Its dimensions and `include` keys.
    known: Vec<String>,
  },
  /// Neither `uses` nor `gate`.
  #[error("stage `{id}` needs `uses` (a skill to run) or `gate` (a decision to wait for)")]
  NoAction {
    /// The stage.
    id: String,
  },
  /// A skill-only key on a gate.
  #[error("`{key}` does not apply to gate stage `{id}`{}", if *key == "timeout" { ": a gate's limit is `gate: { timeout: ... }`" } else { "" })]
  NotForGate {
    /// The key.
    key: &'static str,
    /// The gate stage.
    id: String,
  },
  /// A parameter default or enum value of the wrong type.
  #[error("{what} of parameter `{name}` must be of type {expected}, found {found}")]
  ParameterType {
    /// The parameter.
    name: String,
    /// "default" or "enum value".
    what: &'static str,
    /// The declared type.
    expected: workflow::ValueType,
    /// The value as JSON.
    found: String,
  },
  /// A default not among the enum values.
  #[error("default of parameter `{name}` is {value}, which is not one of its `enum` values")]
  NotInEnum {
    /// The parameter.
    name: String,
    /// The default as JSON.
    value: String,
  },
  /// `depends_on` names a stage that does not exist.
  #[error(
    "stage `{id}` depends on unknown stage `{on}`{}",
    did_you_mean(suggestion)
  )]
  UnknownDependency {
    /// The dependent stage.
    id: String,
    /// The missing stage.
    on: String,
    /// The closest stage id.
    suggestion: Option<String>,
  },
  /// A stage lists itself.
  #[error("stage `{id}` depends on itself")]
  SelfDependency {
    /// The stage.
    id: String,
  },
  /// A stage lists a dependency twice.
  #[error("stage `{id}` lists `{on}` in `depends_on` more than once")]
  DuplicateDependency {
    /// The stage.
    id: String,
    /// The repeated dependency.
    on: String,
  },
  /// A dependency cycle.
  #[error("dependency cycle: {}", path.join(" -> "))]
  Cycle {
    /// The stages on the cycle, first repeated at the end.
    path: Vec<String>,
  },
  /// A JSON file that does not parse.
  #[error("invalid JSON: {0}")]
  InvalidJson(String),
  /// An error in a `$<< >>` expression.
  #[error("{0}")]
  Expr(expr::ExprErrorKind),
  /// An expression that failed while the run went on.
  #[error("{}{message}", stage.as_ref().map_or_else(String::new, |s| format!("stage `{s}`: ")))]
  Run {
    /// The stage it belongs to, if any.
    stage: Option<String>,
    /// The runtime's account of it.
    message: String,
  },
  /// A context name that does not exist where the expression is.
  #[error("unknown name `{name}` {where_}: available here are {}{}", available.join(", "), did_you_mean(suggestion))]
  UnknownNamespace {
    /// The name.
    name: String,
    /// Where the expression is, e.g. "in `if`".
    where_: String,
    /// The names that exist there.
    available: Vec<&'static str>,
    /// The closest.
    suggestion: Option<String>,
  },
  /// `parameters.x` with no parameter `x`.
  #[error("unknown parameter `{name}`{}: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), if declared.is_empty() { "the workflow declares none".to_string() } else { format!("the parameters are {}", declared.join(", ")) })]
  UnknownParameter {
    /// The parameter.
    name: String,
    /// The closest declared one.
    suggestion: Option<String>,
    /// Every declared parameter.
    declared: Vec<String>,
  },
  /// `stages.x` with no stage `x`.
  #[error("unknown stage `{id}`{}", did_you_mean(suggestion))]
  UnknownStage {
    /// The id.
    id: String,
    /// The closest id.
    suggestion: Option<String>,
  },
  /// `stages.x` from a stage that does not depend on `x`.
  #[error(
    "stage `{stage}` reads `stages.{other}` but does not depend on it: add `{other}` to its `depends_on`"
  )]
  NotAnAncestor {
    /// The reading stage.
    stage: String,
    /// The stage read.
    other: String,
  },
  /// A stage reading its own outputs outside its compensation.
  #[error("stage `{stage}` reads its own outputs: only its `compensate` may, after it completed")]
  ReadsItself {
    /// The stage.
    stage: String,
  },
  /// `stages.x.foo` where `foo` is not a stage field.
  #[error(
    "`stages.{id}.{field}` does not exist{}: a stage exposes {}",
    crate::suggest::hint(field, ["outputs", "status", "attempts", "items"]),
    if *fanned { "`outputs`, `status`, `attempts` and `items`" } else { "`outputs`, `status` and `attempts`" }
  )]
  UnknownStageField {
    /// The stage has `for_each` or `matrix`.
    fanned: bool,
    /// The stage.
    id: String,
    /// The field.
    field: String,
  },
  /// Reading an output a contract does not declare.
  #[error("stage `{id}` does not declare output `{output}`{} ({} {})", mean(output, declared.iter().map(String::as_str)), if *gate { "a gate's outputs are its `inputs` and" } else { "its `outputs` contract declares" }, declared.join(", "))]
  UndeclaredOutput {
    /// The producer is a gate.
    gate: bool,
    /// The stage.
    id: String,
    /// The output read.
    output: String,
    /// What the contract declares.
    declared: Vec<String>,
  },
  /// An `if` with text around its expression.
  #[error("`if` must be exactly one `$<< ... >>` expression with no text around it")]
  ConditionNotSingle,
  /// `uses: ""`.
  #[error("`uses` must name a skill")]
  EmptySkill,
  /// A skill that is neither built in nor found on the skills path.
  #[error("unknown skill `{name}`{}{}", did_you_mean(suggestion), if suggestion.is_none() { ": not a built-in skill, and no `NAME.lua` or `NAME/init.lua` on the skills path" } else { "" })]
  UnknownSkill {
    /// The name as written.
    name: String,
    /// The closest known skill.
    suggestion: Option<String>,
  },
  /// `uses: ./x.lua` where the file does not exist.
  #[error("skill file `{0}` does not exist (paths are relative to the workflow file)")]
  MissingSkillFile(String),
  /// A `with` key the skill does not read.
  #[error("skill `{skill}` has no input `{key}`{}: it takes {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
  UnknownInput {
    /// The skill.
    skill: String,
    /// The key as written.
    key: String,
    /// The closest input the skill takes.
    suggestion: Option<String>,
    /// Every input the skill takes.
    known: Vec<String>,
  },
  /// A required input absent from `with`.
  #[error("skill `{skill}` needs `{}` in `with`{}", keys[0], keys[1..].iter().map(|k| format!(" (or `{k}`)")).collect::<String>())]
  MissingInput {
    /// The skill.
    skill: String,
    /// The key, then its alternatives.
    keys: Vec<String>,
  },
  /// A Lua skill file that does not load (a syntax error, an error at its top level, a table
  /// of the wrong shape).
  #[error("skill `{name}` does not load: {message}")]
  BrokenSkill {
    /// The name used.
    name: String,
    /// Lua's message, with the file and line.
    message: String,
  },
  /// A policy or recovery strategy no hook file registers.
  #[error("unknown {what} `{name}`{}: {}", did_you_mean(suggestion), if registered.is_empty() { "no hook file registers any (list hook files in config.hooks or pass --lua FILE)".to_string() } else { format!("registered are {}", registered.join(", ")) })]
  UnknownHook {
    /// `approval policy` or `recovery strategy`.
    what: &'static str,
    /// The name used.
    name: String,
    /// The closest registered name.
    suggestion: Option<String>,
    /// What the hooks registered.
    registered: Vec<String>,
  },
  /// A status function outside `if`.
  #[error("status functions such as `success()` may only be used in `if`")]
  StatusOutsideIf,
  /// A `--param` for an undeclared parameter.
  #[error(
    "unknown parameter `{name}` given with --param{}",
    did_you_mean(suggestion)
  )]
  UnknownParamArg {
    /// The name given.
    name: String,
    /// The closest declared one.
    suggestion: Option<String>,
  },
  /// A `--param` that is not `k=v`.
  #[error("--param `{0}` must look like name=value")]
  MalformedParamArg(String),
  /// A parameter value that does not convert.
  #[error("parameter `{name}` expects {expected}, got `{value}`")]
  ParamConversion {
    /// The parameter.
    name: String,
    /// The declared type.
    expected: workflow::ValueType,
    /// The value given.
    value: String,
  },
  /// A parameter value outside its enum.
  #[error("parameter `{name}` must be one of {allowed}, got {value}")]
  ParamNotInEnum {
    /// The parameter.
    name: String,
    /// The allowed values as JSON.
    allowed: String,
    /// The value as JSON.
    value: String,
  },
  /// A required parameter with no value.
  #[error("missing required parameter `{name}`: pass --param {name}=VALUE")]
  MissingParameter {
    /// The parameter.
    name: String,
  },
}

#[expect(
  clippy::ref_option,
  reason = "thiserror's format arguments borrow the fields"
)]
fn did_you_mean(suggestion: &Option<String>) -> String {
  suggestion
    .as_ref()
    .map_or_else(String::new, |s| format!(", did you mean `{s}`?"))
}

fn name_rule(what: &str) -> &'static str {
  if what == "parameter name" {
    "use letters, digits, `_` and `-`, starting with a letter or `_`"
  } else {
    "use lowercase letters, digits, `_` and `-`, starting with a letter or digit"
  }
}

/// `, did you mean `x`?` when a candidate is close to `name`.
fn mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
  crate::suggest::suggest(name, candidates)
    .map_or_else(String::new, |s| format!(", did you mean `{s}`?"))
}
