//! Rules and workflows are stored alike: a name, the event type that
//! triggers them, their whole specification as JSON (read by the engine),
//! and whether they are enabled. One set of queries serves both tables.

use serde_json::Value;
use sqlx::Row;

use crate::{Durability, Result, Store, StoreError};

/// A stored rule or workflow.
#[derive(Debug, Clone)]
pub struct Definition {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// The event type that triggers it (`on` of a rule, `trigger` of a
    /// workflow).
    pub trigger: String,
    pub spec: Value,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which table, and what its trigger column is called.
#[derive(Clone, Copy)]
pub(crate) struct Table {
    name: &'static str,
    trigger: &'static str,
}

pub(crate) const RULES: Table = Table { name: "rules", trigger: "on_type" };
pub(crate) const WORKFLOWS: Table = Table { name: "workflows", trigger: "trigger_type" };

impl Table {
    fn cols(self) -> String {
        format!("id, tenant_id, name, {}, spec_json, enabled, created_at, updated_at", self.trigger)
    }
}

fn row(r: &sqlx::any::AnyRow) -> Result<Definition> {
    Ok(Definition {
        id: r.get(0),
        tenant_id: r.get(1),
        name: r.get(2),
        trigger: r.get(3),
        spec: serde_json::from_str(&r.get::<String, _>(4)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        enabled: r.get::<i64, _>(5) != 0,
        created_at: r.get(6),
        updated_at: r.get(7),
    })
}

impl Store {
    pub(crate) async fn create_definition(&self, t: Table, d: &Definition) -> Result<()> {
        sqlx::query(&format!("INSERT INTO {} ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", t.name, t.cols()))
            .bind(&d.id)
            .bind(&d.tenant_id)
            .bind(&d.name)
            .bind(&d.trigger)
            .bind(d.spec.to_string())
            .bind(i64::from(d.enabled))
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(&mut *self.writer(Durability::Durable).await?)
            .await?;
        Ok(())
    }

    /// False when there is no such definition.
    pub(crate) async fn update_definition(&self, t: Table, d: &Definition) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET name = $3, {} = $4, spec_json = $5, enabled = $6, updated_at = $7 \
             WHERE tenant_id = $1 AND id = $2",
            t.name, t.trigger
        ))
        .bind(&d.tenant_id)
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.trigger)
        .bind(d.spec.to_string())
        .bind(i64::from(d.enabled))
        .bind(d.updated_at)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn delete_definition(&self, t: Table, tenant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(&format!("DELETE FROM {} WHERE tenant_id = $1 AND id = $2", t.name))
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *self.writer(Durability::Durable).await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn definition(&self, t: Table, tenant_id: &str, id: &str) -> Result<Option<Definition>> {
        let sql = format!("SELECT {} FROM {} WHERE tenant_id = $1 AND id = $2", t.cols(), t.name);
        let found = sqlx::query(&sql).bind(tenant_id).bind(id).fetch_optional(&self.read).await?;
        found.as_ref().map(row).transpose()
    }

    /// A tenant's definitions, oldest first.
    pub(crate) async fn definitions(&self, t: Table, tenant_id: &str) -> Result<Vec<Definition>> {
        let sql = format!("SELECT {} FROM {} WHERE tenant_id = $1 ORDER BY created_at, id", t.cols(), t.name);
        let rows = sqlx::query(&sql).bind(tenant_id).fetch_all(&self.read).await?;
        rows.iter().map(row).collect()
    }
}
