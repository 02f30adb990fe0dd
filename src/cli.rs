//! The command line: `run`, `check-config`, `version`, `token`, `keygen`, `jwks`, `rotate-key`,
//! `listen`, `publish`, `healthcheck`, `dead-letters`. Parses arguments, loads configuration, and calls into the library; errors are
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
    oidc::{keygen::CERTIFICATE_VALIDITY, AccountKeys, SigningKey},
    store::Store,
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
        #[arg(long, default_value = "127.0.0.1", value_parser = crate::listen::bind_address)]
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
        "wrote {} (kid {kid}); list it in oidc.signing_keys",
        out.display()
    );
    if let Some(certificate) = certificate {
        eprintln!("its certificate, to upload to the identity provider:");
        print!("{certificate}");
    }
    Ok(())
}

/// The accounts' keys in the configured database.
async fn account_keys(config: &Config) -> anyhow::Result<AccountKeys> {
    let store = Store::from_config(config).await?;
    Ok(AccountKeys::new(Some(store), &config.oidc)?)
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Openapi => print!("{}", crate::api::openapi::document()),
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
        Command::Jwks { account_id } => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let set = runtime.block_on(async {
                anyhow::Ok(account_keys(&config).await?.current(account_id).await?)
            })?;
            eprintln!("public JWKS path: /jwks/{}", set.jwks_id);
            println!(
                "{}",
                serde_json::to_string_pretty(&set.jwks(chrono::Utc::now()))?
            );
        }
        Command::RotateKey { account_id } => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let rotation = runtime.block_on(async {
                anyhow::Ok(account_keys(&config).await?.rotate(account_id).await?)
            })?;
            println!(
                "{}",
                serde_json::json!({
                    "kid": rotation.kid,
                    "signs_from": crate::webhook::timestamp(rotation.signs_from),
                    "previous_keys_published_until":
                        crate::webhook::timestamp(rotation.previous_retire_at),
                })
            );
        }
        Command::DeadLetters { action } => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            match action {
                DeadLetterAction::List { limit } => {
                    let dead = crate::queue::Names::new(&config.amqp.prefix).dead;
                    let listing =
                        runtime.block_on(crate::dead_letters::list_counted(&config, *limit))?;
                    for letter in &listing.letters {
                        println!("{}", serde_json::to_string(letter)?);
                    }
                    // On stderr: stdout stays JSON lines for scripts.
                    eprintln!("{}", listing.summary_line(&dead));
                }
                DeadLetterAction::Replay { limit, webhook_id } => {
                    let dead = crate::queue::Names::new(&config.amqp.prefix).dead;
                    let mut progress = crate::progress::ReplayDisplay::on_stderr(&dead);
                    let summary = runtime.block_on(crate::dead_letters::replay_with_progress(
                        &config,
                        *limit,
                        *webhook_id,
                        &mut progress,
                    ))?;
                    println!("{}", serde_json::to_string(&summary)?);
                }
            }
        }
        Command::Listen {
            port,
            bind,
            secret,
            status,
            verbose,
        } => {
            let config = load(&cli)?;
            let status = axum::http::StatusCode::from_u16(*status)
                .ok()
                .filter(|s| (200..600).contains(&s.as_u16()))
                .context("--status must be an HTTP status from 200 to 599")?;
            let options = crate::listen::ListenOptions {
                bind: std::net::SocketAddr::new(*bind, *port),
                secret: secret.clone().map(crate::secret::Secret::new),
                signature_header: config.signature.header.clone(),
                status,
                verbose: *verbose,
            };
            tokio::runtime::Runtime::new()?.block_on(crate::listen::run(options))?;
        }
        Command::Publish {
            file,
            account_id,
            event_type,
        } => {
            let config = load(&cli)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let published = runtime.block_on(crate::publish::publish(
                &config,
                file.as_deref(),
                event_type.as_deref(),
                account_id,
            ))?;
            println!(
                "published event {} ({}) for account {account_id} to {}",
                published.event_id, published.event_type, published.exchange
            );
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(url) => url.clone(),
                None => crate::healthcheck::readyz_url(load(&cli)?.api.listen),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let body = runtime
                .block_on(crate::healthcheck::probe(&url))
                .map_err(anyhow::Error::msg)?;
            println!("{}", body.trim());
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
