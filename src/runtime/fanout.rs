//! Fan-out (SPEC section 11): a stage with `for_each` or `matrix` runs once per item. Each item
//! is a unit of its own, with its own slot in the core's tables (after the stages), so that
//! attempts, retries, timeouts, fallbacks and recovery work on items exactly as on stages. The
//! stage itself takes no parallel slot: it admits items up to its `max_parallel`, cancels the
//! rest under `fail_fast` or a stop, and settles once every item did, with its outputs as
//! arrays in item order.
use super::machine::{Core, Running, Slot};
use super::*;
use crate::{
  event::{Event, StageStatus},
  expr::Value,
  workflow::{FanKind, MAX_ITEMS},
};

/// Most combinations a matrix's cross product may have before `exclude` (ten times the item
/// limit), so that expanding never builds an unbounded list.
pub const MAX_CROSS_PRODUCT: usize = 10 * MAX_ITEMS;

/// Which item of which stage a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnitOf {
  /// The stage's index.
  pub(super) stage: usize,
  /// The item's index.
  pub(super) item: u32,
}

/// A fanned-out stage's items and how far they got.
#[derive(Debug)]
pub(super) struct Fan {
  /// The items, real values (a matrix item is its combination).
  pub(super) items: Vec<serde_json::Value>,
  /// Each item's key, secrets masked.
  pub(super) keys: Vec<Arc<str>>,
  /// The unit of item 0; item `k` is unit `first + k`.
  pub(super) first: usize,
  /// The next item to admit.
  pub(super) next: usize,
  /// Items admitted and not settled.
  pub(super) active: usize,
  /// Items settled.
  pub(super) settled: usize,
  /// Some item failed or timed out for good.
  pub(super) failed: bool,
  /// Items under way at once.
  pub(super) limit: usize,
  /// `matrix` rather than `for_each` (`matrix` is visible to its expressions).
  pub(super) matrix: bool,
}

/// One item of an expanded list: its key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
  /// The item itself when a string, else its compact JSON; a matrix item's values joined by `,`.
  pub key: String,
  /// The item (a matrix item: its combination as an object).
  pub value: serde_json::Value,
}

/// Expands the value of `for_each` or `matrix` into items, in order (SPEC section 11). `null`
/// is no items.
///
/// # Errors
///
/// A value of the wrong shape (naming its type), or more items than [`MAX_ITEMS`].
pub fn expand(kind: FanKind, value: serde_json::Value) -> Result<Vec<Item>, String> {
  let items = match kind {
    FanKind::ForEach => match value {
      serde_json::Value::Null => Vec::new(),
      serde_json::Value::Array(list) => {
        if list.len() > MAX_ITEMS {
          return Err(too_many(list.len()));
        }
        list
          .into_iter()
          .map(|value| Item {
            key: key_text(&value),
            value,
          })
          .collect()
      }
      other => {
        return Err(format!(
          "`for_each` must give a list, got {}",
          workflow::json_kind(&other)
        ));
      }
    },
    FanKind::Matrix => matrix(value)?,
  };
  if items.len() > MAX_ITEMS {
    return Err(too_many(items.len()));
  }
  Ok(items)
}

fn too_many(count: usize) -> String {
  format!("{count} items: a fanned-out stage has at most {MAX_ITEMS}")
}

/// An item's key: a string as it is, anything else as compact JSON.
fn key_text(value: &serde_json::Value) -> String {
  match value {
    serde_json::Value::String(s) => s.clone(),
    other => other.to_string(),
  }
}

/// GitHub's expansion: the cross product (first dimension slowest), minus each `exclude`
/// entry's matches, then each `include` entry merged into every combination whose original
/// values it leaves alone, or appended when it merges into none.
fn matrix(value: serde_json::Value) -> Result<Vec<Item>, String> {
  type Combination = serde_json::Map<String, serde_json::Value>;
  let serde_json::Value::Object(spec) = value else {
    return Err(format!(
      "`matrix` must give an object of dimensions, got {}",
      workflow::json_kind(&value)
    ));
  };
  let mut dimensions: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
  let (mut exclude, mut include) = (Vec::new(), Vec::new());
  for (key, value) in spec {
    let entries = |value: serde_json::Value, what: &str| -> Result<Vec<Combination>, String> {
      let serde_json::Value::Array(list) = value else {
        return Err(format!("`matrix.{what}` must be a list of objects"));
      };
      list
        .into_iter()
        .map(|entry| match entry {
          serde_json::Value::Object(map) => Ok(map),
          other => Err(format!(
            "`matrix.{what}` entries must be objects, got {}",
            workflow::json_kind(&other)
          )),
        })
        .collect()
    };
    match key.as_str() {
      "exclude" => exclude = entries(value, "exclude")?,
      "include" => include = entries(value, "include")?,
      _ => match value {
        serde_json::Value::Array(values) => dimensions.push((key, values)),
        other => {
          return Err(format!(
            "`matrix.{key}` must be a list, got {}",
            workflow::json_kind(&other)
          ));
        }
      },
    }
  }
  let product = dimensions
    .iter()
    .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))
    .unwrap_or(usize::MAX);
  if product > MAX_CROSS_PRODUCT {
    return Err(format!(
      "the matrix's cross product has {product} combinations; at most {MAX_CROSS_PRODUCT} are expanded"
    ));
  }
  let mut combinations: Vec<Combination> = if dimensions.is_empty() {
    Vec::new()
  } else {
    vec![Combination::new()]
  };
  for (name, values) in &dimensions {
    let mut next = Vec::with_capacity(combinations.len() * values.len());
    for combination in &combinations {
      for value in values {
        let mut c = combination.clone();
        c.insert(name.clone(), value.clone());
        next.push(c);
      }
    }
    combinations = next;
  }
  combinations.retain(|c| {
    !exclude
      .iter()
      .any(|e| e.iter().all(|(k, v)| c.get(k) == Some(v)))
  });
  let dimension_names: Vec<&str> = dimensions.iter().map(|(n, _)| n.as_str()).collect();
  let base = combinations.clone();
  for entry in include {
    let mut merged = false;
    for (c, original) in combinations.iter_mut().zip(&base) {
      let keeps_original = entry
        .iter()
        .all(|(k, v)| !dimension_names.contains(&k.as_str()) || original.get(k) == Some(v));
      if keeps_original {
        merged = true;
        for (k, v) in &entry {
          c.insert(k.clone(), v.clone());
        }
      }
    }
    if !merged {
      combinations.push(entry);
    }
    if combinations.len() > MAX_ITEMS {
      return Err(too_many(combinations.len()));
    }
  }
  Ok(
    combinations
      .into_iter()
      .map(|c| Item {
        key: c.values().map(key_text).collect::<Vec<_>>().join(","),
        value: serde_json::Value::Object(c),
      })
      .collect(),
  )
}

impl Core {
  /// The stage unit `i` belongs to (a stage is its own).
  pub(super) fn stage_of(&self, i: usize) -> usize {
    self
      .slots
      .get(i)
      .and_then(|s| s.unit)
      .map_or(i, |u| u.stage)
  }

  /// How unit `i` is named to people: `test`, or `test[3]` for item 3.
  pub(super) fn unit_name(&self, i: usize) -> String {
    match self.slots[i].unit {
      None => self.workflow.stages[i].id.clone(),
      Some(of) => format!("{}[{}]", self.workflow.stages[of.stage].id, of.item),
    }
  }

  /// Item `k` of the stage at `stage`, and its value, for the scope of its expressions.
  pub(super) fn item_of(&self, i: usize) -> Option<(Value, usize, bool)> {
    let of = self.slots.get(i)?.unit?;
    let fan = self.slots[of.stage].fan.as_ref()?;
    let value = fan.items.get(of.item as usize)?;
    Some((Value::from(value), of.item as usize, fan.matrix))
  }

  /// The unit of item `item` of stage `stage`, expanding the stage first when a resume meets
  /// its items' events before anything expanded it.
  pub(super) fn unit_of(&mut self, stage: usize, item: u32) -> Option<usize> {
    if self.slots[stage].fan.is_none() {
      self.expand_units(stage).ok()?;
    }
    let fan = self.slots[stage].fan.as_ref()?;
    ((item as usize) < fan.items.len()).then(|| fan.first + item as usize)
  }

  /// The stage at `i` passed its `if` (and approval): expand its items and admit the first.
  pub(super) fn fan_out(&mut self, i: usize) {
    if self.slots[i].fan.is_some() {
      self.fan_checks.push(i);
      return;
    }
    match self.expand_units(i) {
      Err(error) => self.fail_without_attempt(i, error, "items"),
      Ok(0) => {
        self.emit(Event::StageSkipped {
          stage: self.id(i),
          reason: "no items".into(),
        });
      }
      Ok(_) => self.fan_checks.push(i),
    }
  }

  /// Evaluates stage `i`'s `for_each` or `matrix` and gives each item a unit; how many.
  fn expand_units(&mut self, i: usize) -> Result<usize, String> {
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[i];
    let Some(spec) = &stage.fan_out else {
      return Err("the stage does not fan out".into());
    };
    let ctx = self.context(i, self.flags(i));
    let value = scope::resolve_input(&spec.source, &ctx, &workflow.source).map_err(|failure| {
      let error = RunError::Inputs(failure);
      self.note(Some(i), &error);
      error.to_string()
    })?;
    let items = expand(spec.kind, value)?;
    let first = self.slots.len();
    let mut keys = Vec::with_capacity(items.len());
    let mut values = Vec::with_capacity(items.len());
    for (k, item) in items.into_iter().enumerate() {
      let mut key = serde_json::Value::String(item.key);
      self.options.masker.mask_json(&mut key);
      keys.push(Arc::from(key.as_str().unwrap_or_default()));
      values.push(item.value);
      self.slots.push(Slot {
        unit: Some(UnitOf {
          stage: i,
          item: u32::try_from(k).unwrap_or(u32::MAX),
        }),
        ..Slot::default()
      });
      self.running.push(None::<Running>);
    }
    let count = values.len();
    self.slots[i].fan = Some(Box::new(Fan {
      items: values,
      keys,
      first,
      next: 0,
      active: 0,
      settled: 0,
      failed: false,
      limit: spec.max_parallel.unwrap_or(usize::MAX).max(1),
      matrix: spec.kind == FanKind::Matrix,
    }));
    Ok(count)
  }

  /// Item unit `u` is folded for the first time: it counts as admitted.
  pub(super) fn admit_folded(&mut self, u: usize) {
    let Some(of) = self.slots[u].unit else { return };
    if std::mem::replace(&mut self.slots[u].admitted, true) {
      return;
    }
    if let Some(fan) = self.slots[of.stage].fan.as_mut() {
      fan.active += 1;
      fan.next = fan.next.max(of.item as usize + 1);
    }
  }

  /// Item unit `u` settled: its stage looks again at what follows.
  pub(super) fn item_settled(&mut self, u: usize) {
    let Some(of) = self.slots[u].unit else { return };
    let failed = matches!(self.status(u), StageStatus::Failed | StageStatus::TimedOut);
    let admitted = self.slots[u].admitted;
    if let Some(fan) = self.slots[of.stage].fan.as_mut() {
      if admitted {
        fan.active = fan.active.saturating_sub(1);
      }
      fan.settled += 1;
      fan.failed |= failed;
    }
    self.fan_checks.push(of.stage);
  }

  /// Moves every fanned-out stage whose items changed forward.
  pub(super) fn check_fans(&mut self) {
    while let Some(i) = self.fan_checks.pop() {
      self.advance_fan(i);
    }
  }

  /// Admits more items of stage `i`, or cancels the rest (fail-fast, a stop), and settles the
  /// stage once every item is settled.
  fn advance_fan(&mut self, i: usize) {
    if self.slots[i].settled {
      return;
    }
    let Some(fan) = self.slots[i].fan.as_ref() else {
      return;
    };
    let (first, len, fail_fast) = (
      fan.first,
      fan.items.len(),
      fan.failed
        && self.workflow.stages[i]
          .fan_out
          .as_ref()
          .is_some_and(|f| f.fail_fast),
    );
    let stopped = self
      .stop
      .filter(|&stop| !self.runs_while_stopping(i, stop))
      .map(machine::Stop::reason);
    if let Some(reason) = stopped.or(fail_fast.then_some("fail_fast")) {
      for u in first..first + len {
        if self.slots[u].settled {
          continue;
        }
        let attempt = self.running[u].as_ref().map(|r| r.attempt);
        if let Some(attempt) = attempt {
          self
            .commands
            .push_back(machine::Command::Cancel { stage: u, attempt });
        }
        self.slots[u].retry_due = None;
        self.emit_at(
          u,
          Event::StageCancelled {
            stage: self.id(i),
            attempt,
            reason: reason.into(),
          },
        );
      }
    } else {
      loop {
        let Some(fan) = self.slots[i].fan.as_mut() else {
          return;
        };
        if fan.active >= fan.limit || fan.next >= len {
          break;
        }
        let u = first + fan.next;
        fan.next += 1;
        let slot = &self.slots[u];
        if slot.admitted || slot.settled {
          continue;
        }
        if let Some(fan) = self.slots[i].fan.as_mut() {
          fan.active += 1;
        }
        self.slots[u].admitted = true;
        if !self.reuse(u) {
          self.push_runnable(u);
        }
      }
    }
    if self.slots[i].fan.as_ref().is_some_and(|f| f.settled == len) {
      self.finish_fan(i);
    }
  }

  /// Every item of stage `i` settled: the stage completes, fails, times out or is cancelled.
  fn finish_fan(&mut self, i: usize) {
    let Some(fan) = self.slots[i].fan.as_ref() else {
      return;
    };
    let units = fan.first..fan.first + fan.items.len();
    let statuses: Vec<StageStatus> = units.clone().map(|u| self.status(u)).collect();
    let attempts: u32 = units.clone().map(|u| self.slots[u].attempts).sum();
    let duration_ms = self.slots[i]
      .first_started
      .map_or(0, |s| self.now.saturating_sub(s));
    let stage = &self.workflow.stages[i];
    let uses = stage.skill().map(|c| c.uses.clone()).unwrap_or_default();
    let id = stage.id.clone();
    let timeout_ms = machine::millis(stage.timeout);
    let not_done: Vec<(usize, StageStatus)> = statuses
      .iter()
      .copied()
      .enumerate()
      .filter(|(_, s)| !matches!(s, StageStatus::Completed | StageStatus::Skipped))
      .collect();
    let failures: Vec<(usize, StageStatus)> = not_done
      .iter()
      .copied()
      .filter(|(_, s)| matches!(s, StageStatus::Failed | StageStatus::TimedOut))
      .collect();
    if not_done.is_empty() {
      let outputs = Arc::new(self.fan_outputs(i));
      self.emit(Event::StageCompleted {
        stage: id,
        attempt: attempts,
        uses,
        outputs,
        summary: Some(format!("{} items completed", statuses.len())),
        artifacts: Vec::new(),
        hints: Vec::new(),
        duration_ms,
        reused_from: None,
        inputs: None,
      });
      return;
    }
    if failures.is_empty() {
      let reason = self.stop.map_or("cancel", machine::Stop::reason);
      self.emit(Event::StageCancelled {
        stage: id,
        attempt: None,
        reason: reason.into(),
      });
      return;
    }
    if not_done.iter().all(|(_, s)| *s == StageStatus::TimedOut) {
      self.emit(Event::StageTimedOut {
        stage: id,
        attempt: attempts,
        uses,
        timeout_ms,
        duration_ms,
      });
    } else {
      let (first_failed, _) = failures[0];
      let fan = self.slots[i].fan.as_ref();
      let key = fan
        .and_then(|f| f.keys.get(first_failed).cloned())
        .unwrap_or_default();
      let error = self
        .stage_state(units.start + first_failed)
        .and_then(|s| s.error.clone())
        .unwrap_or_default();
      self.emit(Event::StageFailed {
        stage: id,
        attempt: None,
        uses: None,
        error: format!(
          "{} of {} items did not complete; item {first_failed} ({key}): {error}",
          not_done.len(),
          statuses.len()
        ),
        reason: "items".into(),
        duration_ms,
      });
    }
    self.final_failure(i);
  }

  /// `stages.X.outputs` of a fanned-out stage: each output name (the contract's, then those the
  /// items gave) as an array in item order, `null` for an item that did not complete.
  pub(super) fn fan_outputs(&self, i: usize) -> serde_json::Value {
    let Some(fan) = self.slots[i].fan.as_ref() else {
      return serde_json::Value::Null;
    };
    let units = fan.first..fan.first + fan.items.len();
    let mut names: indexmap::IndexSet<String> =
      self.workflow.stages[i].outputs.keys().cloned().collect();
    for u in units.clone() {
      if let Some(serde_json::Value::Object(map)) = self.slots[u].outputs.as_deref() {
        names.extend(map.keys().cloned());
      }
    }
    let mut out = serde_json::Map::with_capacity(names.len());
    for name in names {
      let column = units
        .clone()
        .map(|u| {
          self.slots[u]
            .outputs
            .as_deref()
            .and_then(|o| o.get(&name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
        })
        .collect();
      out.insert(name, serde_json::Value::Array(column));
    }
    serde_json::Value::Object(out)
  }

  /// `stages.X.items` of a fanned-out stage: `{index, key, item, status, outputs}` per item.
  pub(super) fn fan_items(&self, i: usize) -> Value {
    let Some(fan) = self.slots[i].fan.as_ref() else {
      return Value::Null;
    };
    let items = (0..fan.items.len())
      .map(|k| {
        let u = fan.first + k;
        scope::object([
          ("index", Value::Number(k as f64)),
          ("key", Value::from(&*fan.keys[k])),
          ("item", Value::from(&fan.items[k])),
          ("status", Value::from(self.status(u).as_str())),
          (
            "outputs",
            self.slots[u]
              .outputs
              .as_deref()
              .map_or(Value::Null, Value::from),
          ),
        ])
      })
      .collect();
    Value::Array(Arc::new(items))
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn keys(kind: FanKind, value: serde_json::Value) -> Vec<String> {
    expand(kind, value)
      .expect("expands")
      .into_iter()
      .map(|i| i.key)
      .collect()
  }

  #[test]
  fn a_list_gives_its_items_in_order_with_strings_as_keys_and_the_rest_as_json() {
    assert_eq!(
      keys(FanKind::ForEach, json!(["a", 2, {"x": [1]}, null])),
      ["a", "2", r#"{"x":[1]}"#, "null"]
    );
    assert!(
      expand(FanKind::ForEach, json!(null))
        .expect("null")
        .is_empty()
    );
    assert_eq!(
      expand(FanKind::ForEach, json!("a b")).expect_err("string"),
      "`for_each` must give a list, got string"
    );
    let many = serde_json::Value::Array(vec![json!(1); MAX_ITEMS + 1]);
    assert_eq!(
      expand(FanKind::ForEach, many).expect_err("too many"),
      "10001 items: a fanned-out stage has at most 10000"
    );
  }

  #[test]
  fn a_matrix_is_the_cross_product_first_dimension_slowest() {
    assert_eq!(
      keys(
        FanKind::Matrix,
        json!({"os": ["linux", "mac"], "rust": ["stable", "beta"]})
      ),
      ["linux,stable", "linux,beta", "mac,stable", "mac,beta"]
    );
  }

  #[test]
  fn exclude_removes_partial_matches_and_include_merges_or_appends() {
    // GitHub's documented example: include merges into every combination whose original
    // values it does not change, and is appended when it merges into none.
    let items = expand(
      FanKind::Matrix,
      json!({
        "fruit": ["apple", "pear"],
        "animal": ["cat", "dog"],
        "include": [
          {"color": "green"},
          {"color": "pink", "animal": "cat"},
          {"fruit": "apple", "shape": "circle"},
          {"fruit": "banana"},
          {"fruit": "banana", "animal": "cat"}
        ]
      }),
    )
    .expect("expands");
    let values: Vec<serde_json::Value> = items.into_iter().map(|i| i.value).collect();
    assert_eq!(
      values,
      [
        json!({"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"}),
        json!({"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"}),
        json!({"fruit": "pear", "animal": "cat", "color": "pink"}),
        json!({"fruit": "pear", "animal": "dog", "color": "green"}),
        json!({"fruit": "banana"}),
        json!({"fruit": "banana", "animal": "cat"}),
      ]
    );
    assert_eq!(
      keys(
        FanKind::Matrix,
        json!({"os": ["linux", "mac"], "rust": ["stable", "beta"],
               "exclude": [{"os": "mac", "rust": "beta"}, {"rust": "nightly"}],
               "include": [{"os": "linux", "rust": "nightly"}]})
      ),
      ["linux,stable", "linux,beta", "mac,stable", "linux,nightly"]
    );
    assert_eq!(
      keys(
        FanKind::Matrix,
        json!({"os": ["a", "b"], "exclude": [{"os": "a"}, {"os": "b"}]})
      ),
      Vec::<String>::new()
    );
  }

  #[test]
  fn a_matrix_of_the_wrong_shape_or_size_is_refused() {
    assert_eq!(
      expand(FanKind::Matrix, json!([1])).expect_err("array"),
      "`matrix` must give an object of dimensions, got array"
    );
    assert_eq!(
      expand(FanKind::Matrix, json!({"os": "linux"})).expect_err("scalar"),
      "`matrix.os` must be a list, got string"
    );
    let hundred: Vec<u32> = (0..100).collect();
    let more: Vec<u32> = (0..101).collect();
    assert_eq!(
      expand(FanKind::Matrix, json!({"a": hundred, "b": hundred})).map(|i| i.len()),
      Ok(MAX_ITEMS)
    );
    assert_eq!(
      expand(FanKind::Matrix, json!({"a": more, "b": hundred})).expect_err("too many"),
      "10100 items: a fanned-out stage has at most 10000"
    );
    let thousand: Vec<u32> = (0..1000).collect();
    assert_eq!(
      expand(
        FanKind::Matrix,
        json!({"a": thousand, "b": thousand, "exclude": []})
      )
      .expect_err("cross product"),
      "the matrix's cross product has 1000000 combinations; at most 100000 are expanded"
    );
  }
}
