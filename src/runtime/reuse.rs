//! `swdl retry`: a stage (or an item of a fanned-out stage) that completed in the retried run,
//! with the same definition and the same resolved inputs, completes again at once with the
//! outputs it had there.
use super::machine::Core;
use super::*;
use crate::event::Event;

impl Core {
  /// Completes stage `i` with the retried run's outputs when they may be reused; whether it
  /// did. Called where the stage would otherwise start (or open its gate).
  pub(super) fn reuse(&mut self, i: usize) -> bool {
    let Some(reuse) = self.options.reuse.clone() else {
      return false;
    };
    let stage = &self.workflow.stages[self.stage_of(i)];
    let old = match self.slots[i].unit {
      // A fanned-out stage is reused item by item, so that each item is compensated as its own.
      None if stage.fan_out.is_some() => None,
      None => reuse.stages.get(&stage.id),
      Some(of) => self.old_item(&reuse, &stage.id, of),
    };
    let Some(old) = old else {
      return false;
    };
    if serde_json::to_value(stage).ok().as_ref() != Some(&old.definition) {
      return false;
    }
    let inputs = match stage.skill() {
      None => None,
      Some(call) => {
        let ctx = self.context(i, self.flags(i));
        // Inputs that do not resolve are the attempt's to report: the stage runs.
        let Ok(mut inputs) = scope::resolve_with(&call.with, &ctx, &self.workflow.source) else {
          return false;
        };
        // The store keeps inputs masked: compare like with like.
        self.options.masker.mask_json(&mut inputs);
        if old.inputs.as_deref() != Some(&inputs) {
          return false;
        }
        Some(Arc::new(inputs))
      }
    };
    let id = stage.id.clone();
    let old = old.clone();
    self.emit_at(
      i,
      Event::StageCompleted {
        stage: id,
        attempt: 0,
        uses: old.uses.clone(),
        outputs: Arc::clone(&old.outputs),
        summary: old.summary.clone(),
        artifacts: old.artifacts.clone(),
        hints: old.hints.clone(),
        duration_ms: 0,
        reused_from: Some(reuse.from_run.clone()),
        inputs,
      },
    );
    true
  }

  /// The retried run's item matching item `of`: the same index when the list is unchanged
  /// (the same keys in the same order), else the first with the same key.
  fn old_item<'a>(
    &self,
    reuse: &'a Reuse,
    stage: &str,
    of: fanout::UnitOf,
  ) -> Option<&'a Reusable> {
    let old = reuse.items.get(stage)?;
    let fan = self.slots[of.stage].fan.as_ref()?;
    let unchanged =
      old.len() == fan.keys.len() && old.iter().zip(&fan.keys).all(|((k, _), n)| k == &**n);
    let entry = if unchanged {
      old.get(of.item as usize)
    } else {
      let key = fan.keys.get(of.item as usize)?;
      old.iter().find(|(k, _)| k == &**key)
    };
    entry?.1.as_ref()
  }
}
