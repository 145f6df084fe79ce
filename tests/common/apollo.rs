//! Apollo Client with its persisted-queries link (`tests/js/apq-client.js`), run as a real
//! client against the edge.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// What `tests/js/apq-client.js` printed: its HTTP exchanges and its results.
pub struct ApolloRun {
    pub http: Vec<Value>,
    pub results: Vec<Value>,
}

/// Run Apollo Client (`mode`: post, or get for `useGETForHashedQueries`) `times` times with
/// `query` and `variables` against `url`, trusting the CA in `ca_file` and sending `headers`
/// (a JSON object) on every request. Every query must resolve.
pub async fn run(
    mode: &str,
    url: &str,
    ca_file: &Path,
    query: &str,
    variables: &Value,
    times: usize,
    headers: &Value,
) -> ApolloRun {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/@apollo/client").is_dir(),
        "Apollo Client is not installed: run `npm ci --prefix tests/js` (needs node and npm)"
    );
    let run = tokio::process::Command::new("node")
        .arg(js.join("apq-client.js"))
        .arg(mode)
        .arg(url)
        .env("APQ_QUERY", query)
        .env("APQ_VARIABLES", variables.to_string())
        .env("APQ_TIMES", times.to_string())
        .env("APQ_HEADERS", headers.to_string())
        .env("NODE_EXTRA_CA_CERTS", ca_file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Apollo client finished in time")
        .unwrap_or_else(|e| panic!("cannot run `node`: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.into())))
        .collect();
    assert_eq!(
        lines.last(),
        Some(&json!({ "done": true })),
        "the Apollo client did not finish:\n{stdout}\n{stderr}"
    );
    let pick = |k: &str| lines.iter().filter_map(|l| l.get(k).cloned()).collect();
    let run = ApolloRun {
        http: pick("http"),
        results: pick("result"),
    };
    assert_eq!(
        run.results.len(),
        times,
        "every query resolved:\n{stdout}\n{stderr}"
    );
    run
}
