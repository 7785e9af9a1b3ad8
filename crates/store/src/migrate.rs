//! Schema migrations. Each migration is written once in portable SQL with
//! two placeholders the dialect fills in: `{blob}` and `{serial}`. A
//! statement that starts with `{sqlite}` is run on SQLite only.
//! Applied versions are kept in `schema_migrations`; each migration runs in
//! its own transaction.

use sqlx::Row;

use crate::{Dialect, Result, Store};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core: tenants, keys, messages, recipients, attempts, events, idempotency",
        sql: r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    subject TEXT NOT NULL,
    to_json TEXT NOT NULL,
    cc_json TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    stream TEXT NOT NULL,
    header_message_id TEXT NOT NULL,
    raw {blob} NOT NULL,
    size BIGINT NOT NULL,
    send_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at DESC, id DESC);
CREATE TABLE message_tags (
    tenant_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tag, message_id)
);
CREATE TABLE recipients (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    due_at BIGINT,
    claimed_by TEXT,
    last_response TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX recipients_message ON recipients (message_id);
CREATE INDEX recipients_tenant_email ON recipients (tenant_id, email);
CREATE INDEX recipients_due ON recipients (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    transport TEXT NOT NULL,
    node TEXT NOT NULL,
    outcome TEXT NOT NULL,
    response TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX attempts_recipient ON attempts (recipient_id);
CREATE TABLE events (
    id {serial},
    tenant_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT,
    type TEXT NOT NULL,
    detail TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX events_message ON events (message_id);
CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    message_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);
"#,
    },
    Migration {
        version: 2,
        name: "costs: price of each attempt",
        sql: r#"
ALTER TABLE attempts ADD COLUMN cost_micros BIGINT NOT NULL DEFAULT 0;
CREATE INDEX attempts_tenant_started ON attempts (tenant_id, started_at);
"#,
    },
    Migration {
        version: 3,
        name: "sending domains, DKIM keys (sealed), settings",
        sql: r#"
CREATE TABLE domains (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    checked_at BIGINT,
    verified_at BIGINT,
    check_json TEXT,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE dkim_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key {blob} NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    UNIQUE (tenant_id, domain, selector)
);
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    },
    Migration {
        version: 4,
        name: "suppressions (hard bounces at delivery time)",
        sql: r#"
CREATE TABLE suppressions (
    tenant_id TEXT NOT NULL,
    email TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, email, scope)
);
CREATE INDEX suppressions_email ON suppressions (email);
"#,
    },
    Migration {
        version: 5,
        name: "templates and their versions",
        sql: r#"
CREATE TABLE templates (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    active_version BIGINT NOT NULL,
    category TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE template_versions (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    subject TEXT NOT NULL,
    html TEXT,
    text_body TEXT,
    sample_data TEXT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
"#,
    },
    Migration {
        version: 6,
        name: "templates: MJML source and preheader; tenant branding",
        sql: r#"
ALTER TABLE template_versions ADD COLUMN mjml TEXT;
ALTER TABLE template_versions ADD COLUMN preheader TEXT;
CREATE TABLE brands (
    tenant_id TEXT PRIMARY KEY,
    brand_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    },
    Migration {
        version: 7,
        name: "DKIM keys that wait for their DNS record before signing",
        sql: r#"
ALTER TABLE dkim_keys ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
"#,
    },
    Migration {
        version: 8,
        name: "feedback: event data, per-recipient bodies, tenant settings, webhooks and their deliveries",
        sql: r#"
ALTER TABLE events ADD COLUMN data TEXT;
CREATE INDEX events_tenant_id ON events (tenant_id, id);
CREATE INDEX events_tenant_type ON events (tenant_id, type, message_id);
ALTER TABLE messages ADD COLUMN category TEXT;
ALTER TABLE messages ADD COLUMN personalized BIGINT NOT NULL DEFAULT 0;
CREATE TABLE recipient_bodies (
    recipient_id TEXT PRIMARY KEY,
    raw {blob} NOT NULL
);
CREATE INDEX suppressions_tenant_created ON suppressions (tenant_id, created_at);
CREATE TABLE tenant_settings (
    tenant_id TEXT PRIMARY KEY,
    settings_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    events_json TEXT NOT NULL,
    description TEXT,
    secret {blob} NOT NULL,
    created_at BIGINT NOT NULL,
    failing_since BIGINT,
    disabled_at BIGINT,
    disabled_reason TEXT
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    due_at BIGINT,
    claimed_by TEXT,
    last_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);
"#,
    },
    Migration {
        version: 9,
        name: "business events, rules and what they did, dead letters",
        sql: r#"
CREATE TABLE business_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event_key TEXT NOT NULL,
    entity TEXT NOT NULL,
    data_json TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    processed_at BIGINT,
    UNIQUE (tenant_id, type, event_key)
);
CREATE INDEX business_events_pending ON business_events (received_at) WHERE status = 'pending';
CREATE INDEX business_events_entity ON business_events (tenant_id, entity, type);
CREATE TABLE rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    on_type TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rules_tenant ON rules (tenant_id, on_type);
CREATE TABLE rule_runs (
    rule_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    status TEXT NOT NULL,
    message_id TEXT,
    detail TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (rule_id, event_id)
);
CREATE INDEX rule_runs_entity ON rule_runs (tenant_id, entity, rule_id);
CREATE INDEX rule_runs_event ON rule_runs (event_id);
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_id TEXT,
    rule_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant_id, created_at);
"#,
    },
    Migration {
        version: 10,
        name: "rule batches: events collected per recipient for one mail",
        sql: r#"
CREATE TABLE rule_batches (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    items_json TEXT NOT NULL,
    item_count BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    due_at BIGINT,
    message_id TEXT,
    sent_at BIGINT
);
CREATE UNIQUE INDEX rule_batches_open ON rule_batches (rule_id, recipient) WHERE due_at IS NOT NULL;
CREATE INDEX rule_batches_due ON rule_batches (due_at) WHERE due_at IS NOT NULL;
"#,
    },
    Migration {
        version: 11,
        name: "workflows and their runs; escalations of rule mail",
        sql: r#"
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX workflows_tenant ON workflows (tenant_id, trigger_type);
CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    status TEXT NOT NULL,
    step BIGINT NOT NULL,
    due_at BIGINT,
    state_json TEXT NOT NULL,
    history_json TEXT NOT NULL,
    version BIGINT NOT NULL,
    claimed_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workflow_id, event_id)
);
CREATE INDEX workflow_runs_due ON workflow_runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX workflow_runs_entity ON workflow_runs (tenant_id, entity) WHERE due_at IS NOT NULL;
CREATE INDEX workflow_runs_list ON workflow_runs (workflow_id, created_at);
CREATE TABLE escalations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    context_json TEXT NOT NULL,
    due_at BIGINT,
    status TEXT NOT NULL,
    detail TEXT,
    escalation_message_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX escalations_message ON escalations (message_id);
"#,
    },
    Migration {
        version: 12,
        name: "webhooks: where the event log ended when each was made",
        sql: r#"
ALTER TABLE webhooks ADD COLUMN after_event BIGINT NOT NULL DEFAULT 0;
"#,
    },
    Migration {
        version: 13,
        name: "indexes: fewer pages written per accepted message",
        // Every accepted message adds a row to each index below, in the
        // transaction its sender waits on. A descending index takes its new
        // rows at the left end, where B-tree splits leave half-empty pages
        // behind, and an ascending one read backwards gives the same order;
        // events by (tenant, type, message) served only the message list's
        // "has an event of this type" filter, which SQLite runs as a lookup
        // per message, as well served by events_message (a message has a
        // handful of events). Measured: 49 -> 45 KiB written per message on
        // the SMTP path, +7 % messages a second. SQLite only: PostgreSQL may
        // start that filter from the events of the type, and rebuilding an
        // index there would lock `messages` for as long as it takes.
        sql: r#"
{sqlite} DROP INDEX events_tenant_type;
{sqlite} CREATE INDEX messages_tenant_created_asc ON messages (tenant_id, created_at, id);
{sqlite} DROP INDEX messages_tenant_created;
"#,
    },
    Migration {
        version: 14,
        name: "recipients in flight by node",
        // A worker renews the leases of its recipients in flight every third
        // of the lease (`claimed_by = node AND status = 'sending'`). Without
        // an index SQLite scans the whole table for it, holding the one
        // writer: 4.5 ms over 20,000 recipients with a warm cache (0.1 s
        // cold), seconds over a production table, while every accept waits. Only rows in flight are in this
        // index, so it stays small. SQLite only: PostgreSQL's renewal skips
        // locked rows and blocks no accepts while it scans, and building an
        // index there would lock `recipients` for as long as it takes.
        sql: r#"
{sqlite} CREATE INDEX recipients_sending ON recipients (claimed_by) WHERE status = 'sending';
"#,
    },
];

impl Dialect {
    fn render(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.replace("{blob}", "BLOB").replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
            Dialect::Postgres => sql.replace("{blob}", "BYTEA").replace("{serial}", "BIGSERIAL PRIMARY KEY"),
        }
    }
}

impl Store {
    /// Applies the migrations not applied yet. Safe to run from several
    /// nodes at once on PostgreSQL (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let mut conn = self.writer(crate::Durability::Durable).await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7261033)").execute(&mut *conn).await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7261033)").execute(&mut *conn).await?;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut sqlx::AnyConnection) -> Result<Vec<String>> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let rows = sqlx::query("SELECT version FROM schema_migrations").fetch_all(&mut *conn).await?;
        let applied: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        let mut done = Vec::new();
        for m in MIGRATIONS {
            if applied.contains(&m.version) {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let rendered = self.dialect.render(m.sql);
            let statements = rendered.split(';').map(str::trim).filter(|s| !s.is_empty()).filter_map(|s| {
                match (s.strip_prefix("{sqlite}"), self.dialect) {
                    (Some(s), Dialect::Sqlite) => Some(s.trim()),
                    (Some(_), Dialect::Postgres) => None,
                    (None, _) => Some(s),
                }
            });
            for stmt in statements {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            let now = epistle_core::Clock::now_ms(&epistle_core::SystemClock);
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
            done.push(format!("{} {}", m.version, m.name));
        }
        Ok(done)
    }
}
