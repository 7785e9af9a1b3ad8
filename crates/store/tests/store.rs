//! One store test suite, run against SQLite and PostgreSQL.

use epistle_core::RecipientStatus;
use epistle_store::{
    Claimed, Committer, HandOff, InsertResult, ListFilter, NewMessage, NewRecipient, Outcome, OutcomeKind, Store,
    StoreOptions, SuppressionFilter,
};
use epistle_testkit::{Engine, TestDb};

/// [`both_engines`] on a single-threaded runtime: the committer task runs
/// only when the test waits, so requests made together form one group.
macro_rules! both_engines_one_thread {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "current_thread")]
            async fn sqlite() { super::$name(Engine::Sqlite).await }
            #[tokio::test(flavor = "current_thread")]
            async fn postgres() { super::$name(Engine::Postgres).await }
        }
    )*};
}

both_engines_one_thread!(group_commit_records_outcomes_with_accepts);

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Engine::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Engine::Postgres).await }
        }
    )*};
}

both_engines!(
    migrations_are_idempotent,
    api_keys_are_found_by_hash_only,
    messages_round_trip,
    idempotency_replays_and_conflicts,
    claims_are_disjoint_and_leased,
    scheduled_mail_waits_until_due,
    outcomes_need_the_lease,
    renewed_leases_are_kept,
    group_commit_answers_each_caller,
    group_commit_hands_over_mail_claimed_at_birth,
    costs_add_up_by_transport_and_day,
    list_filters_and_cursor,
    cancel_stops_pending_recipients,
    hard_bounces_are_suppressed,
    outcomes_in_bulk_span_statements_and_count_once,
    domains_and_keys,
    template_versions_and_uses,
    engagement_feedback_and_webhook_deliveries,
    business_events_runs_and_dead_letters,
    a_new_run_replaces_a_waiting_mail_in_its_commit,
    workflow_runs_and_escalations,
);

async fn store(engine: Engine) -> (Store, TestDb) {
    let db = TestDb::new(engine).await;
    let store = Store::connect(&StoreOptions::new(&db.url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

const T0: i64 = 1_800_000_000_000;

fn message(tenant: &str, emails: &[&str]) -> NewMessage {
    let id = epistle_core::MessageId::generate().to_string();
    NewMessage {
        tenant_id: tenant.into(),
        id: id.clone(),
        from: "orders@shop.example".into(),
        envelope_from: "orders@shop.example".into(),
        subject: "Your order".into(),
        to: emails.iter().map(|s| s.to_string()).collect(),
        cc: vec![],
        tags: vec!["order".into()],
        metadata: serde_json::json!({"order_id": "1042"}),
        stream: "transactional".into(),
        header_message_id: format!("{id}@shop.example"),
        raw: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        send_at: None,
        recipients: emails
            .iter()
            .map(|e| NewRecipient { email: e.to_string(), kind: "to", suppressed: None })
            .collect(),
        idempotency: None,
        response: "{}".into(),
        template: None,
        category: None,
        variants: vec![],
        personalized: false,
    }
}

/// Group commits on SQLite go to the file sqlx opened, not to the URL's text: percent-encoded
/// here (SQLite's writer thread opened `my%20mail.db` once, and could not).
#[tokio::test]
async fn sqlite_group_commits_go_to_the_file_the_url_names() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/my%20mail.db", dir.path().display());
    let store = Store::connect(&StoreOptions::new(url)).await.expect("connect");
    store.migrate().await.unwrap();
    let m = message("ten_a", &["a@example.com"]);
    store.insert_messages(vec![m.clone()], T0).await.unwrap();
    assert!(store.get_message("ten_a", &m.id).await.unwrap().is_some(), "read back through the readers");
    assert!(dir.path().join("my mail.db").exists());
    assert!(!dir.path().join("my%20mail.db").exists());
}

/// A sent-like outcome of `c`, answered `250 2.0.0 ok` by transport `sink`.
fn outcome_of(c: &Claimed, kind: OutcomeKind) -> Outcome {
    Outcome {
        recipient_id: c.id.clone(),
        tenant_id: c.tenant_id.clone(),
        message_id: c.message_id.clone(),
        email: c.email.clone(),
        kind,
        response: "250 2.0.0 ok".into(),
        transport: "sink".into(),
        started_at: T0,
        duration_ms: 3,
        cost_micros: 0,
        suppress: None,
    }
}

async fn migrations_are_idempotent(engine: Engine) {
    let (store, _db) = store(engine).await;
    assert!(store.migrate().await.unwrap().is_empty(), "second run applies nothing");
    store.ping().await.unwrap();
}

async fn api_keys_are_found_by_hash_only(engine: Engine) {
    let (store, _db) = store(engine).await;
    let t = store.ensure_tenant("default", T0).await.unwrap();
    let again = store.ensure_tenant("default", T0).await.unwrap();
    assert_eq!(t.id, again.id);
    assert_eq!(store.count_api_keys().await.unwrap(), 0);
    store.create_api_key(&t.id, "first", "ep_abcd", "hash-1", &["*".into()], T0).await.unwrap();
    let k = store.find_api_key("hash-1").await.unwrap().expect("found");
    assert_eq!(k.tenant_id, t.id);
    assert_eq!(k.scopes, vec!["*".to_string()]);
    assert!(store.find_api_key("hash-2").await.unwrap().is_none());
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
}

async fn messages_round_trip(engine: Engine) {
    let (store, _db) = store(engine).await;
    let m = message("ten_a", &["jane@example.com", "joe@example.com"]);
    let id = m.id.clone();
    let raw = m.raw.clone();
    assert_eq!(store.insert_messages(vec![m], T0).await.unwrap(), vec![InsertResult::Inserted]);
    let got = store.get_message("ten_a", &id).await.unwrap().expect("message");
    assert_eq!(got.to, vec!["jane@example.com", "joe@example.com"]);
    assert_eq!(got.metadata["order_id"], "1042");
    assert_eq!(store.raw_message("ten_a", &id).await.unwrap().unwrap(), raw);
    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    assert_eq!(rcpts.len(), 2);
    assert!(rcpts.iter().all(|r| r.status == RecipientStatus::Queued));
    let events = store.message_event_rows("ten_a", &id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.kind == "queued"));
    // Another tenant sees nothing.
    assert!(store.get_message("ten_b", &id).await.unwrap().is_none());
    assert!(store.raw_message("ten_b", &id).await.unwrap().is_none());
}

async fn idempotency_replays_and_conflicts(engine: Engine) {
    let (store, _db) = store(engine).await;
    let mut a = message("ten_a", &["jane@example.com"]);
    a.idempotency = Some(("order-1042".into(), "hash-a".into()));
    a.response = "{\"first\":true}".into();
    let first_id = a.id.clone();
    let mut same = message("ten_a", &["jane@example.com"]);
    same.idempotency = Some(("order-1042".into(), "hash-a".into()));
    let mut different = message("ten_a", &["jane@example.com"]);
    different.idempotency = Some(("order-1042".into(), "hash-b".into()));
    let mut other_tenant = message("ten_b", &["jane@example.com"]);
    other_tenant.idempotency = Some(("order-1042".into(), "hash-z".into()));

    let r = store.insert_messages(vec![a, same.clone()], T0).await.unwrap();
    assert_eq!(r[0], InsertResult::Inserted);
    assert_eq!(r[1], InsertResult::Replay { message_id: first_id.clone(), response: "{\"first\":true}".into() });
    let r = store.insert_messages(vec![same, different, other_tenant], T0 + 1).await.unwrap();
    assert!(matches!(&r[0], InsertResult::Replay { message_id, .. } if *message_id == first_id));
    assert_eq!(r[1], InsertResult::Conflict { message_id: first_id.clone() });
    assert_eq!(r[2], InsertResult::Inserted, "keys are per tenant");
    let all = store.list_messages("ten_a", &ListFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 1, "replays insert nothing");

    assert_eq!(store.purge_idempotency_keys(T0 + 1).await.unwrap(), 1);
}

async fn claims_are_disjoint_and_leased(engine: Engine) {
    let (store, _db) = store(engine).await;
    let batch: Vec<_> = (0..40).map(|i| message("ten_a", &[&format!("u{i}@example.com")])).collect();
    store.insert_messages(batch, T0).await.unwrap();
    let (s1, s2) = (store.clone(), store.clone());
    let (a, b) = tokio::join!(async move { s1.claim_due("node-a", T0 + 10, 60_000, 25).await.unwrap() }, async move {
        s2.claim_due("node-b", T0 + 10, 60_000, 25).await.unwrap()
    },);
    let mut ids: Vec<_> = a.iter().chain(b.iter()).map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 40, "together they claim everything once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no recipient claimed twice");
    assert!(store.claim_due("node-c", T0 + 20, 60_000, 100).await.unwrap().is_empty(), "leased work is not due");
    // node-a dies; after its lease, node-c takes its work over.
    let taken = store.claim_due("node-c", T0 + 10 + 60_001, 60_000, 100).await.unwrap();
    assert_eq!(taken.len(), 40);
    let depth = store.queue_depth().await.unwrap();
    assert_eq!(depth, vec![(RecipientStatus::Sending, 40)]);
}

async fn scheduled_mail_waits_until_due(engine: Engine) {
    let (store, _db) = store(engine).await;
    let mut m = message("ten_a", &["jane@example.com"]);
    m.send_at = Some(T0 + 3_600_000);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    assert_eq!(store.message_recipients("ten_a", &id).await.unwrap()[0].status, RecipientStatus::Scheduled);
    assert!(store.claim_due("n", T0 + 1000, 60_000, 10).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(T0 + 3_600_000));
    assert_eq!(store.claim_due("n", T0 + 3_600_000, 60_000, 10).await.unwrap().len(), 1);
}

async fn outcomes_need_the_lease(engine: Engine) {
    let (store, _db) = store(engine).await;
    let m = message("ten_a", &["a@example.com", "b@example.com", "c@example.com"]);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    let claimed = store.claim_due("node-a", T0, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let outcome = |c: &Claimed, kind| outcome_of(c, kind);
    let by = |e: &str| claimed.iter().find(|c| c.email == e).unwrap().clone();
    store
        .record_outcomes(
            "node-a",
            &[
                outcome(&by("a@example.com"), OutcomeKind::Sent),
                outcome(&by("b@example.com"), OutcomeKind::Deferred { retry_at: T0 + 5000 }),
            ],
            T0 + 10,
        )
        .await
        .unwrap();
    // c's lease runs out and node-b takes it; node-a's late outcome is ignored.
    let again = store.claim_due("node-b", T0 + 1001, 1000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].email, "c@example.com");
    store.record_outcomes("node-a", &[outcome(&by("c@example.com"), OutcomeKind::Bounced)], T0 + 1002).await.unwrap();
    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    let st = |e: &str| rcpts.iter().find(|r| r.email == e).unwrap().clone();
    assert_eq!(st("a@example.com").status, RecipientStatus::Sent);
    assert_eq!(st("a@example.com").attempts, 1);
    assert_eq!(st("b@example.com").status, RecipientStatus::Deferred);
    assert_eq!(st("c@example.com").status, RecipientStatus::Sending, "node-b holds it now");
    assert_eq!(store.message_attempts("ten_a", &id).await.unwrap().len(), 3, "every attempt is kept");
    // b comes due again at its retry time.
    let retry = store.claim_due("node-b", T0 + 5000, 1000, 10).await.unwrap();
    assert!(retry.iter().any(|c| c.email == "b@example.com"));
}

async fn list_filters_and_cursor(engine: Engine) {
    let (store, _db) = store(engine).await;
    for i in 0..5 {
        let mut m = message("ten_a", &[&format!("u{i}@example.com")]);
        m.tags = vec![if i % 2 == 0 { "even".into() } else { "odd".into() }];
        store.insert_messages(vec![m], T0 + i).await.unwrap();
    }
    store.insert_messages(vec![message("ten_b", &["u0@example.com"])], T0).await.unwrap();
    let page1 = store.list_messages("ten_a", &ListFilter { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page1.len(), 2);
    assert_eq!(page1[0].message.to, vec!["u4@example.com"], "newest first");
    let last = &page1[1].message;
    let page2 = store
        .list_messages(
            "ten_a",
            &ListFilter { limit: 10, before: Some((last.created_at, last.id.clone())), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(page2.len(), 3);
    let even = store
        .list_messages("ten_a", &ListFilter { limit: 10, tag: Some("even".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(even.len(), 3);
    let one = store
        .list_messages(
            "ten_a",
            &ListFilter { limit: 10, recipient: Some("u3@example.com".into()), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].statuses, vec![RecipientStatus::Queued]);
    let since = store
        .list_messages("ten_a", &ListFilter { limit: 10, since: Some(T0 + 3), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(since.len(), 2);
    let sent = store
        .list_messages("ten_a", &ListFilter { limit: 10, status: Some(RecipientStatus::Sent), ..Default::default() })
        .await
        .unwrap();
    assert!(sent.is_empty());
}

async fn cancel_stops_pending_recipients(engine: Engine) {
    let (store, _db) = store(engine).await;
    let m = message("ten_a", &["a@example.com", "b@example.com"]);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    let claimed = store.claim_due("n", T0, 60_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let cancelled = store.cancel_message("ten_a", &id, T0 + 1).await.unwrap();
    assert_eq!(cancelled.len(), 1, "the one in flight cannot be cancelled");
    assert!(store.cancel_message("ten_b", &id, T0 + 1).await.unwrap().is_empty(), "other tenants cannot cancel");
    assert!(store.claim_due("n2", T0 + 10, 60_000, 10).await.unwrap().is_empty());
    let events = store.message_event_rows("ten_a", &id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "cancelled").count(), 1);
}

async fn renewed_leases_are_kept(engine: Engine) {
    let (store, _db) = store(engine).await;
    store
        .insert_messages(vec![message("ten_a", &["a@example.com"]), message("ten_a", &["b@example.com"])], T0)
        .await
        .unwrap();
    assert_eq!(store.claim_due("node-a", T0, 1000, 10).await.unwrap().len(), 2);
    assert_eq!(store.renew_leases("node-a", T0 + 900, 1000).await.unwrap(), 2);
    assert!(store.claim_due("node-b", T0 + 1500, 1000, 10).await.unwrap().is_empty(), "renewed: still node-a's");
    assert_eq!(store.renew_leases("node-b", T0 + 1500, 1000).await.unwrap(), 0, "a node renews only its own");
    assert_eq!(store.claim_due("node-b", T0 + 1901, 1000, 10).await.unwrap().len(), 2, "taken over once not renewed");
}

async fn group_commit_answers_each_caller(engine: Engine) {
    let (store, _db) = store(engine).await;
    let committer = Committer::start(store.clone());
    let mut keyed = message("ten_a", &["k@example.com"]);
    keyed.idempotency = Some(("k1".into(), "h1".into()));
    let mut conflicting = message("ten_a", &["k@example.com"]);
    conflicting.idempotency = Some(("k1".into(), "h2".into()));
    // Fifty concurrent callers, one of them with two messages, two sharing a key.
    let mut calls = Vec::new();
    for i in 0..48 {
        let c = committer.clone();
        let m = message("ten_a", &[&format!("u{i}@example.com")]);
        calls.push(tokio::spawn(async move { c.insert(vec![m], T0).await.unwrap() }));
    }
    let c = committer.clone();
    let pair = vec![message("ten_a", &["p1@example.com"]), message("ten_a", &["p2@example.com"])];
    calls.push(tokio::spawn(async move { c.insert(pair, T0).await.unwrap() }));
    let first = committer.insert(vec![keyed], T0).await.unwrap();
    let second = committer.insert(vec![conflicting], T0).await.unwrap();
    let mut total = 0;
    for call in calls {
        let r = call.await.unwrap();
        assert!(r.iter().all(|x| *x == InsertResult::Inserted));
        total += r.len();
    }
    assert_eq!(total, 50, "each caller gets its own results");
    assert_eq!(first, vec![InsertResult::Inserted]);
    assert!(matches!(second[0], InsertResult::Conflict { .. }), "idempotency holds across a group");
    let all = store.list_messages("ten_a", &ListFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 51);
}

/// Mail that can go now reaches the worker's channel already claimed for
/// its node; scheduled mail, suppressed recipients, replays and what does
/// not fit the channel are queued, and the worker is woken for them.
async fn group_commit_hands_over_mail_claimed_at_birth(engine: Engine) {
    let (store, _db) = store(engine).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let lease = 60_000;
    let committer = Committer::start_with_handoff(
        store.clone(),
        HandOff { node: "n1".into(), lease_ms: lease, tx, wake: wake.clone() },
    );

    let mut now_mail = message("ten_a", &["a@example.com", "gone@example.com"]);
    now_mail.recipients[1].suppressed = Some("not sent: suppressed".into());
    let id = now_mail.id.clone();
    assert_eq!(committer.insert(vec![now_mail], T0).await.unwrap(), vec![InsertResult::Inserted]);
    let h = rx.try_recv().expect("handed over as it committed");
    assert_eq!(h.message.id, id);
    assert_eq!(h.message.raw, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(h.recipients.len(), 1, "the suppressed recipient is not sent to");
    assert_eq!(h.recipients[0].email, "a@example.com");
    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    let a = rcpts.iter().find(|r| r.email == "a@example.com").unwrap();
    assert_eq!(a.id, h.recipients[0].id, "the worker gets the stored recipient id");
    assert_eq!(a.status, epistle_core::RecipientStatus::Sending);
    let gone = rcpts.iter().find(|r| r.email == "gone@example.com").unwrap();
    assert_eq!(gone.status, epistle_core::RecipientStatus::Suppressed);
    // Claimed: no other node gets it while the lease runs, any node after.
    assert!(store.claim_due("n2", T0 + 1, lease, 10).await.unwrap().is_empty());
    let late = store.claim_due("n2", T0 + lease, lease, 10).await.unwrap();
    assert_eq!(late.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![a.id.as_str()]);
    // Renewed like any claim of n1's.
    assert_eq!(store.renew_leases("n1", T0, lease).await.unwrap(), 0, "n2 holds it now");

    // Scheduled: queued, not handed; the worker is woken to claim it later.
    let mut later = message("ten_a", &["s@example.com"]);
    later.send_at = Some(T0 + 5_000);
    committer.insert(vec![later], T0).await.unwrap();
    assert!(rx.try_recv().is_err());
    tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified()).await.expect("woken");

    // Three at once into a channel with room for two: the third is queued.
    let three: Vec<_> = (0..3).map(|i| message("ten_a", &[&format!("m{i}@example.com")])).collect();
    assert!(committer.insert(three, T0).await.unwrap().iter().all(|r| *r == InsertResult::Inserted));
    assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
    tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified()).await.expect("woken");
    let queued = store.claim_due("n1", T0, lease, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");

    // The suppressions of what is handed over are read in the commit on
    // SQLite (the worker reads them itself otherwise).
    let suppression = |email: &str| epistle_store::Suppression {
        email: email.into(),
        scope: String::new(),
        reason: "manual".into(),
        source: "api".into(),
        detail: None,
        created_at: T0,
    };
    store.put_suppression("ten_a", &suppression("late@example.com")).await.unwrap();
    store.put_suppression("ten_b", &suppression("other@example.com")).await.unwrap();
    let to_both = message("ten_a", &["Late@Example.com", "other@example.com"]);
    committer.insert(vec![to_both], T0).await.unwrap();
    let h = rx.try_recv().expect("handed over");
    let want = vec![("ten_a".to_string(), "late@example.com".to_string(), String::new())];
    match engine {
        Engine::Sqlite => assert_eq!(h.suppressed, Some(want), "another tenant's suppression does not count"),
        Engine::Postgres => assert_eq!(h.suppressed, None),
    }

    // A replay is neither inserted nor handed over.
    let mut keyed = message("ten_a", &["k@example.com"]);
    keyed.idempotency = Some(("k1".into(), "h1".into()));
    let again = keyed.clone();
    committer.insert(vec![keyed], T0).await.unwrap();
    assert!(rx.try_recv().is_ok());
    assert!(matches!(committer.insert(vec![again], T0).await.unwrap()[0], InsertResult::Replay { .. }));
    assert!(rx.try_recv().is_err());
}

/// Outcomes recorded through the committer share the transaction of the
/// accepts they arrive with: accepts that fail take the outcomes with them,
/// outcomes that fail do not take the accepts, and after a failure the
/// outcomes go alone until that works again.
async fn group_commit_records_outcomes_with_accepts(engine: Engine) {
    let (store, db) = store(engine).await;
    let committer = Committer::start(store.clone());
    let first = message("ten_a", &["a@example.com"]);
    store.insert_messages(vec![first.clone()], T0).await.unwrap();
    let claimed = store.claim_due("n1", T0, 60_000, 10).await.unwrap();
    let sent: std::sync::Arc<[Outcome]> = claimed.iter().map(|c| outcome_of(c, OutcomeKind::Sent)).collect();
    let status = |id: String| {
        let store = store.clone();
        async move { store.message_recipients("ten_a", &id).await.unwrap()[0].status }
    };

    // The same message again cannot be inserted: the group fails, and the
    // outcomes that shared its transaction with it fail with it.
    let (dup, rec) =
        tokio::join!(committer.insert(vec![first.clone()], T0), committer.record_outcomes("n1", sent.clone(), T0));
    assert!(dup.is_err() && rec.is_err(), "{dup:?} {rec:?}");
    assert_eq!(status(first.id.clone()).await, RecipientStatus::Sending, "nothing of the failed group is kept");

    // Next time they commit apart (and both work).
    let second = message("ten_a", &["b@example.com"]);
    let (ins, rec) =
        tokio::join!(committer.insert(vec![second.clone()], T0), committer.record_outcomes("n1", sent.clone(), T0));
    assert_eq!(ins.unwrap(), vec![InsertResult::Inserted]);
    rec.unwrap();
    assert_eq!(status(first.id.clone()).await, RecipientStatus::Sent);
    let attempts = store.message_attempts("ten_a", &first.id).await.unwrap();
    assert_eq!(attempts.len(), 1);

    // Together again once outcomes alone have committed.
    let claimed = store.claim_due("n1", T0, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let bounced: std::sync::Arc<[Outcome]> = claimed.iter().map(|c| outcome_of(c, OutcomeKind::Bounced)).collect();
    let third = message("ten_a", &["c@example.com"]);
    let (ins, rec) =
        tokio::join!(committer.insert(vec![third.clone()], T0), committer.record_outcomes("n1", bounced, T0));
    assert_eq!(ins.unwrap(), vec![InsertResult::Inserted]);
    rec.unwrap();
    assert_eq!(status(second.id.clone()).await, RecipientStatus::Bounced);
    assert_eq!(status(third.id.clone()).await, RecipientStatus::Queued);

    // Outcomes that cannot be written (their attempts table is gone) do
    // not fail the accepts they came with.
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(&rename("attempts", "attempts_away")).execute(&mut admin).await.unwrap();
    let claimed = store.claim_due("n1", T0, 60_000, 10).await.unwrap();
    let sent: std::sync::Arc<[Outcome]> = claimed.iter().map(|c| outcome_of(c, OutcomeKind::Sent)).collect();
    let fourth = message("ten_a", &["d@example.com"]);
    let (ins, rec) =
        tokio::join!(committer.insert(vec![fourth.clone()], T0), committer.record_outcomes("n1", sent.clone(), T0));
    assert_eq!(ins.unwrap(), vec![InsertResult::Inserted], "accepted without the outcomes");
    assert!(rec.is_err());
    sqlx::query(&rename("attempts_away", "attempts")).execute(&mut admin).await.unwrap();
    assert_eq!(status(fourth.id.clone()).await, RecipientStatus::Queued);
    assert_eq!(status(third.id.clone()).await, RecipientStatus::Sending);
    committer.record_outcomes("n1", sent, T0).await.unwrap();
    assert_eq!(status(third.id.clone()).await, RecipientStatus::Sent);
}

async fn costs_add_up_by_transport_and_day(engine: Engine) {
    let (store, _db) = store(engine).await;
    let day = 86_400_000;
    let m = message("ten_a", &["a@example.com", "b@example.com", "c@example.com"]);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    let claimed = store.claim_due("n", T0, 60_000, 10).await.unwrap();
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Outcome {
            recipient_id: c.id.clone(),
            tenant_id: c.tenant_id.clone(),
            message_id: c.message_id.clone(),
            email: c.email.clone(),
            kind: OutcomeKind::Sent,
            response: "250 ok".into(),
            transport: if i == 0 { "ses".into() } else { "relay".into() },
            started_at: T0 + (i as i64) * day,
            duration_ms: 1,
            cost_micros: 100,
            suppress: None,
        })
        .collect();
    store.record_outcomes("n", &outcomes, T0).await.unwrap();
    let stats = store.cost_stats("ten_a", T0, T0 + 10 * day).await.unwrap();
    assert_eq!(stats.total, 300);
    assert_eq!(stats.by_transport, vec![("relay".to_string(), 200), ("ses".to_string(), 100)]);
    assert_eq!(stats.by_day.len(), 3);
    assert_eq!(stats.by_day[0], (T0 / day, 100));
    assert_eq!(store.cost_stats("ten_a", T0 + day, T0 + 2 * day).await.unwrap().total, 100, "until is excluded");
    assert_eq!(store.cost_stats("ten_b", T0, T0 + 10 * day).await.unwrap().total, 0, "per tenant");
    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    assert!(rcpts.iter().all(|r| r.cost_micros == 100));
}

/// More outcomes than one `UPDATE … FROM (VALUES …)` statement carries, one
/// of them twice: every recipient changes once, the first outcome counts.
async fn outcomes_in_bulk_span_statements_and_count_once(engine: Engine) {
    let (store, _db) = store(engine).await;
    let emails: Vec<String> = (0..4_400).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
    let m = message("ten_a", &refs);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    let claimed = store.claim_due("n", T0, 60_000, 5_000).await.unwrap();
    assert_eq!(claimed.len(), 4_400);
    let outcome = outcome_of;
    let mut outcomes: Vec<Outcome> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            outcome(c, if i % 2 == 0 { OutcomeKind::Sent } else { OutcomeKind::Deferred { retry_at: T0 + 9_000 } })
        })
        .collect();
    let first = claimed.iter().find(|c| c.email == "r0@example.com").unwrap();
    let first_kind = outcomes.iter().find(|o| o.recipient_id == first.id).unwrap().kind;
    outcomes.push(Outcome { suppress: Some("hard_bounce".into()), ..outcome(first, OutcomeKind::Bounced) });
    let before = store.events_after(0, 100_000).await.unwrap().len();
    store.record_outcomes("n", &outcomes, T0 + 5).await.unwrap();

    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    let sent = rcpts.iter().filter(|r| r.status == RecipientStatus::Sent).count();
    let deferred = rcpts.iter().filter(|r| r.status == RecipientStatus::Deferred).count();
    assert_eq!(sent + deferred, 4_400, "every recipient left 'sending'");
    assert!(rcpts.iter().all(|r| r.attempts == 1));
    let r0 = rcpts.iter().find(|r| r.email == "r0@example.com").unwrap();
    let expected = if first_kind == OutcomeKind::Sent { RecipientStatus::Sent } else { RecipientStatus::Deferred };
    assert_eq!(r0.status, expected, "the first outcome of a recipient counts");
    let events = store.events_after(0, 100_000).await.unwrap();
    assert_eq!(events.len() - before, 4_400, "one event per recipient");
    let list = store.suppression_page("ten_a", &SuppressionFilter { limit: 50, ..Default::default() }).await.unwrap();
    assert!(list.is_empty(), "the ignored second outcome suppresses nothing: {list:?}");
    // Deferred ones come due again at their retry time.
    assert_eq!(store.claim_due("n", T0 + 9_000, 60_000, 5_000).await.unwrap().len(), deferred);
}

async fn hard_bounces_are_suppressed(engine: Engine) {
    let (store, _db) = store(engine).await;
    let m = message("ten_a", &["Gone@Example.com", "full@example.com", "later@example.com"]);
    store.insert_messages(vec![m], T0).await.unwrap();
    let claimed = store.claim_due("n", T0, 60_000, 10).await.unwrap();
    let outcome = |c: &Claimed, kind: OutcomeKind, suppress: Option<&str>| Outcome {
        response: "550 5.1.1 no such user".into(),
        transport: "mx".into(),
        suppress: suppress.map(str::to_string),
        ..outcome_of(c, kind)
    };
    let by = |e: &str| claimed.iter().find(|c| c.email == e).unwrap().clone();
    let outcomes = vec![
        outcome(&by("Gone@Example.com"), OutcomeKind::Bounced, Some("hard_bounce")),
        outcome(&by("full@example.com"), OutcomeKind::Bounced, None),
        outcome(&by("later@example.com"), OutcomeKind::Suppressed, None),
    ];
    store.record_outcomes("n", &outcomes, T0).await.unwrap();
    let list = store.suppression_page("ten_a", &SuppressionFilter { limit: 50, ..Default::default() }).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].email, "gone@example.com");
    assert_eq!(list[0].reason, "hard_bounce");
    assert_eq!(list[0].detail.as_deref(), Some("550 5.1.1 no such user"));
    assert!(
        store
            .suppression_page("ten_b", &SuppressionFilter { limit: 50, ..Default::default() })
            .await
            .unwrap()
            .is_empty(),
        "per tenant"
    );
    // Found whatever the case, only for its tenant.
    let pairs = vec![
        ("ten_a".to_string(), "GONE@example.com".to_string()),
        ("ten_b".to_string(), "gone@example.com".to_string()),
        ("ten_a".to_string(), "full@example.com".to_string()),
    ];
    assert_eq!(
        store.suppressed_among(&pairs).await.unwrap(),
        vec![("ten_a".into(), "gone@example.com".into(), "".into())]
    );
    let rcpts = store.message_recipients("ten_a", &outcomes[2].message_id).await.unwrap();
    let later = rcpts.iter().find(|r| r.email == "later@example.com").unwrap();
    assert_eq!(later.status, RecipientStatus::Suppressed);
}

async fn domains_and_keys(engine: Engine) {
    let (store, _db) = store(engine).await;
    let key = |id: &str, sel: &str, alg: &str| epistle_store::NewDkimKey {
        id: id.into(),
        selector: sel.into(),
        algorithm: alg.into(),
        private_sealed: vec![1, 2, 3],
        public_key: "pub".into(),
    };
    assert!(store.insert_domain("ten_a", "shop.example", &[key("dk1", "s1", "rsa")], T0).await.unwrap());
    assert!(!store.insert_domain("ten_a", "shop.example", &[key("dk2", "s2", "rsa")], T0).await.unwrap());
    assert!(store.insert_domain("ten_b", "shop.example", &[key("dk3", "s1", "rsa")], T0).await.unwrap());
    store.add_dkim_key("ten_a", "shop.example", &key("dk4", "s4", "rsa"), Some("rsa"), false, T0 + 1).await.unwrap();
    let d = store.get_domain("ten_a", "shop.example").await.unwrap().unwrap();
    assert_eq!(d.keys.len(), 2);
    assert_eq!(d.keys[0].selector, "s4", "newest first");
    assert!(d.keys[0].retired_at.is_none() && d.keys[1].retired_at == Some(T0 + 1));
    assert_eq!(d.keys[1].private_sealed, vec![1, 2, 3]);
    let signing: Vec<String> = store.signing_keys().await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(signing, vec!["dk3".to_string(), "dk4".to_string()]);
    // A pending key does not sign until activated; then it retires the other.
    store.add_dkim_key("ten_b", "shop.example", &key("dk5", "s5", "rsa"), None, true, T0 + 2).await.unwrap();
    let ids = |v: Vec<epistle_store::DkimKeyRecord>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.signing_keys().await.unwrap()), vec!["dk3".to_string(), "dk4".to_string()]);
    store.activate_dkim_key("ten_b", "shop.example", "dk5", T0 + 3).await.unwrap();
    assert_eq!(ids(store.signing_keys().await.unwrap()), vec!["dk4".to_string(), "dk5".to_string()]);
    let b = store.get_domain("ten_b", "shop.example").await.unwrap().unwrap();
    assert_eq!(b.keys.iter().find(|k| k.id == "dk3").unwrap().retired_at, Some(T0 + 3));
    store.record_domain_check("ten_a", "shop.example", true, "[]", T0 + 5).await.unwrap();
    store.record_domain_check("ten_a", "shop.example", true, "[]", T0 + 9).await.unwrap();
    let d = store.get_domain("ten_a", "shop.example").await.unwrap().unwrap();
    assert_eq!((d.verified_at, d.checked_at), (Some(T0 + 5), Some(T0 + 9)), "first pass kept");
    store.record_domain_check("ten_a", "shop.example", false, "[]", T0 + 10).await.unwrap();
    assert_eq!(store.get_domain("ten_a", "shop.example").await.unwrap().unwrap().verified_at, None);
    assert!(!store.delete_retired_key("ten_a", "shop.example", "s4").await.unwrap(), "a signing key stays");
    assert!(store.delete_retired_key("ten_a", "shop.example", "s1").await.unwrap());
    assert!(store.delete_domain("ten_a", "shop.example").await.unwrap());
    assert!(store.get_domain("ten_a", "shop.example").await.unwrap().is_none());
    assert_eq!(store.list_domains("ten_b").await.unwrap().len(), 1);
    // A selector taken at the same moment is a conflict (409), not a 500,
    // and nothing of the failed transaction stays.
    let clash =
        store.insert_domain("ten_c", "c.example", &[key("dk8", "same", "rsa"), key("dk9", "same", "rsa")], T0).await;
    assert!(matches!(clash, Err(epistle_store::StoreError::Conflict(_))), "{clash:?}");
    assert!(store.get_domain("ten_c", "c.example").await.unwrap().is_none());
    assert_eq!(store.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_or_insert("k", "second").await.unwrap(), "first");
}

async fn template_versions_and_uses(engine: Engine) {
    let (store, _db) = store(engine).await;
    let v = |subject: &str| epistle_store::NewTemplateVersion {
        subject: subject.into(),
        html: Some("<p>{{ x }}</p>".into()),
        text: None,
        mjml: None,
        preheader: Some("pre".into()),
        sample_data: "{}".into(),
        category: Some("transactional".into()),
    };
    assert_eq!(store.save_template("ten_a", "t", &v("one"), true, T0).await.unwrap(), Some(1));
    assert_eq!(store.save_template("ten_a", "t", &v("again"), true, T0).await.unwrap(), None, "create refuses");
    assert_eq!(store.save_template("ten_a", "nope", &v("x"), false, T0).await.unwrap(), None, "update refuses");
    let stamp = store.templates_stamp("ten_a").await.unwrap();
    assert_eq!(store.save_template("ten_a", "t", &v("two"), false, T0 + 1).await.unwrap(), Some(2));
    assert_ne!(store.templates_stamp("ten_a").await.unwrap(), stamp, "a save changes the stamp");
    assert_eq!(store.template_version("ten_a", "t", None).await.unwrap().unwrap().subject, "two");
    assert_eq!(store.template_version("ten_a", "t", Some(1)).await.unwrap().unwrap().subject, "one");
    assert_eq!(store.template_version("ten_a", "t", Some(1)).await.unwrap().unwrap().preheader.as_deref(), Some("pre"));
    assert!(store.template_version("ten_b", "t", None).await.unwrap().is_none(), "per tenant");
    let (active, _) = store.active_templates("ten_a").await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].version, 2);

    let mut m = message("ten_a", &["a@example.com"]);
    m.template = Some(("t".into(), 1));
    let mut m2 = message("ten_a", &["b@example.com"]);
    m2.template = Some(("t".into(), 1));
    store.insert_messages(vec![m, m2], T0).await.unwrap();
    let versions = store.template_versions("ten_a", "t").await.unwrap();
    let uses: Vec<(i64, i64)> = versions.iter().map(|v| (v.version, v.uses)).collect();
    assert_eq!(uses, vec![(2, 0), (1, 2)]);
    assert_eq!(store.list_templates("ten_a").await.unwrap()[0].uses, 2);
    assert!(store.delete_template("ten_a", "t").await.unwrap());
    assert!(store.template_versions("ten_a", "t").await.unwrap().is_empty());
    assert!(!store.delete_template("ten_a", "t").await.unwrap());
    assert_eq!(store.brand("ten_a").await.unwrap(), None);
    store.set_brand("ten_a", r#"{"company_name":"A"}"#, T0).await.unwrap();
    store.set_brand("ten_a", r#"{"company_name":"B"}"#, T0 + 1).await.unwrap();
    assert_eq!(store.brand("ten_a").await.unwrap().as_deref(), Some(r#"{"company_name":"B"}"#));
}

async fn engagement_feedback_and_webhook_deliveries(engine: Engine) {
    use epistle_store::{Engagement, FeedbackUpdate, RecipientRef, WebhookRecord, WebhookResult};
    let (store, _db) = store(engine).await;
    let m = message("ten_a", &["a@example.com", "b@example.com"]);
    let id = m.id.clone();
    store.insert_messages(vec![m], T0).await.unwrap();
    let rid = |i: u16| epistle_core::token::recipient_id(&id, i);
    let start = store.last_event_id().await.unwrap();

    // Opens and clicks go in by recipient id; unknown recipients are dropped.
    let e = |r: String, kind: &'static str| Engagement {
        recipient_id: r,
        kind,
        detail: None,
        data: Some(r#"{"machine":false}"#.into()),
        at: T0 + 5,
    };
    let n = store
        .insert_engagement(&[e(rid(0), "opened"), e(rid(1), "clicked"), e("rcp_nope_00000".into(), "opened")])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let rows = store.events_after(start, 100).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.kind.as_str(), r.recipient.as_deref())).collect();
    assert_eq!(kinds, vec![("opened", Some("a@example.com")), ("clicked", Some("b@example.com"))]);
    assert_eq!(rows[0].tenant_id, "ten_a");
    assert!(rows[0].id < rows[1].id);

    // A complaint moves the recipient and suppresses; a later delivery report does not undo it.
    let upd = |event: &str, status, suppress: Option<&str>| FeedbackUpdate {
        recipient: RecipientRef::Address { message_id: id.clone(), email: "A@example.com".into() },
        status: Some(status),
        event: event.into(),
        detail: None,
        data: None,
        suppress: suppress.map(str::to_string),
        source: "test".into(),
        at: T0,
    };
    assert_eq!(
        store.apply_feedback(&[upd("complained", RecipientStatus::Complained, Some("complaint"))], T0).await.unwrap(),
        1
    );
    assert_eq!(store.apply_feedback(&[upd("delivered", RecipientStatus::Delivered, None)], T0).await.unwrap(), 1);
    let rcpts = store.message_recipients("ten_a", &id).await.unwrap();
    assert_eq!(rcpts[0].status, RecipientStatus::Complained);
    assert_eq!(
        store.suppressions_of("ten_a", &["a@example.com".into()]).await.unwrap(),
        vec![("a@example.com".into(), "".into())]
    );

    // Webhook deliveries: queued once per (hook, event), claimed, retried, delivered.
    let hook = WebhookRecord {
        id: "whk_1".into(),
        tenant_id: "ten_a".into(),
        url: "http://x.example/h".into(),
        events: vec!["*".into()],
        description: None,
        secret: vec![1, 2, 3],
        created_at: T0,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
        after_event: 0,
    };
    store.create_webhook(&hook).await.unwrap();
    let rows = vec![("whk_1".to_string(), "ten_a".to_string(), 7, "{}".to_string())];
    store.enqueue_webhook_deliveries(rows.clone(), 7, T0).await.unwrap();
    store.enqueue_webhook_deliveries(rows, 7, T0).await.unwrap();
    assert_eq!(store.webhook_cursor().await.unwrap(), Some(7));
    let jobs = store.claim_webhook_jobs("n", T0, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "a repeat is not queued twice");
    assert!(store.claim_webhook_jobs("n2", T0, 60_000, 10).await.unwrap().is_empty(), "leased");
    let retry = WebhookResult::Retry { code: Some(503), error: "busy".into(), retry_at: T0 + 10_000 };
    store.record_webhook_attempt(&jobs[0], &retry, T0, 3).await.unwrap();
    assert!(store.get_webhook("ten_a", "whk_1").await.unwrap().unwrap().failing_since.is_some());
    let jobs = store.claim_webhook_jobs("n", T0 + 10_000, 60_000, 10).await.unwrap();
    assert_eq!(jobs[0].attempts, 1);
    store.record_webhook_attempt(&jobs[0], &WebhookResult::Delivered { code: 200 }, T0 + 10_000, 2).await.unwrap();
    let d = store.webhook_deliveries("whk_1", None, 10).await.unwrap();
    assert_eq!((d[0].status.as_str(), d[0].attempts, d[0].tries.len()), ("delivered", 2, 2));
    assert!(store.get_webhook("ten_a", "whk_1").await.unwrap().unwrap().failing_since.is_none());
}

/// Rule `rul_1`'s run for `event` that scheduled message `m`.
fn scheduled_run(event: &str, m: &NewMessage) -> epistle_store::RuleRun {
    epistle_store::RuleRun {
        rule_id: "rul_1".into(),
        event_id: event.into(),
        tenant_id: "ten_a".into(),
        entity: "a1".into(),
        status: "scheduled".into(),
        message_id: Some(m.id.clone()),
        detail: None,
        created_at: T0,
        updated_at: T0,
    }
}

async fn business_events_runs_and_dead_letters(engine: Engine) {
    use epistle_store::{DeadLetter, EventAccepted, EventOutcome, NewBusinessEvent, RuleRecord, RuleRun, RunOutput};
    let (store, _db) = store(engine).await;
    let ev = |key: &str, entity: &str| NewBusinessEvent {
        tenant_id: "ten_a".into(),
        event_type: "appointment.booked".into(),
        key: key.into(),
        entity: entity.into(),
        data: serde_json::json!({"n": 1}),
        occurred_at: T0,
        source: "http".into(),
    };
    // Stored once per (type, key).
    let EventAccepted::New(a) = store.accept_event(&ev("a1", "a1"), T0).await.unwrap() else { panic!("new") };
    assert_eq!(store.accept_event(&ev("a1", "a1"), T0 + 1).await.unwrap(), EventAccepted::Duplicate(a.clone()));
    let EventAccepted::New(b) = store.accept_event(&ev("b1", "b1"), T0 + 2).await.unwrap() else { panic!("new") };
    assert_eq!(store.pending_business_events().await.unwrap(), 2);

    // Claims are leased and disjoint; an expired lease is taken again.
    let first = store.claim_business_events("n1", T0 + 3, 1000, 10).await.unwrap();
    assert_eq!(first.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec![a.as_str(), b.as_str()]);
    assert!(store.claim_business_events("n2", T0 + 4, 1000, 10).await.unwrap().is_empty());
    assert_eq!(store.claim_business_events("n2", T0 + 2000, 1000, 10).await.unwrap().len(), 2);

    // A rule and its run: the run's mail is inserted once, whoever commits.
    let rule = RuleRecord {
        id: "rul_1".into(),
        tenant_id: "ten_a".into(),
        name: "reminder".into(),
        trigger: "appointment.booked".into(),
        spec: serde_json::json!({"name": "reminder"}),
        enabled: true,
        created_at: T0,
        updated_at: T0,
    };
    store.create_rule(&rule).await.unwrap();
    assert_eq!(store.rules("ten_a").await.unwrap().len(), 1);
    let run = |m: &NewMessage| scheduled_run(&a, m);
    let mut m1 = message("ten_a", &["a@example.com"]);
    m1.send_at = Some(T0 + 86_400_000);
    let m2 = message("ten_a", &["a@example.com"]);
    let dead = DeadLetter {
        id: "dlq_1".into(),
        tenant_id: "ten_a".into(),
        source: "rule".into(),
        reason: "no recipient".into(),
        payload: "{}".into(),
        event_id: Some(a.clone()),
        rule_id: Some("rul_1".into()),
        created_at: T0 + 5,
    };
    let outcome = EventOutcome {
        runs: vec![(run(&m1), RunOutput::Message(Box::new(m1.clone())))],
        dead_letters: vec![dead],
        ..Default::default()
    };
    store.finish_business_event(&a, outcome, T0 + 5).await.unwrap();
    // A second node that raced it commits nothing new.
    let raced = EventOutcome { runs: vec![(run(&m2), RunOutput::Message(Box::new(m2.clone())))], ..Default::default() };
    store.finish_business_event(&a, raced, T0 + 6).await.unwrap();
    assert!(store.get_message("ten_a", &m1.id).await.unwrap().is_some());
    assert!(store.get_message("ten_a", &m2.id).await.unwrap().is_none(), "the raced mail is not queued");
    assert_eq!(store.business_event("ten_a", &a).await.unwrap().unwrap().status, "processed");
    assert_eq!(store.pending_business_events().await.unwrap(), 1);

    // Scheduled runs are found by entity and cancelled.
    let runs = store.scheduled_runs("ten_a", "a1", "rul_1").await.unwrap();
    assert_eq!(runs.len(), 1);
    store.cancel_message_because("ten_a", &m1.id, T0 + 8, "cancelled by appointment.cancelled").await.unwrap();
    store.update_run("rul_1", &a, "cancelled", "cancelled by appointment.cancelled", T0 + 8).await.unwrap();
    assert!(store.scheduled_runs("ten_a", "a1", "rul_1").await.unwrap().is_empty());
    assert_eq!(store.runs_of_event(&a).await.unwrap()[0].status, "cancelled");

    // Events by entity and type; dead letters page newest first.
    let found = store.entity_event("ten_a", "b1", &["appointment.booked".into()]).await.unwrap();
    assert_eq!(found.map(|e| e.id), Some(b));
    assert!(store.entity_event("ten_a", "b1", &["appointment.cancelled".into()]).await.unwrap().is_none());
    let d = store.dead_letters("ten_a", None, 10).await.unwrap();
    assert_eq!((d.len(), d[0].reason.as_str()), (1, "no recipient"));
    assert!(store.dead_letters("ten_a", Some((d[0].created_at, d[0].id.clone())), 10).await.unwrap().is_empty());
    assert!(store.dead_letters("ten_b", None, 10).await.unwrap().is_empty());
    // Batches: items for one recipient join the open batch; closing it
    // queues its mail once.
    let batched = |event: &str, item: u32| {
        let run = RuleRun {
            rule_id: "rul_1".into(),
            event_id: event.into(),
            tenant_id: "ten_a".into(),
            entity: event.into(),
            status: "batched".into(),
            message_id: None,
            detail: None,
            created_at: T0,
            updated_at: T0,
        };
        let out = RunOutput::Batch {
            recipient: "rep@example.com".into(),
            item: serde_json::json!({"n": item}),
            opened_at: T0 + 10,
            due_at: T0 + 1000,
        };
        EventOutcome { runs: vec![(run, out)], ..Default::default() }
    };
    store.finish_business_event("evt_x1", batched("evt_x1", 1), T0 + 10).await.unwrap();
    store.finish_business_event("evt_x2", batched("evt_x2", 2), T0 + 20).await.unwrap();
    store.finish_business_event("evt_x2", batched("evt_x2", 2), T0 + 21).await.unwrap();
    assert!(store.due_batches(T0 + 999, 10).await.unwrap().is_empty());
    let due = store.due_batches(T0 + 1000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].items,
        vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 2})],
        "the replayed run adds nothing"
    );
    let m3 = message("ten_a", &["rep@example.com"]);
    // Built from one item while two are there (an event joined meanwhile):
    // not closed, nothing queued.
    let stale = message("ten_a", &["rep@example.com"]);
    assert!(!store.finish_batch(&due[0].id, 1, Some(stale.clone()), None, None, T0 + 1000).await.unwrap());
    assert!(store.get_message("ten_a", &stale.id).await.unwrap().is_none());
    let m4 = message("ten_a", &["rep@example.com"]);
    assert!(store.finish_batch(&due[0].id, 2, Some(m3.clone()), None, None, T0 + 1000).await.unwrap());
    assert!(!store.finish_batch(&due[0].id, 2, Some(m4.clone()), None, None, T0 + 1001).await.unwrap());
    assert!(store.get_message("ten_a", &m3.id).await.unwrap().is_some());
    assert!(store.get_message("ten_a", &m4.id).await.unwrap().is_none());
    assert!(store.due_batches(T0 + 5000, 10).await.unwrap().is_empty());

    assert!(store.delete_rule("ten_a", "rul_1").await.unwrap());
    assert!(!store.delete_rule("ten_a", "rul_1").await.unwrap());
}

async fn a_new_run_replaces_a_waiting_mail_in_its_commit(engine: Engine) {
    use epistle_store::{EventAccepted, EventOutcome, NewBusinessEvent, ReplacedRun, RunOutput};
    let (store, _db) = store(engine).await;
    let ev = |kind: &str, key: &str| NewBusinessEvent {
        tenant_id: "ten_a".into(),
        event_type: kind.into(),
        key: key.into(),
        entity: "a1".into(),
        data: serde_json::json!({}),
        occurred_at: T0,
        source: "http".into(),
    };
    let EventAccepted::New(booked) = store.accept_event(&ev("appointment.booked", "a1"), T0).await.unwrap() else {
        panic!("new")
    };
    let EventAccepted::New(moved) = store.accept_event(&ev("appointment.rescheduled", "a1-r1"), T0).await.unwrap()
    else {
        panic!("new")
    };
    let mut old = message("ten_a", &["a@example.com"]);
    old.send_at = Some(T0 + 86_400_000);
    let outcome = EventOutcome {
        runs: vec![(scheduled_run(&booked, &old), RunOutput::Message(Box::new(old.clone())))],
        ..Default::default()
    };
    store.finish_business_event(&booked, outcome, T0 + 1).await.unwrap();

    let mut new = message("ten_a", &["a@example.com"]);
    new.send_at = Some(T0 + 93_600_000);
    let replaced = ReplacedRun {
        tenant_id: "ten_a".into(),
        rule_id: "rul_1".into(),
        event_id: booked.clone(),
        message_id: old.id.clone(),
        why: "replaced by the mail for appointment.rescheduled `a1-r1`".into(),
        status: "cancelled".into(),
    };
    let outcome = EventOutcome {
        runs: vec![(scheduled_run(&moved, &new), RunOutput::Message(Box::new(new.clone())))],
        replaced: vec![replaced],
        ..Default::default()
    };
    store.finish_business_event(&moved, outcome, T0 + 2).await.unwrap();
    // The old mail is cancelled (with an event saying why), its run says
    // so, and only the new run waits.
    let recipients = store.message_recipients("ten_a", &old.id).await.unwrap();
    assert_eq!(recipients[0].status, RecipientStatus::Cancelled);
    let events = store.message_event_rows("ten_a", &old.id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "cancelled").count(), 1);
    let old_run = &store.runs_of_event(&booked).await.unwrap()[0];
    assert_eq!(
        (old_run.status.as_str(), old_run.detail.as_deref()),
        ("cancelled", Some("replaced by the mail for appointment.rescheduled `a1-r1`"))
    );
    let waiting = store.scheduled_runs("ten_a", "a1", "rul_1").await.unwrap();
    assert_eq!(waiting.iter().map(|r| r.message_id.clone().unwrap()).collect::<Vec<_>>(), vec![new.id.clone()]);
    assert_eq!(store.get_message("ten_a", &new.id).await.unwrap().unwrap().send_at, Some(T0 + 93_600_000));

    // A node that processed the same event again, its run already stored,
    // replaces nothing: the mail the first one made keeps waiting.
    let again = message("ten_a", &["a@example.com"]);
    let raced = EventOutcome {
        runs: vec![(scheduled_run(&moved, &again), RunOutput::Message(Box::new(again.clone())))],
        replaced: vec![ReplacedRun {
            tenant_id: "ten_a".into(),
            rule_id: "rul_1".into(),
            event_id: moved.clone(),
            message_id: new.id.clone(),
            why: "replaced".into(),
            status: "cancelled".into(),
        }],
        ..Default::default()
    };
    store.finish_business_event(&moved, raced, T0 + 3).await.unwrap();
    assert_eq!(store.message_recipients("ten_a", &new.id).await.unwrap()[0].status, RecipientStatus::Scheduled);
    assert!(store.get_message("ten_a", &again.id).await.unwrap().is_none(), "the raced mail is not queued");
}

async fn workflow_runs_and_escalations(engine: Engine) {
    use epistle_store::{
        Engagement, EventAccepted, EventOutcome, NewBusinessEvent, NewEscalation, NewWorkflowRun, RuleRun, RunAdvance,
        RunOutput, WorkflowRecord,
    };
    let (store, _db) = store(engine).await;
    let w = WorkflowRecord {
        id: "wfl_1".into(),
        tenant_id: "ten_a".into(),
        name: "onboarding".into(),
        trigger: "user.created".into(),
        spec: serde_json::json!({"name": "onboarding"}),
        enabled: true,
        created_at: T0,
        updated_at: T0,
    };
    store.create_workflow(&w).await.unwrap();
    let mut w2 = w.clone();
    w2.name = "onboarding v2".into();
    assert!(store.update_workflow(&w2).await.unwrap());
    assert_eq!(store.workflow("ten_a", "wfl_1").await.unwrap().unwrap().name, "onboarding v2");
    assert!(store.workflow("ten_b", "wfl_1").await.unwrap().is_none(), "tenants see their own");

    let ev = NewBusinessEvent {
        tenant_id: "ten_a".into(),
        event_type: "user.created".into(),
        key: "u1".into(),
        entity: "u1".into(),
        data: serde_json::json!({}),
        occurred_at: T0,
        source: "http".into(),
    };
    let EventAccepted::New(eid) = store.accept_event(&ev, T0).await.unwrap() else { panic!("new") };
    // The event's outcome starts a run and an escalated rule mail; replayed,
    // it adds neither again.
    let m1 = message("ten_a", &["a@example.com"]);
    let outcome = |m: &NewMessage| EventOutcome {
        replaced: vec![],
        runs: vec![(
            RuleRun {
                rule_id: "rul_1".into(),
                event_id: eid.clone(),
                tenant_id: "ten_a".into(),
                entity: "u1".into(),
                status: "queued".into(),
                message_id: Some(m.id.clone()),
                detail: None,
                created_at: T0,
                updated_at: T0,
            },
            RunOutput::Message(Box::new(m.clone())),
        )],
        escalations: vec![NewEscalation {
            id: epistle_core::ids::new_id("esc"),
            tenant_id: "ten_a".into(),
            rule_id: "rul_1".into(),
            message_id: m.id.clone(),
            context: serde_json::json!({"data": {"n": 1}}),
            due_at: T0 + 1000,
        }],
        workflow_runs: vec![NewWorkflowRun {
            id: epistle_core::ids::new_id("wfr"),
            tenant_id: "ten_a".into(),
            workflow_id: "wfl_1".into(),
            event_id: eid.clone(),
            entity: "u1".into(),
            state: serde_json::json!({"steps": {}}),
            due_at: T0,
        }],
        dead_letters: vec![],
    };
    store.finish_business_event(&eid, outcome(&m1), T0).await.unwrap();
    store.finish_business_event(&eid, outcome(&message("ten_a", &["a@example.com"])), T0 + 1).await.unwrap();
    assert_eq!(store.workflow_runs("ten_a", "wfl_1", None, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.escalations_of(&m1.id).await.unwrap().len(), 1);

    // Claims are leased; a commit at a stale version queues nothing.
    let claimed = store.claim_workflow_runs(T0 + 1, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.claim_workflow_runs(T0 + 2, 60_000, 10).await.unwrap().is_empty());
    let run = claimed[0].clone();
    let step = |m: NewMessage, due: i64| RunAdvance {
        status: "waiting".into(),
        step: 2,
        due_at: Some(due),
        state: serde_json::json!({"steps": {"hello": {"message_id": m.id}}}),
        history: vec![serde_json::json!({"kind": "sent"})],
        messages: vec![m],
        dead_letters: vec![],
    };
    let (m2, m3) = (message("ten_a", &["a@example.com"]), message("ten_a", &["a@example.com"]));
    assert!(store.advance_workflow_run(&run.id, run.version, step(m2.clone(), T0 + 5000), T0 + 3).await.unwrap());
    assert!(!store.advance_workflow_run(&run.id, run.version, step(m3.clone(), T0 + 5000), T0 + 4).await.unwrap());
    assert!(store.get_message("ten_a", &m2.id).await.unwrap().is_some());
    assert!(store.get_message("ten_a", &m3.id).await.unwrap().is_none(), "the stale commit sent nothing");
    let got = store.workflow_run("ten_a", &run.id).await.unwrap().unwrap();
    assert_eq!((got.step, got.due_at, got.version, got.history.len()), (2, Some(T0 + 5000), 1, 1));
    assert!(store.claim_workflow_runs(T0 + 4999, 60_000, 10).await.unwrap().is_empty(), "not due yet");
    let open = store.open_runs_of_entity("ten_a", "u1", &["wfl_1".into()]).await.unwrap();
    assert_eq!(open.len(), 1);
    let ended = RunAdvance { status: "exited".into(), step: 2, state: got.state.clone(), ..Default::default() };
    assert!(store.advance_workflow_run(&run.id, got.version, ended, T0 + 6).await.unwrap());
    assert!(store.open_runs_of_entity("ten_a", "u1", &["wfl_1".into()]).await.unwrap().is_empty());
    assert!(store.claim_workflow_runs(T0 + 10_000, 60_000, 10).await.unwrap().is_empty(), "an ended run waits no more");
    assert_eq!(store.workflow_runs("ten_a", "wfl_1", Some("exited"), None, 10).await.unwrap().len(), 1);
    assert!(store.workflow_runs("ten_a", "wfl_1", Some("waiting"), None, 10).await.unwrap().is_empty());
    let page = store.workflow_runs("ten_a", "wfl_1", None, Some((got.created_at, got.id.clone())), 10).await.unwrap();
    assert!(page.is_empty(), "nothing older than the only run");

    // Engagement: machine opens do not count, a person's click does.
    assert_eq!(store.message_engagement(&m1.id).await.unwrap().recipients, 1);
    let rid = epistle_core::token::recipient_id(&m1.id, 0);
    let e = |kind: &'static str, machine: bool| Engagement {
        recipient_id: rid.clone(),
        kind,
        detail: None,
        data: Some(format!(r#"{{"machine":{machine}}}"#)),
        at: T0 + 5,
    };
    store.insert_engagement(&[e("opened", true)]).await.unwrap();
    let seen = store.message_engagement(&m1.id).await.unwrap();
    assert!(!seen.opened && !seen.clicked && !seen.cancelled, "{seen:?}");
    store.insert_engagement(&[e("clicked", false)]).await.unwrap();
    let seen = store.message_engagement(&m1.id).await.unwrap();
    assert!(seen.opened && seen.clicked, "{seen:?}");

    // An escalation settles once; a postponed one is due again later.
    assert!(store.due_escalations(T0 + 999, 10).await.unwrap().is_empty());
    let due = store.due_escalations(T0 + 1000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let later = store.finish_escalation(
        &due[0].id,
        T0 + 1000,
        "waiting",
        "the mail waits",
        Some(T0 + 9000),
        None,
        None,
        T0 + 1000,
    );
    assert!(later.await.unwrap());
    // A decision taken on the old due time loses to the postponement.
    let stale = message("ten_a", &["boss@example.com"]);
    let lost = store.finish_escalation(&due[0].id, T0 + 1000, "sent", "x", None, Some(stale.clone()), None, T0 + 1001);
    assert!(!lost.await.unwrap());
    assert!(store.get_message("ten_a", &stale.id).await.unwrap().is_none());
    assert!(store.due_escalations(T0 + 8999, 10).await.unwrap().is_empty());
    let m4 = message("ten_a", &["boss@example.com"]);
    let m5 = message("ten_a", &["boss@example.com"]);
    assert!(
        store
            .finish_escalation(&due[0].id, T0 + 9000, "sent", "not clicked", None, Some(m4.clone()), None, T0 + 9000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_escalation(&due[0].id, T0 + 9000, "sent", "not clicked", None, Some(m5.clone()), None, T0 + 9001)
            .await
            .unwrap()
    );
    assert!(store.get_message("ten_a", &m4.id).await.unwrap().is_some());
    assert!(store.get_message("ten_a", &m5.id).await.unwrap().is_none());
    let esc = &store.escalations_of(&m1.id).await.unwrap()[0];
    assert_eq!((esc.status.as_str(), esc.escalation_message_id.as_deref()), ("sent", Some(m4.id.as_str())));
    assert!(store.due_escalations(T0 + 100_000, 10).await.unwrap().is_empty());

    assert!(store.delete_workflow("ten_a", "wfl_1").await.unwrap());
    assert!(!store.delete_workflow("ten_a", "wfl_1").await.unwrap());
}
