//! `GET /v1/projects/{project}/scenarios` (seed 004, the scenario report): each configured
//! bot scenario of the project as its blocks and their exits, with how often each block was
//! entered, so a console can draw the scenario and grey out what no run ever reached.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{project, Api, ApiResult, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct ScenariosAnswer {
    scenarios: Vec<ScenarioView>,
}

#[derive(Serialize, ToSchema)]
pub struct ScenarioView {
    scenario_id: String,
    /// The block a run begins at.
    start: String,
    /// In config order.
    blocks: Vec<BlockView>,
    /// Counted blocks the config no longer has (renamed or removed since).
    retired: Vec<RetiredView>,
}

#[derive(Serialize, ToSchema)]
pub struct BlockView {
    block_id: String,
    /// `check_field`, `ask`, `message`, `identify` or `end`.
    block_type: &'static str,
    /// Runs that entered it.
    entries: u64,
    /// Where a run goes on from it: the exit's name (`next`, `filled`, `empty`, `invalid`)
    /// and the block it leads to.
    exits: Vec<ExitView>,
}

#[derive(Serialize, ToSchema)]
pub struct ExitView {
    exit: &'static str,
    to: String,
}

#[derive(Serialize, ToSchema)]
pub struct RetiredView {
    block_id: String,
    entries: u64,
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/scenarios",
    params(("project" = String, Path)),
    responses((status = 200, body = ScenariosAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn report(State(api): State<Api>, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let config = project(&api, &headers, &p)?;
    let counted = api.store.bot_block_entries().await?;
    let none = BTreeMap::new();
    let scenarios = config
        .scenarios
        .iter()
        .map(|s| {
            let entries = counted.get(&(p.clone(), s.id.clone())).unwrap_or(&none);
            let blocks: Vec<BlockView> = s
                .blocks
                .iter()
                .map(|b| BlockView {
                    block_id: b.id().to_string(),
                    block_type: b.kind().as_str(),
                    entries: entries.get(b.id()).copied().unwrap_or(0),
                    exits: b
                        .exits()
                        .into_iter()
                        .map(|(exit, to)| ExitView { exit, to: to.to_string() })
                        .collect(),
                })
                .collect();
            let retired = entries
                .iter()
                .filter(|(id, _)| !s.blocks.iter().any(|b| b.id() == id.as_str()))
                .map(|(id, n)| RetiredView { block_id: id.clone(), entries: *n })
                .collect();
            ScenarioView { scenario_id: s.id.clone(), start: s.start.clone(), blocks, retired }
        })
        .collect();
    Ok(Json(ScenariosAnswer { scenarios }).into_response())
}
