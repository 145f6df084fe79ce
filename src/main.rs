//! graphfront's command line: run the edge, check a configuration, or run the built-in demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graphfront::config::Config;
use graphfront::logging::{self, Format};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `graphfront --version`: the release and the build it came from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GRAPHFRONT_BUILD"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "graphfront",
    version = VERSION,
    about = "An edge for GraphQL APIs: custom-domain TLS, GraphQL-aware forwarding, metrics."
)]
struct Cli {
    /// Log format: auto (text on a terminal, json under journald), text or json. Overrides
    /// `[log] format`.
    #[arg(long, global = true, value_enum, env = "GRAPHFRONT_LOG_FORMAT")]
    log_format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge with a configuration file.
    Run {
        #[arg(short, long, default_value = "/etc/graphfront/graphfront.toml")]
        config: PathBuf,
        /// Take the listening sockets over from a running graphfront (zero-downtime upgrade):
        /// start the new process with this, then send SIGQUIT to the old one.
        #[arg(short, long)]
        upgrade: bool,
        /// Run in the background: return once the server process has written its pid file
        /// (systemd's Type=forking; with --upgrade, once it waits for the old process's sockets).
        #[arg(short, long)]
        daemon: bool,
    },
    /// Validate a configuration file (and load its certificates), then exit.
    Check {
        #[arg(short, long, default_value = "/etc/graphfront/graphfront.toml")]
        config: PathBuf,
    },
    /// Run the built-in demo: a GraphQL API with graphfront in front of it on https://localhost:8443.
    Demo {
        #[arg(long, default_value_t = 8443)]
        port: u16,
        #[arg(long, default_value_t = 9180)]
        admin_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config: path,
            upgrade,
            daemon,
        } => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let format = cli.log_format.unwrap_or(config.log_format).resolve();
            // During an upgrade the sockets come from the running process.
            if !upgrade && !listeners_free(&config) {
                return ExitCode::FAILURE;
            }
            if daemon {
                return graphfront::daemon::detach(&path, upgrade, format, &config.pid_file);
            }
            let _guard = logging::init(format, &config.log_level);
            run(config, upgrade)
        }
        Command::Demo { port, admin_port } => {
            let _guard = logging::init(cli.log_format.unwrap_or_default(), "info");
            match graphfront::demo::prepare(port, admin_port) {
                Ok(config) if listeners_free(&config) => run(config, false),
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration at `path`, or exit code 2 after printing every problem.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{}: invalid configuration:\n{e}", path.display());
        ExitCode::from(2)
    })
}

/// Whether every listening address can be bound; prints one line for each that cannot.
fn listeners_free(config: &Config) -> bool {
    let problems = graphfront::server::unbindable(config);
    for p in &problems {
        eprintln!("{p}");
    }
    problems.is_empty()
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut bad = false;
    for site in &config.sites {
        let graphfront::config::CertSource::Files { cert, key } = &site.certificate else {
            continue;
        };
        if let Err(e) = graphfront::tls::load_pem_files(cert, key) {
            eprintln!("site {}: certificate: {e}", site.name);
            bad = true;
        }
    }
    if bad {
        return ExitCode::from(2);
    }
    // A warning only: a running graphfront holds its own addresses.
    for p in graphfront::server::unbindable(&config) {
        eprintln!("warning: {p} (unless graphfront itself holds it)");
    }
    println!("{}: ok ({} sites)", path.display(), config.sites.len());
    ExitCode::SUCCESS
}

fn run(config: Config, upgrade: bool) -> ExitCode {
    let pid_file = config.pid_file.clone();
    let drain_notice = config.drain_notice;
    match graphfront::server::build(config, upgrade) {
        Ok(server) => {
            tracing::info!(
                version = VERSION,
                pid = std::process::id(),
                "graphfront running"
            );
            server.run(pingora::server::RunArgs {
                shutdown_signal: Box::new(graphfront::server::Signals { drain_notice }),
            });
            graphfront::daemon::remove_pid_file(&pid_file);
            tracing::info!("graphfront stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot start: {e:#}");
            ExitCode::FAILURE
        }
    }
}
