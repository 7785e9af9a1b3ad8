//! Logging: started before the configuration is read (so that reading it
//! can log), then set to the configuration's `log` filter once it is known.
//!
//! Which filter wins: `EPISTLE_LOG` (the configuration reads it as `log`),
//! then `log` in the configuration file, then `RUST_LOG`, then
//! [`DEFAULT_FILTER`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// `info`, without sqlx's and tower-http's own chatter.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber on stderr, with the filter from
/// `EPISTLE_LOG` or `RUST_LOG`, else [`DEFAULT_FILTER`]. Colours only on a
/// terminal, so that log files and journald get plain text.
pub fn init() {
    let filter = std::env::var("EPISTLE_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    let filter = parse(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry().with(layer).with(fmt).try_init().is_ok() {
        let _ = HANDLE.set(handle);
    }
}

/// The filter to use once the configuration's `log` is known: `configured`
/// unless it is the built-in default `info` and `RUST_LOG` says otherwise.
pub fn effective_filter(configured: &str, epistle_log: Option<&str>, rust_log: Option<&str>) -> String {
    let configured = configured.trim();
    if epistle_log.is_some_and(|v| !v.trim().is_empty()) || !(configured.is_empty() || configured == "info") {
        return configured.to_string();
    }
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v.to_string(),
        None => DEFAULT_FILTER.to_string(),
    }
}

/// Switches the running subscriber to `filter`; an error says what is wrong
/// with it. Does nothing when [`init`] did not install the subscriber (tests).
pub fn apply(filter: &str) -> anyhow::Result<()> {
    let parsed = parse(filter)?;
    if let Some(h) = HANDLE.get() {
        h.reload(parsed).map_err(|e| anyhow::anyhow!("could not change the log filter: {e}"))?;
    }
    Ok(())
}

fn parse(filter: &str) -> anyhow::Result<EnvFilter> {
    let filter = if filter.trim().is_empty() { DEFAULT_FILTER } else { filter.trim() };
    EnvFilter::try_new(filter).map_err(|e| {
        anyhow::anyhow!("invalid log filter `{filter}`: {e}; use a level (`info`, `warn`) or `target=level` pairs, e.g. `epistle_deliver=debug,info`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_filter_wins_over_rust_log_unless_it_is_the_default() {
        assert_eq!(effective_filter("warn", None, Some("debug")), "warn");
        assert_eq!(effective_filter("info", None, Some("debug")), "debug");
        assert_eq!(effective_filter("info", None, None), DEFAULT_FILTER);
        // EPISTLE_LOG=info is a choice, not the default.
        assert_eq!(effective_filter("info", Some("info"), Some("debug")), "info");
        assert_eq!(effective_filter("", None, Some("  ")), DEFAULT_FILTER);
    }

    #[test]
    fn a_bad_filter_says_how_to_write_one() {
        let e = apply("epistle=loud").unwrap_err().to_string();
        assert!(e.contains("invalid log filter `epistle=loud`"), "{e}");
        assert!(e.contains("e.g."), "{e}");
        assert!(apply("warn,epistle_deliver=debug").is_ok());
    }
}
