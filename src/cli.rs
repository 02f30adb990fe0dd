//! The command line: `run`, `check-config`, `version`, `token`, `keygen`, `jwks`,
//! `dead-letters`. Parses arguments, loads configuration, and calls into the library; errors are
//! printed once, with their cause chain, and turned into a non-zero exit code.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::{
    config::Config,
    oidc::{keygen::CERTIFICATE_VALIDITY, SigningKey, SigningKeys},
};

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
    /// Make a new RSA signing key for private_key_jwt (PKCS#8 PEM) and, with --cert, a
    /// self-signed certificate for it (Microsoft Entra asks for one). List the file in
    /// oidc.signing_keys.
    Keygen {
        /// Write the key (and certificate) to this new file, readable by its owner only, instead
        /// of printing it. An existing file is never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Also make a self-signed certificate, valid for two years, kept with the key.
        #[arg(long)]
        cert: bool,
    },
    /// Print the public JWKS of the configured signing keys (oidc.signing_keys).
    Jwks,
    /// Inspect or replay the dead-letter queue (<amqp.prefix>.dead).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Re-declare queues an older version declared with other arguments, keeping every
    /// message. Stop every worker first; producers may keep publishing.
    MigrateQueues,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Print up to --limit dead letters as JSON lines (reason, detail, event, webhook, attempts).
    /// Nothing is removed.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Send deliveries whose retries ran out back for a fresh first attempt (after the endpoint
    /// is fixed). Poison messages stay where they are.
    Replay {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only this webhook's deliveries.
        #[arg(long)]
        webhook_id: Option<uuid::Uuid>,
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

/// `keygen`: the key (and certificate) go to `out`, created readable by its owner only, or to
/// stdout. With `out`, only public things are printed: the kid and the certificate.
fn keygen(out: Option<&Path>, bits: usize, cert: bool) -> anyhow::Result<()> {
    let key = crate::oidc::generate_key(bits)?;
    let certificate = match cert {
        true => Some(crate::oidc::self_signed_certificate(
            &key,
            "webhook-worker",
            CERTIFICATE_VALIDITY,
        )?),
        false => None,
    };
    let pem = format!("{key}{}", certificate.as_deref().unwrap_or_default());
    let Some(out) = out else {
        print!("{pem}");
        return Ok(());
    };
    let kid = SigningKey::from_pem(out, &pem)?.kid().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} (kid {kid}); add it to oidc.signing_keys",
        out.display()
    );
    if let Some(certificate) = certificate {
        eprintln!("its certificate, to upload to the identity provider:");
        print!("{certificate}");
    }
    Ok(())
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
        Command::Keygen { out, bits, cert } => keygen(out.as_deref(), *bits, *cert)?,
        Command::Jwks => {
            let config = load(&cli)?;
            let keys = SigningKeys::load(&config.oidc.signing_keys)?;
            if keys.is_empty() {
                eprintln!("no signing keys are configured (oidc.signing_keys)");
            }
            println!("{}", crate::oidc::jwks_json(&keys));
        }
        Command::DeadLetters { action } => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            match action {
                DeadLetterAction::List { limit } => {
                    for letter in runtime.block_on(crate::dead_letters::list(&config, *limit))? {
                        println!("{}", serde_json::to_string(&letter)?);
                    }
                }
                DeadLetterAction::Replay { limit, webhook_id } => {
                    let summary = runtime.block_on(crate::dead_letters::replay(
                        &config,
                        *limit,
                        *webhook_id,
                    ))?;
                    println!("{}", serde_json::to_string(&summary)?);
                }
            }
        }
        Command::MigrateQueues => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let migrated = runtime.block_on(crate::queue::migrate::run(&config))?;
            if migrated.is_empty() {
                println!("every queue already has the arguments this version declares");
            }
            for queue in migrated {
                println!("{}", serde_json::to_string(&queue)?);
            }
        }
        Command::Run { role } => {
            let config = load(&cli)?;
            crate::app::run(config, *role)?;
        }
    }
    Ok(())
}
