//! Stale-while-revalidate: a stale entry is served while this client fetches a fresh response
//! from the upstream in the background (reqwest on rustls, trusting what the site's proxy does).

use std::sync::Arc;

use bytes::Bytes;

use crate::config::Site;

/// What to send upstream to refresh an entry: the original request, minus what does not
/// matter to the response.
#[derive(Debug)]
pub struct RefreshRequest {
    pub method: http::Method,
    /// Path and query on the upstream.
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// How to strip the refreshed response (the body carries the `__typename`s to tag).
    pub typed: Option<std::sync::Arc<super::tags::Typed>>,
    /// The entry's own tags (operation, root fields).
    pub tags: Vec<super::tags::Tag>,
}

/// Request headers an upstream answer may depend on; only these are replayed.
pub const REPLAYED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "x-api-key",
    "x-amz-date",
    "x-amz-security-token",
];

/// The background client of one site.
pub struct Refresher {
    client: reqwest::Client,
    origin: String,
    /// `Host` of the upstream, for edge signing.
    host: String,
    signing: Option<crate::config::auth::Signing>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("cannot build the refresh client: {0}")]
    Client(String),
    #[error("upstream: {0}")]
    Upstream(#[from] reqwest::Error),
}

impl Refresher {
    /// `extra_ca` replaces the system roots when given (as for the proxied requests).
    /// `client` is the site's side client (`upstream::side_client`).
    pub fn new(site: &Site, client: reqwest::Client) -> Self {
        let up = &site.upstream;
        let scheme = if up.tls { "https" } else { "http" };
        Self {
            client,
            origin: format!("{scheme}://{}", up.host_header),
            host: up.host_header.clone(),
            signing: site.upstream_signing.clone(),
        }
    }

    /// Send the request; returns status, headers and body.
    pub async fn fetch(
        &self,
        req: &Arc<RefreshRequest>,
    ) -> Result<(u16, http::HeaderMap, Bytes), RefreshError> {
        let url = format!("{}{}", self.origin, req.path_and_query);
        let mut headers = req.headers.clone();
        if let Some(signing) = &self.signing {
            // Refreshes are signed like the proxied requests (edge signing).
            let content_type = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let signed = crate::upstream::sigv4::signature_headers(
                req.method.as_str(),
                &self.host,
                &req.path_and_query,
                content_type.as_deref(),
                &req.body,
                signing,
                std::time::SystemTime::now(),
            )
            .map_err(RefreshError::Client)?;
            headers.remove(http::header::AUTHORIZATION);
            for (name, value) in signed {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::try_from(name),
                    http::HeaderValue::try_from(value),
                ) {
                    headers.insert(n, v);
                }
            }
        }
        let resp = self
            .client
            .request(req.method.clone(), url)
            .headers(headers)
            .body(req.body.clone())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok((status, headers, body))
    }
}
