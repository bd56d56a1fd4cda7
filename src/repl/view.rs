//! Commands that read the run: `status`, `graph`, `inspect`, `eval` and `lua`.
use super::*;

impl Session {
  pub(super) fn status(&mut self) -> Outcome {
    let snapshot = self.sync(true);
    let color = self.color;
    let live = self.live()?;
    let state = &live.state;
    let mut lines = vec![format!(
      "run {} {}{}",
      state.run,
      paint(
        state.status.as_str(),
        status_style(state.status.as_str()),
        color
      ),
      snapshot
        .as_ref()
        .filter(|s| s.paused && state.status.as_str() == "running")
        .map_or("", |_| " (paused)")
    )];
    for (id, stage) in &state.stages {
      let mut rest = String::new();
      if stage.attempts > 0 {
        rest.push_str(&format!(" attempts {}", stage.attempts));
      }
      if let Some(ms) = stage.duration_ms {
        rest.push_str(&format!(" {ms}ms"));
      }
      if let Some(error) = &stage.error {
        rest.push_str(&format!("  {}", one_line(error, 70)));
      }
      // The status column is padded only when something follows it: no trailing blanks.
      let status = stage.status.as_str();
      let column = if rest.is_empty() {
        status.to_string()
      } else {
        format!("{status:<10}")
      };
      let line = format!(
        "  {:<20} {}{rest}",
        id,
        paint(&column, status_style(status), color)
      );
      lines.push(line);
    }
    let text = lines.join("\n");
    self.say(&text);
    Ok(())
  }

  pub(super) fn graph(&mut self) -> Outcome {
    self.pump(true);
    let workflow = self.workflow()?;
    let plan = plan::plan(&workflow, &params::defaults(&workflow));
    let color = self.color;
    let state = self.live.as_ref().map(|l| &l.state);
    let mut lines = Vec::new();
    for (level, batch) in plan.batches.iter().enumerate() {
      lines.push(format!("level {}", level + 1));
      for id in batch {
        let status = state
          .and_then(|s| s.stages.get(id))
          .map_or("pending", |s| s.status.as_str());
        let deps = &workflow.stages[workflow.stage_index()[id.as_str()]].depends_on;
        let from = if deps.is_empty() {
          String::new()
        } else {
          format!(" <- {}", deps.join(", "))
        };
        let mark = match status {
          "completed" => "✓",
          "failed" | "timed_out" => "✗",
          "running" => "▶",
          "waiting" => "?",
          "skipped" | "cancelled" => "-",
          _ => "·",
        };
        let brk = if self.breakpoints.contains(id) {
          " [break]"
        } else {
          ""
        };
        lines.push(format!(
          "  {} {id} {}{from}{brk}",
          paint(mark, status_style(status), color),
          paint(&format!("({status})"), status_style(status), color)
        ));
      }
    }
    let text = lines.join("\n");
    self.say(&text);
    Ok(())
  }

  pub(super) fn inspect(&mut self, arg: &str) -> Outcome {
    let id = self.stage_id(arg)?;
    self.pump(true);
    let live = self.live()?;
    let Some(stage) = live.state.stages.get(&id) else {
      return Err(format!("no stage `{id}`"));
    };
    let mut lines = vec![format!("{id}: {}", stage.status.as_str())];
    let mut field = |name: &str, value: Option<String>| {
      if let Some(value) = value {
        lines.push(format!("  {name:<9} {value}"));
      }
    };
    field("uses", stage.uses.clone());
    field(
      "attempts",
      (stage.attempts > 0).then(|| stage.attempts.to_string()),
    );
    field("inputs", stage.inputs.as_ref().map(ToString::to_string));
    field("outputs", stage.outputs.as_ref().map(ToString::to_string));
    field("summary", stage.summary.clone());
    field("error", stage.error.clone());
    field("reason", stage.reason.clone());
    field("decision", stage.decision.as_ref().map(ToString::to_string));
    field("started", stage.started_at.clone());
    field("finished", stage.finished_at.clone());
    field("took", stage.duration_ms.map(|ms| format!("{ms}ms")));
    let attempts: Vec<String> = live
      .log
      .iter()
      .filter(|r| r.event.stage() == Some(id.as_str()))
      .filter_map(|r| match &r.event {
        Event::StageStarted { attempt, uses, .. } => {
          Some(format!("#{attempt} {uses} started {}", r.ts))
        }
        Event::StageRetrying {
          attempt,
          error,
          delay_ms,
          ..
        } => Some(format!(
          "#{attempt} failed: {} (retry in {delay_ms}ms)",
          one_line(error, 60)
        )),
        Event::StageCompleted {
          attempt,
          duration_ms,
          ..
        } => Some(format!("#{attempt} completed in {duration_ms}ms")),
        Event::StageFailed { attempt, error, .. } => Some(format!(
          "#{} failed: {}",
          attempt.unwrap_or(0),
          one_line(error, 60)
        )),
        Event::StageTimedOut {
          attempt,
          timeout_ms,
          ..
        } => Some(format!("#{attempt} timed out after {timeout_ms}ms")),
        _ => None,
      })
      .collect();
    if !attempts.is_empty() {
      lines.push("  history".into());
      lines.extend(attempts.into_iter().map(|a| format!("    {a}")));
    }
    if !stage.logs.is_empty() {
      lines.push("  logs".into());
      lines.extend(stage.logs.iter().map(|l| format!("    {l}")));
    }
    let text = lines.join("\n");
    self.say(&text);
    Ok(())
  }

  /// The expression namespaces of the run so far.
  pub(super) fn context(&self) -> Result<expr::MapContext, String> {
    let workflow = self.workflow()?;
    // The parameters of the run in progress (secrets masked), else those set so far.
    let params = match self.live.as_ref().map(|l| &l.state.params) {
      Some(serde_json::Value::Object(map)) if !map.is_empty() => map.clone(),
      _ => params::resolve(&workflow, &self.params)
        .map_err(|d| d.render(false))?
        .into_iter()
        .collect(),
    };
    let mut stages = serde_json::Map::new();
    let mut env = serde_json::Map::new();
    let mut run = serde_json::json!({});
    if let Some(live) = &self.live {
      for (id, s) in &live.state.stages {
        stages.insert(
          id.clone(),
          serde_json::json!({
            "outputs": s.outputs.as_deref().cloned().unwrap_or(serde_json::Value::Null),
            "status": s.status.as_str(),
            "attempts": s.attempts,
          }),
        );
      }
      run = serde_json::json!({
        "id": live.state.run,
        "started_at": live.state.started_at,
        "attempt": 1,
      });
    }
    for (key, input) in &workflow.config.env {
      if let workflow::Input::Literal(value) = input {
        env.insert(key.clone(), value.clone());
      }
    }
    let names = serde_json::json!({
      "parameters": params,
      "stages": stages,
      "env": env,
      "run": run,
      "workflow": { "name": workflow.name, "version": workflow.version },
    });
    Ok(expr::MapContext::from_json(&names))
  }

  pub(super) fn eval(&mut self, text: &str) -> Outcome {
    if text.is_empty() {
      return Err("eval needs an expression".into());
    }
    self.pump(true);
    let ctx = self.context()?;
    let column = |offset: usize| text.get(..offset).map_or(0, |s| s.chars().count()) + 1;
    let value = if text.contains("$<<") {
      expr::Template::parse(text)
        .and_then(|t| t.eval(&ctx))
        .map_err(|e| format!("{} at column {}", e.kind, column(e.span.offset)))?
    } else {
      expr::parse(text)
        .and_then(|e| e.eval(&ctx))
        .map_err(|e| format!("{} at column {}", e.kind, column(e.span.offset)))?
    };
    self.say(&value.to_json_text(false));
    Ok(())
  }

  pub(super) fn lua(&mut self, code: &str) -> Outcome {
    if code.is_empty() {
      return Err("lua needs code, e.g. `lua return 1 + 1`".into());
    }
    if self.lua.is_none() {
      // The workflow needs no Lua; start a host for the REPL alone.
      let host = lua::LuaHost::start(lua::HostConfig::default()).map_err(|e| e.to_string())?;
      self.lua = Some(Lua {
        host,
        skills: HashMap::new(),
      });
    }
    let Some(Lua { host, .. }) = &self.lua else {
      return Err("no Lua host".into());
    };
    let host = host.clone();
    let value = self
      .runtime
      .block_on(async { host.eval(code).await })
      .map_err(|e| e.to_string())?;
    let text = match &value {
      serde_json::Value::Null => "nil".to_string(),
      other => other.to_string(),
    };
    self.say(&text);
    Ok(())
  }
}
