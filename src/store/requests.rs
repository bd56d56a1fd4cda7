//! Requests other processes leave for a live run (`swdl cancel`, `pause`, `resume`, `approve`,
//! `reject`); `launch::RequestPoller` hands them to the run's control channel.
use super::*;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

/// A request made of a live run by another process.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
  /// Stop it (`swdl cancel`).
  Cancel,
  /// Stop starting stages (`swdl pause`).
  Pause,
  /// Start stages again (`swdl resume` of a paused run).
  Resume,
  /// Decide a gate it is waiting at (`swdl approve|reject`).
  Decide {
    /// The gate.
    stage: String,
    /// The decision.
    decision: PriorDecision,
  },
}

impl Store {
  /// The decision already made on gate `stage` of run `id` and not yet applied (recorded for
  /// `swdl resume`, or asked of the live run and not yet taken), as `approve by user:x`.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn undecided_decision(&self, id: &str, stage: &str) -> Result<Option<String>, StoreError> {
    let recorded: Option<(String, String)> = self
      .conn
      .query_row(
        "SELECT decision, decided_by FROM pending_decisions WHERE run = ?1 AND stage = ?2",
        params![id, stage],
        |row| Ok((row.get(0)?, row.get(1)?)),
      )
      .optional()?;
    if let Some((decision, by)) = recorded {
      return Ok(Some(format!("{decision} by {by}")));
    }
    let mut statement = self.conn.prepare(
      "SELECT body FROM requests WHERE run = ?1 AND kind = 'decide' AND done_ms IS NULL",
    )?;
    let bodies = statement
      .query_map([id], |row| row.get::<_, Option<String>>(0))?
      .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies.into_iter().flatten().find_map(|body| {
      let body: serde_json::Value = serde_json::from_str(&body).ok()?;
      (body["stage"] == stage).then(|| {
        format!(
          "{} by {}",
          body["decision"].as_str().unwrap_or("a decision"),
          body["by"].as_str().unwrap_or("someone")
        )
      })
    }))
  }

  /// Records a decision on a gate of a run that is not executing, for `swdl resume` to apply.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn record_decision(
    &mut self,
    id: &str,
    stage: &str,
    decision: &PriorDecision,
  ) -> Result<(), StoreError> {
    self.conn.execute(
      "INSERT INTO pending_decisions (run, stage, decision, decided_by, reason, inputs,
                                                 ts_ms)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
      params![
        id,
        stage,
        decision_name(decision.decision),
        decision.by,
        decision.reason,
        decision.inputs.as_ref().map(ToString::to_string),
        now_ms()
      ],
    )?;
    Ok(())
  }

  /// Decisions recorded by [`Store::record_decision`] for run `id`, by stage.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn pending_decisions(&self, id: &str) -> Result<HashMap<String, PriorDecision>, StoreError> {
    let mut statement = self.conn.prepare(
      "SELECT stage, decision, decided_by, reason, inputs FROM pending_decisions WHERE run = ?1",
    )?;
    let rows = statement.query_map([id], |row| {
      let decision: String = row.get(1)?;
      Ok((
        row.get::<_, String>(0)?,
        PriorDecision {
          decision: if decision == "approve" {
            GateDecision::Approve
          } else {
            GateDecision::Reject
          },
          by: row.get(2)?,
          reason: row.get(3)?,
          inputs: json_column(row.get(4)?),
        },
      ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
  }

  /// Asks the process executing run `id` to do something; it looks every few hundred ms.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn request(&mut self, id: &str, request: &Request) -> Result<(), StoreError> {
    let (kind, body) = match request {
      Request::Cancel => ("cancel", None),
      Request::Pause => ("pause", None),
      Request::Resume => ("resume", None),
      Request::Decide { stage, decision } => (
        "decide",
        Some(
          serde_json::json!({
            "stage": stage,
            "decision": decision_name(decision.decision),
            "by": decision.by,
            "reason": decision.reason,
            "inputs": decision.inputs,
          })
          .to_string(),
        ),
      ),
    };
    self.conn.execute(
      "INSERT INTO requests (run, kind, body, ts_ms) VALUES (?1, ?2, ?3, ?4)",
      params![id, kind, body, now_ms()],
    )?;
    Ok(())
  }

  /// Takes the requests made of run `id` since the last call, oldest first.
  ///
  /// # Errors
  ///
  /// A failed read or write.
  pub fn take_requests(&mut self, id: &str) -> Result<Vec<Request>, StoreError> {
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut requests = Vec::new();
    {
      let mut statement = tx.prepare(
        "SELECT id, kind, body FROM requests WHERE run = ?1 AND done_ms IS NULL ORDER BY id",
      )?;
      let rows = statement.query_map([id], |row| {
        Ok((
          row.get::<_, i64>(0)?,
          row.get::<_, String>(1)?,
          row.get::<_, Option<String>>(2)?,
        ))
      })?;
      for row in rows {
        let (_, kind, body) = row?;
        let request = match kind.as_str() {
          "cancel" => Request::Cancel,
          "pause" => Request::Pause,
          "resume" => Request::Resume,
          "decide" => {
            let body: serde_json::Value = body
              .as_deref()
              .and_then(|b| serde_json::from_str(b).ok())
              .unwrap_or_default();
            Request::Decide {
              stage: body["stage"].as_str().unwrap_or_default().to_string(),
              decision: PriorDecision {
                decision: if body["decision"] == "approve" {
                  GateDecision::Approve
                } else {
                  GateDecision::Reject
                },
                by: body["by"].as_str().unwrap_or("user").to_string(),
                reason: body["reason"].as_str().map(str::to_string),
                inputs: Some(body["inputs"].clone()).filter(|v| !v.is_null()),
              },
            }
          }
          _ => continue,
        };
        requests.push(request);
      }
    }
    if !requests.is_empty() {
      tx.execute(
        "UPDATE requests SET done_ms = ?2 WHERE run = ?1 AND done_ms IS NULL",
        params![id, now_ms()],
      )?;
    }
    tx.commit()?;
    Ok(requests)
  }
}
