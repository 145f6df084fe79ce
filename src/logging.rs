//! Logging: `tracing` with pingora's `log` records bridged in, written through a non-blocking
//! writer so no request waits on stderr. The level comes from `[log] level`, overridden by
//! `GRAPHFRONT_LOG` (or `RUST_LOG`). Client TLS handshake failures (routine at the edge) are
//! counted in metrics instead of filling the error log.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::Context;
use tracing_subscriber::{fmt, prelude::*, EnvFilter, Layer};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Text on a terminal, JSON under journald (`JOURNAL_STREAM` set), text otherwise.
    #[default]
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line (journald, log shippers).
    Json,
}

/// Where pingora logs per-connection accept and handshake outcomes.
const LISTENER_TARGET: &str = "pingora_core::services::listening";

impl Format {
    /// `Auto` decided for this process's stderr.
    pub fn resolve(self) -> Format {
        use std::io::IsTerminal;
        match self {
            Format::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => Format::Json,
            Format::Auto if std::io::stderr().is_terminal() => Format::Text,
            Format::Auto => Format::Text,
            f => f,
        }
    }
}

/// Check `[log] level`: a level, or comma-separated `target=level` directives (a bare word
/// that is not a level is refused, where `tracing` would take it as a target).
pub fn check_directives(directives: &str) -> Result<(), String> {
    use std::str::FromStr;
    let level = |s: &str| tracing::level_filters::LevelFilter::from_str(s.trim()).is_ok();
    for d in directives.split(',') {
        let ok = match d.rsplit_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(d),
        };
        if !ok {
            return Err(format!(
                "`{d}` is not a level (off, error, warn, info, debug, trace) or `target=level`"
            ));
        }
    }
    EnvFilter::builder()
        .parse(directives)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The filter directives in force: `GRAPHFRONT_LOG`, else `RUST_LOG`, else the configured ones.
pub fn level_directives(configured: &str) -> String {
    ["GRAPHFRONT_LOG", "RUST_LOG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| configured.to_string())
}

/// The log writer's worker: dropping it writes out what is queued.
static WORKER: std::sync::Mutex<Option<WorkerGuard>> = std::sync::Mutex::new(None);

/// Writes out queued log lines when dropped (at the end of `main`).
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// Write out every queued log line and stop the writer; call before `std::process::exit`.
pub fn flush() {
    let worker = WORKER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(worker);
}

/// Install the global subscriber. Keep the guard alive for the life of the process.
pub fn init(format: Format, configured_level: &str) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    *WORKER.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    let directives = level_directives(configured_level);
    let filter = || {
        let base = EnvFilter::builder().parse(&directives).unwrap_or_else(|e| {
            eprintln!("log level `{directives}` ignored ({e}); logging at info");
            EnvFilter::new("info")
        });
        // The listener's lines are re-emitted by `ListenerEvents`, minus handshake noise, and
        // pingora's others by `Redacted`, without the raw request bytes they may quote.
        [LISTENER_TARGET, "pingora_core", "pingora_proxy"]
            .iter()
            .fold(base, |f, target| {
                f.add_directive(format!("{target}=off").parse().expect("static directive"))
            })
    };
    let output = match format.resolve() {
        Format::Json => fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter())
            .boxed(),
        Format::Text | Format::Auto => fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_filter(filter())
            .boxed(),
    };
    // Only the listener's warnings and errors reach `ListenerEvents`, so the log bridge can drop
    // pingora's debug records at the macro (they were ~2% of a proxied request's CPU).
    let listener = ListenerEvents.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(LISTENER_TARGET, tracing::Level::WARN),
    );
    let redacted = Redacted.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("pingora_core", tracing::Level::WARN)
            .with_target("pingora_proxy", tracing::Level::WARN)
            .with_target(LISTENER_TARGET, tracing::level_filters::LevelFilter::OFF),
    );
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(listener)
        .with(redacted)
        .try_init();
    // The log bridge is installed accepting every level; narrow it to what is enabled so
    // pingora's `debug!` records stop at the macro.
    log::set_max_level(match tracing::level_filters::LevelFilter::current() {
        f if f == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        f if f == tracing::level_filters::LevelFilter::ERROR => log::LevelFilter::Error,
        f if f == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        f if f == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        f if f == tracing::level_filters::LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
    LogGuard(())
}

/// Counts pingora's downstream handshake failures by reason and re-emits its other listener
/// errors (accept failures) under graphfront's own target.
struct ListenerEvents;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

impl<S: Subscriber> Layer<S> for ListenerEvents {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        match handshake_failure_reason(&msg.0) {
            Some("counted_by_store") => {}
            Some(reason) => crate::metrics::get()
                .tls_handshake_failures
                .with_label_values(&[reason])
                .inc(),
            None => tracing::error!(target: "graphfront::listener", "{}", msg.0),
        }
    }
}

/// Re-emits pingora's warnings and errors under graphfront's target with the raw request bytes
/// they quote (`buf: ...`, headers and credentials included) withheld: no log line holds a
/// credential.
struct Redacted;

impl<S: Subscriber> Layer<S> for Redacted {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        let line = redact(&msg.0);
        if *event.metadata().level() == tracing::Level::ERROR {
            tracing::error!(target: "graphfront::pingora", "{line}");
        } else {
            tracing::warn!(target: "graphfront::pingora", "{line}");
        }
    }
}

/// `line` cut before the request bytes pingora quotes after `buf: `.
pub fn redact(line: &str) -> std::borrow::Cow<'_, str> {
    match line.find("buf: ") {
        Some(at) => format!("{}buf: <request bytes withheld>", &line[..at]).into(),
        None => line.into(),
    }
}

/// The bounded reason for one of pingora's handshake error lines; `None` for other lines.
/// Refusals by the certificate store are counted there (unknown_sni, no_sni, no_certificate).
pub fn handshake_failure_reason(line: &str) -> Option<&'static str> {
    if !line.starts_with("Downstream handshake") {
        return None;
    }
    let l = line.to_ascii_lowercase();
    Some(if l.contains("timeout") || l.contains("timed out") {
        "timeout"
    } else if l.contains("no server certificate chain resolved") {
        "counted_by_store"
    } else if l.contains("close_notify")
        || l.contains("reset")
        || l.contains("eof")
        || l.contains("closed")
        || l.contains("broken pipe")
    {
        "client_closed"
    } else if l.contains("incompatible") || l.contains("version") || l.contains("ciphersuite") {
        "incompatible"
    } else if l.contains("alert") {
        "client_alert"
    } else {
        "other"
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn request_bytes_are_withheld() {
        let line = "HTTP server fails to read from downstream: InvalidHTTPHeader context: buf: \"GET / HTTP/1.1\\r\\nAuthorization: Bearer s3cret\" cause: invalid";
        let out = redact(line);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.starts_with("HTTP server fails to read from downstream"));
        assert_eq!(redact("no bytes here"), "no bytes here");
    }
}
