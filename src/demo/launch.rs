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

[[site]]
name = "demo"
domains = ["localhost"]
upstream = "http://{api_addr}/graphql"
realtime-upstream = "ws://{api_addr}/graphql/ws"
tls = {{ cert = "localhost.pem", key = "localhost.key" }}
"#
    );
    let config = Config::parse(&text, &dir)?;
    print_howto(port, admin_port, &ca_file);
    Ok(config)
}

fn print_howto(port: u16, admin_port: u16, ca: &std::path::Path) {
    let ca = ca.display();
    let url = format!("https://localhost:{port}/graphql");
    println!(
        r#"graphfront demo: {url} -> built-in GraphQL API (certificate from a local CA: {ca})

Try:
  curl --cacert {ca} {url} -H 'content-type: application/json' \
    -d '{{"query":"{{ listPosts {{ id title }} }}"}}'
  curl --cacert {ca} {url} -H 'content-type: application/json' \
    -d '{{"query":"mutation {{ createPost(title: \"hi\") {{ id title }} }}"}}'
  curl --cacert {ca} -H 'apollo-require-preflight: true' '{url}?query=%7B%20getPost(id%3A%20%221%22)%20%7B%20title%20%7D%20%7D'
  curl --cacert {ca} {url} -H 'content-type: application/json' -d '{{"query":"{{ broken"}}'   # 400 at the edge
  curl http://127.0.0.1:{admin_port}/metrics | grep graphfront_
Subscriptions (graphql-transport-ws): wss://localhost:{port}/graphql/realtime
  e.g. subscription {{ onCreatePost {{ id title }} }}
Stop with Ctrl-C."#
    );
}
