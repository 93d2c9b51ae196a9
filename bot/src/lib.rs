//! The Discord bot: poise commands over the supervisor's control socket, and deploy
//! announcements from its event stream.
//!
//! # Layout
//! - `settings`: the environment, checked all at once (a missing token is exit 78).
//! - `store`: per-guild settings and the announcement ledger, one JSON file on the data volume,
//!   replaced atomically.
//! - `logic`: what the commands say, as plain functions (tested without Discord).
//! - `control`: the supervisor calls the commands make.
//! - `commands`: the poise commands, thin adapters over `logic` and `control`.
//! - `announce`: follows the supervisor's events and posts finished deploys.
//! - `board`: one status message per announce channel, edited in place; the bot's presence.
//! - `health`: `READY=1`, `STATUS=` and watchdog pings to the supervisor.
//! - `run` (here): REST and gateway clients, the framework, and stopping: on the shutdown
//!   future it is given (main: SIGTERM or SIGINT), or an [`Exit`] request.

pub mod announce;
pub mod board;
pub mod commands;
pub mod control;
pub mod health;
pub mod logic;
pub mod settings;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use poise::serenity_prelude as serenity;
use tokio::sync::Notify;

pub use settings::Settings;

/// The commit this binary was built from (see `build.rs`).
pub const BUILT_FROM: &str = env!("BOT_BUILT_FROM");

/// `EX_CONFIG`: the configuration cannot work (no token, a token Discord refuses, intents the
/// application lacks). The bot's `fatal_exitcodes` lists it, so the supervisor shows FATAL
/// with this reason instead of restarting in a loop.
pub const EXIT_CONFIG: u8 = supervised::EX_CONFIG;

/// How long closing the gateway may take on SIGTERM (`stopwaitsecs` is larger).
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// What every command and the announcer share.
#[derive(Debug)]
pub struct Shared {
    pub settings: Settings,
    pub store: store::Store,
    pub control: control::Control,
    pub started: Instant,
}

/// A request to close the gateway and exit with a code, from wherever the bot notices it cannot
/// go on (a failed setup). Kept in serenity's per-client data, so that handlers without the
/// framework's data reach it; one per [`run`], nothing process-wide.
#[derive(Clone, Debug, Default)]
pub struct Exit {
    code: Arc<AtomicU8>,
    asked: Arc<Notify>,
}

impl Exit {
    pub fn request(&self, code: u8) {
        self.code.store(code, Ordering::SeqCst);
        self.asked.notify_one();
    }
}

impl serenity::prelude::TypeMapKey for Exit {
    type Value = Exit;
}

/// Gives up with [`EXIT_CONFIG`]: the reason is the last line on stderr, plain, which the
/// supervisor shows as the FATAL reason (in `status`, alerts and `/health`).
fn give_up(reason: &str) -> u8 {
    tracing::error!("{reason}");
    eprintln!("bot: {reason}");
    EXIT_CONFIG
}

/// Runs the bot until `shutdown` resolves (exit 0), an [`Exit`] request or a fatal error;
/// returns the exit code.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> u8 {
    let exit = Exit::default();
    let store = match store::Store::open(&settings.data_dir) {
        Ok(s) => s,
        Err(e) => return give_up(&e.to_string()),
    };
    let mut http = serenity::HttpBuilder::new(settings.token.expose());
    if let Some(base) = &settings.api_base {
        http = http.proxy(base.clone());
    }
    let http = http.ratelimiter_disabled(!settings.ratelimiter).build();

    let mut intents = serenity::GatewayIntents::GUILDS
        | serenity::GatewayIntents::GUILD_MESSAGES
        | serenity::GatewayIntents::DIRECT_MESSAGES;
    if settings.prefix.is_some() {
        intents |= serenity::GatewayIntents::MESSAGE_CONTENT;
    }
    let options = poise::FrameworkOptions {
        commands: commands::all(),
        on_error: |error| Box::pin(commands::on_error(error)),
        owners: settings
            .owners
            .iter()
            .map(|&id| serenity::UserId::new(id))
            .collect(),
        initialize_owners: true,
        // Nothing the bot says pings anyone: replies carry commit subjects, log lines and
        // program names it did not write (a commit titled "@everyone" must stay text).
        allowed_mentions: Some(serenity::CreateAllowedMentions::new()),
        prefix_options: poise::PrefixFrameworkOptions {
            prefix: settings.prefix.clone().map(Into::into),
            mention_as_prefix: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let notifier = Arc::new(supervised::notify::Notifier::from_env());
    // Discord resets a token after 1,000 logins a day: read what is left before spending one,
    // say it (`status`), and keep the last few for a human.
    let mut login_budget = None;
    match http.get_bot_gateway().await {
        Ok(gateway) => {
            let limit = gateway.session_start_limit;
            let budget = logic::login_budget(limit.remaining, limit.total, limit.reset_after);
            tracing::info!(
                remaining = limit.remaining,
                total = limit.total,
                reset_after_ms = limit.reset_after,
                "Discord login budget"
            );
            // Through a gateway on this machine (gatewayd) a start spends no login: the
            // budget is shown, and the reserve is the proxy's to keep.
            let local = settings
                .gateway_url
                .as_deref()
                .is_some_and(logic::local_gateway);
            if limit.remaining < settings.login_reserve && !local {
                return give_up(&format!(
                    "{budget}: not logging in below the reserve of {} (DISCORD_LOGIN_RESERVE)",
                    settings.login_reserve
                ));
            }
            notifier.status(&budget);
            login_budget = Some(budget);
        }
        Err(e) => tracing::warn!("cannot read Discord's login budget (logging in anyway): {e}"),
    }
    let (identity, identity_rx) = tokio::sync::watch::channel(None);
    let ready_notifier = notifier.clone();
    let gateway_url = settings.gateway_url.clone();
    let shard = settings.shard;
    let shared = Arc::new(Shared {
        control: control::Control {
            socket: settings.socket.clone(),
        },
        settings,
        store,
        started: Instant::now(),
    });
    let framework = poise::Framework::builder()
        .options(options)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                tracing::info!(
                    user = %ready.user.name,
                    guilds = ready.guilds.len(),
                    "connected to Discord"
                );
                poise::builtins::register_globally(ctx, &framework.options().commands).await?;
                tokio::spawn(announce::follow(ctx.http.clone(), shared.clone()));
                tokio::spawn(board::keep(
                    ctx.http.clone(),
                    ctx.shard.clone(),
                    shared.clone(),
                ));
                // Connected and its commands registered: ready (`ready = "notify"`). Its status
                // keeps the login budget read before connecting (statusd exports it).
                let who = health::describe(ready);
                identity.send_replace(Some(match &login_budget {
                    Some(budget) => format!("{who}; {budget}"),
                    None => who,
                }));
                ready_notifier.ready();
                Ok(shared)
            })
        })
        .build();
    let mut client = match serenity::ClientBuilder::new_with_http(http, intents)
        .framework(framework)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot set up the Discord client: {e}");
            return 1;
        }
    };
    if let Some(url) = gateway_url {
        *client.ws_url.lock().await = url;
    }
    client.data.write().await.insert::<Exit>(exit.clone());
    let health_task = tokio::spawn(health::follow(
        client.shard_manager.clone(),
        notifier.clone(),
        identity_rx,
    ));

    let shards = client.shard_manager.clone();
    let stop = async {
        tokio::select! {
            () = shutdown => tracing::info!("asked to stop: closing the gateway"),
            () = exit.asked.notified() => {}
        }
    };
    let start = async {
        match shard {
            Some((id, count)) => client.start_shard(id, count).await,
            None => client.start().await,
        }
    };
    let ended = tokio::select! {
        ended = start => ended,
        () = stop => {
            notifier.stopping();
            // Close frames to Discord, but never wait long: a shard that never connected (Discord
            // unreachable) keeps retrying and would hold the process until SIGKILL.
            if tokio::time::timeout(CLOSE_WITHIN, shards.shutdown_all()).await.is_err() {
                tracing::warn!("the gateway did not close within {CLOSE_WITHIN:?}; exiting anyway");
            }
            Ok(())
        }
    };
    health_task.abort();
    match ended {
        Ok(()) => exit.code.load(Ordering::SeqCst),
        Err(e) => {
            tracing::error!("the Discord connection ended: {e}");
            match e {
                serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication) => give_up(
                    "Discord refused the token (close code 4004): set a valid DISCORD_TOKEN",
                ),
                serenity::Error::Gateway(
                    serenity::GatewayError::DisallowedGatewayIntents
                    | serenity::GatewayError::InvalidGatewayIntents,
                ) => give_up(
                    "Discord refused the intents (close code 4014): enable the message content intent in the developer portal",
                ),
                _ => 1,
            }
        }
    }
}
