//! Accepting messages (with idempotency) and reading them back.

use epistle_core::RecipientStatus;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::{Batch, EVENT_COLS, Val, bind_all, multi_insert, placeholders};
use crate::{Dialect, Durability, MessageRecord, MessageSummary, RecipientRecord, Result, Store, StoreError};

/// One envelope recipient to insert.
#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub email: String,
    /// `to`, `cc` or `bcc`.
    pub kind: &'static str,
    /// Not to be sent: on the suppression list (this says which entry).
    pub suppressed: Option<String>,
}

/// A message ready to be committed: already built and validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant_id: String,
    pub id: String,
    pub from: String,
    pub envelope_from: String,
    pub subject: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub stream: String,
    pub header_message_id: String,
    pub raw: Vec<u8>,
    pub send_at: Option<i64>,
    pub recipients: Vec<NewRecipient>,
    /// `(key, hash of the request body)`.
    pub idempotency: Option<(String, String)>,
    /// The reply to give again when the same key and body come back.
    pub response: String,
    /// The template (name, version) it was rendered from, to count uses.
    pub template: Option<(String, i64)>,
    /// What kind of mail this is for preferences (`marketing`, …).
    pub category: Option<String>,
    /// One body per recipient after the first (whose body is `raw`): mail
    /// with tracking or unsubscribe links made for each recipient. Empty
    /// when every recipient gets `raw`.
    pub variants: Vec<Vec<u8>>,
    /// Each recipient gets its own body (`raw` for the first, `variants`
    /// for the others) and its own SMTP transaction.
    pub personalized: bool,
}

/// Which messages of a batch their node claims as they are inserted.
pub(crate) struct Lease {
    pub node: String,
    /// When the claim runs out unless renewed (like `now + lease` of a claim).
    pub until: i64,
    /// One flag per message of the batch.
    pub messages: Vec<bool>,
}

/// Outcomes a group commit records: `(node, outcomes, when)`, as
/// [`Store::record_outcomes`] takes them.
pub(crate) type Recorded = (String, std::sync::Arc<[crate::Outcome]>, i64);

/// What a group commit answers: a result per message, or the error and,
/// when the outcomes failed before anything was accepted, the messages
/// back.
type GroupResult = Result<Committed, (StoreError, Option<Vec<NewMessage>>)>;

/// What a group commit that worked answers.
pub(crate) struct Committed {
    /// One per message, in order.
    pub results: Vec<InsertResult>,
    /// The suppressions of the leased messages' recipients, as
    /// [`Store::suppressed_among`] gives them, read in the same transaction;
    /// `None` where the commit did not look (the worker then reads them).
    pub suppressed: Option<Vec<(String, String, String)>>,
}

/// A suppression of one address, in every tenant and scope.
const SUPPRESSIONS_OF: &str = "SELECT tenant_id, email, scope FROM suppressions WHERE email = ?1";

/// sqlx's writer connection, kept by the group committer between groups.
pub(crate) type WriterHold = sqlx::pool::PoolConnection<sqlx::Any>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertResult {
    Inserted,
    /// The idempotency key was seen before with the same request.
    Replay {
        message_id: String,
        response: String,
    },
    /// The idempotency key was seen before with a different request.
    Conflict {
        message_id: String,
    },
}

/// Filters for listing messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Messages with at least one recipient in this status.
    pub status: Option<RecipientStatus>,
    pub tag: Option<String>,
    pub recipient: Option<String>,
    pub since: Option<i64>,
    /// Messages with at least one event of this type (`opened`, …).
    pub event: Option<String>,
    /// Keyset cursor: strictly older than `(created_at, id)`.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

const MESSAGE_COLS: &str = "id, tenant_id, from_addr, subject, to_json, cc_json, tags_json, metadata_json, stream, \
                            header_message_id, size, send_at, created_at, category";

fn message_from_row(r: &AnyRow) -> Result<MessageRecord> {
    let json_list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(&r.get::<String, _>(i)).map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    Ok(MessageRecord {
        id: r.get(0),
        tenant_id: r.get(1),
        from: r.get(2),
        subject: r.get(3),
        to: json_list(4)?,
        cc: json_list(5)?,
        tags: json_list(6)?,
        metadata: serde_json::from_str(&r.get::<String, _>(7)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        stream: r.get(8),
        header_message_id: r.get(9),
        size: r.get(10),
        send_at: r.get(11),
        created_at: r.get(12),
        category: r.get(13),
    })
}

pub(crate) fn parse_status(s: &str) -> Result<RecipientStatus> {
    s.parse().map_err(StoreError::Corrupt)
}

/// The rows of the accepted messages (with their place in the batch, which
/// `lease` marks), added to `rows`.
fn accepted_rows(
    dialect: Dialect,
    accepted: Vec<(usize, NewMessage)>,
    now: i64,
    lease: Option<&Lease>,
    rows: &mut Batch,
) {
    let mut msg_rows = Vec::with_capacity(accepted.len());
    let mut rcpt_rows = Vec::new();
    let mut tag_rows = Vec::new();
    let mut event_rows = Vec::new();
    let mut body_rows = Vec::new();
    let mut template_uses: Vec<(String, String, i64, i64)> = Vec::new();
    for (i, m) in accepted {
        let leased = lease.is_some_and(|l| l.messages.get(i).copied().unwrap_or(false));
        if let Some((name, version)) = &m.template {
            match template_uses.iter_mut().find(|u| u.0 == m.tenant_id && u.1 == *name && u.2 == *version) {
                Some(u) => u.3 += 1,
                None => template_uses.push((m.tenant_id.clone(), name.clone(), *version, 1)),
            }
        }
        let (status, due) = match m.send_at {
            Some(t) if t > now => (RecipientStatus::Scheduled, t),
            _ => (RecipientStatus::Queued, now),
        };
        for (i, r) in m.recipients.iter().enumerate() {
            // Ids that sort in the order recipients were given (tokens
            // in mail name recipients by this index).
            let rcpt_id = epistle_core::token::recipient_id(&m.id, i as u16);
            let (st, due, detail) = match &r.suppressed {
                Some(why) => (RecipientStatus::Suppressed, Val::OI(None), Val::OS(Some(why.clone()))),
                None => (status, Val::I(due), Val::OS(None)),
            };
            // Claimed at birth: 'sending', held by the node until its lease
            // runs out, as a claim leaves it. The event still says queued.
            let (row_status, row_due, claimed_by) = match lease {
                Some(l) if leased && st == RecipientStatus::Queued => {
                    (RecipientStatus::Sending, Val::I(l.until), Val::OS(Some(l.node.clone())))
                }
                _ => (st, due, Val::OS(None)),
            };
            if i > 0
                && let Some(body) = m.variants.get(i - 1)
            {
                body_rows.push(vec![Val::S(rcpt_id.clone()), Val::B(body.clone())]);
            }
            rcpt_rows.push(vec![
                Val::S(rcpt_id),
                m.tenant_id.as_str().into(),
                m.id.as_str().into(),
                r.email.as_str().into(),
                r.kind.into(),
                row_status.as_str().into(),
                row_due,
                claimed_by,
                detail.clone(),
                Val::I(now),
                Val::I(now),
            ]);
            event_rows.push(vec![
                m.tenant_id.as_str().into(),
                m.id.as_str().into(),
                r.email.as_str().into(),
                st.as_str().into(),
                detail,
                Val::I(now),
            ]);
        }
        for t in &m.tags {
            tag_rows.push(vec![m.tenant_id.as_str().into(), t.as_str().into(), m.id.as_str().into()]);
        }
        let size = m.raw.len() as i64;
        msg_rows.push(vec![
            Val::S(m.id),
            Val::S(m.tenant_id),
            Val::S(m.from),
            Val::S(m.envelope_from),
            Val::S(m.subject),
            Val::S(serde_json::to_string(&m.to).unwrap_or_default()),
            Val::S(serde_json::to_string(&m.cc).unwrap_or_default()),
            Val::S(serde_json::to_string(&m.tags).unwrap_or_default()),
            Val::S(m.metadata.to_string()),
            Val::S(m.stream),
            Val::S(m.header_message_id),
            Val::B(m.raw),
            Val::I(size),
            Val::OI(m.send_at),
            Val::I(now),
            Val::OS(m.category),
            Val::I(i64::from(m.personalized)),
        ]);
    }
    rows.insert(
        "messages",
        &[
            "id",
            "tenant_id",
            "from_addr",
            "envelope_from",
            "subject",
            "to_json",
            "cc_json",
            "tags_json",
            "metadata_json",
            "stream",
            "header_message_id",
            "raw",
            "size",
            "send_at",
            "created_at",
            "category",
            "personalized",
        ],
        msg_rows,
        "",
    );
    rows.insert(
        "recipients",
        &[
            "id",
            "tenant_id",
            "message_id",
            "email",
            "kind",
            "status",
            "due_at",
            "claimed_by",
            "last_response",
            "created_at",
            "updated_at",
        ],
        rcpt_rows,
        "",
    );
    rows.insert("message_tags", &["tenant_id", "tag", "message_id"], tag_rows, " ON CONFLICT DO NOTHING");
    rows.insert("events", EVENT_COLS, event_rows, "");
    rows.insert("recipient_bodies", &["recipient_id", "raw"], body_rows, "");
    for (tenant, name, version, n) in template_uses {
        let sql = format!(
            "UPDATE template_versions SET uses = uses + {} WHERE tenant_id = {} AND name = {} AND version = {}",
            placeholders(dialect, 1, 1),
            placeholders(dialect, 2, 1),
            placeholders(dialect, 3, 1),
            placeholders(dialect, 4, 1),
        );
        rows.push((sql, vec![Val::I(n), Val::S(tenant), Val::S(name), Val::I(version)]));
    }
}

/// Takes an idempotency key, unless it was taken before.
const IDEMPOTENCY_INSERT: &str = "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, message_id, response, \
                                  created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, idem_key) DO NOTHING";
/// What a key taken before answered.
const IDEMPOTENCY_SELECT: &str =
    "SELECT request_hash, message_id, response FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2";

/// The answer to a key seen before: the same again for the same request
/// (`hash`), a conflict for another.
fn replayed(hash: &str, prev_hash: String, message_id: String, response: String) -> InsertResult {
    if prev_hash == hash {
        InsertResult::Replay { message_id, response }
    } else {
        InsertResult::Conflict { message_id }
    }
}

/// One group commit on SQLite's own writer: [`Store::commit_group`]'s
/// transaction, start to end, in one job.
fn commit_group_direct(
    w: &mut crate::direct::Writer,
    batch: Vec<NewMessage>,
    now: i64,
    lease: Option<Lease>,
    recorded: Vec<Recorded>,
) -> Result<Committed, (rusqlite::Error, Option<Vec<NewMessage>>)> {
    let durable = !batch.is_empty();
    w.durable(durable).map_err(|e| (e, None))?;
    let tx = w.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| (e, None))?;
    // Outcomes first, so that their failure is told apart (the transaction
    // rolls back as it is dropped).
    let mut recorded_rows = Batch::new(Dialect::Sqlite);
    for (node, outcomes, at) in &recorded {
        if let Err(e) = crate::queue::record_outcomes_direct(&tx, node, outcomes, *at, &mut recorded_rows) {
            return Err((e, durable.then_some(batch)));
        }
    }
    if let Err(e) = recorded_rows.run_direct(&tx) {
        return Err((e, durable.then_some(batch)));
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut suppressed = None;
    if durable {
        let mut accepted = Vec::with_capacity(batch.len());
        let mut take = tx.prepare_cached(IDEMPOTENCY_INSERT).map_err(|e| (e, None))?;
        let mut seen = tx.prepare_cached(IDEMPOTENCY_SELECT).map_err(|e| (e, None))?;
        for (i, m) in batch.into_iter().enumerate() {
            if let Some((key, hash)) = &m.idempotency {
                let taken = take
                    .execute(rusqlite::params![m.tenant_id, key, hash, m.id, m.response, now])
                    .map_err(|e| (e, None))?;
                if taken == 0 {
                    let found = seen
                        .query_row(rusqlite::params![m.tenant_id, key], |r| {
                            Ok(replayed(hash, r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .map_err(|e| (e, None))?;
                    results.push(found);
                    continue;
                }
            }
            results.push(InsertResult::Inserted);
            accepted.push((i, m));
        }
        drop((take, seen));
        // The worker checks the suppression list before it sends; for the
        // mail it gets handed, the check is made here, where it costs a
        // lookup by a prepared statement instead of a read of its own.
        if let Some(lease) = &lease {
            let pairs: Vec<(String, String)> = accepted
                .iter()
                .filter(|(i, _)| lease.messages.get(*i).copied().unwrap_or(false))
                .flat_map(|(_, m)| m.recipients.iter().map(|r| (m.tenant_id.clone(), r.email.clone())))
                .collect();
            // Should the lookup fail, the worker reads them itself: no reason to refuse the mail.
            suppressed = suppressions_of(&tx, &pairs).ok();
        }
        let mut rows = Batch::new(Dialect::Sqlite);
        accepted_rows(Dialect::Sqlite, accepted, now, lease.as_ref(), &mut rows);
        rows.run_direct(&tx).map_err(|e| (e, None))?;
    }
    tx.commit().map_err(|e| (e, None))?;
    Ok(Committed { results, suppressed })
}

/// Which of `pairs` (tenant, address) are suppressed, as (tenant, address,
/// scope); addresses compared without case, as [`Store::suppressed_among`]
/// compares them.
fn suppressions_of(
    tx: &rusqlite::Transaction<'_>,
    pairs: &[(String, String)],
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut find = tx.prepare_cached(SUPPRESSIONS_OF)?;
    for email in &crate::queue::suppression_keys(pairs) {
        let rows =
            find.query_map([email], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (t, e, s) = row?;
            if crate::queue::among(pairs, &t, &e) {
                out.push((t, e, s));
            }
        }
    }
    Ok(out)
}

impl Store {
    /// Commits a batch of messages in one transaction, honouring idempotency
    /// keys. Returns one result per input, in order. When this returns `Ok`,
    /// every `Inserted` message is durable.
    pub async fn insert_messages(&self, batch: Vec<NewMessage>, now: i64) -> Result<Vec<InsertResult>> {
        self.commit_group(batch, now, None, Vec::new(), &mut None).await.map(|c| c.results).map_err(|(e, _)| e)
    }

    /// One transaction of the group committer: records each `(node,
    /// outcomes, now)` of `recorded` and accepts `batch`. The recipients of
    /// the messages that `lease` marks are inserted already claimed by its
    /// node, as [`Store::claim_due`] would claim them: the node sends them
    /// without a claim of its own. Durable when it accepts anything; otherwise as relaxed as
    /// [`Store::record_outcomes`] alone.
    ///
    /// The outcomes go first: should they fail, nothing of `batch` has been
    /// written and it comes back with the error, for the caller to accept
    /// alone. Accepts never fail because of outcomes.
    ///
    /// On a SQLite file, `held` is sqlx's writer connection, which keeps
    /// every other write out while the group is written on the direct
    /// writer: taken from `held` if it is there, else acquired, and left in
    /// `held` afterwards for the caller to keep for its next group or let go
    /// (letting go costs a round trip to sqlx's connection thread, which
    /// tests the connection as it goes back to the pool).
    pub(crate) async fn commit_group(
        &self,
        batch: Vec<NewMessage>,
        now: i64,
        lease: Option<Lease>,
        recorded: Vec<Recorded>,
        held: &mut Option<WriterHold>,
    ) -> GroupResult {
        let durable = !batch.is_empty();
        if let Some(direct) = &self.direct {
            // Its `synchronous` level is not ours to set.
            let conn = match held.take() {
                Some(conn) => conn,
                None => self.write.acquire().await.map_err(|e| (e.into(), None))?,
            };
            let (ran, conn) = direct.run(conn, move |w| commit_group_direct(w, batch, now, lease, recorded)).await;
            *held = conn;
            return match ran {
                Ok(Ok(committed)) => Ok(committed),
                Ok(Err((e, back))) => Err((e.into(), back)),
                Err(e) => Err((e, None)),
            };
        }
        let mut conn = self
            .writer(if durable { Durability::Durable } else { Durability::Relaxed })
            .await
            .map_err(|e| (e, None))?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(|e| (e.into(), None))?;
        if !durable {
            self.relax(&mut tx).await.map_err(|e| (e, None))?;
        }
        // The rows of all outcomes go in one batch, run before anything of
        // the accepts is written, so that a failure there is told apart.
        let mut recorded_rows = Batch::new(self.dialect);
        for (node, outcomes, at) in &recorded {
            if outcomes.is_empty() {
                continue;
            }
            if let Err(e) = self.record_outcomes_in(&mut tx, node, outcomes, *at, &mut recorded_rows).await {
                let _ = tx.rollback().await;
                return Err((e, durable.then_some(batch)));
            }
        }
        if let Err(e) = recorded_rows.run(&mut tx).await {
            let _ = tx.rollback().await;
            return Err((e.into(), durable.then_some(batch)));
        }
        let results = if durable {
            let mut rows = Batch::new(self.dialect);
            let (results, accepted) = self.claim_keys(&mut tx, batch, now).await.map_err(|e| (e, None))?;
            accepted_rows(self.dialect, accepted, now, lease.as_ref(), &mut rows);
            rows.run(&mut tx).await.map_err(|e| (e.into(), None))?;
            results
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(|e| (e.into(), None))?;
        Ok(Committed { results, suppressed: None })
    }

    /// [`Store::insert_messages`] inside a caller's transaction.
    pub(crate) async fn insert_messages_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        batch: Vec<NewMessage>,
        now: i64,
    ) -> Result<Vec<InsertResult>> {
        let mut rows = Batch::new(self.dialect);
        let (results, accepted) = self.claim_keys(tx, batch, now).await?;
        accepted_rows(self.dialect, accepted, now, None, &mut rows);
        rows.run(tx).await?;
        Ok(results)
    }

    /// Takes the idempotency key of each message of `batch` that has one:
    /// a result per message, and the messages to insert with their place in
    /// the batch (a key seen before answers with what it answered then).
    async fn claim_keys(
        &self,
        tx: &mut sqlx::AnyConnection,
        batch: Vec<NewMessage>,
        now: i64,
    ) -> Result<(Vec<InsertResult>, Vec<(usize, NewMessage)>)> {
        let mut results = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for (i, m) in batch.into_iter().enumerate() {
            if let Some((key, hash)) = &m.idempotency {
                let done = sqlx::query(IDEMPOTENCY_INSERT)
                    .bind(&m.tenant_id)
                    .bind(key)
                    .bind(hash)
                    .bind(&m.id)
                    .bind(&m.response)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    let row = sqlx::query(IDEMPOTENCY_SELECT).bind(&m.tenant_id).bind(key).fetch_one(&mut *tx).await?;
                    results.push(replayed(hash, row.get(0), row.get(1), row.get(2)));
                    continue;
                }
            }
            results.push(InsertResult::Inserted);
            accepted.push((i, m));
        }
        Ok((results, accepted))
    }

    pub async fn get_message(&self, tenant_id: &str, id: &str) -> Result<Option<MessageRecord>> {
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    pub async fn message_recipients(&self, tenant_id: &str, message_id: &str) -> Result<Vec<RecipientRecord>> {
        let rows = sqlx::query(
            "SELECT r.id, r.message_id, r.email, r.kind, r.status, r.attempts, r.last_response, r.updated_at, \
             (SELECT COALESCE(CAST(SUM(a.cost_micros) AS BIGINT), 0) FROM attempts a WHERE a.recipient_id = r.id) \
             FROM recipients r WHERE r.tenant_id = $1 AND r.message_id = $2 ORDER BY r.created_at, r.id",
        )
        .bind(tenant_id)
        .bind(message_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RecipientRecord {
                    id: r.get(0),
                    message_id: r.get(1),
                    email: r.get(2),
                    kind: r.get(3),
                    status: parse_status(&r.get::<String, _>(4))?,
                    attempts: r.get(5),
                    last_response: r.get(6),
                    updated_at: r.get(7),
                    cost_micros: r.get(8),
                })
            })
            .collect()
    }

    pub async fn message_attempts(&self, tenant_id: &str, message_id: &str) -> Result<Vec<crate::AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT r.email, a.transport, a.node, a.outcome, a.response, a.started_at, a.duration_ms \
             FROM attempts a JOIN recipients r ON r.id = a.recipient_id \
             WHERE a.tenant_id = $1 AND a.message_id = $2 ORDER BY a.started_at, a.id",
        )
        .bind(tenant_id)
        .bind(message_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| crate::AttemptRecord {
                recipient: r.get(0),
                transport: r.get(1),
                node: r.get(2),
                outcome: r.get(3),
                response: r.get(4),
                started_at: r.get(5),
                duration_ms: r.get(6),
            })
            .collect())
    }

    /// The stored RFC 5322 bytes.
    pub async fn raw_message(&self, tenant_id: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT raw FROM messages WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// Newest first, with keyset pagination.
    pub async fn list_messages(&self, tenant_id: &str, f: &ListFilter) -> Result<Vec<MessageSummary>> {
        let mut sql = format!("SELECT {MESSAGE_COLS} FROM messages m WHERE tenant_id = $1");
        let mut vals: Vec<Val> = vec![tenant_id.into()];
        let next = |vals: &mut Vec<Val>, v: Val| {
            vals.push(v);
            format!("${}", vals.len())
        };
        if let Some((at, id)) = &f.before {
            let a = next(&mut vals, Val::I(*at));
            let b = next(&mut vals, Val::S(id.clone()));
            sql.push_str(&format!(" AND (m.created_at < {a} OR (m.created_at = {a} AND m.id < {b}))"));
        }
        if let Some(since) = f.since {
            let p = next(&mut vals, Val::I(since));
            sql.push_str(&format!(" AND m.created_at >= {p}"));
        }
        if let Some(st) = f.status {
            let p = next(&mut vals, st.as_str().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = {p})"
            ));
        }
        if let Some(ev) = &f.event {
            let p = next(&mut vals, ev.as_str().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = m.tenant_id AND e.type = {p} AND e.message_id = m.id)"
            ));
        }
        if let Some(tag) = &f.tag {
            let p = next(&mut vals, tag.as_str().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM message_tags t WHERE t.tenant_id = m.tenant_id AND t.tag = {p} AND t.message_id = m.id)"
            ));
        }
        if let Some(rcpt) = &f.recipient {
            let p = next(&mut vals, rcpt.as_str().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM recipients r WHERE r.tenant_id = m.tenant_id AND r.email = {p} AND r.message_id = m.id)"
            ));
        }
        let p = next(&mut vals, Val::I(f.limit));
        sql.push_str(&format!(" ORDER BY m.created_at DESC, m.id DESC LIMIT {p}"));
        let rows = bind_all(sqlx::query(&sql), vals).fetch_all(&self.read).await?;
        let messages: Vec<MessageRecord> = rows.iter().map(message_from_row).collect::<Result<_>>()?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Val> = messages.iter().map(|m| Val::S(m.id.clone())).collect();
        let sql = format!(
            "SELECT message_id, status FROM recipients WHERE message_id IN ({})",
            placeholders(self.dialect, 1, ids.len())
        );
        let rows = bind_all(sqlx::query(&sql), ids).fetch_all(&self.read).await?;
        let mut statuses: std::collections::HashMap<String, Vec<RecipientStatus>> = std::collections::HashMap::new();
        for r in rows {
            statuses.entry(r.get(0)).or_default().push(parse_status(&r.get::<String, _>(1))?);
        }
        Ok(messages
            .into_iter()
            .map(|message| MessageSummary { statuses: statuses.remove(&message.id).unwrap_or_default(), message })
            .collect())
    }

    /// Cancels every recipient not yet handed to a worker. Returns the
    /// addresses cancelled now.
    pub async fn cancel_message(&self, tenant_id: &str, id: &str, now: i64) -> Result<Vec<String>> {
        self.cancel_message_because(tenant_id, id, now, "cancelled through the API").await
    }

    /// [`Store::cancel_message`], saying why in the `cancelled` events.
    pub async fn cancel_message_because(&self, tenant_id: &str, id: &str, now: i64, why: &str) -> Result<Vec<String>> {
        let mut conn = self.writer(Durability::Durable).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let emails = cancel_in(&mut tx, self.dialect, tenant_id, id, now, why).await?;
        tx.commit().await?;
        Ok(emails)
    }

    /// Forgets idempotency keys older than `before` (ms). Returns how many.
    pub async fn purge_idempotency_keys(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&mut *self.writer(Durability::Relaxed).await?)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Cancels what of message `id` still waits, inside the caller's
/// transaction; returns the addresses cancelled.
pub(crate) async fn cancel_in(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    tenant_id: &str,
    id: &str,
    now: i64,
    why: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "UPDATE recipients SET status = 'cancelled', due_at = NULL, claimed_by = NULL, updated_at = $3 \
         WHERE tenant_id = $1 AND message_id = $2 AND status IN ('queued', 'scheduled', 'deferred') RETURNING email",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let emails: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let events: Vec<Vec<Val>> = emails
        .iter()
        .map(|e| {
            vec![
                tenant_id.into(),
                id.into(),
                e.as_str().into(),
                "cancelled".into(),
                Val::OS(Some(why.to_string())),
                Val::I(now),
            ]
        })
        .collect();
    for (sql, vals) in multi_insert(dialect, "events", EVENT_COLS, events, "") {
        bind_all(sqlx::query(&sql), vals).execute(&mut *conn).await?;
    }
    Ok(emails)
}
