//! appealflow: a stream processor for omnichannel customer support.
//!
//! Stages, in the order an input meets them: [`source`] → [`decode`] → [`identify`] →
//! [`matching`] → [`appeal`] → [`emit`]; [`store`] keeps state and the outbox, [`config`]
//! is read once at start, [`pipeline`] drives a batch through the stages, and [`replay`]
//! is the file-in, stdout-out front end. [`bot`] is the pure engine of bot scenarios
//! (contact collection): it decides what the bot says and saves, the stages carry it out.
//! [`crm`] calls a project's CRM for automatic identification. [`api`] is the read side beside
//! the pipeline: cards, timelines and merge ledgers over the store, over HTTP.

/// A batch allocates and frees many small strings (ids, keys, JSON fields); under glibc's
/// malloc that was about a quarter of `run`'s CPU in `perf`. Set here rather than in the
/// binary so that benches and tests measure what ships. Its `no_thp` feature (Cargo.toml):
/// with huge pages, a batch's multi-MB write buffers were zeroed 2 MB at a time every batch,
/// 17% of `replay`'s CPU (docs/performance.md, 2026-12-01).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod appeal;
pub mod bot;
pub mod broker;
pub mod config;
pub mod crm;
pub mod decode;
pub mod emit;
pub mod errors;
pub mod identify;
pub mod matching;
pub mod model;
pub mod pipeline;
pub mod replay;
pub mod retry;
pub mod run;
pub mod serve;
pub mod source;
pub mod stage;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod text;
