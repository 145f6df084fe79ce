//! Upstream URLs taken apart once (scheme, host, port, path, `Host` header), and the real-time
//! endpoint a site gets when it names none.

use super::{KeyPath, Validator};

/// An upstream URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, e.g. `/graphql`.
    pub path: String,
    /// The `Host` header the upstream expects (`host` or `host:port` off the default port).
    pub host_header: String,
    /// `path` as a request URI, prepared once.
    pub path_uri: http::Uri,
}

impl Endpoint {
    fn new(url: String, tls: bool, host: String, port: u16, path: String) -> Result<Self, String> {
        let default_port = if tls { 443 } else { 80 };
        let host_header = if port == default_port {
            host.clone()
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path_uri = path
            .parse()
            .map_err(|e| format!("`{path}` is not a valid request path: {e}"))?;
        Ok(Self {
            url,
            tls,
            host,
            port,
            path,
            host_header,
            path_uri,
        })
    }
}

impl Validator<'_> {
    pub(super) fn endpoint(
        &mut self,
        at: KeyPath,
        raw: &str,
        schemes: &[&str],
    ) -> Option<Endpoint> {
        match parse_endpoint(raw, schemes) {
            Ok(e) => Some(e),
            Err(why) => {
                self.problem(at, why);
                None
            }
        }
    }
}

/// Take an upstream URL apart; only the listed schemes are accepted.
pub fn parse_endpoint(raw: &str, schemes: &[&str]) -> Result<Endpoint, String> {
    let shown = redact_userinfo(raw);
    let url = url::Url::parse(raw).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "`{shown}`: the scheme must be one of {}",
            schemes.join(", ")
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(format!("`{shown}` has no host")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed; use the auth settings".into());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Endpoint::new(
        raw.to_string(),
        matches!(url.scheme(), "https" | "wss"),
        host,
        port,
        path,
    )
}

/// A URL as it may be shown in an error: without `user:password@`.
fn redact_userinfo(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &raw[..s], &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

/// AppSync serves subscriptions on a sibling host: `<id>.appsync-api.<region>.amazonaws.com` →
/// `<id>.appsync-realtime-api.<region>.amazonaws.com`. Other upstreams: same origin, `realtime_path`.
pub(super) fn default_realtime(up: &Endpoint, realtime_path: &str) -> Result<Endpoint, String> {
    let appsync = up.host.split_once(".appsync-api.").filter(|(_, rest)| {
        rest.ends_with(".amazonaws.com") || rest.ends_with(".amazonaws.com.cn")
    });
    match appsync {
        Some((id, rest)) => {
            let host = format!("{id}.appsync-realtime-api.{rest}");
            let url = format!("wss://{host}/graphql");
            Endpoint::new(url, true, host, 443, "/graphql".into())
        }
        None => {
            let scheme = if up.tls { "wss" } else { "ws" };
            let url = format!("{scheme}://{}:{}{realtime_path}", up.host, up.port);
            let (host, port) = (up.host.clone(), up.port);
            Endpoint::new(url, up.tls, host, port, realtime_path.to_string())
        }
    }
}
