//! Tab completion and hints for the REPL: commands, stage ids, file paths (`load`), parameter
//! names (`param`), and expression namespaces with stage ids and output keys (`eval`, `set`).
use rustyline::{
  Context, Helper as RustylineHelper,
  completion::{Completer, FilenameCompleter, Pair},
  highlight::Highlighter,
  hint::{Hinter, HistoryHinter},
  validate::Validator,
};
use std::collections::HashMap;

/// What the loaded workflow and the run so far offer for completion.
#[derive(Debug, Default, Clone)]
pub(super) struct Names {
  /// Stage ids, in file order.
  pub(super) stages: Vec<String>,
  /// Parameter names.
  pub(super) params: Vec<String>,
  /// Output keys of each stage that has outputs.
  pub(super) outputs: HashMap<String, Vec<String>>,
}

/// The rustyline helper.
pub(super) struct Helper {
  names: Names,
  files: FilenameCompleter,
  hints: HistoryHinter,
}

impl Helper {
  pub(super) fn new(names: Names) -> Self {
    Self {
      names,
      files: FilenameCompleter::new(),
      hints: HistoryHinter::new(),
    }
  }

  /// Candidates for the word ending at the cursor, given the words before it.
  pub(super) fn candidates(&self, command: Option<&str>, word: &str) -> Vec<String> {
    let Some(command) = command else {
      return starting(super::COMMANDS.iter().map(|c| c.0.to_string()), word);
    };
    match command {
      "break" | "unbreak" | "inspect" | "approve" | "reject" | "retry" | "skip" => {
        starting(self.names.stages.iter().cloned(), word)
      }
      "param" => starting(self.names.params.iter().map(|p| format!("{p}=")), word),
      "help" => starting(super::COMMANDS.iter().map(|c| c.0.to_string()), word),
      "set" => {
        let stages = self.names.stages.iter().flat_map(|s| {
          let keys = self.names.outputs.get(s).cloned().unwrap_or_default();
          std::iter::once(format!("{s}.outputs."))
            .chain(keys.into_iter().map(move |k| format!("{s}.outputs.{k}")))
        });
        starting(stages, word)
      }
      "eval" => self.expression(word),
      _ => Vec::new(),
    }
  }

  /// `parameters.`, `stages.ID.outputs.KEY`, ... for the dotted path being typed.
  fn expression(&self, word: &str) -> Vec<String> {
    let mut all: Vec<String> = crate::expr::NAMESPACES
      .iter()
      .map(|n| format!("{n}."))
      .collect();
    all.extend(self.names.params.iter().map(|p| format!("parameters.{p}")));
    for stage in &self.names.stages {
      all.push(format!("stages.{stage}."));
      for tail in ["outputs.", "status", "attempts"] {
        all.push(format!("stages.{stage}.{tail}"));
      }
      for key in self.names.outputs.get(stage).into_iter().flatten() {
        all.push(format!("stages.{stage}.outputs.{key}"));
      }
    }
    starting(all, word)
  }
}

fn starting(items: impl IntoIterator<Item = String>, word: &str) -> Vec<String> {
  let mut out: Vec<String> = items.into_iter().filter(|i| i.starts_with(word)).collect();
  out.sort();
  out.dedup();
  out
}

impl Completer for Helper {
  type Candidate = Pair;

  fn complete(
    &self,
    line: &str,
    pos: usize,
    ctx: &Context<'_>,
  ) -> rustyline::Result<(usize, Vec<Pair>)> {
    let before = &line[..pos];
    let start = before
      .rfind(|c: char| c.is_whitespace() || "()[],!=<>&|".contains(c))
      .map_or(0, |i| i + 1);
    let word = &before[start..];
    let command = before.split_whitespace().next().filter(|_| start > 0);
    if command == Some("load") {
      return self.files.complete(line, pos, ctx);
    }
    let pairs = self
      .candidates(command, word)
      .into_iter()
      .map(|c| Pair {
        display: c.clone(),
        replacement: c,
      })
      .collect();
    Ok((start, pairs))
  }
}

impl Hinter for Helper {
  type Hint = String;

  fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
    if let Some(hint) = self.hints.hint(line, pos, ctx) {
      return Some(hint);
    }
    // Without history, show a command's arguments once its name is typed.
    let name = line.trim_end();
    if pos != line.len() || !line.ends_with(' ') {
      return None;
    }
    super::COMMANDS
      .iter()
      .find(|c| c.0 == name)
      .filter(|c| !c.1.is_empty())
      .map(|c| c.1.to_string())
  }
}

impl Highlighter for Helper {
  fn highlight_hint<'h>(&self, hint: &'h str) -> std::borrow::Cow<'h, str> {
    std::borrow::Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
  }
}

impl Validator for Helper {}

impl RustylineHelper for Helper {}

#[cfg(test)]
mod tests {
  use super::*;

  fn helper() -> Helper {
    Helper::new(Names {
      stages: vec!["build".into(), "bundle".into(), "test".into()],
      params: vec!["module".into()],
      outputs: HashMap::from([("build".to_string(), vec!["artifact".to_string()])]),
    })
  }

  #[test]
  fn completes_commands_stage_ids_params_and_expression_paths() {
    let h = helper();
    assert_eq!(
      h.candidates(None, "re"),
      ["reject", "reload", "restart", "retry"]
    );
    assert_eq!(h.candidates(Some("inspect"), "bu"), ["build", "bundle"]);
    assert_eq!(h.candidates(Some("param"), "m"), ["module="]);
    assert_eq!(
      h.candidates(Some("eval"), "stages.build.outputs.a"),
      ["stages.build.outputs.artifact"]
    );
    assert!(
      h.candidates(Some("eval"), "par")
        .contains(&"parameters.".to_string())
    );
    assert_eq!(
      h.candidates(Some("set"), "build.outputs.a"),
      ["build.outputs.artifact"]
    );
    assert!(h.candidates(Some("quit"), "").is_empty());
  }
}
