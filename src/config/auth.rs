//! The validated auth settings of a site. Secrets are read here and kept only as digests.

use std::collections::HashMap;
use std::time::SystemTime;

use super::file::AuthFile;
use super::{KeyPath, Validator};

/// An accepted API key (the key itself is not kept: only its blake3 digest).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// By blake3 digest of the key.
    pub api_keys: HashMap<[u8; 32], ApiKey>,
}

impl Validator<'_> {
    pub(super) fn auth(&mut self, at: KeyPath, f: &AuthFile) -> Auth {
        let mut auth = Auth::default();
        if f.api_keys.is_empty() {
            self.problem(at.clone(), "configure at least one auth mode (api-key)");
        }
        for (i, k) in f.api_keys.iter().enumerate() {
            let kat = at.key("api-key").index(i);
            let secret = match (&k.key, &k.key_file) {
                (Some(key), None) => Some(key.trim().to_string()),
                (None, Some(path)) => {
                    let path = self.resolve(path);
                    match std::fs::read_to_string(&path) {
                        Ok(s) => Some(s.trim().to_string()),
                        Err(e) => {
                            self.problem(kat.key("key-file"), format!("{}: {e}", path.display()));
                            None
                        }
                    }
                }
                _ => {
                    self.problem(kat.clone(), "set exactly one of key or key-file");
                    None
                }
            };
            let expires = match &k.expires {
                None => None,
                Some(text) => match humantime::parse_rfc3339_weak(text) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.problem(
                            kat.key("expires"),
                            format!("`{text}` is not an RFC 3339 time like 2027-01-31T00:00:00Z"),
                        );
                        None
                    }
                },
            };
            let Some(secret) = secret else { continue };
            if secret.len() < 16 {
                // Never echo the key: say only what is wrong with it.
                self.problem(kat.key("key"), "an API key must be at least 16 characters");
                continue;
            }
            let digest = *blake3::hash(secret.as_bytes()).as_bytes();
            if auth.api_keys.contains_key(&digest) {
                self.problem(kat.key("key"), "the same key is configured twice");
            }
            auth.api_keys.insert(
                digest,
                ApiKey {
                    id: k.id.clone(),
                    expires,
                },
            );
        }
        auth
    }
}
