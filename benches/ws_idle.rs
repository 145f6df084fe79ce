//! Idle real-time subscriptions at scale: N graphql-transport-ws connections subscribed to
//! `onCreatePost` (wss through graphfront, or ws straight to the demo API), the memory a watched
//! process (graphfront) spends on them, and how long an event takes from its mutation (always
//! POSTed to the demo API itself) to a sample of the subscribers.
//!
//!   bash benches/realtime-idle.sh            # the whole measurement, both paths in one run
//!   cargo bench --bench ws_idle              # no --url: a tiny self-contained run (smoke test)
//!
//! What the script runs (options also from the environment: `--connections` = WS_IDLE_CONNECTIONS):
//!   ws_idle certs DIR                        # DIR/ca.pem, localhost.pem, localhost.key (demo CA)
//!   ws_idle upstream 127.0.0.1:18095         # the demo API alone, on one thread
//!   ws_idle --url wss://localhost:28443/graphql/realtime --ca DIR/ca.pem \
//!     --mutate http://127.0.0.1:18095/graphql --connections 9950 --steps 2000,5000 \
//!     --watch graphfront=PID [--sample 200 --messages 30 --interval-ms 1000 --concurrency 100]
//!
//! Output lines the script reads: `rss NAME connections=N rss_kb=.. added_kb_per_connection=..`
//! (after each step, subscribed and settled; `connections=0` is the baseline) and
//! `latency .. p50_ms=.. p99_ms=..` (send of the mutation → event, sampled subscribers).
//!
//! Last figures: see the header of benches/realtime-idle.sh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::Message;

type Res<T> = Result<T, String>;

const INIT: &str = r#"{"type":"connection_init","payload":{}}"#;
const SUBSCRIBE: &str = concat!(
    r#"{"id":"1","type":"subscribe","#,
    r#""payload":{"query":"subscription { onCreatePost { id title } }"}}"#
);
const OPTIONS: &[&str] = &[
    "url",
    "ca",
    "mutate",
    "connections",
    "steps",
    "sample",
    "messages",
    "interval-ms",
    "concurrency",
    "watch",
    "settle-ms",
    "threads",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("certs") => certs(args.get(1).map_or("certs", String::as_str)),
        Some("upstream") => upstream(args.get(1).map_or("127.0.0.1:18095", String::as_str)),
        _ => Cfg::parse(&args).and_then(|cfg| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.threads)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(run(cfg))
        }),
    };
    if let Err(e) = result {
        eprintln!("ws_idle: {e}");
        std::process::exit(1);
    }
}

/// The run's parameters: `--name value` or `--name=value`, else `WS_IDLE_NAME`.
struct Cfg {
    url: Option<String>,
    ca: Option<String>,
    mutate: Option<String>,
    connections: usize,
    steps: Vec<usize>,
    sample: usize,
    messages: usize,
    interval: Duration,
    concurrency: usize,
    watch: Vec<(String, u32)>,
    settle: Duration,
    threads: usize,
}

impl Cfg {
    fn parse(args: &[String]) -> Res<Cfg> {
        let mut v: HashMap<&str, String> = HashMap::new();
        for name in OPTIONS {
            let env = format!("WS_IDLE_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(value) = std::env::var(env) {
                v.insert(name, value);
            }
        }
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            // `cargo bench` adds --bench; `-- --test` asks for a smoke run, which no --url gives.
            let Some(flag) = arg
                .strip_prefix("--")
                .filter(|f| !matches!(*f, "bench" | "test"))
            else {
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, val)) => (n, Some(val.to_string())),
                None => (flag, None),
            };
            let name = *OPTIONS.iter().find(|o| **o == name).ok_or_else(|| {
                format!("unknown option --{name} (options: {})", OPTIONS.join(", "))
            })?;
            let value = value
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("--{name} needs a value"))?;
            v.insert(name, value);
        }
        let smoke = !v.contains_key("url");
        let num = |name: &str, default: usize| -> Res<usize> {
            v.get(name).map_or(Ok(default), |s| {
                s.parse()
                    .map_err(|_| format!("--{name}: not a number: {s}"))
            })
        };
        let steps = match v.get("steps") {
            Some(s) => s
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| format!("--steps: not a number: {s}")))
                .collect::<Res<Vec<usize>>>()?,
            None => Vec::new(),
        };
        let watch = match v.get("watch") {
            Some(s) => s
                .split(',')
                .map(|w| {
                    let (name, pid) = w.split_once('=').unwrap_or(("process", w));
                    let pid = pid
                        .parse()
                        .map_err(|_| format!("--watch: not a pid: {w}"))?;
                    Ok((name.to_string(), pid))
                })
                .collect::<Res<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(Cfg {
            url: v.get("url").cloned(),
            ca: v.get("ca").cloned(),
            mutate: v.get("mutate").cloned(),
            connections: num("connections", if smoke { 20 } else { 10_000 })?,
            steps,
            sample: num("sample", if smoke { 5 } else { 200 })?.max(1),
            messages: num("messages", if smoke { 3 } else { 30 })?,
            interval: Duration::from_millis(
                num("interval-ms", if smoke { 20 } else { 1000 })? as u64
            ),
            concurrency: num("concurrency", 100)?.max(1),
            watch,
            settle: Duration::from_millis(num("settle-ms", if smoke { 0 } else { 1000 })? as u64),
            threads: num("threads", 1)?.max(1),
        })
    }
}

/// A test CA and a `localhost` certificate from it, for graphfront and the client.
fn certs(dir: &str) -> Res<()> {
    let ca = graphfront::demo::TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    for (name, text) in [
        ("ca.pem", ca.ca_pem()),
        ("localhost.pem", cert),
        ("localhost.key", key),
    ] {
        let path = format!("{dir}/{name}");
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// The demo API alone (as `graphfront demo` runs it: one thread), so graphfront's own memory can
/// be read apart from it.
fn upstream(addr: &str) -> Res<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("binding {addr}: {e}"))?;
        let router = graphfront::demo::router(graphfront::demo::schema());
        graphfront::demo::serve(listener, None, router)
            .await
            .map_err(|e| e.to_string())
    })
}

/// What the connections report, indexed by event: warm-up events `w<k>` prove that every
/// connection is subscribed; measured events `m<k>` carry the latency.
struct Shared {
    start: Instant,
    warm: Vec<AtomicUsize>,
    got: Vec<AtomicUsize>,
    sent_ns: Vec<AtomicU64>,
    /// When the last subscriber got each measured event.
    last_ns: Vec<AtomicU64>,
    expected: AtomicUsize,
    latencies_ns: Mutex<Vec<u64>>,
    /// Connections that ended after subscribing.
    lost: AtomicUsize,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn on_event(&self, title: &str, sample: bool) {
        let now = self.now_ns();
        let (kind, k) = title.split_at(1.min(title.len()));
        let Ok(k) = k.parse::<usize>() else { return };
        match kind {
            "w" => {
                if let Some(c) = self.warm.get(k) {
                    c.fetch_add(1, Relaxed);
                }
            }
            "m" if k < self.got.len() => {
                if self.got[k].fetch_add(1, Relaxed) + 1 == self.expected.load(Relaxed) {
                    self.last_ns[k].store(now, Relaxed);
                }
                if sample {
                    let sent = self.sent_ns[k].load(Relaxed);
                    if let Ok(mut l) = self.latencies_ns.lock() {
                        l.push(now.saturating_sub(sent));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Where the connections go: the URL, its address, and TLS for wss.
struct Target {
    url: String,
    addr: std::net::SocketAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Target {
    async fn new(url: &str, ca: Option<&str>) -> Res<Target> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let secure = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let tls = if secure {
            let path = ca.ok_or("wss needs --ca FILE")?;
            let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target {
            url: url.to_string(),
            addr,
            tls,
        })
    }

    /// Connection `i`: connected, upgraded, initialised and subscribed; then read in a task of
    /// its own until the process ends.
    async fn open(self: Arc<Self>, shared: Arc<Shared>, sample: bool) -> Res<()> {
        let (ready, subscribed) = oneshot::channel();
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                tokio::spawn(session(tls, self.url.clone(), shared, sample, ready));
            }
            None => {
                tokio::spawn(session(tcp, self.url.clone(), shared, sample, ready));
            }
        }
        subscribed
            .await
            .map_err(|_| "the session ended".to_string())?
    }
}

async fn session<S>(
    io: S,
    url: String,
    shared: Arc<Shared>,
    sample: bool,
    ready: oneshot::Sender<Res<()>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = match subscribe(io, &url).await {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        if text.contains(r#""type":"ping""#) {
            let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
        } else if let Some(title) = title(&text) {
            shared.on_event(title, sample);
        }
    }
    shared.lost.fetch_add(1, Relaxed);
}

async fn subscribe<S>(io: S, url: &str) -> Res<tokio_tungstenite::WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, io)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    ws.send(Message::text(INIT))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("connection_ack") => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("before connection_ack: {e}")),
            None => return Err("closed before connection_ack".into()),
        }
    }
    ws.send(Message::text(SUBSCRIBE))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// The `title` of an `onCreatePost` event, without parsing the rest.
fn title(text: &str) -> Option<&str> {
    let rest = &text[text.find(r#""title":""#)? + 9..];
    Some(&rest[..rest.find('"')?])
}

async fn mutate(http: &reqwest::Client, url: &str, title: &str) -> Res<()> {
    let body = format!(r#"{{"query":"mutation {{ createPost(title: \"{title}\") {{ id }} }}"}}"#);
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("mutation: {e}"))?;
    match r.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("mutation: HTTP {s}")),
    }
}

fn rss_kb(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

async fn run(mut cfg: Cfg) -> Res<()> {
    let mut _smoke_api = None;
    if cfg.url.is_none() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let router = graphfront::demo::router(graphfront::demo::schema());
        _smoke_api = Some(tokio::spawn(graphfront::demo::serve(
            listener, None, router,
        )));
        cfg.url = Some(format!("ws://{addr}/graphql/ws"));
        cfg.mutate = Some(format!("http://{addr}/graphql"));
    }
    let url = cfg.url.clone().unwrap_or_default();
    let mutate_url = cfg
        .mutate
        .clone()
        .ok_or("--mutate URL (the API's /graphql) is needed")?;
    let target = Arc::new(Target::new(&url, cfg.ca.as_deref()).await?);
    let http = reqwest::Client::new();
    let n = cfg.connections;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        warm: (0..cfg.steps.len() * 10 + 10)
            .map(|_| AtomicUsize::new(0))
            .collect(),
        got: (0..cfg.messages).map(|_| AtomicUsize::new(0)).collect(),
        sent_ns: (0..cfg.messages).map(|_| AtomicU64::new(0)).collect(),
        last_ns: (0..cfg.messages).map(|_| AtomicU64::new(0)).collect(),
        expected: AtomicUsize::new(n),
        latencies_ns: Mutex::new(Vec::new()),
        lost: AtomicUsize::new(0),
    });
    println!("ws_idle: {n} subscriptions at {url}, events from {mutate_url}");
    let mut baseline = Vec::new();
    for (name, pid) in &cfg.watch {
        let kb = rss_kb(*pid)?;
        println!("rss {name} connections=0 rss_kb={kb} added_kb_per_connection=0");
        baseline.push(kb);
    }
    let report = |opened: usize, label: &str| -> Res<()> {
        for ((name, pid), base) in cfg.watch.iter().zip(&baseline) {
            let kb = rss_kb(*pid)?;
            let per = (kb as f64 - *base as f64) / opened.max(1) as f64;
            println!(
                "rss {name} connections={opened}{label} rss_kb={kb} \
                 added_kb_per_connection={per:.2}"
            );
        }
        Ok(())
    };

    let stride = (n / cfg.sample).max(1);
    let (mut opened, mut next_warm) = (0, 0);
    let mut steps: Vec<usize> = cfg.steps.iter().copied().filter(|s| *s < n).collect();
    steps.push(n);
    for step in steps {
        let began = Instant::now();
        let mut pending = futures_util::stream::iter(opened..step)
            .map(|i| {
                let sample = i % stride == 0 && i / stride < cfg.sample;
                let open = target.clone().open(shared.clone(), sample);
                async move { tokio::time::timeout(Duration::from_secs(30), open).await }
            })
            .buffer_unordered(cfg.concurrency);
        while let Some(r) = pending.next().await {
            r.map_err(|_| "a connection took over 30 s to subscribe".to_string())??;
        }
        opened = step;
        let took = began.elapsed();
        // graphql-transport-ws does not acknowledge a subscription: an event proves it.
        let expected = opened - shared.lost.load(Relaxed);
        loop {
            let k = next_warm;
            next_warm += 1;
            let counter = shared
                .warm
                .get(k)
                .ok_or("subscriptions never all registered")?;
            mutate(&http, &mutate_url, &format!("w{k}")).await?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while counter.load(Relaxed) < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if counter.load(Relaxed) >= expected {
                break;
            }
        }
        println!(
            "subscribed connections={opened} in {:.1}s (lost so far: {})",
            took.as_secs_f64(),
            shared.lost.load(Relaxed)
        );
        tokio::time::sleep(cfg.settle).await;
        report(opened, "")?;
    }

    let expected = n - shared.lost.load(Relaxed);
    shared.expected.store(expected, Relaxed);
    let began = Instant::now();
    for k in 0..cfg.messages {
        shared.sent_ns[k].store(shared.now_ns(), Relaxed);
        let (http, url) = (http.clone(), mutate_url.clone());
        tokio::spawn(async move {
            if let Err(e) = mutate(&http, &url, &format!("m{k}")).await {
                eprintln!("ws_idle: {e}");
            }
        });
        tokio::time::sleep_until((began + cfg.interval * (k as u32 + 1)).into()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.got.iter().any(|g| g.load(Relaxed) < expected) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing: usize = shared
        .got
        .iter()
        .map(|g| expected.saturating_sub(g.load(Relaxed)))
        .sum();
    let mut lat = shared
        .latencies_ns
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let mut fanout: Vec<u64> = (0..cfg.messages)
        .filter(|k| shared.got[*k].load(Relaxed) >= expected)
        .map(|k| shared.last_ns[k].load(Relaxed) - shared.sent_ns[k].load(Relaxed))
        .collect();
    fanout.sort_unstable();
    let ms = |v: &[u64], q: f64| -> f64 {
        match v.len() {
            0 => f64::NAN,
            len => v[((q * len as f64).ceil() as usize).clamp(1, len) - 1] as f64 / 1e6,
        }
    };
    println!(
        "latency events={} samples={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} \
         last_subscriber_p50_ms={:.2} missing_events={missing} lost_connections={}",
        cfg.messages,
        lat.len(),
        ms(&lat, 0.5),
        ms(&lat, 0.9),
        ms(&lat, 0.99),
        ms(&lat, 1.0),
        ms(&fanout, 0.5),
        shared.lost.load(Relaxed),
    );
    tokio::time::sleep(cfg.settle).await;
    report(opened, " after-events")?;
    if missing > 0 || (lat.is_empty() && cfg.messages > 0) {
        return Err(format!("{missing} events did not reach their subscribers"));
    }
    Ok(())
}
