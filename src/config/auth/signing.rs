//! `[site.upstream-signing]`: the edge's own AWS credentials for signing upstream requests
//! (SigV4), as written in the file and validated. The secrets are read here.

use serde::Deserialize;

use super::{appsync_region, NO_REGION};
use crate::config::value::SecretFile;
use crate::config::{KeyPath, Validator};

/// `[site.upstream-signing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SigningFile {
    /// The access key id of the edge's credentials.
    pub access_key_id: String,
    /// The secret, or better `secret-access-key-file`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A file holding the secret (surrounding whitespace ignored).
    #[serde(default)]
    pub secret_access_key_file: Option<SecretFile>,
    /// A file holding a session token (temporary credentials).
    #[serde(default)]
    pub session_token_file: Option<SecretFile>,
    /// Default: the region of an AppSync upstream's host.
    #[serde(default)]
    pub region: Option<String>,
    /// The service requests are signed for.
    #[serde(default = "default_signing_service")]
    pub service: String,
}

// `access-key-id` is required, so `service`'s default is given on its own.
fn default_signing_service() -> String {
    "appsync".into()
}

/// The edge's own credentials for signing upstream requests.
#[derive(Clone)]
pub struct Signing {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("Signing")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Validator<'_> {
    pub(in crate::config) fn signing(
        &mut self,
        at: KeyPath,
        f: &SigningFile,
        upstream_host: &str,
    ) -> Option<Signing> {
        let before = self.problems.len();
        let secret = match (&f.secret_access_key, &f.secret_access_key_file) {
            (Some(s), None) => Some(s.trim().to_string()),
            (None, Some(p)) => self.secret_file(at.key("secret-access-key-file"), p),
            _ => {
                self.problem(
                    at.clone(),
                    "set exactly one of secret-access-key or secret-access-key-file",
                );
                None
            }
        };
        let session_token = match &f.session_token_file {
            Some(p) => self.secret_file(at.key("session-token-file"), p),
            None => None,
        };
        let region = f.region.clone().or_else(|| appsync_region(upstream_host));
        if region.is_none() {
            self.problem(at.key("region"), NO_REGION);
        }
        if f.access_key_id.trim().is_empty() {
            self.problem(at.key("access-key-id"), "must not be empty");
        }
        (self.problems.len() == before).then(|| Signing {
            access_key_id: f.access_key_id.trim().to_string(),
            secret_access_key: secret.unwrap_or_default(),
            session_token,
            region: region.unwrap_or_default(),
            service: f.service.clone(),
        })
    }

    /// A secret file that must not be empty.
    fn secret_file(&mut self, at: KeyPath, f: &SecretFile) -> Option<String> {
        let secret = self.read_secret(at.clone(), f)?;
        if secret.is_empty() {
            let path = self.resolve(&f.0);
            self.problem(at, format!("{} is empty", path.display()));
            return None;
        }
        Some(secret)
    }
}
