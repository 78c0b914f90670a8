//! The command line: one subcommand per way of running Offside.
//!
//! Every subcommand shares the global configuration flags (each with an `OFFSIDE_*`
//! environment variable; see [`crate::config::Config`]).

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Mode};
use crate::config::Config;
use crate::store::Store;
use crate::store::audit;
use crate::store::keys::{self, Role};

/// Offside: recognises pirated re-streams of broadcasts and acts on them.
#[derive(Debug, Parser)]
#[command(name = "offside", version, about)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, reference jobs and workers in one process.
    Serve,
    /// Run workers only (scale-out behind RabbitMQ and PostgreSQL); no HTTP API.
    Worker,
    /// Apply database migrations and exit (`serve` and `worker` also apply them at start).
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the PDQ hash and quality of an image, or of every frame of a video.
    Hash(crate::commands::hash::HashArgs),
    /// Score an evaluation set (the eval-dev layout) in-process, without a server.
    Eval(crate::eval::EvalArgs),
    /// Read a video input (file, RTMP, SRT, UDP, HLS) and publish a keyframe every N seconds.
    Tap(crate::commands::tap::TapArgs),
    /// Drive many concurrent keyframe streams at a running service and measure it.
    Load(crate::commands::load::LoadArgs),
}

/// `offside keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, once, alone on the last line of stdout.
    Create {
        /// admin, trust_safety, rights_holder or ingest.
        #[arg(long)]
        role: Role,
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// The rights holder a rights_holder key is scoped to.
        #[arg(long = "rights-holder")]
        rights_holder: Option<String>,
        /// Create the SQLite database if its file does not exist (by default a missing file is
        /// refused: it usually means another directory than the one `offside serve` runs in).
        #[arg(long)]
        create_database: bool,
    },
    /// Revoke a key by id: requests with it get 401 from then on. The last active admin key
    /// cannot be revoked (create another admin key first).
    Revoke {
        /// The key's id (see `offside keys list`).
        id: String,
    },
    /// List keys (never their secrets).
    List,
}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init(cli.config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(dispatch(cli));
    // A reference job still hashing on a blocking thread gets a moment to notice shutdown; its
    // reference stays `processing` and is re-run at the next start.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let Cli { config, command } = cli;
    match command {
        Command::Serve => serve(config, Mode::Serve).await,
        Command::Worker => serve(config, Mode::Worker).await,
        Command::Migrate => {
            let store = connect(&config).await?;
            store.close().await;
            eprintln!("database is up to date");
            Ok(())
        }
        Command::Keys(keys_command) => keys_cli(config, keys_command).await,
        Command::Hash(args) => offline(move || crate::commands::hash::run(&args)).await,
        Command::Eval(args) => offline(move || crate::eval::run(&args)).await,
        Command::Tap(args) => crate::commands::tap::command(args, &config).await,
        Command::Load(args) => crate::commands::load::command(args, &config).await,
    }
}

/// Runs CPU-bound offline work (hashing, evaluation) on a blocking thread.
async fn offline(work: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(work).await.context("offline task panicked")?
}

async fn serve(config: Config, mode: Mode) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    crate::app::cancel_on_signals(cancel.clone());
    let app = App::build(config, mode).await?;
    app.run(cancel).await
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    Ok(store)
}

/// The file of a `sqlite://` URL (`None` for other databases and in-memory SQLite).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Connects an admin command to its database and says on stderr which one it is. A `sqlite://`
/// file that does not exist is refused unless `create`: with the default relative path, a
/// command run from another directory than `offside serve` would otherwise make a second,
/// empty database whose keys the server never sees.
async fn connect_existing(config: &Config, create: bool) -> anyhow::Result<Store> {
    let url = config.database_url.expose();
    match sqlite_file(url) {
        Some(file) => {
            let shown = std::path::absolute(&file).unwrap_or_else(|_| file.clone());
            if !file.exists() && !create {
                anyhow::bail!(
                    "no database at {} (from --database-url {url}). Run this command in the \
                     directory where `offside serve` runs, point --database-url \
                     (OFFSIDE_DATABASE_URL) at its database, or add --create-database to start a \
                     new one",
                    shown.display()
                );
            }
            eprintln!("database: {}", shown.display());
        }
        None => eprintln!("database: {}", config.database_url.redacted()),
    }
    connect(config).await
}

async fn keys_cli(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let create = matches!(command, KeysCommand::Create { create_database: true, .. });
    let store = connect_existing(&config, create).await?;
    let result = match command {
        KeysCommand::Create { role, name, rights_holder, create_database: _ } => {
            let request =
                crate::http::keys::CreateKey { role, name, rights_holder_id: rights_holder };
            let created = crate::http::keys::create_key(&store, &request, audit::COMMAND_LINE)
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            eprintln!(
                "created {} key {:?} with id {}; it is shown only now:",
                created.key.role, created.key.name, created.key.id
            );
            println!("{}", created.secret);
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            match crate::http::keys::revoke_key(&store, &id, audit::COMMAND_LINE).await {
                Ok(keys::Revocation::AlreadyRevoked(_)) => {
                    eprintln!("key {id} was already revoked");
                    Ok(())
                }
                Ok(_) => {
                    eprintln!("revoked key {id}");
                    Ok(())
                }
                Err(crate::http::ApiError::NotFound(_)) => {
                    Err(anyhow::anyhow!("no key with id {id}"))
                }
                Err(crate::http::ApiError::Internal(err)) => Err(err),
                Err(err) => Err(anyhow::anyhow!("{err}")),
            }
        }
        KeysCommand::List => {
            for key in keys::list(store.pool()).await? {
                let state = if key.revoked_at.is_some() { "revoked" } else { "active" };
                let scope = key.rights_holder_id.as_deref().unwrap_or("-");
                println!(
                    "{}\t{}\t{}\t{}\t{}…\t{state}",
                    key.id, key.role, key.name, scope, key.key_prefix
                );
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn the_sqlite_file_of_a_url_is_its_path_without_options() {
        let file = |u: &str| sqlite_file(u).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite://./offside-data/offside.db").as_deref(),
            Some("./offside-data/offside.db")
        );
        assert_eq!(file("sqlite:///var/lib/o.db?mode=rwc").as_deref(), Some("/var/lib/o.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u:p@h/db"), None);
    }
}
