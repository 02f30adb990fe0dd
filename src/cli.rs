//! The command line: `run`, `check-config`, `version`, `token`, `keygen`, `jwks`, `rotate-key`,
//! `listen`, `publish`, `healthcheck`, `dead-letters`. Parses arguments, loads configuration, and calls into the library; errors are
//! printed once, with their cause chain, and turned into a non-zero exit code.

mod commands;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
pub use crate::role::Role;

#[derive(Debug, Parser)]
#[command(
    name = "webhook-worker",
    version,
    about = "Delivers platform events from RabbitMQ to customer webhooks."
)]
pub struct Cli {
    /// A TOML file merged over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, env = "WEBHOOK_WORKER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker, the Webhooks API, or both.
    Run {
        /// What this process does.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Print the version.
    Version,
    /// Make a new API token for an account and print it with its [[api.tokens]] entry.
    Token {
        /// The account the token gives access to (its webhooks only).
        #[arg(long, default_value = "default")]
        account_id: String,
    },
    /// Make a new RSA signing key for private_key_jwt (PKCS#8 PEM) and, with --cert, a
    /// self-signed certificate for it (Microsoft Entra asks for one). Only for a single-account
    /// deployment (oidc.signing_keys); accounts otherwise get keys of their own automatically.
    Keygen {
        /// Write the key (and certificate) to this new file, readable by its owner only, instead
        /// of printing it. An existing file is never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The key size in bits: 2048 to 8192, a multiple of 8.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Also make a self-signed certificate, valid for two years, kept with the key.
        #[arg(long)]
        cert: bool,
    },
    /// Print an account's public JWKS (its keys are made on first need) and its public URL id.
    Jwks {
        /// The account whose keys to print.
        #[arg(long)]
        account_id: String,
    },
    /// Add a new signing key to an account: published at once, signing after
    /// oidc.key_rotation_delay; the keys it replaces stay published oidc.key_retirement_grace
    /// longer.
    RotateKey {
        /// The account whose keys to rotate.
        #[arg(long)]
        account_id: String,
    },
    /// Receive deliveries on a local port and check their signatures (for development; needs
    /// no broker). Prints one line per delivery.
    Listen {
        /// The port to listen on (0: any free port, printed at start).
        #[arg(long, default_value_t = 4000)]
        port: u16,
        /// The address to listen on: an IP address, e.g. 127.0.0.1 or 0.0.0.0.
        #[arg(long, default_value = "127.0.0.1", value_parser = crate::tools::listen::bind_address)]
        bind: std::net::IpAddr,
        /// The webhook's secret, to check each delivery's signature (or set WEBHOOK_SECRET).
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Answer every delivery with this HTTP status (e.g. 503, to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Also print each delivery's headers and its body, pretty-printed.
        #[arg(long)]
        verbose: bool,
        /// Refuse (400) a Standard Webhooks delivery whose webhook-timestamp is further than
        /// this from now; accepted deliveries are remembered this long to refuse replays.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        tolerance: std::time::Duration,
    },
    /// Publish an event to the events exchange (<amqp.prefix>.events) as a producer would, and
    /// wait for the broker's confirm.
    Publish {
        /// A JSON file holding the event; without it, a built-in business.updated sample with a
        /// fresh id.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The account the event belongs to (the account_id header).
        #[arg(long, default_value = "default")]
        account_id: String,
        /// Set the event's type (and routing key) to this.
        #[arg(long)]
        event_type: Option<String>,
    },
    /// Exit 0 when the worker's /readyz answers 200, else 1 (for a container HEALTHCHECK).
    Healthcheck {
        /// The URL to ask; default: /readyz on the configured api.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// Inspect or replay the dead-letter queue (<amqp.prefix>.dead).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Print the API's OpenAPI document (as served at /openapi.json); the committed copy is
    /// written with `webhook-worker openapi > docs/openapi.json`.
    Openapi,
    /// Re-declare queues an older version declared with other arguments, keeping every
    /// message. Stop every worker first; producers may keep publishing.
    MigrateQueues,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Print up to --limit dead letters as JSON lines (reason, detail, event, webhook, attempts),
    /// then on stderr how many the queue holds and their reasons. Nothing is removed.
    List {
        /// Print at most this many dead letters (the oldest first).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Send deliveries whose retries ran out back for a fresh first attempt (after the endpoint
    /// is fixed). Poison messages stay where they are. Shows progress on stderr (a bar on a
    /// terminal, plain lines otherwise), with a line for each letter skipped and why, and prints
    /// the summary as JSON on stdout.
    Replay {
        /// Look at most at this many dead letters (the oldest first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only this webhook's deliveries.
        #[arg(long)]
        webhook_id: Option<uuid::Uuid>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match runtime().and_then(|runtime| runtime.block_on(execute(cli))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime every command runs on: the API, the registry, the logs' writers. One worker
/// thread per core unless TOKIO_WORKER_THREADS says otherwise. Deliveries run on threads of
/// their own (`delivery.threads`, see `worker::thread`).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let config = || load(&cli);
    match &cli.command {
        Command::Openapi => print!("{}", crate::api::openapi::document()),
        Command::Version => println!("webhook-worker {}", env!("CARGO_PKG_VERSION")),
        Command::CheckConfig => commands::check_config(config()?),
        Command::Token { account_id } => commands::token(account_id),
        Command::Keygen { out, bits, cert } => commands::keygen(out.as_deref(), *bits, *cert)?,
        Command::Jwks { account_id } => commands::jwks(&config()?, account_id).await?,
        Command::RotateKey { account_id } => commands::rotate_key(&config()?, account_id).await?,
        Command::DeadLetters { action } => commands::dead_letters(&config()?, action).await?,
        Command::Listen {
            port,
            bind,
            secret,
            status,
            verbose,
            tolerance,
        } => {
            let options = commands::ListenArgs {
                bind: std::net::SocketAddr::new(*bind, *port),
                secret: secret.clone(),
                status: *status,
                verbose: *verbose,
                tolerance: *tolerance,
            };
            commands::listen(&config()?, options).await?
        }
        Command::Publish {
            file,
            account_id,
            event_type,
        } => {
            commands::publish(
                &config()?,
                file.as_deref(),
                account_id,
                event_type.as_deref(),
            )
            .await?
        }
        Command::Healthcheck { url } => commands::healthcheck(config, url.as_deref()).await?,
        Command::MigrateQueues => commands::migrate_queues(&config()?).await?,
        Command::Run { role } => commands::run(config()?, *role).await?,
    }
    Ok(())
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref())?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand and every option says what it is for in `--help`.
    #[test]
    fn every_command_and_option_has_help_text() {
        let command = Cli::command();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        let mut stack = vec![(String::from("webhook-worker"), command)];
        while let Some((path, command)) = stack.pop() {
            if path != "webhook-worker" && command.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
