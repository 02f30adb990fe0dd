//! One function per command of the command line: each takes what it needs, already parsed, and
//! prints its result; errors go back to [`super::main`], which prints them once.

use std::{io::Write, path::Path};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{DeadLetterAction, Role};
use crate::{
    app::Application,
    config::Config,
    oidc::{keygen::CERTIFICATE_VALIDITY, AccountKeys, SigningKey},
    store::Store,
    tools,
};

pub(super) fn check_config(_valid: Config) {
    println!("configuration is valid");
}

pub(super) fn token(account_id: &str) {
    let token = format!("whk_{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    println!("token: {token}");
    println!("(keep it; only its hash goes in the configuration)\n");
    println!("[[api.tokens]]\naccount_id = {account_id:?}\ntoken_sha256 = \"{hash}\"");
}

/// `keygen`: the key (and certificate) go to `out`, created readable by its owner only, or to
/// stdout. With `out`, only public things are printed: the kid and the certificate.
pub(super) fn keygen(out: Option<&Path>, bits: usize, cert: bool) -> anyhow::Result<()> {
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
pub(super) async fn account_keys(config: &Config) -> anyhow::Result<AccountKeys> {
    let store = Store::from_config(config).await?;
    Ok(AccountKeys::new(Some(store), &config.oidc)?)
}

pub(super) async fn jwks(config: &Config, account_id: &str) -> anyhow::Result<()> {
    let set = account_keys(config).await?.current(account_id).await?;
    eprintln!("public JWKS path: /jwks/{}", set.jwks_id);
    let jwks = set.jwks(chrono::Utc::now());
    println!("{}", serde_json::to_string_pretty(&jwks)?);
    Ok(())
}

pub(super) async fn rotate_key(config: &Config, account_id: &str) -> anyhow::Result<()> {
    let rotation = account_keys(config).await?.rotate(account_id).await?;
    println!(
        "{}",
        serde_json::json!({
            "kid": rotation.kid,
            "signs_from": crate::webhook::timestamp(rotation.signs_from),
            "previous_keys_published_until":
                crate::webhook::timestamp(rotation.previous_retire_at),
        })
    );
    Ok(())
}

pub(super) async fn dead_letters(config: &Config, action: &DeadLetterAction) -> anyhow::Result<()> {
    match action {
        DeadLetterAction::List { limit } => {
            let dead = crate::queue::Names::new(&config.amqp.prefix).dead;
            let listing = tools::dead_letters::list_counted(config, *limit).await?;
            for letter in &listing.letters {
                println!("{}", serde_json::to_string(letter)?);
            }
            // On stderr: stdout stays JSON lines for scripts.
            eprintln!("{}", listing.summary_line(&dead));
        }
        DeadLetterAction::Replay { limit, webhook_id } => {
            let dead = crate::queue::Names::new(&config.amqp.prefix).dead;
            let mut progress = tools::progress::ReplayDisplay::on_stderr(&dead);
            let summary = tools::dead_letters::replay_with_progress(
                config,
                *limit,
                *webhook_id,
                &mut progress,
            )
            .await?;
            println!("{}", serde_json::to_string(&summary)?);
        }
    }
    Ok(())
}

/// `listen`'s arguments, as given.
pub(super) struct ListenArgs {
    pub bind: std::net::SocketAddr,
    pub secret: Option<String>,
    pub status: u16,
    pub verbose: bool,
    pub tolerance: std::time::Duration,
}

pub(super) async fn listen(config: &Config, args: ListenArgs) -> anyhow::Result<()> {
    let status = axum::http::StatusCode::from_u16(args.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .context("--status must be an HTTP status from 200 to 599")?;
    let options = tools::listen::ListenOptions {
        bind: args.bind,
        secret: args.secret.map(crate::secret::Secret::new),
        signature_header: config.signature.header.clone(),
        status,
        verbose: args.verbose,
        tolerance: args.tolerance,
    };
    tools::listen::run(options).await
}

pub(super) async fn publish(
    config: &Config,
    file: Option<&Path>,
    account_id: &str,
    event_type: Option<&str>,
) -> anyhow::Result<()> {
    let published = tools::publish::publish(config, file, event_type, account_id).await?;
    println!(
        "published event {} ({}) for account {account_id} to {}",
        published.event_id, published.event_type, published.exchange
    );
    Ok(())
}

/// `healthcheck`: reads the configuration only when no URL is given.
pub(super) async fn healthcheck(
    config: impl FnOnce() -> anyhow::Result<Config>,
    url: Option<&str>,
) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url.to_string(),
        None => tools::healthcheck::readyz_url(config()?.api.listen),
    };
    let body = tools::healthcheck::probe(&url).await?;
    println!("{}", body.trim());
    Ok(())
}

pub(super) async fn migrate_queues(config: &Config) -> anyhow::Result<()> {
    let migrated = crate::queue::migrate::run(config).await?;
    if migrated.is_empty() {
        println!("every queue already has the arguments this version declares");
    }
    for queue in migrated {
        println!("{}", serde_json::to_string(&queue)?);
    }
    Ok(())
}

/// `run`: logging, then the application until a signal.
pub(super) async fn run(config: Config, role: Role) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config.log);
    let app = Application::start(config, role).await?;
    app.run_until_signalled().await
}
