//! Edge signing (the official `aws-sigv4` crate): upstream requests signed with the edge's own
//! credentials, so clients accepted by another mode reach an IAM-only upstream.

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use pingora::http::RequestHeader;

use crate::config::auth::Signing;

/// Sign the upstream request with the edge's credentials (replacing any client
/// `Authorization`). `body` is the whole request body.
pub fn sign_upstream(
    req: &mut RequestHeader,
    body: &[u8],
    signing: &Signing,
    now: SystemTime,
) -> Result<(), String> {
    let header = |name: http::HeaderName| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header(http::header::HOST).ok_or("no Host header")?;
    let content_type = header(http::header::CONTENT_TYPE);
    let path = req
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let signed = signature_headers(
        req.method.as_str(),
        &host,
        &path,
        content_type.as_deref(),
        body,
        signing,
        now,
    )?;
    req.remove_header(&http::header::AUTHORIZATION);
    for (name, value) in signed {
        req.insert_header(name, value).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The headers that sign a request (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials) over its method, host, path and query,
/// content type and body.
pub fn signature_headers(
    method: &str,
    host: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
    signing: &Signing,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = aws_credential_types::Credentials::new(
        &signing.access_key_id,
        &signing.secret_access_key,
        signing.session_token.clone(),
        None,
        "graphfront",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signing.region)
        .name(&signing.service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let url = format!("https://{host}{path_and_query}");
    let mut headers = vec![("host", host)];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    let signable =
        SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect())
}
