//! Workflows: a trigger event and steps (send, wait, branch, exit), and
//! their runs, one per workflow and trigger event.
//!
//! A run's state is one row: the next step, when it is due, what its
//! earlier steps did, its history. The engine moves it forward and commits
//! the new state with the mail its steps queued in one transaction guarded
//! by the row's `version`, so a step that sends does so once even when the
//! process dies or two nodes race.

use serde_json::Value;
use sqlx::Row;

use crate::business::DeadLetter;
use crate::definitions::WORKFLOWS;
use crate::{Dialect, Durability, NewMessage, Result, Store, StoreError};

/// A stored workflow (its `spec` is what the API took).
pub type WorkflowRecord = crate::Definition;

/// A run a trigger event starts.
#[derive(Debug, Clone)]
pub struct NewWorkflowRun {
    pub id: String,
    pub tenant_id: String,
    pub workflow_id: String,
    pub event_id: String,
    pub entity: String,
    pub state: Value,
    pub due_at: i64,
}

#[derive(Debug, Clone)]
pub struct WorkflowRun {
    pub id: String,
    pub tenant_id: String,
    pub workflow_id: String,
    pub event_id: String,
    pub entity: String,
    /// `waiting` (for `due_at`), `completed`, `exited`, `failed`.
    pub status: String,
    /// The index of the next step.
    pub step: i64,
    pub due_at: Option<i64>,
    pub state: Value,
    pub history: Vec<Value>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A run's new state and what its steps produced.
#[derive(Debug, Default)]
pub struct RunAdvance {
    pub status: String,
    pub step: i64,
    pub due_at: Option<i64>,
    pub state: Value,
    pub history: Vec<Value>,
    pub messages: Vec<NewMessage>,
    pub dead_letters: Vec<DeadLetter>,
}

const RUN_COLS: &str = "id, tenant_id, workflow_id, event_id, entity, status, step, due_at, state_json, history_json, \
                        version, created_at, updated_at";

fn json_col(r: &sqlx::any::AnyRow, i: usize) -> Result<Value> {
    serde_json::from_str(&r.get::<String, _>(i)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn run_row(r: &sqlx::any::AnyRow) -> Result<WorkflowRun> {
    let history = match json_col(r, 9)? {
        Value::Array(a) => a,
        other => return Err(StoreError::Corrupt(format!("workflow run history is not a list: {other}"))),
    };
    Ok(WorkflowRun {
        id: r.get(0),
        tenant_id: r.get(1),
        workflow_id: r.get(2),
        event_id: r.get(3),
        entity: r.get(4),
        status: r.get(5),
        step: r.get(6),
        due_at: r.get(7),
        state: json_col(r, 8)?,
        history,
        version: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    })
}

/// Starts a run unless this workflow already has one for this event.
pub(crate) async fn insert_run(conn: &mut sqlx::AnyConnection, r: &NewWorkflowRun, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, event_id, entity, status, step, due_at, state_json, \
         history_json, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'waiting', 0, $6, $7, '[]', 0, $8, $8) \
         ON CONFLICT (workflow_id, event_id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.tenant_id)
    .bind(&r.workflow_id)
    .bind(&r.event_id)
    .bind(&r.entity)
    .bind(r.due_at)
    .bind(r.state.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn create_workflow(&self, w: &WorkflowRecord) -> Result<()> {
        self.create_definition(WORKFLOWS, w).await
    }

    /// Replaces a workflow's definition (runs under way go on with it from
    /// the step they wait for); false when there is no such workflow.
    pub async fn update_workflow(&self, w: &WorkflowRecord) -> Result<bool> {
        self.update_definition(WORKFLOWS, w).await
    }

    pub async fn delete_workflow(&self, tenant_id: &str, id: &str) -> Result<bool> {
        self.delete_definition(WORKFLOWS, tenant_id, id).await
    }

    pub async fn workflow(&self, tenant_id: &str, id: &str) -> Result<Option<WorkflowRecord>> {
        self.definition(WORKFLOWS, tenant_id, id).await
    }

    pub async fn workflows(&self, tenant_id: &str) -> Result<Vec<WorkflowRecord>> {
        self.definitions(WORKFLOWS, tenant_id).await
    }

    /// Takes up to `limit` runs whose time has come, for `lease_ms`.
    pub async fn claim_workflow_runs(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<WorkflowRun>> {
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE workflow_runs SET claimed_until = $1 WHERE id IN \
             (SELECT id FROM workflow_runs WHERE due_at IS NOT NULL AND due_at <= $2 \
             AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY due_at, id LIMIT $3{lock}) RETURNING {RUN_COLS}"
        ))
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.writer(Durability::Relaxed).await?)
        .await?;
        let mut out = rows.iter().map(run_row).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
        Ok(out)
    }

    /// Commits a run's step(s): its new state with the mail they queued,
    /// in one transaction, if the run is still at `version`. False (and
    /// nothing queued) when it moved on meanwhile.
    pub async fn advance_workflow_run(&self, id: &str, version: i64, a: RunAdvance, now: i64) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let done = sqlx::query(
            "UPDATE workflow_runs SET status = $3, step = $4, due_at = $5, state_json = $6, history_json = $7, \
             version = version + 1, claimed_until = NULL, updated_at = $8 WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .bind(&a.status)
        .bind(a.step)
        .bind(a.due_at)
        .bind(a.state.to_string())
        .bind(Value::Array(a.history).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if !a.messages.is_empty() {
            self.insert_messages_in(&mut tx, a.messages, now).await?;
        }
        self.insert_dead_letters(&mut tx, &a.dead_letters).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Runs of these workflows about `entity` that have not ended.
    pub async fn open_runs_of_entity(
        &self,
        tenant_id: &str,
        entity: &str,
        workflow_ids: &[String],
    ) -> Result<Vec<WorkflowRun>> {
        let mut out = vec![];
        for w in workflow_ids {
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLS} FROM workflow_runs WHERE tenant_id = $1 AND entity = $2 AND workflow_id = $3 \
                 AND due_at IS NOT NULL"
            ))
            .bind(tenant_id)
            .bind(entity)
            .bind(w)
            .fetch_all(&self.read)
            .await?;
            for r in &rows {
                out.push(run_row(r)?);
            }
        }
        Ok(out)
    }

    pub async fn workflow_run(&self, tenant_id: &str, id: &str) -> Result<Option<WorkflowRun>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLS} FROM workflow_runs WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// A workflow's runs, newest first, before the `(created_at, id)`
    /// cursor; only those with `status` when given.
    pub async fn workflow_runs(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        status: Option<&str>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<WorkflowRun>> {
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM workflow_runs WHERE tenant_id = $1 AND workflow_id = $2 \
             AND ($3 = '' OR status = $3) AND (created_at < $4 OR (created_at = $4 AND id < $5) OR $5 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(tenant_id)
        .bind(workflow_id)
        .bind(status.unwrap_or(""))
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(run_row).collect()
    }
}
