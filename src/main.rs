//! graphfront's command line: run the edge, check a configuration, or run the built-in demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graphfront::config::Config;
use graphfront::logging::{self, Format};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "graphfront",
    version,
    about = "An edge for GraphQL APIs: custom-domain TLS, GraphQL-aware forwarding, metrics."
)]
struct Cli {
    /// Log format (text for terminals, json for journald and log shippers).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, env = "GRAPHFRONT_LOG_FORMAT")]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge with a configuration file.
    Run {
        #[arg(short, long, default_value = "/etc/graphfront/graphfront.toml")]
        config: PathBuf,
        /// Take the listening sockets over from a running graphfront (zero-downtime upgrade).
        #[arg(short, long)]
        upgrade: bool,
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
        Command::Run { config, upgrade } => {
            let _guard = logging::init(cli.log_format);
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: invalid configuration:\n{e}", config.display());
                    return ExitCode::from(2);
                }
            };
            run(config, upgrade)
        }
        Command::Demo { port, admin_port } => {
            let _guard = logging::init(cli.log_format);
            match graphfront::demo::prepare(port, admin_port) {
                Ok(config) => run(config, false),
                Err(e) => {
                    eprintln!("demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration:\n{e}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut bad = false;
    for site in &config.sites {
        if let Err(e) = graphfront::tls::load_pem_files(&site.cert_file, &site.key_file) {
            eprintln!("site {}: certificate: {e}", site.name);
            bad = true;
        }
    }
    if bad {
        return ExitCode::from(2);
    }
    println!("{}: ok ({} sites)", path.display(), config.sites.len());
    ExitCode::SUCCESS
}

fn run(config: Config, upgrade: bool) -> ExitCode {
    match graphfront::server::build(config, upgrade) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("cannot start: {e:#}");
            ExitCode::FAILURE
        }
    }
}
