//! The `appealflow` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use appealflow::config::Config;
use appealflow::store::Store;

#[derive(Parser)]
#[command(name = "appealflow", version, about = "Omnichannel support stream processor")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The options of a command that serves HTTP over a store.
#[derive(clap::Args)]
struct Listening {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Store URL, overriding `store.url`.
    #[arg(long)]
    db: Option<String>,
    /// Address to listen on, overriding `api.listen` (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Process JSONL inputs (files, `-` for stdin) and print output records on stdout.
    Replay {
        /// TOML config; `APPEALFLOW__SECTION__KEY` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Store URL, overriding `store.url` (`sqlite://FILE`, `postgres://...`).
        #[arg(long)]
        db: Option<String>,
        /// Do not draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Input files in order; `-` reads stdin.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// The consumer-group service: inbound and commands topics in, records out.
    Run {
        /// TOML config; `APPEALFLOW__SECTION__KEY` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Serve the read API (SPEC "Read API") over the store until interrupted.
    Api(Listening),
    /// The whole product on one machine without Kafka: the pipeline fed over HTTP, the read
    /// and write API and the console; output records on stdout.
    Serve(Listening),
    /// Validate a config and explain every problem with its key.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Reports over the stored state.
    Report {
        #[command(subcommand)]
        report: Report,
    },
}

#[derive(Subcommand)]
enum Report {
    /// Per bot scenario and block: entries so far, and the blocks never reached.
    Scenarios {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Store URL, overriding `store.url`.
        #[arg(long)]
        db: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("appealflow: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "appealflow=warn".into());
    // Colour codes only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.map(PathBuf::as_path)).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

/// A CRM whose TLS certificate is not trusted stops the start: every lookup would fail.
async fn check_crm_certificates(config: &Config) -> anyhow::Result<()> {
    for (pi, project) in config.projects.iter().enumerate() {
        if let Some(crm) = &project.crm {
            let at = format!("projects[{pi}].crm");
            appealflow::crm::check_certificate(&project.id, crm, &at).await.map_err(anyhow::Error::msg)?;
        }
    }
    Ok(())
}

/// The services start despite warnings, but an operator reading the log should see them.
fn log_warnings(config: &Config) {
    for w in config.warnings() {
        tracing::warn!(key = %w.key, "config: {}", w.message);
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config } => {
            let config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            print!("{}", appealflow::config::explain(&config));
            print!("{}", appealflow::config::explain_warnings(&config.warnings()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let shutdown = shutdown_signal();
            match load(config.as_ref()) {
                Ok(config) => run(config, shutdown).await,
                Err(code) => Ok(code),
            }
        }
        Command::Report { report: Report::Scenarios { config, db } } => {
            match load_with_db(config.as_ref(), db) {
                Ok(config) => report_scenarios(config).await,
                Err(code) => Ok(code),
            }
        }
        Command::Api(Listening { config, db, listen }) => match load_with_db(config.as_ref(), db) {
            Ok(config) => api(config, listen).await,
            Err(code) => Ok(code),
        },
        Command::Serve(Listening { config, db, listen }) => match load_with_db(config.as_ref(), db) {
            Ok(config) => serve(config, listen).await,
            Err(code) => Ok(code),
        },
        Command::Replay { config, db, no_progress, inputs } => match load_with_db(config.as_ref(), db) {
            Ok(config) => replay(config, &inputs, !no_progress).await,
            Err(code) => Ok(code),
        },
    }
}

/// The config, with `--db` in place of `store.url` when given.
fn load_with_db(path: Option<&PathBuf>, db: Option<String>) -> Result<Config, ExitCode> {
    let mut config = load(path)?;
    if let Some(db) = db {
        config.store.url = db;
    }
    Ok(config)
}

async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<ExitCode> {
    log_warnings(&config);
    check_crm_certificates(&config).await?;
    // A service may start before its database: wait for it, however long.
    let store = Store::connect_with_retry(&config.store.url, config.store.max_connections, None).await?;
    let stats = appealflow::run::run(Arc::new(config), store.clone(), shutdown).await?;
    store.close().await;
    eprintln!(
        "appealflow run stopped: {} batches, {} inputs ({} applied, {} duplicates, {} DLQ)",
        stats.batches, stats.stats.inputs, stats.stats.applied, stats.stats.duplicates, stats.stats.dlq
    );
    Ok(ExitCode::SUCCESS)
}

async fn api(config: Config, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let listen = listen.or_else(|| Some(config.api.listen.clone()).filter(|l| !l.is_empty()));
    let listen = listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    if config.api.tokens.is_empty() {
        eprintln!("appealflow api: no [[api.tokens]] in the config: every request would be refused");
        return Ok(ExitCode::from(2));
    }
    let store = Store::connect_reader(&config.store.url, config.store.max_connections).await?;
    // With [kafka] set, commands go to the commands topic, for a `run` to apply.
    let mut writes = appealflow::api::Writes::default();
    let watch = appealflow::broker::Watch::default();
    if config.kafka_configured {
        let timeout = appealflow::run::COMMAND_DELIVERY_TIMEOUT;
        let producer = appealflow::emit::kafka::CommandProducer::new(&config.kafka, timeout, watch.clone())?;
        writes.sink = Some(Arc::new(producer));
    }
    let addr = appealflow::api::serve(&listen, Arc::new(config), store.clone(), writes).await?;
    eprintln!("appealflow api: serving http://{addr}/v1 (Ctrl-C stops)");
    // A rejected certificate or login stops it: every command would be refused until then.
    let fatal = tokio::select! {
        _ = shutdown_signal() => None,
        fatal = watch.failed() => Some(fatal),
    };
    store.close().await;
    match fatal {
        Some(fatal) => anyhow::bail!("{fatal}"),
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn serve(mut config: Config, listen: Option<String>) -> anyhow::Result<ExitCode> {
    log_warnings(&config);
    let listen = listen.or_else(|| Some(config.api.listen.clone()).filter(|l| !l.is_empty()));
    config.api.listen = listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    if config.api.tokens.is_empty() {
        eprintln!("appealflow serve: no [[api.tokens]] in the config: every request would be refused");
        return Ok(ExitCode::from(2));
    }
    // Install the handlers first: a SIGTERM during start-up still stops it cleanly.
    let shutdown = shutdown_signal();
    check_crm_certificates(&config).await?;
    let store = Store::connect_with_retry(&config.store.url, config.store.max_connections, Some(8)).await?;
    let out: appealflow::serve::Output = Box::new(std::io::BufWriter::new(std::io::stdout()));
    let service = appealflow::serve::Service::start(Arc::new(config), store.clone(), out).await?;
    eprintln!("appealflow serve: http://{}/ (console), /v1 (API); Ctrl-C stops", service.addr);
    shutdown.await;
    let stats = service.stop().await?;
    store.close().await;
    eprintln!(
        "appealflow serve stopped: {} inputs ({} applied, {} duplicates, {} DLQ)",
        stats.inputs, stats.applied, stats.duplicates, stats.dlq
    );
    Ok(ExitCode::SUCCESS)
}

async fn report_scenarios(config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect_reader(&config.store.url, 1).await?;
    let entries = store.bot_block_entries().await?;
    store.close().await;
    let scenarios = appealflow::bot::Scenarios::compile(&config);
    print!("{}", appealflow::bot::render_reports(&scenarios, &entries));
    Ok(ExitCode::SUCCESS)
}

async fn replay(config: Config, inputs: &[String], progress: bool) -> anyhow::Result<ExitCode> {
    log_warnings(&config);
    check_crm_certificates(&config).await?;
    let store = Store::connect_with_retry(&config.store.url, config.store.max_connections, Some(8)).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let summary =
        appealflow::replay::replay(Arc::new(config), store.clone(), inputs, &mut out, progress).await?;
    store.close().await;
    eprintln!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (before
/// connecting to anything), so a signal that arrives during start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
