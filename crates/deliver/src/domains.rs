//! Sending domains: adding one makes its DKIM keys and says which DNS
//! records to publish; verifying looks them up and says, per record,
//! whether it is there and right. Used by the API and by the CLI
//! (`epistle domains …`), so both behave the same.

use std::sync::Arc;

use epistle_core::new_id;
use epistle_core::timefmt::rfc3339;
use epistle_mail::dkim::{self, Algorithm};
use epistle_store::{DkimKeyRecord, DomainRecord, NewDkimKey, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::dkim::Keyring;
use crate::dns::{Dns, DnsError};

/// What we ask domain owners to publish, from the configuration.
#[derive(Debug, Clone)]
pub struct DomainPolicy {
    /// The SPF record recommended at the domain (`v=spf1 … ~all`).
    pub spf: String,
    /// The DMARC record recommended at `_dmarc.<domain>`.
    pub dmarc: String,
    /// Keys made for a new domain when the request names none.
    pub algorithms: Vec<Algorithm>,
    pub rsa_bits: usize,
}

impl Default for DomainPolicy {
    fn default() -> Self {
        Self {
            spf: "v=spf1 a mx ~all".into(),
            dmarc: "v=DMARC1; p=none".into(),
            algorithms: vec![Algorithm::Rsa],
            rsa_bits: 2048,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("`{0}` is not a domain name: give the part after the @ of your From address, e.g. `shop.example`")]
    InvalidName(String),
    #[error("this tenant has the domain `{0}` already; use GET to see its records or POST …/rotate for new keys")]
    Exists(String),
    #[error("no domain `{0}` in this tenant")]
    NotFound(String),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Not looked up yet.
    Unverified,
    Verified,
    Missing,
    Mismatch,
    /// The lookup failed (timeout, SERVFAIL): nothing is known.
    Error,
}

/// A DNS record to publish and what the last check found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordView {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
    pub purpose: String,
    pub status: RecordStatus,
    /// Whether the domain counts as verified without this record.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub selector: String,
    pub algorithm: String,
    pub signing: bool,
    /// `signing`, `pending` (waits for its DNS record) or `retired`.
    pub state: &'static str,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DkimView {
    /// The newest signing key (the one to publish first).
    pub selector: Option<String>,
    pub algorithm: Option<String>,
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DomainView {
    pub name: String,
    pub status: &'static str,
    pub created_at: String,
    pub checked_at: Option<String>,
    pub verified_at: Option<String>,
    pub dkim: DkimView,
    pub records: Vec<RecordView>,
}

pub struct Domains {
    store: Store,
    keyring: Arc<Keyring>,
    dns: Dns,
    policy: DomainPolicy,
}

impl Domains {
    pub fn new(store: Store, keyring: Arc<Keyring>, dns: Dns, policy: DomainPolicy) -> Self {
        Self { store, keyring, dns, policy }
    }

    pub fn policy(&self) -> &DomainPolicy {
        &self.policy
    }

    async fn make_key(
        &self,
        domain: &str,
        algorithm: Algorithm,
        taken: &[String],
        now: i64,
    ) -> Result<NewDkimKey, DomainError> {
        let bits = self.policy.rsa_bits;
        let generated = tokio::task::spawn_blocking(move || dkim::generate(algorithm, bits))
            .await
            .map_err(|e| DomainError::Key(e.to_string()))?
            .map_err(|e| DomainError::Key(e.to_string()))?;
        let selector = new_selector(algorithm, now, taken);
        let id = new_id("dk");
        let private_sealed = self.keyring.master().seal(&id, &generated.private_der);
        tracing::info!(%domain, %selector, %algorithm, "made a DKIM key");
        Ok(NewDkimKey {
            id,
            selector,
            algorithm: algorithm.as_str().into(),
            private_sealed,
            public_key: generated.public_b64,
        })
    }

    pub async fn add(
        &self,
        tenant_id: &str,
        name: &str,
        algorithms: &[Algorithm],
        now: i64,
    ) -> Result<DomainView, DomainError> {
        let name = epistle_core::parse_domain(name).ok_or_else(|| DomainError::InvalidName(name.to_string()))?;
        if self.store.get_domain(tenant_id, &name).await?.is_some() {
            return Err(DomainError::Exists(name));
        }
        let algorithms = if algorithms.is_empty() { &self.policy.algorithms[..] } else { algorithms };
        let mut keys = Vec::new();
        let mut taken = Vec::new();
        for alg in dedup(algorithms) {
            let k = self.make_key(&name, alg, &taken, now).await?;
            taken.push(k.selector.clone());
            keys.push(k);
        }
        if !self.store.insert_domain(tenant_id, &name, &keys, now).await? {
            return Err(DomainError::Exists(name));
        }
        self.reload_keys().await;
        self.get(tenant_id, &name).await?.ok_or(DomainError::NotFound(name))
    }

    pub async fn get(&self, tenant_id: &str, name: &str) -> Result<Option<DomainView>, DomainError> {
        let name = epistle_core::parse_domain(name).unwrap_or_else(|| name.to_string());
        Ok(self.store.get_domain(tenant_id, &name).await?.map(|d| self.view(&d)))
    }

    pub async fn list(&self, tenant_id: &str) -> Result<Vec<DomainView>, DomainError> {
        Ok(self.store.list_domains(tenant_id).await?.iter().map(|d| self.view(d)).collect())
    }

    pub async fn delete(&self, tenant_id: &str, name: &str) -> Result<bool, DomainError> {
        let name = epistle_core::parse_domain(name).unwrap_or_else(|| name.to_string());
        let gone = self.store.delete_domain(tenant_id, &name).await?;
        self.reload_keys().await;
        Ok(gone)
    }

    /// A new key for `algorithm` (or for each algorithm that signs now)
    /// takes over signing; the old keys stop signing but their records are
    /// still listed, so mail in transit verifies until they are removed.
    ///
    /// Unless `immediate`, the new key is *pending*: it signs only once
    /// `verify` sees its DNS record, and the old key goes on signing until
    /// then, so no mail goes out with a signature receivers cannot check.
    pub async fn rotate(
        &self,
        tenant_id: &str,
        name: &str,
        algorithm: Option<Algorithm>,
        immediate: bool,
        now: i64,
    ) -> Result<DomainView, DomainError> {
        let name = epistle_core::parse_domain(name).unwrap_or_else(|| name.to_string());
        let d = self.store.get_domain(tenant_id, &name).await?.ok_or_else(|| DomainError::NotFound(name.clone()))?;
        let algorithms: Vec<Algorithm> = match algorithm {
            Some(a) => vec![a],
            None => {
                let signing: Vec<Algorithm> = d
                    .keys
                    .iter()
                    .filter(|k| k.retired_at.is_none() && !k.pending)
                    .filter_map(|k| k.algorithm.parse().ok())
                    .collect();
                if signing.is_empty() { self.policy.algorithms.clone() } else { dedup(&signing) }
            }
        };
        let mut taken: Vec<String> = d.keys.iter().map(|k| k.selector.clone()).collect();
        for alg in algorithms {
            let key = self.make_key(&name, alg, &taken, now).await?;
            taken.push(key.selector.clone());
            let retire = immediate.then_some(alg.as_str());
            self.store.add_dkim_key(tenant_id, &name, &key, retire, !immediate, now).await?;
        }
        self.reload_keys().await;
        self.get(tenant_id, &name).await?.ok_or(DomainError::NotFound(name))
    }

    /// Removes a retired key and its record from the list.
    pub async fn remove_key(&self, tenant_id: &str, name: &str, selector: &str) -> Result<bool, DomainError> {
        let name = epistle_core::parse_domain(name).unwrap_or_else(|| name.to_string());
        Ok(self.store.delete_retired_key(tenant_id, &name, selector).await?)
    }

    /// Looks every record up and stores the result. The domain is verified
    /// when its signing keys' DKIM records and its SPF record are right;
    /// DMARC is recommended, not required.
    pub async fn verify(&self, tenant_id: &str, name: &str, now: i64) -> Result<DomainView, DomainError> {
        let name = epistle_core::parse_domain(name).unwrap_or_else(|| name.to_string());
        let d = self.store.get_domain(tenant_id, &name).await?.ok_or_else(|| DomainError::NotFound(name.clone()))?;
        let mut records = self.expected(&d);
        for r in &mut records {
            let looked = self.dns.txt(&r.name).await;
            check(r, looked);
        }
        // A pending key whose record is now in DNS takes over signing.
        let mut activated = false;
        for k in d.keys.iter().filter(|k| k.pending && k.retired_at.is_none()) {
            let record_name = format!("{}._domainkey.{}", k.selector, d.name);
            if records.iter().any(|r| r.name == record_name && r.status == RecordStatus::Verified) {
                self.store.activate_dkim_key(tenant_id, &name, &k.id, now).await?;
                tracing::info!(domain = %name, selector = %k.selector, "DKIM record found; the new key signs now");
                activated = true;
            }
        }
        if activated {
            self.reload_keys().await;
        }
        let verified = records.iter().filter(|r| r.required).all(|r| r.status == RecordStatus::Verified);
        let json = serde_json::to_string(&records).map_err(|e| DomainError::Key(e.to_string()))?;
        self.store.record_domain_check(tenant_id, &name, verified, &json, now).await?;
        self.get(tenant_id, &name).await?.ok_or(DomainError::NotFound(name))
    }

    async fn reload_keys(&self) {
        if let Err(e) = self.keyring.reload().await {
            tracing::warn!(error = %e, "cannot reload DKIM keys after a change; the periodic reload will pick it up");
        }
    }

    /// The records to publish, without any check result.
    fn expected(&self, d: &DomainRecord) -> Vec<RecordView> {
        let mut out = Vec::new();
        for k in &d.keys {
            let algorithm: Algorithm = k.algorithm.parse().unwrap_or(Algorithm::Rsa);
            let detail = if k.retired_at.is_some() {
                Some("retired key: keep the record until mail it signed has been delivered, then delete it".to_string())
            } else if k.pending {
                Some("new key from a rotation: publish this record; once verify sees it, this key signs and the old one retires".to_string())
            } else {
                None
            };
            out.push(record(
                format!("{}._domainkey.{}", k.selector, d.name),
                dkim::record_value(algorithm, &k.public_key),
                "dkim",
                k.retired_at.is_none() && !k.pending,
                detail,
            ));
        }
        out.push(record(d.name.clone(), self.policy.spf.clone(), "spf", true, None));
        out.push(record(format!("_dmarc.{}", d.name), self.policy.dmarc.clone(), "dmarc", false, None));
        out
    }

    fn view(&self, d: &DomainRecord) -> DomainView {
        let mut records = self.expected(d);
        // Carry the last check's result over to records that have not changed.
        let checked: Vec<RecordView> =
            d.check_json.as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
        for r in &mut records {
            if let Some(c) = checked.iter().find(|c| c.name == r.name && c.value == r.value && c.purpose == r.purpose) {
                r.status = c.status.clone();
                r.found = c.found.clone();
                if c.detail.is_some() {
                    r.detail = c.detail.clone();
                }
            }
        }
        let signing: Vec<&DkimKeyRecord> = d.keys.iter().filter(|k| k.retired_at.is_none() && !k.pending).collect();
        DomainView {
            name: d.name.clone(),
            status: if d.verified_at.is_some() { "verified" } else { "unverified" },
            created_at: rfc3339(d.created_at),
            checked_at: d.checked_at.map(rfc3339),
            verified_at: d.verified_at.map(rfc3339),
            dkim: DkimView {
                selector: signing.first().map(|k| k.selector.clone()),
                algorithm: signing.first().map(|k| k.algorithm.clone()),
                keys: d
                    .keys
                    .iter()
                    .map(|k| KeyView {
                        selector: k.selector.clone(),
                        algorithm: k.algorithm.clone(),
                        signing: k.retired_at.is_none() && !k.pending,
                        state: match (k.retired_at, k.pending) {
                            (Some(_), _) => "retired",
                            (None, true) => "pending",
                            (None, false) => "signing",
                        },
                        created_at: rfc3339(k.created_at),
                        retired_at: k.retired_at.map(rfc3339),
                    })
                    .collect(),
            },
            records,
        }
    }
}

fn record(name: String, value: String, purpose: &str, required: bool, detail: Option<String>) -> RecordView {
    RecordView {
        kind: "TXT".into(),
        name,
        value,
        purpose: purpose.into(),
        status: RecordStatus::Unverified,
        required,
        found: None,
        detail,
    }
}

fn dedup(algs: &[Algorithm]) -> Vec<Algorithm> {
    let mut out: Vec<Algorithm> = Vec::new();
    for a in algs {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// `ep20261122r` (RSA) or `ep20261122e` (Ed25519): the date tells when a
/// key was made; a digit is added when that day has one already.
fn new_selector(algorithm: Algorithm, now: i64, taken: &[String]) -> String {
    let date = rfc3339(now).get(..10).unwrap_or("19700101").replace('-', "");
    let base = format!("ep{date}{}", if algorithm == Algorithm::Rsa { 'r' } else { 'e' });
    if !taken.contains(&base) {
        return base;
    }
    (2..).map(|n| format!("{base}{n}")).find(|s| !taken.contains(s)).unwrap_or(base)
}

/// Tag-value list of a DKIM or DMARC record (`v=DKIM1; k=rsa; p=…`), with
/// whitespace removed from values as RFC 6376 §3.2 allows.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.chars().filter(|c| !c.is_whitespace()).collect()))
        .collect()
}

fn tag<'a>(t: &'a [(String, String)], name: &str) -> Option<&'a str> {
    t.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Fills in `r.status`, `found` and `detail` from a TXT lookup.
fn check(r: &mut RecordView, looked: Result<Vec<String>, DnsError>) {
    let all = match looked {
        Ok(v) => v,
        Err(DnsError::NotFound(_)) => Vec::new(),
        Err(DnsError::Failed(e)) => {
            r.status = RecordStatus::Error;
            r.detail = Some(format!("{e}; try again later"));
            r.found = None;
            return;
        }
    };
    let (relevant, status, detail): (Vec<String>, RecordStatus, Option<String>) = match r.purpose.as_str() {
        "dkim" => {
            let want = tags(&r.value);
            let relevant: Vec<String> = all.iter().filter(|v| tag(&tags(v), "p").is_some()).cloned().collect();
            let ok = relevant.iter().any(|v| {
                let got = tags(v);
                tag(&got, "p") == tag(&want, "p") && tag(&got, "k").unwrap_or("rsa") == tag(&want, "k").unwrap_or("rsa")
            });
            match (ok, relevant.is_empty()) {
                (true, _) => (relevant, RecordStatus::Verified, None),
                (false, true) => (relevant, RecordStatus::Missing, None),
                (false, false) => (
                    relevant,
                    RecordStatus::Mismatch,
                    Some(
                        "a DKIM record is there but its key (p=) is not this one: replace it with the value above"
                            .into(),
                    ),
                ),
            }
        }
        "spf" => {
            let relevant: Vec<String> =
                all.iter().filter(|v| v.trim().to_ascii_lowercase().starts_with("v=spf1")).cloned().collect();
            match relevant.len() {
                0 => (relevant, RecordStatus::Missing, None),
                1 => {
                    let have: Vec<String> = relevant[0].split_whitespace().map(str::to_ascii_lowercase).collect();
                    let lacking: Vec<String> = r
                        .value
                        .split_whitespace()
                        .skip(1)
                        .map(str::to_ascii_lowercase)
                        .filter(|m| !m.ends_with("all") && !have.contains(m))
                        .collect();
                    if lacking.is_empty() {
                        (relevant, RecordStatus::Verified, None)
                    } else {
                        let d = format!("the SPF record lacks {}: add it before the `all` term", lacking.join(" "));
                        (relevant, RecordStatus::Mismatch, Some(d))
                    }
                }
                _ => (
                    relevant,
                    RecordStatus::Mismatch,
                    Some("more than one SPF record: receivers treat that as an error (RFC 7208 §4.5); merge them into one".into()),
                ),
            }
        }
        _ => {
            let relevant: Vec<String> =
                all.iter().filter(|v| v.trim().to_ascii_lowercase().starts_with("v=dmarc1")).cloned().collect();
            match relevant.len() {
                0 => (relevant, RecordStatus::Missing, None),
                1 => (relevant, RecordStatus::Verified, None),
                _ => {
                    (relevant, RecordStatus::Mismatch, Some("more than one DMARC record: receivers ignore both".into()))
                }
            }
        }
    };
    r.status = status;
    r.found = Some(relevant);
    if detail.is_some() {
        r.detail = detail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_dated_and_unique() {
        let now = 1_795_000_000_000; // 2026-11-18
        assert_eq!(new_selector(Algorithm::Rsa, now, &[]), "ep20261118r");
        assert_eq!(new_selector(Algorithm::Ed25519, now, &[]), "ep20261118e");
        let taken = vec!["ep20261118r".to_string(), "ep20261118r2".to_string()];
        assert_eq!(new_selector(Algorithm::Rsa, now, &taken), "ep20261118r3");
    }

    fn checked(purpose: &str, value: &str, found: Result<Vec<&str>, DnsError>) -> RecordView {
        let mut r = record("x".into(), value.into(), purpose, true, None);
        check(&mut r, found.map(|v| v.into_iter().map(String::from).collect()));
        r
    }

    #[test]
    fn dkim_records_match_on_key_and_kind() {
        let want = "v=DKIM1; k=rsa; p=ABCD";
        assert_eq!(checked("dkim", want, Ok(vec!["v=DKIM1; k=rsa; p=AB CD"])).status, RecordStatus::Verified);
        assert_eq!(checked("dkim", want, Ok(vec!["v=DKIM1; p=ABCD"])).status, RecordStatus::Verified);
        assert_eq!(checked("dkim", want, Ok(vec!["v=DKIM1; k=rsa; p=OTHER"])).status, RecordStatus::Mismatch);
        assert_eq!(checked("dkim", want, Ok(vec!["v=DKIM1; k=ed25519; p=ABCD"])).status, RecordStatus::Mismatch);
        assert_eq!(checked("dkim", want, Ok(vec!["google-site-verification=x"])).status, RecordStatus::Missing);
        assert_eq!(checked("dkim", want, Err(DnsError::NotFound("TXT"))).status, RecordStatus::Missing);
        assert_eq!(checked("dkim", want, Err(DnsError::Failed("timeout".into()))).status, RecordStatus::Error);
    }

    #[test]
    fn spf_needs_our_mechanisms_and_one_record() {
        let want = "v=spf1 a mx ~all";
        assert_eq!(checked("spf", want, Ok(vec!["v=spf1 ip4:1.2.3.4 a mx -all"])).status, RecordStatus::Verified);
        let r = checked("spf", want, Ok(vec!["v=spf1 a -all", "other"]));
        assert_eq!(r.status, RecordStatus::Mismatch);
        assert!(r.detail.unwrap().contains("lacks mx"));
        assert_eq!(r.found.unwrap(), vec!["v=spf1 a -all".to_string()]);
        assert_eq!(checked("spf", want, Ok(vec!["v=spf1 a mx ~all", "v=spf1 -all"])).status, RecordStatus::Mismatch);
        assert_eq!(checked("spf", want, Ok(vec!["unrelated"])).status, RecordStatus::Missing);
    }

    #[test]
    fn any_single_dmarc_policy_will_do() {
        let want = "v=DMARC1; p=none";
        assert_eq!(
            checked("dmarc", want, Ok(vec!["v=DMARC1; p=reject; rua=mailto:x@y"])).status,
            RecordStatus::Verified
        );
        assert_eq!(checked("dmarc", want, Ok(vec![])).status, RecordStatus::Missing);
    }
}
