//! Sending domains, their DKIM keys and small settings. Private keys arrive
//! here sealed (AES-256-GCM, by the caller); the store never sees them in
//! clear.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Durability, Result, Store};

#[derive(Debug, Clone)]
pub struct NewDkimKey {
    pub id: String,
    pub selector: String,
    pub algorithm: String,
    pub private_sealed: Vec<u8>,
    pub public_key: String,
}

#[derive(Clone)]
pub struct DkimKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    pub public_key: String,
    pub created_at: i64,
    /// Set once the key stopped signing (rotation); its DNS record may stay
    /// until mail signed with it has been delivered.
    pub retired_at: Option<i64>,
    pub private_sealed: Vec<u8>,
    /// Made by a rotation, not signing yet: it takes over once its DNS
    /// record is seen.
    pub pending: bool,
}

impl std::fmt::Debug for DkimKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyRecord")
            .field("id", &self.id)
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct DomainRecord {
    pub tenant_id: String,
    pub name: String,
    pub created_at: i64,
    pub checked_at: Option<i64>,
    pub verified_at: Option<i64>,
    /// The last DNS check, as the API shows it.
    pub check_json: Option<String>,
    /// Newest first.
    pub keys: Vec<DkimKeyRecord>,
}

const KEY_COLUMNS: &str =
    "id, tenant_id, domain, selector, algorithm, public_key, created_at, retired_at, private_key, pending";

fn key_from_row(r: &AnyRow) -> DkimKeyRecord {
    DkimKeyRecord {
        id: r.get(0),
        tenant_id: r.get(1),
        domain: r.get(2),
        selector: r.get(3),
        algorithm: r.get(4),
        public_key: r.get(5),
        created_at: r.get(6),
        retired_at: r.get(7),
        private_sealed: r.get(8),
        pending: r.get::<i64, _>(9) != 0,
    }
}

impl Store {
    /// Creates a domain with its first keys in one transaction. Returns
    /// false (and changes nothing) when the tenant has the domain already.
    pub async fn insert_domain(&self, tenant_id: &str, name: &str, keys: &[NewDkimKey], now: i64) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let inserted = sqlx::query(
            "INSERT INTO domains (tenant_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        for k in keys {
            insert_key(&mut tx, tenant_id, name, k, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a key that signs from now on. With `retire_algorithm`, the
    /// domain's signing keys of that algorithm stop signing (rotation);
    /// their rows stay so their DNS records can be listed until removed.
    /// A `pending` key does not sign until [`Store::activate_dkim_key`].
    pub async fn add_dkim_key(
        &self,
        tenant_id: &str,
        domain: &str,
        key: &NewDkimKey,
        retire_algorithm: Option<&str>,
        pending: bool,
        now: i64,
    ) -> Result<()> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if let Some(alg) = retire_algorithm {
            sqlx::query(
                "UPDATE dkim_keys SET retired_at = $1 WHERE tenant_id = $2 AND domain = $3 AND algorithm = $4 AND retired_at IS NULL",
            )
            .bind(now)
            .bind(tenant_id)
            .bind(domain)
            .bind(alg)
            .execute(&mut *tx)
            .await?;
        }
        insert_key(&mut tx, tenant_id, domain, key, now).await?;
        if pending {
            sqlx::query("UPDATE dkim_keys SET pending = 1 WHERE id = $1").bind(&key.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A pending key starts signing; the domain's other signing keys of its
    /// algorithm retire, in the same transaction.
    pub async fn activate_dkim_key(&self, tenant_id: &str, domain: &str, key_id: &str, now: i64) -> Result<()> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "UPDATE dkim_keys SET retired_at = $1 WHERE tenant_id = $2 AND domain = $3 AND retired_at IS NULL \
             AND pending = 0 AND id <> $4 AND algorithm = (SELECT algorithm FROM dkim_keys WHERE id = $4)",
        )
        .bind(now)
        .bind(tenant_id)
        .bind(domain)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE dkim_keys SET pending = 0 WHERE id = $1 AND tenant_id = $2")
            .bind(key_id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a retired key (its DNS record is no longer listed). A key
    /// that still signs is not removed; returns whether a row went.
    pub async fn delete_retired_key(&self, tenant_id: &str, domain: &str, selector: &str) -> Result<bool> {
        let n = sqlx::query(
            "DELETE FROM dkim_keys WHERE tenant_id = $1 AND domain = $2 AND selector = $3 \
             AND (retired_at IS NOT NULL OR pending = 1)",
        )
        .bind(tenant_id)
        .bind(domain)
        .bind(selector)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn get_domain(&self, tenant_id: &str, name: &str) -> Result<Option<DomainRecord>> {
        let row = sqlx::query(
            "SELECT tenant_id, name, created_at, checked_at, verified_at, check_json FROM domains \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut d = domain_from_row(&row);
        d.keys = self.domain_keys(tenant_id, name).await?;
        Ok(Some(d))
    }

    pub async fn list_domains(&self, tenant_id: &str) -> Result<Vec<DomainRecord>> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, created_at, checked_at, verified_at, check_json FROM domains \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<DomainRecord> = rows.iter().map(domain_from_row).collect();
        let keys = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM dkim_keys WHERE tenant_id = $1 ORDER BY created_at DESC, selector DESC"
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        for k in keys.iter().map(key_from_row) {
            if let Some(d) = out.iter_mut().find(|d| d.name == k.domain) {
                d.keys.push(k);
            }
        }
        Ok(out)
    }

    async fn domain_keys(&self, tenant_id: &str, domain: &str) -> Result<Vec<DkimKeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM dkim_keys WHERE tenant_id = $1 AND domain = $2 ORDER BY created_at DESC, selector DESC"
        ))
        .bind(tenant_id)
        .bind(domain)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// Every key that signs, across tenants: what the delivery worker loads.
    pub async fn signing_keys(&self) -> Result<Vec<DkimKeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM dkim_keys WHERE retired_at IS NULL AND pending = 0 ORDER BY created_at, selector"
        ))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// Deletes the domain and its keys; mail from it is no longer signed.
    pub async fn delete_domain(&self, tenant_id: &str, name: &str) -> Result<bool> {
        self.delete_named(tenant_id, name, "domains", "name", "dkim_keys", "domain").await
    }

    /// Stores the result of a DNS check. `verified` keeps the first time
    /// the domain passed, and is cleared when a later check fails.
    pub async fn record_domain_check(
        &self,
        tenant_id: &str,
        name: &str,
        verified: bool,
        check_json: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE domains SET checked_at = $1, check_json = $2, \
             verified_at = CASE WHEN $3 = 1 THEN COALESCE(verified_at, $1) ELSE NULL END \
             WHERE tenant_id = $4 AND name = $5",
        )
        .bind(now)
        .bind(check_json)
        .bind(verified as i64)
        .bind(tenant_id)
        .bind(name)
        .execute(&mut *self.writer(Durability::Durable).await?)
        .await?;
        Ok(())
    }

    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores `value` unless the setting exists; returns the stored value
    /// (the existing one when another node got there first).
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *self.writer(Durability::Durable).await?)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(&self.write).await?;
        Ok(row.get(0))
    }
}

impl Store {
    /// Deletes a tenant's row `name` of `parent` and the rows of `child`
    /// that belong to it, in one transaction; whether the parent existed.
    /// Table and column names come from this crate, never from input.
    pub(crate) async fn delete_named(
        &self,
        tenant_id: &str,
        name: &str,
        parent: &str,
        parent_col: &str,
        child: &str,
        child_col: &str,
    ) -> Result<bool> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(&format!("DELETE FROM {child} WHERE tenant_id = $1 AND {child_col} = $2"))
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query(&format!("DELETE FROM {parent} WHERE tenant_id = $1 AND {parent_col} = $2"))
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    domain: &str,
    k: &NewDkimKey,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO dkim_keys (id, tenant_id, domain, selector, algorithm, private_key, public_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&k.id)
    .bind(tenant_id)
    .bind(domain)
    .bind(&k.selector)
    .bind(&k.algorithm)
    .bind(&k.private_sealed)
    .bind(&k.public_key)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| crate::unique_to_conflict(e, "a key with that selector was made at the same moment; retry"))?;
    Ok(())
}

fn domain_from_row(r: &AnyRow) -> DomainRecord {
    DomainRecord {
        tenant_id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
        checked_at: r.get(3),
        verified_at: r.get(4),
        check_json: r.get(5),
        keys: Vec::new(),
    }
}
