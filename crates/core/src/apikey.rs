//! API keys: `ep_` and 32 URL-safe characters (192 random bits), shown
//! once and stored as SHA-256 hashes. A fast hash is right for keys of that
//! entropy: there is no dictionary to guess from.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("ep_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Scopes are `resource:action` (`messages:send`); `*` and `resource:*`
/// grant more.
pub fn scope_allows(scopes: &[String], scope: &str) -> bool {
    let resource = scope.split(':').next().unwrap_or(scope);
    scopes.iter().any(|s| s == "*" || s == scope || *s == format!("{resource}:*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("ep_") && a.len() == 35);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
    }

    #[test]
    fn scopes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(scope_allows(&s(&["messages:read"]), "messages:read"));
        assert!(!scope_allows(&s(&["messages:read"]), "messages:send"));
        assert!(scope_allows(&s(&["messages:*"]), "messages:send"));
        assert!(scope_allows(&s(&["*"]), "domains:write"));
    }
}
