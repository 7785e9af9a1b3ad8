//! Workflows: a trigger event and a list of steps.
//!
//! ```json
//! {"name": "onboarding", "trigger": "user.signed_up", "exit_on": ["user.upgraded"],
//!  "from": "Acme <hello@acme.example>",
//!  "steps": [
//!    {"id": "welcome", "send": {"template": "welcome", "to": "{{ data.email }}"}},
//!    {"id": "pause", "wait": "2d"},
//!    {"id": "engaged", "if": "steps.welcome.clicked", "then": "exit"},
//!    {"id": "nudge", "send": {"template": "nudge", "to": "{{ data.email }}"}}]}
//! ```
//!
//! Steps: `send` (a mail, tracked unless it says otherwise), `wait` (a
//! duration) or `until` (a time from the data, with an `offset`), `if`
//! (a condition on the data or on what the recipients did with an earlier
//! step's mail: `steps.welcome.opened`, `steps.welcome.clicked`; it goes
//! to `then` when true and `else` when false, each a step id, `exit`, or
//! absent for the next step), and `exit`.
//!
//! Each trigger event starts one run. A run's state is stored after every
//! stretch of steps, with the mail those steps queued, in one transaction
//! guarded by the run's version: a step sends once, even when the process
//! dies or two nodes race. A wait is a due time in the store, so after
//! downtime it fires late, once. An event of an `exit_on` type about the
//! same entity stops the run.

use epistle_core::timefmt;
use epistle_render::expr::Expressions;
use epistle_store::{BusinessEvent, DeadLetter, EventOutcome, NewWorkflowRun, RunAdvance, StoreError, WorkflowRun};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::rules::{MailError, MailSpec, TenantPlan, build_mail, check_event_type, parse_offset, time_of};
use crate::state::AppState;

/// The most steps a run takes at once: more means a loop without a wait.
const MAX_STEPS_AT_ONCE: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    /// The event type that starts a run.
    pub trigger: String,
    /// A condition over the trigger event; absent is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Event types that stop a run about the same entity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_on: Vec<String>,
    /// The sender of `send` steps that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub steps: Vec<StepSpec>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<MailSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exit: bool,
}

enum Kind<'a> {
    Send(&'a MailSpec),
    Wait(&'a str),
    Until(&'a str, Option<&'a str>),
    If(&'a str, Option<&'a str>, Option<&'a str>),
    Exit,
}

impl StepSpec {
    fn kind(&self) -> Result<Kind<'_>, String> {
        let mut kinds = vec![];
        if let Some(m) = &self.send {
            kinds.push(Kind::Send(m));
        }
        if let Some(w) = &self.wait {
            kinds.push(Kind::Wait(w));
        }
        if let Some(u) = &self.until {
            kinds.push(Kind::Until(u, self.offset.as_deref()));
        }
        if let Some(c) = &self.condition {
            kinds.push(Kind::If(c, self.then.as_deref(), self.otherwise.as_deref()));
        }
        if self.exit {
            kinds.push(Kind::Exit);
        }
        if kinds.len() != 1 {
            return Err(format!(
                "step `{}` must be exactly one of `send`, `wait`, `until`, `if`, `exit` (it has {})",
                self.id,
                kinds.len()
            ));
        }
        Ok(kinds.remove(0))
    }
}

fn check_step_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ApiError::invalid(field, format!("`{field}` must be letters, digits, `_` and `-` (at most 64)")));
    }
    if id == "exit" {
        return Err(ApiError::invalid(field, "`exit` is reserved (a branch to `exit` ends the run)"));
    }
    Ok(())
}

impl WorkflowSpec {
    /// Checks everything that can be checked before an event comes.
    pub fn check(&self, x: &Expressions) -> Result<(), ApiError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(ApiError::invalid("name", "give the workflow a `name` (at most 200 characters)"));
        }
        check_event_type("trigger", &self.trigger)?;
        for (i, t) in self.exit_on.iter().enumerate() {
            check_event_type(&format!("exit_on[{i}]"), t)?;
        }
        if let Some(w) = &self.when {
            x.check_condition(w)
                .map_err(|e| ApiError::invalid("when", format!("`when` is not a valid expression: {e}")))?;
        }
        if self.steps.is_empty() || self.steps.len() > 100 {
            return Err(ApiError::invalid("steps", "give between 1 and 100 `steps`"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            let f = format!("steps[{i}].id");
            check_step_id(&f, &s.id)?;
            if !ids.insert(s.id.as_str()) {
                return Err(ApiError::invalid(f, format!("two steps are called `{}`; step ids must be unique", s.id)));
            }
        }
        for (i, s) in self.steps.iter().enumerate() {
            let at = format!("steps[{i}]");
            match s.kind().map_err(|e| ApiError::invalid(&at, e))? {
                Kind::Send(m) => {
                    let mut m = m.clone();
                    m.from = m.from.or_else(|| self.from.clone());
                    if m.from.is_none() {
                        return Err(ApiError::invalid(
                            format!("{at}.send.from"),
                            "no sender: give `from` on the step or on the workflow",
                        ));
                    }
                    m.check(x, &format!("{at}.send."))?;
                }
                Kind::Wait(w) => match parse_offset(w) {
                    Ok(ms) if ms > 0 => {}
                    Ok(_) => return Err(ApiError::invalid(format!("{at}.wait"), "`wait` is a delay such as `2d`")),
                    Err(e) => return Err(ApiError::invalid(format!("{at}.wait"), e)),
                },
                Kind::Until(u, offset) => {
                    x.check_text(u).map_err(|e| {
                        ApiError::invalid(format!("{at}.until"), format!("`until` is not a valid template line: {e}"))
                    })?;
                    if let Some(o) = offset {
                        parse_offset(o).map_err(|e| ApiError::invalid(format!("{at}.offset"), e))?;
                    }
                }
                Kind::If(c, then, otherwise) => {
                    x.check_condition(c).map_err(|e| {
                        ApiError::invalid(format!("{at}.if"), format!("`if` is not a valid expression: {e}"))
                    })?;
                    for (name, target) in [("then", then), ("else", otherwise)] {
                        let Some(t) = target.filter(|t| *t != "exit") else { continue };
                        let Some(to) = self.steps.iter().position(|s| s.id == t) else {
                            return Err(ApiError::invalid(
                                format!("{at}.{name}"),
                                format!("no step `{t}`; name a step of this workflow or `exit`"),
                            ));
                        };
                        // Going back repeats steps: without a wait between,
                        // that would send as fast as the loop turns.
                        if to <= i && !self.steps[to..=i].iter().any(|s| s.wait.is_some()) {
                            return Err(ApiError::invalid(
                                format!("{at}.{name}"),
                                format!("going back to `{t}` loops without a `wait` step; put one in the loop"),
                            ));
                        }
                    }
                }
                Kind::Exit => {}
            }
            if s.offset.is_some() && s.until.is_none() {
                return Err(ApiError::invalid(format!("{at}.offset"), "`offset` goes with `until`"));
            }
            if (s.then.is_some() || s.otherwise.is_some()) && s.condition.is_none() {
                return Err(ApiError::invalid(&at, "`then` and `else` go with `if`"));
            }
        }
        if let Some(s) = &self.stream
            && s != "transactional"
            && s != "broadcast"
        {
            return Err(ApiError::invalid("stream", "`stream` is `transactional` or `broadcast`"));
        }
        Ok(())
    }

    /// The templates its steps send (to check they exist).
    pub fn templates(&self) -> impl Iterator<Item = (usize, &str)> {
        self.steps.iter().enumerate().filter_map(|(i, s)| s.send.as_ref().map(|m| (i, m.template.as_str())))
    }
}

fn dead(tenant_id: &str, workflow_id: &str, reason: String, payload: String, now: i64) -> DeadLetter {
    DeadLetter {
        id: epistle_core::ids::new_id("dlq"),
        tenant_id: tenant_id.into(),
        source: "workflow".into(),
        reason,
        payload,
        event_id: None,
        rule_id: Some(workflow_id.into()),
        created_at: now,
    }
}

fn entry(step: Option<&str>, kind: &str, detail: String, now: i64) -> Value {
    json!({"step": step, "kind": kind, "detail": detail, "at": timefmt::rfc3339(now)})
}

/// What an event does to workflows: stops the runs about its entity of
/// workflows with its type in `exit_on`, and starts a run of each enabled
/// workflow it triggers (stored with the event's outcome, so once).
pub(crate) async fn on_event(
    st: &AppState,
    x: &Expressions,
    e: &BusinessEvent,
    ctx: &Value,
    plan: &TenantPlan,
    outcome: &mut EventOutcome,
    now: i64,
) -> Result<(), StoreError> {
    let exiting: Vec<String> =
        plan.workflows.iter().filter(|(_, s)| s.exit_on.contains(&e.event_type)).map(|(w, _)| w.id.clone()).collect();
    if !exiting.is_empty() {
        for run in st.store.open_runs_of_entity(&e.tenant_id, &e.entity, &exiting).await? {
            let why = format!("stopped by {} `{}`", e.event_type, e.key);
            exit_run(st, run, &why, now).await?;
        }
    }
    for (w, spec) in plan.workflows.iter().filter(|(w, s)| w.enabled && s.trigger == e.event_type) {
        if let Some(cond) = &spec.when {
            match x.condition(cond, ctx) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    let reason = format!("workflow `{}`: `when` ({cond}): {err}", w.name);
                    let mut d = dead(&e.tenant_id, &w.id, reason, e.data.to_string(), now);
                    d.event_id = Some(e.id.clone());
                    outcome.dead_letters.push(d);
                    continue;
                }
            }
        }
        outcome.workflow_runs.push(NewWorkflowRun {
            id: epistle_core::ids::new_id("wfr"),
            tenant_id: e.tenant_id.clone(),
            workflow_id: w.id.clone(),
            event_id: e.id.clone(),
            entity: e.entity.clone(),
            state: json!({"data": ctx["data"], "event": ctx["event"], "steps": {}, "trigger_at": e.occurred_at}),
            due_at: now,
        });
    }
    Ok(())
}

/// Ends a run that has not ended, whatever step it is at.
async fn exit_run(st: &AppState, mut run: WorkflowRun, why: &str, now: i64) -> Result<(), StoreError> {
    for _ in 0..5 {
        let mut history = run.history.clone();
        history.push(entry(None, "exited", why.to_string(), now));
        let a = RunAdvance {
            status: "exited".into(),
            step: run.step,
            due_at: None,
            state: run.state.clone(),
            history,
            ..Default::default()
        };
        if st.store.advance_workflow_run(&run.id, run.version, a, now).await? {
            return Ok(());
        }
        match st.store.workflow_run(&run.tenant_id, &run.id).await? {
            Some(r) if r.due_at.is_some() => run = r,
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Moves forward the runs whose time has come; how many.
/// How many moved.
pub(crate) async fn advance_due(st: &AppState, x: &Expressions, now: i64, lease_ms: i64) -> Result<usize, StoreError> {
    let runs = st.store.claim_workflow_runs(now, lease_ms, 50).await?;
    // Many runs of a round belong to the same workflow: read each once.
    let mut specs: std::collections::HashMap<String, Result<WorkflowSpec, String>> = Default::default();
    let mut n = 0;
    for run in runs {
        if !specs.contains_key(&run.workflow_id) {
            let spec = match st.store.workflow(&run.tenant_id, &run.workflow_id).await? {
                Some(w) => serde_json::from_value::<WorkflowSpec>(w.spec).map_err(|e| e.to_string()),
                None => Err("the workflow was deleted".to_string()),
            };
            specs.insert(run.workflow_id.clone(), spec);
        }
        let spec = specs[&run.workflow_id].clone();
        if advance(st, x, run, spec, now).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Runs a run's steps until it waits or ends, and commits; false when
/// nothing was committed (it is tried again when its claim runs out).
async fn advance(
    st: &AppState,
    x: &Expressions,
    run: WorkflowRun,
    spec: Result<WorkflowSpec, String>,
    now: i64,
) -> Result<bool, StoreError> {
    let mut state = run.state.clone();
    if !state["steps"].is_object() {
        state["steps"] = json!({});
    }
    let mut history = run.history.clone();
    let mut a = RunAdvance { status: "waiting".into(), step: run.step, ..Default::default() };
    let spec = match spec {
        Ok(s) => s,
        Err(why) => {
            history.push(entry(None, "failed", why, now));
            a.status = "failed".into();
            return commit(st, &run, a, state, history, now).await;
        }
    };
    // Stopped by an `exit_on` event stored before the run, or processed
    // before the run was committed (brokers reorder, nodes race).
    if !spec.exit_on.is_empty() {
        let since = state["trigger_at"].as_i64().unwrap_or(i64::MIN);
        if let Some(x) =
            st.store.entity_event_since(&run.tenant_id, &run.entity, &spec.exit_on, since, &run.event_id).await?
        {
            history.push(entry(None, "exited", format!("stopped by {} `{}`", x.event_type, x.key), now));
            a.status = "exited".into();
            return commit(st, &run, a, state, history, now).await;
        }
    }
    if let Some(due) = run.due_at
        && run.step > 0
        && now - due > 60_000
    {
        let late = (now - due) / 1000;
        history.push(entry(None, "resumed", format!("due at {}, {late} s late", timefmt::rfc3339(due)), now));
    }
    // What the recipients did with the mail of earlier steps.
    let mut steps_ctx = state["steps"].clone();
    if let Value::Object(m) = &mut steps_ctx {
        for v in m.values_mut() {
            if let Some(id) = v["message_id"].as_str() {
                let seen = st.store.message_engagement(id).await?;
                v["sent"] = json!(true);
                v["opened"] = json!(seen.opened);
                v["clicked"] = json!(seen.clicked);
            }
        }
    }
    let mut ctx = json!({"data": state["data"], "event": state["event"], "steps": steps_ctx,
                         "run": {"id": run.id, "workflow": run.workflow_id}});
    let payload_text = json!({"run": run.id, "event": run.event_id, "data": state["data"]}).to_string();
    let payload = || payload_text.clone();
    // Where to go on: the step named when the run stopped to wait (so a
    // workflow changed meanwhile does not repeat or skip steps), else by
    // position.
    let mut idx = usize::try_from(run.step).unwrap_or(usize::MAX);
    if let Some(next) = state["next_step"].as_str() {
        match spec.steps.iter().position(|s| s.id == next) {
            Some(i) => idx = i,
            None => {
                history.push(entry(None, "failed", format!("step `{next}` is no longer in the workflow"), now));
                a.status = "failed".into();
                return commit(st, &run, a, state, history, now).await;
            }
        }
    }
    let mut taken = 0;
    loop {
        taken += 1;
        if taken > MAX_STEPS_AT_ONCE {
            let why = format!("more than {MAX_STEPS_AT_ONCE} steps at once: a branch loops back without a wait");
            // Nothing of this stretch is sent.
            a.messages.clear();
            a.dead_letters.push(dead(
                &run.tenant_id,
                &run.workflow_id,
                format!("workflow `{}`: {why}", spec.name),
                payload(),
                now,
            ));
            history.push(entry(None, "failed", why, now));
            a.status = "failed".into();
            break;
        }
        let Some(step) = spec.steps.get(idx) else {
            history.push(entry(None, "completed", "after the last step".into(), now));
            a.status = "completed".into();
            break;
        };
        let sid = Some(step.id.as_str());
        let kind = match step.kind() {
            Ok(k) => k,
            Err(why) => {
                history.push(entry(sid, "failed", why, now));
                a.status = "failed".into();
                break;
            }
        };
        match kind {
            Kind::Send(mail) => {
                let mut mail = mail.clone();
                mail.from = mail.from.or_else(|| spec.from.clone());
                mail.stream = mail.stream.or_else(|| spec.stream.clone());
                // Conditions on engagement need tracked mail.
                mail.track_opens = mail.track_opens.or(Some(true));
                mail.track_clicks = mail.track_clicks.or(Some(true));
                let mut data = match &state["data"] {
                    Value::Object(m) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                data.entry("event").or_insert_with(|| state["event"].clone());
                data.insert("workflow".into(), json!({"run": run.id, "step": step.id}));
                let mut metadata = serde_json::Map::new();
                metadata.insert("workflow".into(), json!(run.workflow_id));
                metadata.insert("workflow_run".into(), json!(run.id));
                metadata.insert("step".into(), json!(step.id));
                match build_mail(st, x, &run.tenant_id, &mail, &ctx, None, data, metadata, None, now).await {
                    Ok(m) => {
                        state["steps"][&step.id] = json!({"message_id": m.id, "at": timefmt::rfc3339(now)});
                        ctx["steps"][&step.id] =
                            json!({"message_id": m.id, "sent": true, "opened": false, "clicked": false});
                        let mut h = entry(
                            sid,
                            "sent",
                            format!(
                                "to {}",
                                m.recipients.iter().map(|r| r.email.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            now,
                        );
                        h["message_id"] = json!(m.id);
                        history.push(h);
                        a.messages.push(m);
                        idx += 1;
                    }
                    Err(MailError::Transient(why)) => {
                        tracing::warn!(run = %run.id, reason = %why, "workflow step not run now; trying again");
                        return Ok(false);
                    }
                    Err(MailError::Refused(why)) => {
                        let reason = format!("workflow `{}`: step `{}`: {why}", spec.name, step.id);
                        a.dead_letters.push(dead(&run.tenant_id, &run.workflow_id, reason, payload(), now));
                        history.push(entry(sid, "failed", why, now));
                        a.status = "failed".into();
                        break;
                    }
                }
            }
            Kind::Wait(w) => {
                let ms = parse_offset(w).unwrap_or(0).max(0);
                a.due_at = Some(now + ms);
                history.push(entry(sid, "waiting", format!("until {}", timefmt::rfc3339(now + ms)), now));
                idx += 1;
                break;
            }
            Kind::Until(line, offset) => {
                let t = time_of(x, "until", line, &ctx)
                    .and_then(|t| Ok(t + offset.map(parse_offset).transpose()?.unwrap_or(0)));
                match t {
                    Ok(t) if t > now => {
                        a.due_at = Some(t);
                        history.push(entry(sid, "waiting", format!("until {}", timefmt::rfc3339(t)), now));
                        idx += 1;
                        break;
                    }
                    Ok(t) => {
                        history.push(entry(sid, "passed", format!("{} had passed", timefmt::rfc3339(t)), now));
                        idx += 1;
                    }
                    Err(why) => {
                        let reason = format!("workflow `{}`: step `{}`: {why}", spec.name, step.id);
                        a.dead_letters.push(dead(&run.tenant_id, &run.workflow_id, reason, payload(), now));
                        history.push(entry(sid, "failed", why, now));
                        a.status = "failed".into();
                        break;
                    }
                }
            }
            Kind::If(cond, then, otherwise) => {
                let truth = match x.condition(cond, &ctx) {
                    Ok(t) => t,
                    Err(why) => {
                        let reason = format!("workflow `{}`: step `{}`: `if` ({cond}): {why}", spec.name, step.id);
                        a.dead_letters.push(dead(&run.tenant_id, &run.workflow_id, reason, payload(), now));
                        history.push(entry(sid, "failed", why, now));
                        a.status = "failed".into();
                        break;
                    }
                };
                let target = if truth { then } else { otherwise };
                history.push(entry(
                    sid,
                    "branch",
                    format!("`{cond}` is {truth}: {}", target.unwrap_or("next step")),
                    now,
                ));
                match target {
                    None => idx += 1,
                    Some("exit") => {
                        a.status = "completed".into();
                        break;
                    }
                    Some(t) => match spec.steps.iter().position(|s| s.id == t) {
                        Some(i) => idx = i,
                        None => {
                            history.push(entry(sid, "failed", format!("no step `{t}`"), now));
                            a.status = "failed".into();
                            break;
                        }
                    },
                }
            }
            Kind::Exit => {
                history.push(entry(sid, "completed", "exit step".into(), now));
                a.status = "completed".into();
                break;
            }
        }
    }
    a.step = idx as i64;
    match spec.steps.get(idx) {
        Some(next) if a.status == "waiting" => state["next_step"] = json!(next.id),
        _ => {
            if let Some(o) = state.as_object_mut() {
                o.remove("next_step");
            }
        }
    }
    commit(st, &run, a, state, history, now).await
}

async fn commit(
    st: &AppState,
    run: &WorkflowRun,
    mut a: RunAdvance,
    state: Value,
    history: Vec<Value>,
    now: i64,
) -> Result<bool, StoreError> {
    if a.status != "waiting" {
        a.due_at = None;
    }
    a.state = state;
    a.history = history;
    let queued = a.messages.len() as u64;
    let done = st.store.advance_workflow_run(&run.id, run.version, a, now).await?;
    if done && queued > 0 {
        st.metrics.rule_messages.inc_by(queued);
    }
    Ok(done)
}
