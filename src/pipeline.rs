//! The pipeline: source → decode → identify → matching → appeal → emit, one batch at a time.
//!
//! A batch is a run of inputs of one partition. It is applied in one store transaction that
//! also holds the ids of the inputs applied, the partition's clock and offset, and every
//! output record (the outbox); only after that commit may a sink publish the records. `replay`
//! and `run` differ only in their source and sink: this code is shared.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tracing::Instrument;

use crate::appeal;
use crate::bot::Scenarios;
use crate::config::Config;
use crate::crm::lookups::{CrmLookups, Lookup};
use crate::crm::{Answer, CrmDirectory, CrmError, FailReason, Identifier};
use crate::decode::{self, Input};
use crate::emit::{self, Cause, CauseKind, CommandOutcome, Emitter, Record};
use crate::identify;
use crate::matching::ProjectRules;
use crate::model::conversation_key;
use crate::source::{Batch, Part, RawInput, SourcePos};
pub use crate::stage::{ApplyError, Ctx};
use crate::store::{external_handle, visitor_handle, ErrorClass, Store, StoreError, StoreResult, WorkingSet};
use crate::telemetry::events::{DeadLettered, StoreRefusedData};
pub use crate::telemetry::Stats;

/// A committed batch: its records are in the outbox under `batch_ids` until published (one
/// id, or several when the store refused some input's data and the batch was committed in
/// parts around it).
#[derive(Default)]
pub struct Committed {
    pub batch_ids: Vec<String>,
    pub records: Vec<Record>,
    pub stats: Stats,
    pub timings: crate::telemetry::Timings,
    /// The inputs found applied already (the ingest endpoint answers `duplicate` for them).
    pub duplicates: Vec<SourcePos>,
    /// The inputs that went to the DLQ, with the reason their record gives.
    pub dead_lettered: Vec<(SourcePos, String)>,
}

/// Rounds of "apply, look up what was missing, apply again" before a batch commits with
/// the lookups it still lacks counted as CRM failures (each round adds lookups, so this
/// only bounds pathological chains).
const MAX_LOOKUP_ROUNDS: usize = 4;

/// Configuration compiled once at start, shared by every batch.
pub struct Pipeline {
    config: Arc<Config>,
    rules: HashMap<String, ProjectRules>,
    scenarios: Scenarios,
    crm: CrmDirectory,
    store: Store,
}

/// A batch applied but not yet committed.
struct Applied {
    ws: WorkingSet,
    out: Outputs,
    /// Since the batch started: when its locks were held, when its prefetch was done.
    locked: std::time::Duration,
    prefetched: std::time::Duration,
}

/// What a batch produced so far: its records, its counts, and the inputs it dead-lettered
/// (to log once it committed).
#[derive(Default)]
struct Outputs {
    records: Vec<Record>,
    stats: Stats,
    rejected: Vec<Rejection>,
    duplicates: Vec<SourcePos>,
}

impl Outputs {
    /// An input goes to the DLQ with a record at most `max_bytes` long.
    fn dead_letter(&mut self, raw: &RawInput, why: emit::DlqReason<'_>, max_bytes: usize) {
        self.stats.dlq += 1;
        let stage = why.stage;
        self.rejected.push(Rejection { reason: why.reason.to_string(), stage, source: raw.pos.clone() });
        self.records.push(emit::dlq(raw, why, max_bytes));
    }
}

/// An input the batch sends to the DLQ. It is logged once the batch committed: a batch
/// applied again (a second CRM round, a retry after a transient store error) would log it
/// once per attempt otherwise.
struct Rejection {
    reason: String,
    stage: &'static str,
    source: SourcePos,
}

impl Rejection {
    /// The reason may echo input values (a phone in a type error): masked like every log line.
    /// The DLQ record keeps it whole.
    fn log(&self) {
        DeadLettered { stage: self.stage, reason: &self.reason, source: &self.source }.emit();
    }
}

impl Pipeline {
    pub fn new(config: Arc<Config>, store: Store) -> Result<Self, CrmError> {
        let rules = config.projects.iter().map(|p| (p.id.clone(), ProjectRules::new(p))).collect();
        let scenarios = Scenarios::compile(&config);
        let crm = CrmDirectory::from_config(&config)?;
        Ok(Pipeline { config, rules, scenarios, crm, store })
    }

    /// Applies a batch and commits it with its outputs; each part's next offset is stored
    /// with it. When the store refuses the data of an input (a value it cannot hold, an id
    /// that is another row's), the batch is committed in parts around that input, which goes
    /// to the DLQ.
    #[tracing::instrument(name = "batch", skip_all, fields(partitions = batch.parts.len(), inputs = batch.len()))]
    pub async fn process(&self, batch: &Batch) -> StoreResult<Committed> {
        match self.process_whole(batch).await {
            Err(e) if e.class() == ErrorClass::Poison => {
                StoreRefusedData { error: &e, inputs: batch.len() }.emit();
                let mut out = Committed::default();
                for part in &batch.parts {
                    out.absorb(self.isolate(&part.partition, &part.inputs, part.next_offset).await?);
                }
                Ok(out)
            }
            other => other,
        }
    }

    /// Commits `inputs` in halves, each on its own, down to the single inputs the store
    /// refuses: O(log n) transactions per refused input, not one per input.
    fn isolate<'a>(
        &'a self,
        partition: &'a str,
        inputs: &'a [RawInput],
        next_offset: Option<i64>,
    ) -> futures::future::BoxFuture<'a, StoreResult<Committed>> {
        Box::pin(async move {
            if inputs.len() == 1 {
                let one = Batch::one(partition, inputs.to_vec(), next_offset);
                return match self.process_whole(&one).await {
                    Err(e) if e.class() == ErrorClass::Poison => self.dead_letter(&one.parts[0], &e).await,
                    other => other,
                };
            }
            let (left, right) = inputs.split_at(inputs.len() / 2);
            let mut out = Committed::default();
            for (half, offset) in [(left, next_offset.map(|_| offset_after(left))), (right, next_offset)] {
                let batch = Batch::one(partition, half.to_vec(), offset);
                let committed = match self.process_whole(&batch).await {
                    Err(e) if e.class() == ErrorClass::Poison => {
                        self.isolate(partition, half, offset).await?
                    }
                    other => other?,
                };
                out.absorb(committed);
            }
            Ok(out)
        })
    }

    /// Commits only a DLQ record for an input the store refused, with its partition offset,
    /// and marks its id applied: a replay of it is a duplicate, not a second DLQ record.
    async fn dead_letter(&self, one: &Part, e: &StoreError) -> StoreResult<Committed> {
        let raw = &one.inputs[0];
        let decoded = self.decode(raw, chrono::Utc::now().timestamp_millis());
        let project = decoded.as_ref().ok().map(|i| i.project_id().to_string());
        let reason = format!("the store refused the input: {e}");
        let rejection = Rejection { reason: reason.clone(), stage: "store", source: raw.pos.clone() };
        let why = emit::DlqReason { reason: &reason, stage: "store", project_id: project };
        let record = emit::dlq(raw, why, self.config.pipeline.dlq_max_bytes);
        let mut ws = self.store.begin().await?;
        if let Ok(input) = &decoded {
            if let Some(id) = input.dedupe_id() {
                ws.lock_projects(&BTreeSet::from([input.project_id().to_string()])).await?;
                ws.mark_applied(input.project_id(), &id);
            }
            if let Input::Command(c) = input {
                ws.record_outcome(&c.project_id, CommandOutcome::failed(&c.command_id, reason.clone()));
            }
        }
        if let Some(offset) = one.next_offset {
            ws.set_next_offset(&one.partition, offset).await?;
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        ws.commit(&batch_id, std::slice::from_ref(&record)).await?;
        rejection.log();
        let stats = Stats { inputs: 1, dlq: 1, ..Stats::default() };
        Ok(Committed {
            batch_ids: vec![batch_id],
            records: vec![record],
            stats,
            dead_lettered: vec![(rejection.source, rejection.reason)],
            ..Committed::default()
        })
    }

    /// Decodes an input; one the source cut short is too large whatever it holds.
    fn decode(&self, raw: &RawInput, now: i64) -> Result<Input, decode::DecodeError> {
        let decoded = match &raw.cut {
            Some(cut) => Err(decode::oversized(cut.size, self.config.pipeline.max_input_bytes)),
            None => decode::decode(&raw.bytes, &self.config, now),
        };
        // Posted to one project's endpoint: never applied to another's data, and dead-lettered
        // in the project it was posted to.
        match (&raw.project, decoded) {
            (Some(only), Ok(input)) if input.project_id() != only => {
                Err(decode::other_project(input.project_id(), only))
            }
            (Some(only), Err(mut e)) => {
                e.project_id = Some(only.clone());
                Err(e)
            }
            (_, decoded) => decoded,
        }
    }

    /// One attempt at a whole batch in one transaction.
    async fn process_whole(&self, batch: &Batch) -> StoreResult<Committed> {
        let started = std::time::Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let decoded: Vec<Result<Input, decode::DecodeError>> =
            batch.inputs().map(|(_, raw)| self.decode(raw, now)).collect();
        // CRM calls happen here, outside the transaction: a slow CRM holds no locks.
        let mut lookups = CrmLookups::default();
        lookups.extend(self.look_up(self.predicted_lookups(&decoded)).await);
        let mut round = 1;
        let applied = loop {
            let applied = self.apply_batch(batch, &decoded, &lookups, started).await?;
            let missing = lookups.take_missing();
            if missing.is_empty() || round >= MAX_LOOKUP_ROUNDS {
                break applied;
            }
            drop(applied); // rolls the transaction back
            tracing::debug!(lookups = missing.len(), "batch needs CRM answers nobody predicted; re-applying");
            lookups.extend(self.look_up(missing).await);
            round += 1;
        };
        let Applied { mut ws, out: Outputs { records, mut stats, rejected, duplicates }, locked, prefetched } =
            applied;
        for part in &batch.parts {
            if let Some(offset) = part.next_offset {
                ws.set_next_offset(&part.partition, offset).await?;
            }
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        let applied = started.elapsed();
        ws.commit(&batch_id, &records).await?;
        self.store.note_committed(batch.len());
        rejected.iter().for_each(Rejection::log);
        let timings = crate::telemetry::Timings {
            lock: locked,
            prefetch: prefetched - locked,
            apply: applied - prefetched,
            commit: started.elapsed() - applied,
        };
        tracing::debug!(inputs = batch.len(), ?timings, "batch committed");
        count_records(&records, &mut stats);
        let dead_lettered = rejected.into_iter().map(|r| (r.source, r.reason)).collect();
        Ok(Committed { batch_ids: vec![batch_id], records, stats, timings, duplicates, dead_lettered })
    }

    /// One attempt at a batch inside a fresh transaction.
    async fn apply_batch(
        &self,
        batch: &Batch,
        decoded: &[Result<Input, decode::DecodeError>],
        lookups: &CrmLookups,
        started: std::time::Instant,
    ) -> StoreResult<Applied> {
        let mut ws = self.store.begin().await?;
        let projects: BTreeSet<String> =
            decoded.iter().flatten().map(|i| i.project_id().to_string()).collect();
        ws.lock_projects(&projects).await?;
        let locked = started.elapsed();
        self.prefetch(&mut ws, batch, decoded).await?;
        let dead: Vec<(String, String)> = batch
            .inputs()
            .zip(decoded)
            .filter_map(|((_, raw), d)| dead_letter_id(raw, d.as_ref().err()?))
            .collect();
        ws.prefetch_applied(&dead).await?;
        let prefetched = started.elapsed();
        let mut out = Outputs::default();
        for ((partition, raw), input) in batch.inputs().zip(decoded) {
            out.stats.inputs += 1;
            match input {
                Err(e) => self.undecodable(&mut ws, raw, e, &mut out).await?,
                Ok(input) => {
                    let span = tracing::debug_span!(
                        "input",
                        source = ?raw.pos,
                        client = tracing::field::Empty,
                        appeal = tracing::field::Empty
                    );
                    let apply = self.apply(&mut ws, partition, raw, input, lookups, &mut out);
                    apply.instrument(span).await?
                }
            }
        }
        Ok(Applied { ws, out, locked, prefetched })
    }

    /// An input decode refused: to the DLQ, unless this file line went there before.
    async fn undecodable(
        &self,
        ws: &mut WorkingSet,
        raw: &RawInput,
        e: &decode::DecodeError,
        out: &mut Outputs,
    ) -> StoreResult<()> {
        if let Some((project, id)) = dead_letter_id(raw, e) {
            if ws.is_applied(&project, &id).await? {
                out.stats.duplicates += 1;
                out.duplicates.push(raw.pos.clone());
                return Ok(());
            }
            ws.mark_applied(&project, &id);
        }
        let why = emit::DlqReason { reason: &e.reason, stage: "decode", project_id: e.project_id.clone() };
        out.dead_letter(raw, why, self.config.pipeline.dlq_max_bytes);
        Ok(())
    }

    /// The CRM lookups a batch will most likely need, known from the inputs alone: the
    /// identifiers visitors reveal in channels with identification, answers to the
    /// identification question, and `identify_client` values. Whatever this misses is
    /// looked up in a second round (see [`CrmLookups`]).
    fn predicted_lookups(&self, inputs: &[Result<Input, decode::DecodeError>]) -> BTreeSet<Lookup> {
        let mut out = BTreeSet::new();
        for input in inputs.iter().flatten() {
            let Some(project) = self.config.project(input.project_id()) else { continue };
            if self.crm.get(&project.id).is_none() {
                continue;
            }
            let region = &project.default_region;
            match input {
                Input::Message(m) => {
                    let Some(channel) = project.channel(&m.channel_id) else { continue };
                    let Some(rule) = &channel.identification else { continue };
                    let kind = rule.identifier;
                    for (field, value) in identify::revealed_values(project, channel.kind, &m.visitor) {
                        if field == kind.as_str() {
                            out.insert((project.id.clone(), Identifier::new(kind, value)));
                        }
                    }
                    let answer = m.content.text.as_deref().filter(|_| rule.ask_client);
                    if let Some(id) = answer.and_then(|t| Identifier::from_answer(kind, t, region).ok()) {
                        out.insert((project.id.clone(), id));
                    }
                }
                Input::Command(c) => {
                    if let Some((kind, value)) = c.identify_value() {
                        if let Ok(id) = Identifier::normalise(kind, value, region) {
                            out.insert((project.id.clone(), id));
                        }
                    }
                }
                Input::Status(_) => {}
            }
        }
        out
    }

    /// Searches the CRMs concurrently (bounded per project), through their caches.
    async fn look_up(&self, wanted: BTreeSet<Lookup>) -> Vec<(Lookup, Answer)> {
        let mut by_project: BTreeMap<String, Vec<Identifier>> = BTreeMap::new();
        for (project, id) in wanted {
            by_project.entry(project).or_default().push(id);
        }
        let searches = by_project.into_iter().map(|(project, ids)| async move {
            let Some(client) = self.crm.get(&project) else {
                // Validation keeps identification out of projects without a CRM; should a
                // lookup still be asked for, answering it stops the batch from re-applying.
                let unavailable = Answer::Failed { reason: FailReason::CrmUnavailable };
                return ids.into_iter().map(|id| ((project.clone(), id), unavailable.clone())).collect();
            };
            let answers = client.search_many(ids).await;
            answers.into_iter().map(|(id, a)| ((project.clone(), id), a)).collect::<Vec<_>>()
        });
        futures::future::join_all(searches).await.into_iter().flatten().collect()
    }

    /// Advances a partition's event-time clock with no input (a quiet partition in `run`),
    /// closing the appeals that went idle meanwhile.
    pub async fn advance_clock(&self, partition: &str, to: i64) -> StoreResult<Committed> {
        let mut ws = self.store.begin().await?;
        let projects: BTreeSet<String> = self.config.projects.iter().map(|p| p.id.clone()).collect();
        ws.lock_projects(&projects).await?;
        ws.prefetch_idle(partition, to).await?;
        let clock = ws.advance_clock(partition, to).await?;
        let mut records = Vec::new();
        let mut stats = Stats::default();
        for em in appeal::close_idle(&mut ws, |p| self.rules.contains_key(p), partition, clock).await? {
            stats.inactivity_closes += 1;
            records.extend(em.records);
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        ws.commit(&batch_id, &records).await?;
        count_records(&records, &mut stats);
        Ok(Committed { batch_ids: vec![batch_id], records, stats, ..Committed::default() })
    }

    /// Warms the working set with a few multi-row reads instead of one read per input.
    async fn prefetch(
        &self,
        ws: &mut WorkingSet,
        batch: &Batch,
        inputs: &[Result<Input, decode::DecodeError>],
    ) -> StoreResult<()> {
        let mut applied = Vec::new();
        let mut handles: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut conversations: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut messages: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut values: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut latest: BTreeMap<&str, i64> =
            batch.parts.iter().map(|p| (p.partition.as_str(), i64::MIN)).collect();
        for ((partition, _), input) in batch.inputs().zip(inputs) {
            let Ok(input) = input else { continue };
            let partition_latest = latest.get_mut(partition).expect("every part listed");
            *partition_latest = (*partition_latest).max(input.event_time());
            let project = input.project_id();
            if let Some(id) = input.dedupe_id() {
                applied.push((project.to_string(), id));
            }
            match input {
                Input::Message(m) => {
                    let h = handles.entry(project).or_default();
                    h.push(visitor_handle(&m.channel_id, &m.visitor.id));
                    h.extend(m.visitor.external_id.as_deref().map(external_handle));
                    let keys = conversations.entry(project).or_default();
                    // The anonymous key too: a visitor signing in may continue that conversation.
                    keys.push(conversation_key(&m.channel_id, &m.visitor.id, None));
                    if m.visitor.external_id.is_some() {
                        keys.push(appeal::message_key(m));
                    }
                    self.matching_lookups(m, &mut values);
                }
                Input::Status(s) => messages.entry(project).or_default().push(s.message_id.clone()),
                Input::Command(_) => {}
            }
        }
        ws.prefetch_applied(&applied).await?;
        for (project, hs) in handles {
            ws.prefetch_handles(project, &hs).await?;
        }
        for (project, keys) in conversations {
            ws.prefetch_open_appeals(project, &keys).await?;
        }
        for (project, ids) in messages {
            ws.prefetch_messages(project, &ids).await?;
        }
        for ((project, field), vs) in values {
            let limit = self.config.project(&project).map_or(usize::MAX, |p| p.max_merge_group);
            ws.prefetch_values(&project, &field, &vs, limit).await?;
        }
        ws.prefetch_clocks(&latest.keys().copied().collect::<Vec<_>>()).await?;
        for (partition, latest) in latest {
            let clock = ws.clock(partition).await?.unwrap_or(i64::MIN);
            ws.prefetch_idle(partition, clock.max(latest)).await?;
        }
        Ok(())
    }

    /// The matching lookups a message will cause: its visitor's values of every rule's first
    /// field (matching looks candidates up by that field).
    fn matching_lookups(
        &self,
        m: &decode::InboundMessage,
        out: &mut BTreeMap<(String, String), Vec<String>>,
    ) {
        let (Some(project), Some(rules)) =
            (self.config.project(&m.project_id), self.rules.get(&m.project_id))
        else {
            return;
        };
        let Some(channel) = project.channel(&m.channel_id) else { return };
        for (field, value) in identify::revealed_values(project, channel.kind, &m.visitor) {
            let first_field = rules.rules.iter().any(|r| r.fields[0] == field);
            if first_field && !rules.is_blocked(&value) {
                out.entry((m.project_id.clone(), field)).or_default().push(value);
            }
        }
    }

    async fn apply(
        &self,
        ws: &mut WorkingSet,
        partition: &str,
        raw: &RawInput,
        input: &Input,
        lookups: &CrmLookups,
        out: &mut Outputs,
    ) -> StoreResult<()> {
        let clock = ws.advance_clock(partition, input.event_time()).await?;
        for em in appeal::close_idle(ws, |p| self.rules.contains_key(p), partition, clock).await? {
            out.stats.inactivity_closes += 1;
            out.records.extend(em.records);
        }
        let project = input.project_id();
        if let Some(id) = input.dedupe_id() {
            if ws.is_applied(project, &id).await? {
                out.stats.duplicates += 1;
                out.duplicates.push(raw.pos.clone());
                tracing::debug!(input = %id, "duplicate input: already applied");
                return Ok(());
            }
            ws.mark_applied(project, &id);
        }
        let ctx = Ctx {
            project: self.config.project(project).expect("decode checks projects"),
            rules: &self.rules[project],
            scenarios: &self.scenarios,
            lookups,
        };
        let mut em = match input {
            Input::Status(_) => Emitter::for_status(project, cause(input)),
            _ => Emitter::new(project, cause(input)),
        };

        let result = match input {
            Input::Message(m) => message(ws, &ctx, partition, m, &mut em).await,
            Input::Status(s) => appeal::status(ws, s, &mut em).await,
            Input::Command(c) => appeal::commands::apply(ws, &ctx, c, &mut em).await,
        };
        match result {
            Ok(()) => {
                if let Input::Command(c) = input {
                    record_outcome(ws, c, CommandOutcome::from_records(&c.command_id, &em.records)).await?;
                }
                out.stats.applied += 1;
                out.records.extend(em.records);
                Ok(())
            }
            Err(ApplyError::Poison { stage, reason }) => {
                if let Input::Command(c) = input {
                    record_outcome(ws, c, CommandOutcome::failed(&c.command_id, reason.clone())).await?;
                }
                let why = emit::DlqReason { reason: &reason, stage, project_id: Some(project.to_string()) };
                out.dead_letter(raw, why, self.config.pipeline.dlq_max_bytes);
                Ok(())
            }
            Err(ApplyError::Store(e)) => Err(e),
        }
    }
}

impl Committed {
    /// Adds a part committed after this one.
    fn absorb(&mut self, later: Committed) {
        self.batch_ids.extend(later.batch_ids);
        self.records.extend(later.records);
        self.stats.add(&later.stats);
        self.duplicates.extend(later.duplicates);
        self.dead_lettered.extend(later.dead_lettered);
        self.timings.lock += later.timings.lock;
        self.timings.prefetch += later.timings.prefetch;
        self.timings.apply += later.timings.apply;
        self.timings.commit += later.timings.commit;
    }
}

/// The identity of an input of a file that cannot be decoded (so has no id of its own): its
/// line, so that replaying the file again dead-letters nothing twice. Kafka inputs need none:
/// their offsets commit with the batch.
fn dead_letter_id(raw: &RawInput, e: &decode::DecodeError) -> Option<(String, String)> {
    match &raw.pos {
        SourcePos::File { file, line } => {
            Some((e.project_id.clone().unwrap_or_default(), format!("dlq:{file}:{line}")))
        }
        // Kafka inputs' offsets commit with the batch; a posted body is answered, not resumed.
        SourcePos::Kafka { .. } | SourcePos::Request { .. } => None,
    }
}

/// The partition offset after the last of `inputs` (Kafka positions; files have none).
fn offset_after(inputs: &[RawInput]) -> i64 {
    match inputs.last().map(|i| &i.pos) {
        Some(SourcePos::Kafka { offset, .. }) => offset + 1,
        _ => 0,
    }
}

fn cause(input: &Input) -> Cause {
    match input {
        Input::Message(m) => Cause { kind: CauseKind::Message, id: m.message_id.clone() },
        Input::Status(s) => Cause {
            kind: CauseKind::Message,
            id: format!("status:{}:{}", s.message_id, status_name(s.status)),
        },
        Input::Command(c) => Cause { kind: CauseKind::Command, id: c.command_id.clone() },
    }
}

async fn message(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    partition: &str,
    m: &decode::InboundMessage,
    em: &mut Emitter,
) -> Result<(), ApplyError> {
    let identified = identify::identify(ws, ctx, m, em).await?;
    if identified.fixed && ws.open_appeal(&m.project_id, &appeal::message_key(m)).await?.is_none() {
        // The fixed client is named on every new appeal of its channel.
        let method = emit::IdentifyMethod::Fixed;
        let body = emit::EventBody::ClientIdentified { method, identifier: None, crm: None };
        em.event(m.sent_at, body, Some(identified.client.summary()), None);
    }
    tracing::Span::current().record("client", identified.client.id.as_str());
    let (mut appeal, opened) = appeal::client_message(ws, ctx, partition, m, identified.client, em).await?;
    tracing::Span::current().record("appeal", appeal.number);
    let client = ws.live_client(&appeal.client_id).await?.expect("an appeal's client exists");
    if opened {
        appeal::dialogue::on_open(ws, ctx, &mut appeal, client, m.sent_at, em).await?;
    } else {
        appeal::dialogue::on_client_message(ws, ctx, &mut appeal, client, m, em).await?;
    }
    Ok(())
}

/// Stores what became of a command with the card it was about as the command left it: the
/// write API answers with that card's revision.
async fn record_outcome(
    ws: &mut WorkingSet,
    cmd: &decode::Command,
    mut outcome: CommandOutcome,
) -> StoreResult<()> {
    let card = match &outcome.client {
        Some(c) => ws.live_client(&c.id).await?,
        None => None,
    };
    if let Some(card) = card {
        outcome.revision = Some(card.doc.revision);
        outcome.client = Some(card.summary());
    }
    ws.record_outcome(&cmd.project_id, outcome);
    Ok(())
}

/// The wire name of a delivery status (`delivered`, `read`).
fn status_name(status: crate::model::DeliveryStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Counts events by type, outbound records and DLQ records of a batch.
fn count_records(records: &[Record], stats: &mut Stats) {
    for r in records {
        match r.topic {
            emit::Topic::Events => {
                let kind = event_type(&r.value);
                *stats.events.entry(kind).or_default() += 1;
            }
            emit::Topic::Outbound => stats.outbound += 1,
            emit::Topic::Dlq => {}
        }
    }
}

/// The `type` of a serialised event; it is the second key of every event.
fn event_type(value: &str) -> String {
    let start = value.find("\"type\":\"").map(|i| i + 8);
    start.and_then(|s| value[s..].find('"').map(|e| value[s..s + e].to_string())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::StatusUpdate;
    use crate::model::DeliveryStatus;

    fn status(message_id: &str) -> Input {
        let s = StatusUpdate {
            message_id: message_id.into(),
            project_id: "acme".into(),
            channel_id: "tg".into(),
            status: DeliveryStatus::Read,
            at: 0,
        };
        Input::Status(s)
    }

    #[test]
    fn statuses_of_message_ids_differing_only_in_case_have_different_causes() {
        assert_eq!(cause(&status("Out-1")).id, "status:Out-1:read");
        assert_ne!(cause(&status("Out-1")).id, cause(&status("out-1")).id);
    }
}
