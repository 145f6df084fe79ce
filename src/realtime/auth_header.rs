//! The "auth header" of AppSync real-time: base64 JSON with the client's credentials and the
//! host it believes it talks to, in the `header` query parameter (aws-appsync, older Amplify)
//! or a `header-<base64url>` subprotocol (Amplify v6); decoded, turned into headers for the
//! auth check, its `host` rewritten and written back.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use http::header::SEC_WEBSOCKET_PROTOCOL;
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use crate::rejection::{EdgeError, Rejection};

/// Where the client put its auth header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Query,
    Subprotocol,
}

/// The decoded auth header of a real-time handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthHeader {
    pub fields: Map<String, Value>,
    pub carrier: Carrier,
}

const SUBPROTOCOL_PREFIX: &str = "header-";
/// Auth headers larger than this are refused unread (tokens are capped at 8 KiB anyway).
const MAX_HEADER: usize = 16 * 1024;

fn bad(message: &str) -> EdgeError {
    Rejection::RealtimeBadHeader.because(message)
}

fn decode(text: &str) -> Result<Map<String, Value>, EdgeError> {
    if text.len() > MAX_HEADER {
        return Err(bad("the real-time auth header is too large"));
    }
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| bad("the real-time auth header is not base64"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(bad("the real-time auth header is not a JSON object")),
    }
}

/// The raw (still percent-encoded) value of query parameter `name`.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Percent-decoding that keeps `+` (clients put raw base64 in the query).
fn percent_decoded(raw: &str) -> String {
    let plus_kept = raw.replace('+', "%2B");
    form_urlencoded::parse(format!("v={plus_kept}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The client's auth header, if it sent one: the subprotocol first (what Amplify v6 sends),
/// then the `header` query parameter.
pub fn auth_header(req: &RequestHeader) -> Result<Option<AuthHeader>, EdgeError> {
    for value in req.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let text = value.to_str().unwrap_or("");
        if let Some(encoded) = text
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(SUBPROTOCOL_PREFIX))
        {
            return Ok(Some(AuthHeader {
                fields: decode(encoded)?,
                carrier: Carrier::Subprotocol,
            }));
        }
    }
    match req.uri.query().and_then(|q| query_param(q, "header")) {
        Some(raw) => Ok(Some(AuthHeader {
            fields: decode(&percent_decoded(raw))?,
            carrier: Carrier::Query,
        })),
        None => Ok(None),
    }
}

/// The auth header's fields as request headers, for the site's auth check.
pub fn as_headers(fields: &Map<String, Value>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (k, v) in fields {
        let (Some(v), Ok(name)) = (
            v.as_str(),
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
        ) else {
            continue;
        };
        if let Ok(value) = http::HeaderValue::from_str(v) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Whether `fields` carry a SigV4 signature, which covers `host`: never rewritten.
pub fn is_signed(fields: &Map<String, Value>) -> bool {
    fields.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("authorization")
            && v.as_str().is_some_and(crate::auth::iam::is_sigv4)
    })
}

/// Replace `host` in `fields`; whether it changed.
pub fn set_host(fields: &mut Map<String, Value>, host: &str) -> bool {
    let key = fields
        .keys()
        .find(|k| k.eq_ignore_ascii_case("host"))
        .cloned()
        .unwrap_or_else(|| "host".into());
    let changed = fields.get(&key).and_then(Value::as_str) != Some(host);
    fields.insert(key, Value::String(host.into()));
    changed
}

/// Put the (rewritten) auth header back where the client had it.
pub fn write_back(req: &mut RequestHeader, header: &AuthHeader) -> pingora::Result<()> {
    let json = Value::Object(header.fields.clone()).to_string();
    match header.carrier {
        Carrier::Subprotocol => {
            let encoded = format!("{SUBPROTOCOL_PREFIX}{}", URL_SAFE_NO_PAD.encode(&json));
            let joined: Vec<String> = req
                .headers
                .get_all(SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("").split(','))
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| {
                    if p.starts_with(SUBPROTOCOL_PREFIX) {
                        encoded.clone()
                    } else {
                        p.to_string()
                    }
                })
                .collect();
            req.insert_header(SEC_WEBSOCKET_PROTOCOL, joined.join(", "))?;
        }
        Carrier::Query => {
            let encoded: String =
                form_urlencoded::byte_serialize(STANDARD.encode(&json).as_bytes()).collect();
            let query = req.uri.query().unwrap_or("");
            let pairs: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some(("header", _)) => format!("header={encoded}"),
                    _ => p.to_string(),
                })
                .collect();
            let uri = format!("{}?{}", req.uri.path(), pairs.join("&"));
            let uri = http::Uri::try_from(uri).map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "realtime uri", e)
            })?;
            req.set_uri(uri);
        }
    }
    Ok(())
}
