//! The command line: `run`, `check-config`, `version`, `token`, `keygen`, `jwks`,
//! `dead-letters`. Parses arguments, loads configuration, and calls into the library; errors are
//! printed once, with their cause chain, and turned into a non-zero exit code.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::config::Config;

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
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Print the version.
    Version,
    /// Make a new API token for an account and print it with its [[api.tokens]] entry.
    Token {
        #[arg(long, default_value = "default")]
        account_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Consume events and deliver them, and serve the API.
    All,
    /// Consume events and deliver them (serves /healthz, /readyz, /metrics only).
    Worker,
    /// Serve the Webhooks API only.
    Api,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref())?)
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Version => println!("webhook-worker {}", env!("CARGO_PKG_VERSION")),
        Command::CheckConfig => {
            load(&cli)?;
            println!("configuration is valid");
        }
        Command::Token { account_id } => {
            let token = format!("whk_{}", hex::encode(rand::random::<[u8; 24]>()));
            let hash = hex::encode(Sha256::digest(token.as_bytes()));
            println!("token: {token}");
            println!("(keep it; only its hash goes in the configuration)\n");
            println!("[[api.tokens]]\naccount_id = {account_id:?}\ntoken_sha256 = \"{hash}\"");
        }
        Command::Run { role } => {
            let config = load(&cli)?;
            crate::app::run(config, *role)?;
        }
    }
    Ok(())
}
