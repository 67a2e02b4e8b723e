//! The automatic side of an appeal's conversation: CRM identification (asking the client for
//! an identifier when none is known) and bot scenarios (SPEC "Bot contact collection").
//!
//! Order when both are configured on a channel: identification runs first when the appeal
//! opens; if it has to ask, the channel's scenario starts only once identification stopped
//! asking (found, not found, or out of attempts). While either waits, the client's messages
//! are still appended to the appeal like any other; the next one is taken as the answer.
//! Where the conversation stands is kept in the appeal (`Dialogue`), so a restart resumes it.

use crate::appeal::{append, NewMessage};
use crate::bot::{self, Action, Outcome, Scenario};
use crate::config::IdentificationConfig;
use crate::crm::Identifier;
use crate::decode::InboundMessage;
use crate::emit::{Emitter, EventBody, IdentifyMethod, Outbound};
use crate::identify::crm::{self as crm_ident, Search};
use crate::identify::visitor_handle;
use crate::matching;
use crate::model::{
    is_identifier, Appeal, Author, AuthorKind, CardValue, Client, ContentKind, Millis, Source,
};
use crate::stage::Ctx;
use crate::store::{StoreResult, WorkingSet};

/// An appeal just opened: identify the client, start the channel's scenario.
pub async fn on_open(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<()> {
    let channel = ctx.channel(&appeal.channel_id);
    let mut client = client;
    if let Some(rule) = &channel.identification {
        client = identify_now(ws, ctx, appeal, client, rule, at, em).await?;
    }
    if let Some(scenario) = ctx.scenarios.for_channel(&appeal.project_id, &appeal.channel_id) {
        if appeal.doc.dialogue.ident_asked.is_some() {
            appeal.doc.dialogue.bot_pending = Some(scenario.id().to_string());
            ws.put_appeal(appeal.clone());
        } else {
            let outcome = scenario.start(&client);
            carry_out(ws, ctx, appeal, client, scenario, outcome, at, None, em).await?;
        }
    }
    Ok(())
}

/// A client message on an appeal that was already open: it may answer a question.
pub async fn on_client_message(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    m: &InboundMessage,
    em: &mut Emitter,
) -> StoreResult<()> {
    let (text, at, message_id) = (m.content.text.as_deref().unwrap_or_default(), m.sent_at, &m.message_id);
    if let Some(asked) = appeal.doc.dialogue.ident_asked {
        let channel = ctx.channel(&appeal.channel_id);
        if let Some(rule) = &channel.identification {
            return identification_answer(ws, ctx, appeal, client, rule, asked, text, at, em).await;
        }
        appeal.doc.dialogue.ident_asked = None; // the rule left the config meanwhile
    }
    let Some(state) = appeal.doc.dialogue.bot.clone() else { return Ok(()) };
    let Some(scenario) = ctx.scenarios.get(&appeal.project_id, &state.scenario_id) else {
        appeal.doc.dialogue.bot = None;
        ws.put_appeal(appeal.clone());
        return Ok(());
    };
    if !scenario.expects_answer(&state) {
        return Ok(());
    }
    let outcome = scenario.answer(&state, text, &client, &ctx.project.default_region);
    carry_out(ws, ctx, appeal, client, scenario, outcome, at, Some(message_id), em).await
}

/// `start_scenario`: starts (or restarts) a scenario on an open appeal.
pub async fn start(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    scenario: &Scenario,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<()> {
    appeal.doc.dialogue.bot_pending = None;
    let outcome = scenario.start(&client);
    carry_out(ws, ctx, appeal, client, scenario, outcome, at, None, em).await
}

/// SPEC identity rule 11: an operator stepped in (wrote in the appeal, or took it), so the
/// bot stops talking: the running scenario ends, and one waiting for identification to stop
/// asking never starts. `bot.stopped` says which; the caller stores the appeal. Nothing the
/// scenario would have said follows until a `start_scenario`.
pub fn stop_for_operator(appeal: &mut Appeal, client: &Client, at: Millis, em: &mut Emitter) {
    let dialogue = &mut appeal.doc.dialogue;
    let running = dialogue.bot.take().map(|s| (s.scenario_id, Some(s.block_id)));
    let pending = dialogue.bot_pending.take().map(|id| (id, None));
    let Some((scenario_id, block_id)) = running.or(pending) else { return };
    let body = EventBody::BotStopped { scenario_id, block_id, reason: "operator" };
    em.event(at, body, Some(client.summary()), Some(appeal.summary()));
}

/// Runs the channel's identification: search by what the card knows, or ask.
async fn identify_now(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    rule: &IdentificationConfig,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    let kind = rule.identifier;
    let known = client.doc.contacts.get(kind.as_str()).and_then(|v| v.first()).cloned();
    match known {
        Some(value) => {
            let wanted = Search { kind, value, method: IdentifyMethod::Crm };
            search(ws, ctx, appeal, client, rule, wanted, at, em).await
        }
        None if rule.ask_client => {
            let question = rule.question.clone().unwrap_or_default();
            say(ws, appeal, &client, question, at, em);
            appeal.doc.dialogue.ident_asked = Some(1);
            ws.put_appeal(appeal.clone());
            Ok(client)
        }
        None => {
            crm_ident::failed(em, at, &client, appeal, "no_identifier", Some(kind.as_str()), None);
            Ok(client)
        }
    }
}

/// The client answered the identification question.
#[allow(clippy::too_many_arguments)]
async fn identification_answer(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    rule: &IdentificationConfig,
    asked: u32,
    text: &str,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<()> {
    let kind = rule.identifier;
    let client = match Identifier::from_answer(kind, text, &ctx.project.default_region) {
        Ok(id) => {
            appeal.doc.dialogue.ident_asked = None;
            let via = visitor_handle(&appeal.channel_id, &appeal.visitor_id);
            let value = CardValue::new(id.value, text.trim(), Source::Bot, at).through(&client.doc, via);
            let wanted = Search { kind, value, method: IdentifyMethod::Crm };
            search(ws, ctx, appeal, client, rule, wanted, at, em).await?
        }
        Err(_) if asked < rule.max_attempts => {
            let question = rule.question.clone().unwrap_or_default();
            say(ws, appeal, &client, question, at, em);
            appeal.doc.dialogue.ident_asked = Some(asked + 1);
            ws.put_appeal(appeal.clone());
            return Ok(());
        }
        Err(_) => {
            appeal.doc.dialogue.ident_asked = None;
            crm_ident::failed(em, at, &client, appeal, "no_valid_answer", Some(kind.as_str()), None);
            client
        }
    };
    ws.put_appeal(appeal.clone());
    after_identification(ws, ctx, appeal, client, at, em).await
}

/// Identification stopped asking: the scenario it held back starts, or the one that ran an
/// `identify` block goes on.
async fn after_identification(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<()> {
    if let Some(id) = appeal.doc.dialogue.bot_pending.take() {
        ws.put_appeal(appeal.clone());
        if let Some(scenario) = ctx.scenarios.get(&appeal.project_id, &id) {
            let outcome = scenario.start(&client);
            return carry_out(ws, ctx, appeal, client, scenario, outcome, at, None, em).await;
        }
    }
    let Some(state) = appeal.doc.dialogue.bot.clone() else { return Ok(()) };
    let Some(scenario) = ctx.scenarios.get(&appeal.project_id, &state.scenario_id) else { return Ok(()) };
    let outcome = scenario.resume(&state, &client);
    carry_out(ws, ctx, appeal, client, scenario, outcome, at, None, em).await
}

/// Searches the CRM; a found client hears the success text.
#[allow(clippy::too_many_arguments)]
async fn search(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    client: Client,
    rule: &IdentificationConfig,
    wanted: Search,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    let outcome = crm_ident::search(ws, ctx, client, appeal, wanted, at, em).await?;
    let found = matches!(outcome, crm_ident::Identification::Found(_));
    let client = outcome.client();
    refresh(ws, appeal).await?;
    if found {
        if let Some(text) = rule.success.clone() {
            say(ws, appeal, &client, text, at, em);
        }
    }
    Ok(client)
}

/// Carries out a scenario's actions in order, then stores where it stands.
#[allow(clippy::too_many_arguments)]
async fn carry_out(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    mut client: Client,
    scenario: &Scenario,
    mut outcome: Outcome,
    at: Millis,
    answer_id: Option<&str>,
    em: &mut Emitter,
) -> StoreResult<()> {
    // An `identify` block that could finish at once resumes the walk here; one that asks
    // the client leaves the scenario waiting until identification stops asking.
    for _ in 0..bot::MAX_STEPS {
        let mut identify = false;
        for action in std::mem::take(&mut outcome.actions) {
            match action {
                Action::Save { field, value, display } => {
                    let via = visitor_handle(&appeal.channel_id, &appeal.visitor_id);
                    let value = CardValue::new(value, &display, Source::Bot, at).through(&client.doc, via);
                    client = save(ws, ctx, appeal, client, &field, value, at, em).await?;
                }
                Action::Identify => identify = true,
                other => report(ws, appeal, &client, scenario, other, (at, answer_id), em),
            }
        }
        appeal.doc.dialogue.bot = outcome.state.clone();
        ws.put_appeal(appeal.clone());
        if !identify {
            return Ok(());
        }
        let channel = ctx.channel(&appeal.channel_id);
        match &channel.identification {
            Some(rule) => client = identify_now(ws, ctx, appeal, client, rule, at, em).await?,
            None => crm_ident::failed(em, at, &client, appeal, "no_identification_rule", None, None),
        }
        if appeal.doc.dialogue.ident_asked.is_some() {
            return Ok(());
        }
        let Some(state) = appeal.doc.dialogue.bot.clone() else { return Ok(()) };
        outcome = scenario.resume(&state, &client);
    }
    Ok(())
}

/// A scenario action that only says something: a block entered (counted and an event), a
/// bot text, an answer refused; the end.
fn report(
    ws: &mut WorkingSet,
    appeal: &mut Appeal,
    client: &Client,
    scenario: &Scenario,
    action: Action,
    (at, answer_id): (Millis, Option<&str>),
    em: &mut Emitter,
) {
    match action {
        Action::Entered { block_id, block_type } => {
            ws.count_block_entry(&appeal.project_id, scenario.id(), &block_id);
            let body = EventBody::BotBlockEntered {
                scenario_id: scenario.id().to_string(),
                block_id,
                block_type: block_type.as_str(),
            };
            em.event(at, body, Some(client.summary()), Some(appeal.summary()));
        }
        Action::Send { text } => say(ws, appeal, client, text, at, em),
        Action::Rejected { block_id, expect, on_invalid, reason } => {
            let body = EventBody::BotAnswerRejected {
                scenario_id: scenario.id().to_string(),
                block_id,
                expect: expect.as_str(),
                on_invalid: on_invalid.as_str(),
                message_id: answer_id.unwrap_or_default().to_string(),
                reason,
            };
            em.event(at, body, Some(client.summary()), Some(appeal.summary()));
        }
        Action::Save { .. } | Action::Identify | Action::Finished { .. } => {}
    }
}

/// An accepted answer goes on the card; a new value may join cards by the rules.
#[allow(clippy::too_many_arguments)]
async fn save(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    appeal: &mut Appeal,
    mut client: Client,
    field: &str,
    value: CardValue,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    if !client.save_value(field, value) {
        return Ok(client);
    }
    let typed = client.settle_type();
    ws.put_client(client.clone());
    if is_identifier(field) {
        // The client told the bot who they are: operators see it like any identification.
        let identifier = Some(field.to_string());
        let body = EventBody::ClientIdentified { method: IdentifyMethod::Bot, identifier, crm: None };
        em.event(at, body, Some(client.summary()), Some(appeal.summary()));
    }
    let mut changes = vec![field.to_string()];
    if typed {
        changes.push("type".into());
    }

    let body = EventBody::ClientUpdated { changes, rejected: vec![] };

    em.event(at, body, Some(client.summary()), None);
    let client = matching::run(ws, ctx, &client.id, at, em).await?;
    refresh(ws, appeal).await?;
    Ok(client)
}

/// A merge may have moved the appeal to another card: read it back from the working set.
async fn refresh(ws: &mut WorkingSet, appeal: &mut Appeal) -> StoreResult<()> {
    if let Some(current) = ws.appeal_by_number(&appeal.project_id, appeal.number).await? {
        appeal.client_id = current.client_id;
    }
    Ok(())
}

/// A bot text: appended to the appeal and sent to the client through the gateway.
fn say(
    ws: &mut WorkingSet,
    appeal: &mut Appeal,
    client: &Client,
    text: String,
    at: Millis,
    em: &mut Emitter,
) {
    if text.is_empty() {
        return;
    }
    let id = em.next_id("bot-message");
    let outbound = Outbound {
        outbound_id: id.clone(),
        project_id: appeal.project_id.clone(),
        channel_id: appeal.channel_id.clone(),
        visitor_id: appeal.visitor_id.clone(),
        appeal_number: Some(appeal.number),
        text: Some(text.clone()),
        template: None,
        author_kind: AuthorKind::Bot,
        cause: em.cause().clone(),
    };
    em.outbound(&outbound);
    let message = NewMessage {
        id,
        author: Author { kind: AuthorKind::Bot, id: None },
        visitor_id: None,
        kind: ContentKind::Text,
        sent_at: at,
        text: Some(text),
        attachment: None,
        visible_to_client: true,
    };
    append(ws, appeal, client, message, em);
}
