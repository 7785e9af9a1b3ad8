//! Templates: each `PUT` makes a new immutable version and makes it active;
//! older versions stay readable and usable by number. Deleting a template
//! removes it and its versions.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Durability, Result, Store};

#[derive(Debug, Clone)]
pub struct NewTemplateVersion {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub mjml: Option<String>,
    pub preheader: Option<String>,
    /// JSON.
    pub sample_data: String,
    pub category: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TemplateVersion {
    pub name: String,
    pub version: i64,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub mjml: Option<String>,
    pub preheader: Option<String>,
    pub sample_data: String,
    pub uses: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct TemplateRecord {
    pub name: String,
    pub active_version: i64,
    pub category: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Every version's use count, summed.
    pub uses: i64,
}

fn version_from_row(r: &AnyRow) -> TemplateVersion {
    TemplateVersion {
        name: r.get(0),
        version: r.get(1),
        subject: r.get(2),
        html: r.get(3),
        text: r.get(4),
        sample_data: r.get(5),
        uses: r.get(6),
        created_at: r.get(7),
        mjml: r.get(8),
        preheader: r.get(9),
    }
}

const VERSION_COLS: &str = "name, version, subject, html, text_body, sample_data, uses, created_at, mjml, preheader";

impl Store {
    /// Saves a new version of `name` (version 1 when the template is new)
    /// and makes it active. With `create_only`, refuses (returns `None`) when
    /// the template exists; otherwise refuses when it does not.
    pub async fn save_template(
        &self,
        tenant_id: &str,
        name: &str,
        v: &NewTemplateVersion,
        create_only: bool,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let current = sqlx::query("SELECT active_version FROM templates WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let exists = current.is_some();
        if exists == create_only {
            return Ok(None);
        }
        let max =
            sqlx::query("SELECT COALESCE(MAX(version), 0) FROM template_versions WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        let version: i64 = max.get::<i64, _>(0) + 1;
        sqlx::query(
            "INSERT INTO template_versions (tenant_id, name, version, subject, html, text_body, sample_data, created_at, \
             mjml, preheader) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(version)
        .bind(&v.subject)
        .bind(&v.html)
        .bind(&v.text)
        .bind(&v.sample_data)
        .bind(now)
        .bind(&v.mjml)
        .bind(&v.preheader)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::unique_to_conflict(e, "the template was changed at the same moment by another request; retry"))?;
        if exists {
            sqlx::query(
                "UPDATE templates SET active_version = $1, category = COALESCE($2, category), updated_at = $3 \
                 WHERE tenant_id = $4 AND name = $5",
            )
            .bind(version)
            .bind(&v.category)
            .bind(now)
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO templates (tenant_id, name, active_version, category, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(version)
            .bind(&v.category)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(version))
    }

    pub async fn list_templates(&self, tenant_id: &str) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(
            "SELECT t.name, t.active_version, t.category, t.created_at, t.updated_at, \
             (SELECT CAST(COALESCE(SUM(v.uses), 0) AS BIGINT) FROM template_versions v \
             WHERE v.tenant_id = t.tenant_id AND v.name = t.name) \
             FROM templates t WHERE t.tenant_id = $1 ORDER BY t.name",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TemplateRecord {
                name: r.get(0),
                active_version: r.get(1),
                category: r.get(2),
                created_at: r.get(3),
                updated_at: r.get(4),
                uses: r.get(5),
            })
            .collect())
    }

    /// One version; the active one when `version` is `None`.
    pub async fn template_version(
        &self,
        tenant_id: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateVersion>> {
        let row =
            match version {
                Some(v) => sqlx::query(&format!(
                    "SELECT {VERSION_COLS} FROM template_versions WHERE tenant_id = $1 AND name = $2 AND version = $3"
                ))
                .bind(tenant_id)
                .bind(name)
                .bind(v)
                .fetch_optional(&self.read)
                .await?,
                None => sqlx::query(&format!(
                    "SELECT {VERSION_COLS} FROM template_versions v WHERE tenant_id = $1 AND name = $2 AND version = \
                     (SELECT active_version FROM templates t WHERE t.tenant_id = v.tenant_id AND t.name = v.name)"
                ))
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
            };
        Ok(row.as_ref().map(version_from_row))
    }

    /// Every version of a template, newest first.
    pub async fn template_versions(&self, tenant_id: &str, name: &str) -> Result<Vec<TemplateVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLS} FROM template_versions WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC"
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(version_from_row).collect())
    }

    /// The active version of every template of the tenant (what includes
    /// resolve to), and a stamp that changes whenever any of them does.
    pub async fn active_templates(&self, tenant_id: &str) -> Result<(Vec<TemplateVersion>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM template_versions v JOIN templates t \
             ON t.tenant_id = v.tenant_id AND t.name = v.name AND t.active_version = v.version WHERE v.tenant_id = $1",
            VERSION_COLS.split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        let stamp = self.templates_stamp(tenant_id).await?;
        Ok((rows.iter().map(version_from_row).collect(), stamp))
    }

    /// Changes whenever a template of the tenant is saved or deleted.
    pub async fn templates_stamp(&self, tenant_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(MAX(updated_at), 0) * 1000 + COUNT(*) + COALESCE(SUM(active_version), 0) AS BIGINT) \
             FROM templates WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.read)
        .await?;
        Ok(row.get::<i64, _>(0))
    }

    /// Deletes the template and all its versions.
    pub async fn delete_template(&self, tenant_id: &str, name: &str) -> Result<bool> {
        self.delete_named(tenant_id, name, "templates", "name", "template_versions", "name").await
    }
}

impl Store {
    /// The tenant's brand (JSON), if set.
    pub async fn brand(&self, tenant_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT brand_json FROM brands WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_brand(&self, tenant_id: &str, brand_json: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO brands (tenant_id, brand_json, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET brand_json = $2, updated_at = $3",
        )
        .bind(tenant_id)
        .bind(brand_json)
        .bind(now)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }
}
