//! The poise commands: thin adapters that fetch what `logic` needs, and send what it returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poise::CreateReply;
use poise::serenity_prelude as serenity;
use supervisor_proto::{DeployStage, Event, Stream};

use crate::Shared;
use crate::logic;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Context<'a> = poise::Context<'a, Arc<Shared>, Error>;

/// How long `/deploy` waits for its confirmation button.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);
/// How long `/deploy` follows a deploy before leaving the result to the announcement.
const FOLLOW_FOR: Duration = Duration::from_secs(15 * 60);

/// Every command, for the framework.
pub fn all() -> Vec<poise::Command<Arc<Shared>, Error>> {
    vec![
        ping(),
        uptime(),
        version(),
        status(),
        deploy(),
        restart(),
        logs(),
        settings(),
        help(),
    ]
}

/// Gateway and REST latency.
#[poise::command(slash_command, prefix_command)]
pub async fn ping(ctx: Context<'_>) -> Result<(), Error> {
    let gateway = ctx.ping().await;
    let start = Instant::now();
    ctx.http().get_current_user().await?;
    let rest = start.elapsed().as_millis();
    let gateway = Some(gateway.as_millis()).filter(|_| !gateway.is_zero());
    ctx.say(logic::ping_text(gateway, rest)).await?;
    Ok(())
}

/// How long the bot, the supervisor and every program have been up.
#[poise::command(slash_command, prefix_command)]
pub async fn uptime(ctx: Context<'_>) -> Result<(), Error> {
    let shared = ctx.data();
    let (supervisor, programs) = shared.control.status().await?;
    let bot = shared.started.elapsed().as_secs();
    ctx.say(logic::uptime_text(bot, &supervisor, &programs))
        .await?;
    Ok(())
}

/// The commit this bot was built from, and the one deployed.
#[poise::command(slash_command, prefix_command)]
pub async fn version(ctx: Context<'_>) -> Result<(), Error> {
    let shared = ctx.data();
    let program = &shared.settings.deploy_program;
    let records = shared.control.deploys(&[program], 20).await?;
    let mut text = logic::version_text(
        env!("CARGO_PKG_VERSION"),
        crate::BUILT_FROM,
        program,
        logic::running_commit(&records, program),
    );
    text.push_str(&logic::quarantine_note(&records, program));
    ctx.say(text).await?;
    Ok(())
}

/// Every program the supervisor runs, with its state.
#[poise::command(slash_command, prefix_command)]
pub async fn status(ctx: Context<'_>) -> Result<(), Error> {
    let (supervisor, programs) = ctx.data().control.status().await?;
    ctx.say(logic::status_table(&supervisor, &programs)).await?;
    Ok(())
}

/// Deploy a program from its git branch (owners only; asks first).
#[poise::command(slash_command, prefix_command, owners_only)]
pub async fn deploy(
    ctx: Context<'_>,
    #[description = "The program to deploy (the bot's own, unless given)"] program: Option<String>,
) -> Result<(), Error> {
    let shared = ctx.data().clone();
    let program = program.unwrap_or_else(|| shared.settings.deploy_program.clone());
    let (_, programs) = shared.control.status().await?;
    let Some(branch) = programs
        .iter()
        .find(|p| p.name == program)
        .map(|p| p.deploy_branch.clone())
    else {
        ctx.say(format!("There is no program `{program}`.")).await?;
        return Ok(());
    };
    let Some(branch) = branch else {
        ctx.say(format!(
            "`{program}` has no deploy table in supervisor.toml; nothing to deploy."
        ))
        .await?;
        return Ok(());
    };

    let confirm_id = format!("{}:deploy", ctx.id());
    let cancel_id = format!("{}:cancel", ctx.id());
    let buttons = vec![serenity::CreateActionRow::Buttons(vec![
        serenity::CreateButton::new(&confirm_id)
            .style(serenity::ButtonStyle::Danger)
            .label("Deploy"),
        serenity::CreateButton::new(&cancel_id)
            .style(serenity::ButtonStyle::Secondary)
            .label("Cancel"),
    ])];
    let question = format!("Deploy `{program}` from `{branch}` now?");
    let handle = ctx
        .send(CreateReply::default().content(question).components(buttons))
        .await?;

    let wanted = (confirm_id.clone(), cancel_id);
    let press = serenity::ComponentInteractionCollector::new(ctx)
        .author_id(ctx.author().id)
        .timeout(CONFIRM_WITHIN)
        .filter(move |mci| mci.data.custom_id == wanted.0 || mci.data.custom_id == wanted.1)
        .await;
    let update = |text: String| {
        serenity::CreateInteractionResponse::UpdateMessage(
            serenity::CreateInteractionResponseMessage::new()
                .content(text)
                .components(vec![]),
        )
    };
    let Some(press) = press else {
        let text = format!(
            "No answer within {} s; nothing was deployed.",
            CONFIRM_WITHIN.as_secs()
        );
        handle
            .edit(ctx, CreateReply::default().content(text).components(vec![]))
            .await?;
        return Ok(());
    };
    if press.data.custom_id != confirm_id {
        press
            .create_response(ctx, update("Cancelled; nothing was deployed.".into()))
            .await?;
        return Ok(());
    }

    // Subscribe before asking, so that no stage is missed.
    let mut events = shared.control.events().await?;
    let trigger = format!("discord: {} ({})", ctx.author().name, ctx.author().id);
    let (id, queued) = match shared.control.deploy(&program, trigger).await {
        Ok(started) => started,
        Err(e) => {
            press
                .create_response(ctx, update(format!("The supervisor refused: {e}")))
                .await?;
            return Ok(());
        }
    };
    if queued {
        let text = format!(
            "A deploy of `{program}` is running ({id}); yours runs right after it. The result goes to the announce channel."
        );
        press.create_response(ctx, update(text)).await?;
        return Ok(());
    }
    let mut text = logic::deploy_progress(&program, DeployStage::Started, None, "");
    if shared.settings.own_program.as_deref() == Some(program.as_str()) {
        text.push_str(
            "\n(This bot restarts during the deploy; the result goes to the announce channel.)",
        );
    }
    press.create_response(ctx, update(text)).await?;

    let deadline = tokio::time::Instant::now() + FOLLOW_FOR;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None) | Err(_)) => {
                let text = format!("Lost the supervisor while deploying `{program}` ({id}).");
                handle
                    .edit(ctx, CreateReply::default().content(text))
                    .await?;
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let Event::Deploy {
            id: event_id,
            stage,
            commit,
            message,
            ..
        } = event
        else {
            continue;
        };
        if event_id != id {
            continue;
        }
        let text = if stage.result().is_some() {
            let records = shared.control.deploys(&[&program], 20).await?;
            match records.iter().find(|r| r.id == id) {
                Some(r) => logic::deploy_result(r),
                None => format!("Deploy of `{program}` {stage}: {message}"),
            }
        } else {
            logic::deploy_progress(&program, stage, commit.as_deref(), &message)
        };
        handle
            .edit(ctx, CreateReply::default().content(text))
            .await?;
        if stage.result().is_some() {
            return Ok(());
        }
    }
}

/// Restart a program (owners only).
#[poise::command(slash_command, prefix_command, owners_only)]
pub async fn restart(
    ctx: Context<'_>,
    #[description = "The program to restart"] program: String,
) -> Result<(), Error> {
    let shared = ctx.data();
    let by = format!("discord: {} ({})", ctx.author().name, ctx.author().id);
    if shared.settings.own_program.as_deref() == Some(program.as_str()) {
        // The answer must go out before the supervisor stops us.
        ctx.say(format!(
            "Restarting `{program}` (this bot); back in a moment."
        ))
        .await?;
        shared.control.restart(&program, &by).await?;
        return Ok(());
    }
    let result = shared.control.restart(&program, &by).await?;
    ctx.say(format!("`{}`: {}", result.name, result.message))
        .await?;
    Ok(())
}

/// The last lines of a program's log (owners only; only you see the answer).
#[poise::command(slash_command, prefix_command, owners_only, ephemeral)]
pub async fn logs(
    ctx: Context<'_>,
    #[description = "The program"] program: String,
    #[description = "How many lines (default 20)"]
    #[min = 1]
    #[max = 500]
    lines: Option<u32>,
    #[description = "Its error output instead of its standard output"] stderr: Option<bool>,
) -> Result<(), Error> {
    if let poise::Context::Prefix(_) = ctx {
        ctx.say("Logs can hold secrets: use the slash command `/logs`, whose answer only you see.")
            .await?;
        return Ok(());
    }
    let stream = if stderr.unwrap_or(false) {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let text = ctx
        .data()
        .control
        .tail(&program, stream, lines.unwrap_or(20).clamp(1, 500))
        .await?;
    ctx.say(logic::code_block_tail(&text, logic::MESSAGE_LIMIT))
        .await?;
    Ok(())
}

/// The bot's settings for this server (owners only).
#[poise::command(
    slash_command,
    prefix_command,
    owners_only,
    guild_only,
    subcommands("announce_channel", "announce_off"),
    subcommand_required
)]
pub async fn settings(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Post deploy results to this channel (or the one given).
#[poise::command(
    slash_command,
    prefix_command,
    owners_only,
    guild_only,
    rename = "announce-channel"
)]
pub async fn announce_channel(
    ctx: Context<'_>,
    #[description = "The channel for deploy results"] channel: Option<serenity::ChannelId>,
) -> Result<(), Error> {
    let Some(guild) = ctx.guild_id() else {
        return Ok(());
    };
    let channel = channel.unwrap_or_else(|| ctx.channel_id());
    ctx.data()
        .store
        .set_announce_channel(guild.get(), Some(channel.get()))?;
    ctx.say(format!("Deploy results will be posted in <#{channel}>."))
        .await?;
    Ok(())
}

/// Stop posting deploy results in this server.
#[poise::command(
    slash_command,
    prefix_command,
    owners_only,
    guild_only,
    rename = "announce-off"
)]
pub async fn announce_off(ctx: Context<'_>) -> Result<(), Error> {
    let Some(guild) = ctx.guild_id() else {
        return Ok(());
    };
    ctx.data().store.set_announce_channel(guild.get(), None)?;
    ctx.say("Deploy results will not be posted here any more.")
        .await?;
    Ok(())
}

/// What the bot can do.
#[poise::command(slash_command, prefix_command, ephemeral)]
pub async fn help(ctx: Context<'_>) -> Result<(), Error> {
    let commands: Vec<(String, String)> = ctx
        .framework()
        .options()
        .commands
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.description.as_deref().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let owner_only: Vec<String> = ctx
        .framework()
        .options()
        .commands
        .iter()
        .filter(|c| c.owners_only)
        .map(|c| c.name.to_string())
        .collect();
    ctx.say(logic::help_text(&commands, &owner_only)).await?;
    Ok(())
}

/// A reply only the person who asked sees (for a slash command), trimmed to fit.
async fn tell_privately(ctx: Context<'_>, text: &str) {
    let reply = CreateReply::default()
        .content(logic::truncate(text, logic::MESSAGE_LIMIT))
        .ephemeral(true);
    if let Err(e) = ctx.send(reply).await {
        tracing::warn!("cannot answer {}: {e}", ctx.author().id);
    }
}

/// How poise's errors reach the person who asked, and the log.
pub async fn on_error(error: poise::FrameworkError<'_, Arc<Shared>, Error>) {
    match error {
        poise::FrameworkError::NotAnOwner { ctx, .. } => {
            tracing::info!(user = %ctx.author().id, command = %ctx.command().qualified_name, "refused: not an owner");
            tell_privately(ctx, logic::NOT_AN_OWNER).await;
        }
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::warn!(command = %ctx.command().qualified_name, "command failed: {error}");
            tell_privately(ctx, &format!("That failed: {error}")).await;
        }
        poise::FrameworkError::Setup { error, ctx, .. } => {
            tracing::error!("cannot start: {error}");
            if let Some(exit) = ctx.data.read().await.get::<crate::Exit>() {
                exit.request(1);
            }
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!("cannot report an error: {e}");
            }
        }
    }
}
