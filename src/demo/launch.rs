//! `graphfront demo`: the built-in API on a loopback port, a local CA and a `localhost`
//! certificate, and the configuration that puts graphfront in front of them.

use std::path::PathBuf;

use anyhow::Context;

use super::{router, schema, serve, TestCa};
use crate::config::Config;

/// Start the demo API in the background and return graphfront's configuration for it.
pub fn prepare(port: u16, admin_port: u16) -> anyhow::Result<Config> {
    let dir = std::env::temp_dir().join(format!("graphfront-demo-{port}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let ca_file = write("ca.pem", &ca.ca_pem())?;
    write("localhost.pem", &cert)?;
    write("localhost.key", &key)?;

    let api = std::net::TcpListener::bind("127.0.0.1:0").context("binding the demo API")?;
    api.set_nonblocking(true)?;
    let api_addr = api.local_addr()?;
    std::thread::Builder::new()
        .name("demo-api".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the demo API");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(api).expect("listener");
                if let Err(e) = serve(listener, None, router(schema())).await {
                    tracing::error!(error = %e, "demo API stopped");
                }
            });
        })?;

    let d = dir.display();
    let text = format!(
        r#"
[server]
threads = 1
state-dir = "{d}/state"
pid-file = "{d}/graphfront.pid"
upgrade-socket = "{d}/upgrade.sock"
grace-period = "0s"
graceful-shutdown-timeout = "2s"

[listeners]
https = ["127.0.0.1:{port}"]
http = []
admin = "127.0.0.1:{admin_port}"

[admin]
token = "{ADMIN_TOKEN}"

[[site]]
name = "demo"
domains = ["localhost"]
upstream = "http://{api_addr}/graphql"
realtime-upstream = "ws://{api_addr}/graphql/ws"
tls = {{ cert = "localhost.pem", key = "localhost.key" }}

[site.auth]
[[site.auth.api-key]]
id = "demo"
key = "{API_KEY}"

[site.cache]
[[site.cache.rule]]
field = "Query.listPosts"
ttl = "30s"
stale-while-revalidate = "30s"
[[site.cache.rule]]
field = "Query.getPost"
ttl = "5m"
[[site.cache.rule]]
field = "Query.whoami"
ttl = "5m"
scope = "principal"
"#
    );
    let config = Config::parse(&text, &dir)?;
    print_howto(port, admin_port, &ca_file);
    Ok(config)
}

/// The demo site's API key, printed with the commands.
pub const API_KEY: &str = "da2-graphfrontdemographfrontdemo";
/// The demo's admin token, for its purge command.
pub const ADMIN_TOKEN: &str = "demo-admin-token-not-for-production";

fn print_howto(port: u16, admin_port: u16, ca: &std::path::Path) {
    let ca = ca.display();
    let url = format!("https://localhost:{port}/graphql");
    let q = format!("curl -s -D- --cacert {ca} {url} -H 'content-type: application/json' -H 'x-api-key: {API_KEY}'");
    // AppSync's real-time handshake: the auth header in the query string, then
    // connection_init and a start carrying the same authorization.
    let auth = format!(r#"{{"host":"localhost:{port}","x-api-key":"{API_KEY}"}}"#);
    let header = base64_url(auth.as_bytes());
    let ws = format!("wss://localhost:{port}/graphql/realtime?header={header}&payload=e30=");
    let start = format!(
        r#"{{"id":"1","type":"start","payload":{{"data":"{{\"query\":\"subscription {{ onCreatePost {{ id title }} }}\"}}","extensions":{{"authorization":{auth}}}}}}}"#
    );
    println!(
        r#"graphfront demo: {url} -> built-in GraphQL API (certificate from a local CA: {ca})
API key: {API_KEY}   admin token: {ADMIN_TOKEN}

Try (watch x-cache):
  # a MISS, then the same query again: a HIT answered by the edge
  {q} -d '{{"query":"{{ getPost(id: \"1\") {{ id title }} }}"}}'
  {q} -d '{{"query":"{{ getPost(id: \"1\") {{ id title }} }}"}}'
  # a mutation returning Post 1 purges the cached getPost: the next query is a MISS
  {q} -d '{{"query":"mutation {{ updatePost(id: \"1\", title: \"edited\") {{ id title }} }}"}}'
  # listPosts is served stale for 30 s after its TTL while the edge refreshes it
  {q} -d '{{"query":"{{ listPosts {{ id title }} }}"}}'
  # a purge by the admin API
  curl -s -X POST http://127.0.0.1:{admin_port}/admin/purge -H 'authorization: Bearer {ADMIN_TOKEN}' \
    -d '{{"site":"demo","type":"Post","ids":["1"]}}'
  # a wrong key: AppSync's 401, refused at the edge
  curl -s --cacert {ca} {url} -H 'content-type: application/json' -H 'x-api-key: da2-wrongwrongwrongwrongwrong12' -d '{{"query":"{{ hello }}"}}'
  curl -s --cacert {ca} {url} -H 'content-type: application/json' -H 'x-api-key: {API_KEY}' -d '{{"query":"{{ broken"}}'   # 400 at the edge
  curl -s http://127.0.0.1:{admin_port}/metrics | grep graphfront_cache
Subscribe (AppSync's real-time protocol, node 20), then create a post in another terminal:
  NODE_EXTRA_CA_CERTS={ca} node --experimental-websocket -e 'const w=new WebSocket("{ws}",["graphql-ws"]);w.onopen=()=>w.send(JSON.stringify({{type:"connection_init"}}));w.onmessage=(m)=>{{console.log(m.data);if(JSON.parse(m.data).type==="connection_ack")w.send(JSON.stringify({start}))}}'
  {q} -d '{{"query":"mutation {{ createPost(title: \"hi\") {{ id title }} }}"}}'
Stop with Ctrl-C."#
    );
}

/// Base64url without padding (the realtime `header` parameter).
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
