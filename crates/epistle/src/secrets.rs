//! The master key (from `EPISTLE_MASTER_KEY` or a key file made at first
//! start), its check against the database, and the keyring and domain
//! service built on it. Shared by `serve` and the `domains` commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use epistle_core::secret::MasterKey;
use epistle_deliver::Keyring;
use epistle_deliver::dns::Dns;
use epistle_deliver::domains::{DomainPolicy, Domains};
use epistle_store::Store;

use crate::config::Config;

const CHECK_LABEL: &str = "master-key-check";

/// `master.key` beside the SQLite database, else `epistle-data/master.key`.
pub fn default_key_path(database_url: &str) -> PathBuf {
    let file = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"));
    match file.map(|f| f.split('?').next().unwrap_or(f)) {
        Some(f) if !f.is_empty() && f != ":memory:" => {
            Path::new(f).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("master.key")
        }
        _ => PathBuf::from("epistle-data/master.key"),
    }
}

/// The configured master key, or the key file's, making the file (mode
/// 0600) when there is none yet.
pub fn load_master_key(cfg: &Config) -> anyhow::Result<MasterKey> {
    if let Some(k) = &cfg.master_key {
        return MasterKey::parse(k.expose()).context("master_key / EPISTLE_MASTER_KEY");
    }
    let path = cfg.master_key_file.clone().unwrap_or_else(|| default_key_path(&cfg.database_url));
    if path.exists() {
        check_permissions(&path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?;
        return MasterKey::parse(&text).with_context(|| format!("master key file {}", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = MasterKey::generate_text();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).with_context(|| format!("cannot create the master key file {}", path.display()))?;
    f.write_all(format!("{text}\n").as_bytes())?;
    f.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        "made a new master key: it seals DKIM private keys. Back it up with the database; without it they cannot be opened"
    );
    MasterKey::parse(&text).context("the new master key")
}

#[cfg(unix)]
fn check_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the master key file can be read by others; run `chmod 600` on it");
    }
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) {}

/// Makes sure this key is the one the database's secrets were sealed with
/// (the first key to start on a database leaves a sealed probe).
pub async fn check_master_key(store: &Store, key: &MasterKey) -> anyhow::Result<()> {
    let probe = hex::encode(key.seal(CHECK_LABEL, b"epistle"));
    let stored = store.setting_or_insert("master_key_check", &probe).await?;
    let sealed = hex::decode(stored.trim()).unwrap_or_default();
    if key.open(CHECK_LABEL, &sealed).is_err() {
        bail!(
            "this master key is not the one this database's secrets were sealed with: \
             set EPISTLE_MASTER_KEY (or master_key_file) to the key used before; every node needs the same key"
        );
    }
    Ok(())
}

/// The keyring (loaded) and the domain service.
pub async fn domain_service(
    cfg: &Config,
    store: &Store,
) -> anyhow::Result<(Arc<Keyring>, Arc<Domains>, epistle_core::secret::MasterKey)> {
    let master = load_master_key(cfg)?;
    check_master_key(store, &master).await?;
    let keyring = Arc::new(Keyring::new(store.clone(), master.clone()));
    keyring.reload().await.context("cannot load the DKIM keys")?;
    // No cache: a record just published must be seen by the next verify.
    let dns = Dns::new(&cfg.dns.servers()?, cfg.dns.timeout, false).map_err(|e| anyhow::anyhow!(e))?;
    let algorithms = cfg.domains.dkim_algorithms.items().iter().filter_map(|a| a.parse().ok()).collect::<Vec<_>>();
    let policy = DomainPolicy {
        spf: cfg.domains.spf.trim().to_string(),
        dmarc: cfg.domains.dmarc.trim().to_string(),
        algorithms,
        rsa_bits: cfg.domains.rsa_bits,
    };
    let domains = Arc::new(Domains::new(store.clone(), keyring.clone(), dns, policy));
    Ok((keyring, domains, master))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_sits_beside_the_sqlite_database() {
        assert_eq!(default_key_path("sqlite://epistle-data/epistle.db"), PathBuf::from("epistle-data/master.key"));
        assert_eq!(
            default_key_path("sqlite:///var/lib/epistle/e.db?mode=rwc"),
            PathBuf::from("/var/lib/epistle/master.key")
        );
        assert_eq!(default_key_path("sqlite://e.db"), PathBuf::from("./master.key"));
        assert_eq!(default_key_path("postgres://postgres@127.0.0.1/test"), PathBuf::from("epistle-data/master.key"));
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { master_key_file: Some(dir.path().join("k/master.key")), ..Config::default() };
        let a = load_master_key(&cfg).unwrap();
        let b = load_master_key(&cfg).unwrap();
        assert_eq!(b.open("x", &a.seal("x", b"same key")).unwrap(), b"same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("k/master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bad = Config { master_key: Some(crate::config::Secret("nope".into())), ..Config::default() };
        assert!(format!("{:#}", load_master_key(&bad).unwrap_err()).contains("32 bytes"));
    }
}
