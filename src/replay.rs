//! `appealflow replay`: JSONL files (or stdin) in, output records on stdout, state in the
//! store. It drives the very pipeline `run` does, with the file as one partition, so a replay
//! of a topic's contents gives the records the service gave.
//!
//! Records go to stdout only after their batch committed, and leave the outbox only after
//! stdout took them: a replay killed mid-file and started again prints what the first run
//! committed but never printed, then goes on; inputs already applied are duplicates.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::emit::Record;
use crate::pipeline::Pipeline;
use crate::source::file::{LineSource, REPLAY_PARTITION};
use crate::source::Batch;
use crate::store::{self, Store};
use crate::telemetry::Stats;

/// What a replay did, for the summary on stderr.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub stats: Stats,
    pub recovered_records: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn inputs_per_second(&self) -> f64 {
        self.stats.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The human summary printed on stderr at the end of a replay.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut out = format!(
            "appealflow replay: {} inputs in {:.2}s ({:.0} inputs/s)\n  applied {}, duplicates {}, DLQ {}\n  \
             clients created {}, merges {} (refused {}), appeals opened {}, closed {} (inactivity {})\n  \
             events {}, outbound messages {}",
            s.inputs,
            self.elapsed.as_secs_f64(),
            self.inputs_per_second(),
            s.applied,
            s.duplicates,
            s.dlq,
            s.event("client.created"),
            s.event("client.merged"),
            s.event("client.merge_refused"),
            s.event("appeal.opened"),
            s.event("appeal.closed"),
            s.inactivity_closes,
            s.events.values().sum::<u64>(),
            s.outbound,
        );
        if self.recovered_records > 0 {
            out.push_str(&format!(
                "\n  {} records of an interrupted run were printed first",
                self.recovered_records
            ));
        }
        out
    }
}

/// Replays `inputs` in order through the pipeline, writing records to `out`.
pub async fn replay(
    config: Arc<Config>,
    store: Store,
    inputs: &[String],
    out: &mut dyn Write,
    progress: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let pipeline = Pipeline::new(config.clone(), store.clone())?;
    let mut summary = Summary::default();
    for (batch_id, records) in store.pending_outbox().await? {
        write_records(out, &records, &config)?;
        store.mark_published(std::slice::from_ref(&batch_id)).await?;
        summary.recovered_records += records.len() as u64;
    }
    for path in inputs {
        let mut source = LineSource::open(path, config.pipeline.max_input_bytes)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
        let bar = progress_bar(progress, &source, path);
        loop {
            let inputs = source.next_chunk(config.pipeline.batch_size).await?;
            if inputs.is_empty() {
                break;
            }
            let batch = Batch::one(REPLAY_PARTITION, inputs, None);
            let committed = store::retry(Some(8), || pipeline.process(&batch)).await?;
            write_records(out, &committed.records, &config)?;
            store.mark_published(&committed.batch_ids).await?;

            summary.stats.add(&committed.stats);
            bar.set_position(source.bytes_read);
        }
        bar.finish_and_clear();
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn progress_bar(enabled: bool, source: &LineSource, path: &str) -> ProgressBar {
    let Some(len) = source.len.filter(|_| enabled) else {
        return ProgressBar::hidden();
    };
    let bar = ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
        .expect("static template");
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(path.to_string());
    bar
}

fn write_records(out: &mut dyn Write, records: &[Record], config: &Config) -> std::io::Result<()> {
    for r in records {
        out.write_all(r.to_line(&config.kafka.topics).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
