//! Auth pre-checks at the edge (AppSync's modes; API_KEY so far): a request the site's modes
//! do not accept gets AppSync's 401 and never reaches the upstream.

use std::time::SystemTime;

use pingora::proxy::Session;

use super::respond::EdgeError;
use crate::config::auth::Auth;
use crate::metrics;

/// The accepted caller, as per-principal cache scopes and logs know it.
pub type Principal = String;

fn unauthorized(code: &'static str, message: &str) -> EdgeError {
    EdgeError::new(401, code, message)
}

/// Check the request against the site's modes; the principal on success.
pub fn check(session: &Session, site: &str, auth: &Auth) -> Result<Principal, EdgeError> {
    let m = metrics::get();
    let result = api_key(session, auth);
    let (outcome, reason) = match &result {
        Ok(_) => ("accepted", "ok"),
        Err(e) => ("rejected", e.code),
    };
    m.auth_decisions
        .with_label_values(&[site, "api_key", outcome, reason])
        .inc();
    result
}

fn api_key(session: &Session, auth: &Auth) -> Result<Principal, EdgeError> {
    let Some(key) = session.req_header().headers.get("x-api-key") else {
        return Err(unauthorized(
            "API_KEY_MISSING",
            "Valid authorization header not provided.",
        ));
    };
    let digest = blake3::hash(key.as_bytes());
    let Some(found) = auth.api_keys.get(digest.as_bytes()) else {
        return Err(unauthorized(
            "API_KEY_INVALID",
            "You are not authorized to make this call.",
        ));
    };
    if found.expires.is_some_and(|t| t <= SystemTime::now()) {
        return Err(unauthorized("API_KEY_EXPIRED", "The API key has expired."));
    }
    Ok(format!("api-key:{}", found.id))
}
