//! `swdl decompose "TASK"` (docs/models.md): asks a model for a workflow over the available
//! skills, checks the reply exactly as `swdl validate` does (and that every skill it uses
//! exists), sends the errors back for a bounded number of repairs, and writes a valid file or
//! fails with the last errors. The model's output is never trusted: only a file that passes
//! the checks is written.
use super::*;
use crate::commands::Error;
use std::{io::Write, path::Path};

/// What `swdl decompose` was asked.
pub(crate) struct Args<'a> {
  pub task: &'a str,
  pub skills: &'a [std::path::PathBuf],
  pub output: Option<&'a Path>,
  pub repairs: u32,
  pub model: Option<&'a str>,
  pub url: Option<&'a str>,
}

const FORMAT: &str = r#"A swdl workflow is YAML:

name: short-name
description: one line
parameters:            # optional inputs of the workflow
  module: { type: string, default: src }
stages:
  - id: fetch                     # unique, letters, digits, - and _
    uses: SKILL                   # one of the skills listed below
    with: { key: value }          # the skill's inputs
  - id: review
    uses: SKILL
    depends_on: [fetch]           # runs after these
    with:
      text: "$<< stages.fetch.outputs.body >>"   # data from an earlier stage
    retry: { max_attempts: 3, backoff: exponential, delay: 1s }
    timeout: 5m
  - id: approve
    gate: { message: "ship it?" } # waits for a person
    depends_on: [review]
outputs:
  report: "$<< stages.review.outputs.text >>"

Expressions inside $<< >> may read parameters.NAME, stages.ID.outputs.KEY,
stages.ID.status, env.NAME; `if: "$<< parameters.deep >>"` makes a stage conditional.
A stage may only read stages it depends on (directly or through others)."#;

/// Runs `swdl decompose`.
pub(crate) fn run(args: &Args<'_>) -> Result<Done, Error> {
  let endpoint = llm::Endpoint::from_env(args.url, args.model)
    .map_err(|e| Error::Usage(format!("decompose: {e}")))?;
  let dirs: Vec<String> = if args.skills.is_empty() {
    vec!["skills".into()]
  } else {
    args
      .skills
      .iter()
      .map(|d| d.display().to_string())
      .collect()
  };
  let index = crate::skills::SkillIndex::discover(Path::new(""), &dirs);
  let mut registry = crate::skills::Registry::load(&index).map_err(Error::Diagnostics)?;
  commands::describe_from_lua(&mut registry);
  let catalogue = catalogue(&registry);
  let known: Vec<String> = registry.skills.iter().map(|s| s.name.clone()).collect();
  let mut messages = vec![
    (
      "system".to_string(),
      format!(
        "You turn a task into a swdl workflow file.\n\n{FORMAT}\n\nThe skills you may use \
         (nothing else exists):\n{catalogue}\n\nReply with the workflow only, in one ```yaml \
         block. Prefer independent stages that can run in parallel; depend on a stage only \
         when you read its outputs or must wait for it."
      ),
    ),
    ("user".to_string(), format!("Task: {}", args.task)),
  ];
  let budget = llm::Budget::default();
  let runtime = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
  let mut stderr = std::io::stderr();
  let mut last_errors = String::new();
  for round in 0..=args.repairs {
    let completion = llm::Completion {
      messages: messages.clone(),
      temperature: Some(0.2),
      max_tokens: None,
      json: false,
    };
    let answer = runtime
      .block_on(llm::complete(&endpoint, &completion, &budget))
      .map_err(|e| Error::Failed(format!("decompose: {e}")))?;
    let yaml = extract_yaml(&answer.text);
    match check(&yaml, &known) {
      Ok(workflow) => {
        let plan = crate::plan::plan(&workflow, &params::defaults(&workflow));
        let _ = writeln!(
          stderr,
          "decompose: a valid workflow after {} (model tokens: {})",
          match round {
            0 => "the first answer".to_string(),
            n => format!("{n} repair{}", if n == 1 { "" } else { "s" }),
          },
          budget.used()
        );
        let _ = write!(stderr, "{}", explain(&plan));
        let mut text = yaml.trim_end().to_string();
        text.push('\n');
        match args.output {
          Some(path) => std::fs::write(path, &text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
          })?,
          None => std::io::stdout().lock().write_all(text.as_bytes())?,
        }
        if let Some(path) = args.output {
          let _ = writeln!(stderr, "wrote {}", path.display());
        }
        return Ok(Done::Ok);
      }
      Err(errors) => {
        let _ = writeln!(
          stderr,
          "decompose: answer {} is not a valid workflow ({} problem{}){}",
          round + 1,
          errors
            .lines()
            .filter(|l| l.contains("error:"))
            .count()
            .max(1),
          if errors.lines().filter(|l| l.contains("error:")).count() == 1 {
            ""
          } else {
            "s"
          },
          if round < args.repairs {
            "; asking for a repair"
          } else {
            ""
          }
        );
        messages.push(("assistant".into(), answer.text.clone()));
        messages.push((
          "user".into(),
          format!(
            "That workflow is not valid:\n{errors}\nReply with the whole corrected workflow, \
             only, in one ```yaml block."
          ),
        ));
        last_errors = errors;
      }
    }
  }
  let _ = write!(stderr, "{last_errors}");
  Err(Error::Failed(format!(
    "decompose: no valid workflow after {} repair{}",
    args.repairs,
    if args.repairs == 1 { "" } else { "s" }
  )))
}

/// Names, descriptions, inputs and outputs of every skill, one per line.
fn catalogue(registry: &crate::skills::Registry) -> String {
  registry
    .skills
    .iter()
    .map(|s| {
      let mut line = format!("- {}", s.name);
      if let Some(d) = &s.meta.description {
        line.push_str(&format!(": {d}"));
      }
      let list = |m: &indexmap::IndexMap<String, String>| {
        m.iter()
          .map(|(k, v)| format!("{k} ({v})"))
          .collect::<Vec<_>>()
          .join(", ")
      };
      if !s.meta.inputs.is_empty() {
        line.push_str(&format!("; inputs: {}", list(&s.meta.inputs)));
      }
      if !s.meta.outputs.is_empty() {
        line.push_str(&format!("; outputs: {}", list(&s.meta.outputs)));
      }
      line
    })
    .collect::<Vec<_>>()
    .join("\n")
}

/// The first fenced block of the reply (```yaml or ```), else the whole reply.
fn extract_yaml(text: &str) -> String {
  let Some(start) = text.find("```") else {
    return text.trim().to_string();
  };
  let rest = &text[start + 3..];
  let body = rest.split_once('\n').map_or("", |(_, body)| body);
  match body.find("```") {
    Some(end) => body[..end].to_string(),
    None => body.to_string(),
  }
}

/// The workflow, or its problems as `swdl validate` prints them (plus skills that do not
/// exist).
fn check(yaml: &str, known: &[String]) -> Result<workflow::Workflow, String> {
  let workflow = compose::load_str("decomposed.yaml", yaml).map_err(|d| d.render(false))?;
  let mut unknown = String::new();
  for stage in &workflow.stages {
    for name in stage
      .skill()
      .map(|c| c.uses.as_str())
      .into_iter()
      .chain(stage.fallback.iter().map(String::as_str))
    {
      if !known.iter().any(|k| k == name) {
        let hint = suggest::hint(name, known.iter().map(String::as_str));
        unknown.push_str(&format!(
          "decomposed.yaml: error: stage `{}` uses skill `{name}`, which does not exist{hint}; \
           use one of the listed skills\n",
          stage.id
        ));
      }
    }
  }
  if !unknown.is_empty() {
    return Err(unknown);
  }
  // What `swdl validate` checks by loading Lua: hook names, Lua skills and their inputs, as
  // seen from the directory the workflow is written to.
  let lua =
    launch::start_lua(&workflow, Path::new("decomposed.yaml"), &[]).map_err(|e| match e {
      Error::Diagnostics(d) => d.render(false),
      other => format!("decomposed.yaml: error: {other}\n"),
    })?;
  if let Some(lua) = lua {
    let mut problems = launch::check_lua_skills(&workflow, &lua);
    if !problems.is_empty() {
      problems.sort();
      return Err(problems.render(false));
    }
  }
  Ok(workflow)
}

/// The plan in words: what runs together and why.
fn explain(plan: &crate::plan::Plan) -> String {
  let mut out = String::from("the plan:\n");
  for (n, batch) in plan.batches.iter().enumerate() {
    let why: Vec<String> = batch
      .iter()
      .filter_map(|id| plan.stages.iter().find(|s| &s.id == id))
      .map(|s| {
        if s.depends_on.is_empty() {
          format!("{} (needs nothing)", s.id)
        } else {
          format!("{} (after {})", s.id, s.depends_on.join(", "))
        }
      })
      .collect();
    let together = if batch.len() > 1 { ", in parallel" } else { "" };
    out.push_str(&format!("  {}. {}{together}\n", n + 1, why.join("; ")));
  }
  if !plan.critical_path.is_empty() {
    out.push_str(&format!(
      "  critical path: {}\n",
      plan.critical_path.join(" -> ")
    ));
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn yaml_is_taken_from_the_first_fenced_block() {
    assert_eq!(
      extract_yaml("Here:\n```yaml\nname: x\n```\nthanks"),
      "name: x\n"
    );
    assert_eq!(extract_yaml("```\nname: y\n```"), "name: y\n");
    assert_eq!(extract_yaml("name: z\n"), "name: z");
  }

  #[test]
  fn unknown_skills_are_problems_to_repair() {
    let known = vec!["echo".to_string()];
    let errors =
      check("name: x\nstages:\n  - id: a\n    uses: ecko\n", &known).expect_err("unknown skill");
    assert!(errors.contains("did you mean `echo`"), "{errors}");
    assert!(check("name: x\nstages:\n  - id: a\n    uses: echo\n", &known).is_ok());
    let errors = check(
      "name: x\nstages:\n  - id: a\n    uses: echo\n    depends_on: [b]\n",
      &known,
    )
    .expect_err("bad dependency");
    assert!(errors.contains("decomposed.yaml:5:"), "{errors}");
  }

  #[test]
  fn a_builtin_without_what_it_needs_is_a_problem_to_repair() {
    let known = vec!["shell".to_string()];
    let errors = check(
      "name: x\nstages:\n  - id: a\n    uses: shell\n    with: { cmd: ls }\n",
      &known,
    )
    .expect_err("shell needs run");
    assert_eq!(
      errors,
      "decomposed.yaml:4:11: error: skill `shell` needs `run` in `with`\n  |\n4 |     uses: \
       shell\n  |           ^^^^^\ndecomposed.yaml:5:13: error: skill `shell` has no input `cmd` (did \
       you mean `run`?): it takes run, shell, cwd, env\n  |\n5 |     with: { cmd: ls }\n  |             ^^^\n2 \
       errors\n"
    );
  }
}
