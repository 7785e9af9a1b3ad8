//! Escalations, digests and workflows on the injected clock: an unclicked
//! lead alert reaches the manager and a clicked one does not; digests go
//! at 08:00 in each rep's own time zone, with nothing sent to a rep with
//! nothing collected; a three-step workflow branches on a click, waits for
//! a time from its data, stops on `exit_on`, and runs to its end across a
//! restart and a downtime its timers fall into (they fire late, once).

use std::time::Duration;

use epistle_testkit::wait_for;
use serde_json::{Value, json};

use crate::helpers::*;

/// Posts an event and waits until the rules have acted on it.
async fn event(t: &TestApp, body: Value) -> Value {
    let (s, v) = post(t, "/v1/events", &body).await;
    assert_eq!(s, 202, "{v}");
    processed(t, v["id"].as_str().unwrap()).await
}

/// The tracked link of a mail, on the app's current address (the port
/// changes with a restart).
fn click_link(t: &TestApp, raw: &[u8]) -> String {
    let m = mail_parser::MessageParser::default().parse(raw).expect("a parseable message");
    let html = m.body_html(0).expect("an HTML part").to_string();
    let at = html.find("/t/c/").expect("a tracked link");
    let path = html[at..].split(['"', '\'', ' ', '>']).next().unwrap().replace("&amp;", "&");
    format!("{}{path}", t.base)
}

/// A person clicks (a minute after sending, with a browser's user agent,
/// so it is not taken for a link scanner) and the click is recorded.
async fn person_clicks(t: &TestApp, raw: &[u8], message_id: &str) {
    t.advance(Duration::from_secs(60));
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
    let r = browser.get(click_link(t, raw)).header("user-agent", chrome).send().await.unwrap();
    assert_eq!(r.status(), 302);
    wait_for("the click recorded", WAIT, || async {
        let v = t.get_json(&format!("/v1/messages/{message_id}")).await;
        v["events"].as_array().unwrap().iter().any(|e| e["type"] == "clicked").then_some(())
    })
    .await;
}

fn count_to(t: &TestApp, rcpt: &str) -> usize {
    t.sink.received().iter().filter(|m| m.rcpts.iter().any(|r| r == rcpt)).count()
}

fn mail_to(t: &TestApp, rcpt: &str) -> Vec<epistle_testkit::Received> {
    t.sink.received().into_iter().filter(|m| m.rcpts.iter().any(|r| r == rcpt)).collect()
}

#[tokio::test]
async fn an_alert_nobody_clicked_is_escalated_to_the_manager_once() {
    let t = spawn_app().await;
    for tpl in [
        json!({"name": "hot-lead", "subject": "Hot lead: {{ lead.name }}",
               "html": "<p><a href=\"https://crm.example/leads/{{ lead.id }}\">Open {{ lead.name }}</a></p>",
               "text": "Open https://crm.example/leads/{{ lead.id }}"}),
        json!({"name": "lead-escalation", "subject": "Not picked up: {{ lead.name }}",
               "text": "{{ rep.email }} has not opened {{ lead.name }} within {{ escalation.after }}."}),
    ] {
        assert_eq!(t.post("/v1/templates", &tpl).await.status(), 201);
    }
    let rule = json!({"name": "hot lead", "on": "lead.scored", "when": "data.lead.score >= 80",
                      "template": "hot-lead", "to": "{{ data.rep.email }}", "from": "CRM <crm@shop.example>",
                      "escalate": {"after": "30m", "unless": "clicked", "to": "{{ data.manager.email }}",
                                   "template": "lead-escalation"}});
    for (change, field) in [
        (json!({"unless": "replied"}), "escalate.unless"),
        (json!({"after": "soon"}), "escalate.after"),
        (json!({"after": "-5m"}), "escalate.after"),
        (json!({"to": "{{ data.manager.email"}), "escalate.to"),
        (json!({"template": "no-such-template"}), "escalate.template"),
    ] {
        let mut bad = rule.clone();
        for (k, v) in change.as_object().unwrap() {
            bad["escalate"][k] = v.clone();
        }
        let (s, v) = post(&t, "/v1/rules", &bad).await;
        assert_eq!((s, v["error"]["field"].as_str()), (422, Some(field)), "{v}");
    }
    let mut untracked = rule.clone();
    untracked["track_clicks"] = json!(false);
    let (s, v) = post(&t, "/v1/rules", &untracked).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("escalate.unless")), "{v}");
    let (s, v) = post(&t, "/v1/rules", &rule).await;
    assert_eq!(s, 201, "{v}");

    let lead = |key: &str, rep: &str| {
        json!({"type": "lead.scored", "key": key,
               "data": {"lead": {"id": key, "name": format!("Lead {key}"), "score": 90},
                        "rep": {"email": rep}, "manager": {"email": "boss@shop.example"}}})
    };
    let ann = event(&t, lead("l1", "ann@shop.example")).await;
    let bob = event(&t, lead("l2", "bob@shop.example")).await;
    let got = t.sink.wait_count(2, WAIT).await;
    assert_eq!(ann["runs"][0]["escalation"]["status"], "waiting", "{ann}");
    assert_eq!(ann["runs"][0]["escalation"]["due_at"], "2027-01-15T08:30:00Z", "{ann}");
    // Ann opens her alert's link; Bob does not.
    let ann_mail = got.iter().find(|m| m.rcpts == vec!["ann@shop.example".to_string()]).unwrap();
    person_clicks(&t, &ann_mail.data, ann["runs"][0]["message_id"].as_str().unwrap()).await;

    t.advance(Duration::from_secs(30 * 60));
    let a = escalation(&t, &ann["id"]).await;
    let b = escalation(&t, &bob["id"]).await;
    assert_eq!((a["status"].as_str(), a["detail"].as_str()), (Some("not_needed"), Some("the mail was clicked")));
    assert_eq!(b["status"], "sent", "{b}");
    let got = t.sink.wait_count(3, WAIT).await;
    let boss = got.iter().find(|m| m.rcpts == vec!["boss@shop.example".to_string()]).expect("the manager is told");
    assert_eq!(boss.header("Subject").as_deref(), Some("Not picked up: Lead l2"));
    assert!(boss.text().contains("bob@shop.example has not opened Lead l2 within 30m"), "{}", boss.text());
    let sent = t.get_json(&format!("/v1/messages/{}", b["message_id"].as_str().unwrap())).await;
    assert_eq!(sent["metadata"]["escalates"], bob["runs"][0]["message_id"], "{sent}");

    // Hours later, and after a restart: nothing more.
    let mut t = t;
    t.restart().await;
    t.advance(Duration::from_secs(3 * 3600));
    processed(&t, bob["id"].as_str().unwrap()).await;
    assert_eq!(count_to(&t, "boss@shop.example"), 1);
    assert_eq!(t.sink.received().len(), 3);
    t.stop().await;
}

/// The escalation of an event's first run, once it has settled.
async fn escalation(t: &TestApp, id: &Value) -> Value {
    let id = id.as_str().unwrap();
    wait_for("the escalation settled", WAIT, || async {
        let v = t.get_json(&format!("/v1/events/{id}")).await;
        let e = v["runs"][0]["escalation"].clone();
        (e["status"] != "waiting").then_some(e)
    })
    .await
}

fn deal(key: &str, rep: &str, tz: &str) -> Value {
    json!({"type": "deal.updated", "key": key,
           "data": {"deal": {"name": format!("Deal {key}")}, "rep": {"email": rep, "timezone": tz}}})
}

fn trial(user: &str) -> Value {
    json!({"type": "trial.started", "key": user,
           "data": {"user": {"email": format!("{user}@customer.example"), "name": user},
                    "trial_ends_at": "2027-01-22T08:00:00Z"}})
}

async fn runs_by_entity(t: &TestApp, workflow: &str) -> std::collections::HashMap<String, Value> {
    let v = t.get_json(&format!("/v1/workflows/{workflow}/runs")).await;
    v["data"].as_array().unwrap().iter().map(|r| (r["entity"].as_str().unwrap().to_string(), r.clone())).collect()
}

#[tokio::test]
async fn digests_and_a_three_step_workflow_run_to_the_end_across_a_restart() {
    let mut t = spawn_app().await;
    for tpl in [
        json!({"name": "deal-digest", "subject": "{{ count }} deal update{{ 's' if count != 1 }}",
               "text": "{% for e in events %}{{ e.deal.name }}\n{% endfor %}"}),
        json!({"name": "trial-welcome", "subject": "Welcome, {{ user.name }}",
               "html": "<p><a href=\"https://acme.example/start\">Get started</a></p>", "text": "Get started"}),
        json!({"name": "trial-nudge", "subject": "Need a hand, {{ user.name }}?", "text": "Reply to this mail."}),
        json!({"name": "trial-ending", "subject": "Your trial ends tomorrow", "text": "Upgrade now."}),
    ] {
        let r = t.post("/v1/templates", &tpl).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let digest = json!({"name": "daily deal digest", "on": "deal.updated", "template": "deal-digest",
                        "to": "{{ data.rep.email }}", "from": "CRM <crm@shop.example>",
                        "digest": {"schedule": "0 8 * * *", "timezone": "{{ data.rep.timezone }}"}});
    let mut bad = digest.clone();
    bad["digest"]["schedule"] = json!("at eight");
    assert_eq!(post(&t, "/v1/rules", &bad).await.1["error"]["field"], "digest.schedule");
    bad["digest"] = json!({"schedule": "0 8 * * *", "timezone": "Mars/Olympus"});
    assert_eq!(post(&t, "/v1/rules", &bad).await.1["error"]["field"], "digest.timezone");
    bad["digest"] = json!({"schedule": "0 8 * * *"});
    bad["batch"] = json!("15m");
    assert_eq!(post(&t, "/v1/rules", &bad).await.1["error"]["field"], "digest");
    assert_eq!(post(&t, "/v1/rules", &digest).await.0, 201);

    let workflow = json!({
        "name": "trial onboarding", "trigger": "trial.started", "exit_on": ["trial.converted"],
        "from": "Acme <hello@acme.example>",
        "steps": [
            {"id": "welcome", "send": {"template": "trial-welcome", "to": "{{ data.user.email }}"}},
            {"id": "pause", "wait": "2d"},
            {"id": "engaged", "if": "steps.welcome.clicked", "then": "exit"},
            {"id": "nudge", "send": {"template": "trial-nudge", "to": "{{ data.user.email }}"}},
            {"id": "before-end", "until": "{{ data.trial_ends_at }}", "offset": "-1d"},
            {"id": "last-chance", "send": {"template": "trial-ending", "to": "{{ data.user.email }}"}}
        ]
    });
    let (s, w) = post(&t, "/v1/workflows", &workflow).await;
    assert_eq!(s, 201, "{w}");
    let wid = w["id"].as_str().unwrap().to_string();

    // 2027-01-15 08:00 UTC: 03:00 in New York, 17:00 in Tokyo.
    let ann1 = event(&t, deal("d1", "ann@shop.example", "America/New_York")).await;
    event(&t, deal("d2", "ann@shop.example", "America/New_York")).await;
    event(&t, deal("d3", "bob@shop.example", "Asia/Tokyo")).await;
    let bad_tz = event(&t, deal("d4", "cat@shop.example", "Nowhere/Land")).await;
    assert_eq!(ann1["runs"][0]["status"], "batched");
    assert!(ann1["runs"][0]["detail"].as_str().unwrap().ends_with("2027-01-15T13:00:00Z"), "{ann1}");
    assert_eq!(bad_tz["runs"][0]["status"], "failed");
    assert!(bad_tz["runs"][0]["detail"].as_str().unwrap().contains("IANA"), "{bad_tz}");

    for u in ["u1", "u2", "u3"] {
        event(&t, trial(u)).await;
    }
    // u4 converted half an hour into its trial, but the broker delivered
    // that before the start: the run stops before its first mail.
    let mut converted = json!({"type": "trial.converted", "key": "u4-converted", "entity": "u4", "data": {},
                               "occurred_at": "2027-01-15T07:30:00Z"});
    event(&t, converted.clone()).await;
    let mut late_start = trial("u4");
    late_start["occurred_at"] = json!("2027-01-15T07:00:00Z");
    event(&t, late_start).await;
    let welcomes = t.sink.wait_count(3, WAIT).await;
    // u1 clicks its welcome; u3 converts (the event stops its run).
    let u1 = welcomes.iter().find(|m| m.rcpts == vec!["u1@customer.example".to_string()]).unwrap();
    let runs = runs_by_entity(&t, &wid).await;
    let u1_message = runs["u1"]["steps"]["welcome"]["message_id"].as_str().unwrap().to_string();
    person_clicks(&t, &u1.data, &u1_message).await;
    event(&t, json!({"type": "trial.converted", "key": "u3-converted", "entity": "u3", "data": {}})).await;
    let runs = runs_by_entity(&t, &wid).await;
    assert_eq!(runs["u3"]["status"], "exited", "{}", runs["u3"]);
    assert_eq!(runs["u4"]["status"], "exited", "{}", runs["u4"]);
    assert!(runs["u4"]["steps"].as_object().unwrap().is_empty(), "{}", runs["u4"]);
    // A conversion from before the trial does not stop it.
    converted["key"] = json!("u5-old-conversion");
    converted["entity"] = json!("u5");
    converted["occurred_at"] = json!("2026-06-01T00:00:00Z");
    event(&t, converted).await;
    event(&t, trial("u5")).await;
    t.sink.wait_count(4, WAIT).await;
    assert_eq!(runs["u2"]["status"], "waiting");
    assert_eq!(runs["u2"]["next_step"], "engaged");
    assert_eq!(runs["u2"]["due_at"], "2027-01-17T08:00:00Z");

    // A restart changes nothing; at 13:00 UTC (08:00 in New York) Ann's
    // digest goes with both deals.
    t.restart().await;
    t.advance(Duration::from_secs(5 * 3600));
    t.sink.wait_count(5, WAIT).await;
    let ann = mail_to(&t, "ann@shop.example");
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].header("Subject").as_deref(), Some("2 deal updates"));
    assert!(ann[0].text().contains("Deal d1") && ann[0].text().contains("Deal d2"), "{}", ann[0].text());

    // Down for two days: Bob's digest (08:00 in Tokyo, 23:00 UTC) and the
    // workflow's two-day wait fall into the downtime and fire when it is
    // back, late, once.
    t.halt().await;
    t.advance(Duration::from_secs(2 * 86_400));
    t.resume().await;
    t.sink.wait_count(8, WAIT).await;
    let bob = mail_to(&t, "bob@shop.example");
    assert_eq!((bob.len(), bob[0].header("Subject").as_deref()), (1, Some("1 deal update")));
    let runs = wait_for("u1 and u2 past the branch", WAIT, || async {
        let runs = runs_by_entity(&t, &wid).await;
        (runs["u1"]["status"] == "completed" && runs["u2"]["next_step"] == "last-chance").then_some(runs)
    })
    .await;
    assert_eq!(runs["u2"]["due_at"], "2027-01-21T08:00:00Z", "{}", runs["u2"]);
    let kinds: Vec<&str> =
        runs["u2"]["history"].as_array().unwrap().iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sent", "waiting", "resumed", "branch", "sent", "waiting"], "{}", runs["u2"]);
    assert_eq!(mail_to(&t, "u2@customer.example")[1].header("Subject").as_deref(), Some("Need a hand, u2?"));

    // The workflow changes while runs wait: a step is put first. Runs go on
    // from the step they were waiting for, by name: nothing is sent again.
    let mut changed = workflow.clone();
    changed["steps"].as_array_mut().unwrap().insert(0, json!({"id": "intro", "wait": "1h"}));
    let r = t.client.put(t.url(&format!("/v1/workflows/{wid}"))).bearer_auth(KEY).json(&changed).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The day before the trial ends: the last mail, and the run is done.
    t.restart().await;
    t.advance(Duration::from_secs(4 * 86_400));
    t.sink.wait_count(10, WAIT).await;
    let runs = wait_for("u2 and u5 done", WAIT, || async {
        let runs = runs_by_entity(&t, &wid).await;
        (runs["u2"]["status"] == "completed" && runs["u5"]["status"] == "completed").then_some(runs)
    })
    .await;
    assert!(runs["u2"]["due_at"].is_null());
    let done = t.get_json(&format!("/v1/workflows/{wid}/runs?status=completed")).await;
    assert_eq!(done["data"].as_array().unwrap().len(), 3, "{done}");
    // Each mail once: u1 the welcome only (it clicked), u2 and u5 all
    // three, u3 the welcome only (it converted), u4 nothing (converted
    // before its start arrived); one digest each for Ann and Bob and none
    // for a day with nothing collected.
    t.advance(Duration::from_secs(2 * 86_400));
    event(&t, deal("d5", "bob@shop.example", "Asia/Tokyo")).await;
    let counts: Vec<usize> =
        ["u1", "u2", "u3", "u4", "u5"].iter().map(|u| count_to(&t, &format!("{u}@customer.example"))).collect();
    assert_eq!(counts, [1, 3, 1, 0, 3]);
    assert_eq!(count_to(&t, "ann@shop.example"), 1);
    assert_eq!(t.sink.received().len(), 10);
    let dead = t.get_json("/v1/dead-letters").await;
    assert!(dead["data"][0]["reason"].as_str().unwrap().contains("daily deal digest"), "{dead}");
    t.stop().await;
}

#[tokio::test]
async fn bad_workflows_say_what_to_fix() {
    let t = spawn_app().await;
    let good = json!({"name": "w", "trigger": "user.created", "from": "A <a@acme.example>",
                      "steps": [{"id": "hello", "send": {"template": "welcome", "to": "{{ data.email }}"}},
                                {"id": "later", "wait": "1d"},
                                {"id": "check", "if": "steps.hello.opened", "else": "hello"}]});
    let (s, v) = post(&t, "/v1/workflows", &good).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"steps": []}), "steps"),
        (json!({"trigger": "user created"}), "trigger"),
        (json!({"exit_on": ["ok", "not ok"]}), "exit_on[1]"),
        (json!({"steps": [{"id": "a", "wait": "1d"}, {"id": "a", "wait": "2d"}]}), "steps[1].id"),
        (json!({"steps": [{"id": "exit", "wait": "1d"}]}), "steps[0].id"),
        (json!({"steps": [{"id": "a", "wait": "1d", "exit": true}]}), "steps[0]"),
        (json!({"steps": [{"id": "a"}]}), "steps[0]"),
        (json!({"steps": [{"id": "a", "wait": "tomorrow"}]}), "steps[0].wait"),
        (json!({"steps": [{"id": "a", "if": "data.x >", "then": "exit"}]}), "steps[0].if"),
        (json!({"steps": [{"id": "a", "if": "data.x", "then": "nowhere"}]}), "steps[0].then"),
        (json!({"steps": [{"id": "a", "wait": "1d", "then": "exit"}]}), "steps[0]"),
        (
            json!({"steps": [{"id": "a", "send": {"template": "welcome", "to": "x@y.example"}},
                             {"id": "b", "if": "not steps.a.clicked", "then": "a"}]}),
            "steps[1].then",
        ),
        (json!({"steps": [{"id": "a", "wait": "3651d"}]}), "steps[0].wait"),
        (json!({"steps": [{"id": "a", "wait": "1d", "offset": "-1h"}]}), "steps[0].offset"),
        (
            json!({"from": null, "steps": [{"id": "a", "send": {"template": "welcome", "to": "x@y.example"}}]}),
            "steps[0].send.from",
        ),
        (json!({"steps": [{"id": "a", "send": {"template": "nope", "to": "x@y.example"}}]}), "steps[0].send.template"),
        (json!({"steps": [{"id": "a", "send": {"template": "welcome", "to": "{{ data.email"}}]}), "steps[0].send.to"),
        (json!({"stream": "marketing"}), "stream"),
    ];
    for (change, field) in cases {
        let mut bad = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                bad.as_object_mut().unwrap().remove(k);
            } else {
                bad[k] = v.clone();
            }
        }
        let (s, v) = post(&t, "/v1/workflows", &bad).await;
        assert_eq!((s, v["error"]["field"].as_str()), (422, Some(field)), "{change}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = t.post("/v1/workflows", &json!({"name": "w", "trigger": "x", "steps": [], "colour": "red"})).await;
    assert_eq!(r.status(), 422);
    let r = t.get(&format!("/v1/workflows/{id}/runs?status=sleeping")).await;
    assert_eq!(r.status(), 422);
    let r = t.get(&format!("/v1/workflows/{id}/runs?order=asc")).await;
    assert_eq!(r.status(), 422);
    assert_eq!(t.get("/v1/workflows/wfl_nope/runs").await.status(), 404);
    assert_eq!(t.get(&format!("/v1/workflows/{id}/runs/wfr_nope")).await.status(), 404);
    assert_eq!(t.get_json("/v1/workflows").await["data"].as_array().unwrap().len(), 1);
    assert_eq!(t.delete(&format!("/v1/workflows/{id}")).await.status(), 204);
    assert_eq!(t.get(&format!("/v1/workflows/{id}")).await.status(), 404);
    t.stop().await;
}
