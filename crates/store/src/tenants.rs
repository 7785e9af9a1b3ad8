//! Tenants and API keys. Keys are stored as SHA-256 hashes (done by the
//! caller); the store never sees a key in clear.

use epistle_core::new_id;
use sqlx::Row;

use crate::{ApiKeyRecord, Durability, Result, Store, Tenant};

impl Store {
    /// Returns the tenant with this name, creating it if needed.
    pub async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        if let Some(t) = self.tenant_by_name(name).await? {
            return Ok(t);
        }
        let id = new_id("ten");
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(&id)
            .bind(name)
            .bind(now)
            .execute(&mut *self.writer(Durability::Durable).await?)
            .await?;
        // Another node may have won the race; read back whichever row exists.
        let row = sqlx::query("SELECT id, name FROM tenants WHERE name = $1").bind(name).fetch_one(&self.write).await?;
        Ok(Tenant { id: row.get(0), name: row.get(1) })
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let row =
            sqlx::query("SELECT id, name FROM tenants WHERE name = $1").bind(name).fetch_optional(&self.read).await?;
        Ok(row.map(|r| Tenant { id: r.get(0), name: r.get(1) }))
    }

    pub async fn count_api_keys(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetch_one(&self.write).await?;
        Ok(row.get::<i64, _>(0))
    }

    /// Stores a key hash. `prefix` is the first characters of the key, kept
    /// so people can tell keys apart in listings.
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        name: &str,
        prefix: &str,
        key_hash: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<String> {
        let id = new_id("key");
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(name)
        .bind(prefix)
        .bind(key_hash)
        .bind(scopes.join(" "))
        .bind(now)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(id)
    }

    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT k.id, k.tenant_id, t.name, k.scopes FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| ApiKeyRecord {
            id: r.get(0),
            tenant_id: r.get(1),
            tenant_name: r.get(2),
            scopes: r.get::<String, _>(3).split_whitespace().map(str::to_string).collect(),
        }))
    }
}
