//! The keyring the worker signs with: every signing DKIM key of every
//! tenant, opened with the master key and ready to sign, by (tenant, From
//! domain).
//!
//! The API reloads it after a change on this node; a background task
//! reloads it every few seconds so that changes made through another node
//! (PostgreSQL) arrive too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use epistle_core::secret::MasterKey;
use epistle_mail::dkim::{self, Algorithm, Signer};
use epistle_store::{DkimKeyRecord, Store};

type Signers = HashMap<(String, String), Vec<Arc<Signer>>>;

pub struct Keyring {
    store: Store,
    master: MasterKey,
    signers: RwLock<Arc<Signers>>,
    /// Opened keys by row id, so a reload opens (decrypts, parses) only the
    /// keys that are new since the last one.
    opened: std::sync::Mutex<HashMap<String, Arc<Signer>>>,
    /// Turns to sign off the runtime, one per core.
    signing: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

/// Opens a stored key with the master key (the row id is the sealing label).
pub fn open_key(master: &MasterKey, k: &DkimKeyRecord) -> Result<Signer, String> {
    let algorithm: Algorithm = k.algorithm.parse()?;
    let der = master.open(&k.id, &k.private_sealed).map_err(|e| e.to_string())?;
    Signer::new(algorithm, &k.domain, &k.selector, &der).map_err(|e| e.to_string())
}

impl Keyring {
    pub fn new(store: Store, master: MasterKey) -> Self {
        Self {
            store,
            master,
            signers: RwLock::new(Arc::new(HashMap::new())),
            opened: std::sync::Mutex::new(HashMap::new()),
            signing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
        }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Loads the signing keys from the store. Keys opened by an earlier
    /// reload are reused, so the periodic reload decrypts and parses only
    /// new keys. A key that cannot be opened is left out with an error in
    /// the log (mail from its domain goes unsigned by it, rather than not at
    /// all).
    pub async fn reload(&self) -> Result<usize, epistle_store::StoreError> {
        let keys = self.store.signing_keys().await?;
        let mut map: Signers = HashMap::new();
        let mut loaded = 0;
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::take(&mut *opened);
        for k in &keys {
            let signer = match previous.get(&k.id) {
                Some(s) => s.clone(),
                None => match open_key(&self.master, k) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::error!(domain = %k.domain, selector = %k.selector, error = %e, "cannot load DKIM key");
                        continue;
                    }
                },
            };
            opened.insert(k.id.clone(), signer.clone());
            map.entry((k.tenant_id.clone(), k.domain.clone())).or_default().push(signer);
            loaded += 1;
        }
        drop(opened);
        *self.signers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        Ok(loaded)
    }

    /// Reloads every `every` until the task is dropped.
    pub async fn refresh_loop(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "cannot reload DKIM keys; keeping the ones loaded");
            }
        }
    }

    /// The message signed by every key of its tenant for its From domain;
    /// `None` when there is no key for it (send it as it is).
    ///
    /// RSA keys sign on a blocking thread, at most one per core at a time:
    /// an RSA-2048 signature takes 0.3 to 0.7 ms of CPU, depending on the
    /// processor, and made on the async runtime it would hold up every
    /// connection that thread serves, the accepts' commits among them.
    /// Ed25519 (0.05 to 0.07 ms) costs less than the hop.
    pub async fn sign(&self, tenant_id: &str, raw: &[u8]) -> Option<Vec<u8>> {
        let list = self.signers_for(tenant_id, raw)?;
        if list.iter().all(|s| s.algorithm != Algorithm::Rsa) {
            return signed(dkim::sign(list.iter().map(|s| s.as_ref()), raw));
        }
        let Ok(_turn) = self.signing.clone().acquire_owned().await else { return None };
        let raw = raw.to_vec();
        match tokio::task::spawn_blocking(move || dkim::sign(list.iter().map(|s| s.as_ref()), &raw)).await {
            Ok(result) => signed(result),
            Err(e) => {
                tracing::error!(error = %e, "DKIM signing stopped; sending unsigned");
                None
            }
        }
    }

    /// The keys of `tenant_id` for the From domain of `raw`.
    fn signers_for(&self, tenant_id: &str, raw: &[u8]) -> Option<Vec<Arc<Signer>>> {
        let domain = dkim::from_domain(raw)?;
        self.signers.read().unwrap_or_else(|p| p.into_inner()).get(&(tenant_id.to_string(), domain)).cloned()
    }
}

fn signed<E: std::fmt::Display>(result: Result<Vec<u8>, E>) -> Option<Vec<u8>> {
    match result {
        Ok(signed) => Some(signed),
        Err(e) => {
            tracing::error!(error = %e, "DKIM signing failed; sending unsigned");
            None
        }
    }
}
