//! `POST /v1/projects/{project}/merges/preview` (SPEC "Write API"): the card `merge_clients`
//! would make of two cards, changing nothing. It is the pipeline's own merge
//! (`matching::merged_card`) over the cards as committed, so what an operator confirms is what
//! the command does; passing the two revisions it answers to `merge_clients` makes the merge
//! apply only to the cards previewed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{self, CardView};
use super::{live_card, now, project, Api, ApiError, ApiResult, ErrorBody};
use crate::decode::KeepName;
use crate::matching::merged_card;
use crate::model::{Client, Source, MAX_MANUAL_CONTACTS};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The card that would absorb the other (`{"client_id": ...}`, as in `merge_clients`).
    target: CardRef,
    source: CardRef,
    /// `target` (the default, as for `merge_clients`) or `source`: whose name the card keeps.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    keep_name_from: KeepName,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRef {
    client_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct PreviewAnswer {
    /// The card the merge would leave, as the card endpoint shows cards.
    card: CardView,
    /// Each card's name as a choice (`keep_name_from`), with where it came from.
    name_options: Vec<NameOption>,
    /// Contact types whose hand-added values would exceed the three a card may hold.
    over_limit: Vec<OverLimit>,
    target_revision: u64,
    source_revision: u64,
}

#[derive(Serialize, ToSchema)]
pub struct NameOption {
    /// `target` or `source`.
    from: &'static str,
    name: String,
    /// The name's provenance (`operator`, `crm`, a channel id).
    source: String,
}

#[derive(Serialize, ToSchema)]
pub struct OverLimit {
    contact_type: String,
    values: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/projects/{project}/merges/preview",
    params(("project" = String, Path)),
    request_body = PreviewRequest,
    responses(
        (status = 200, body = PreviewAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such project or card"),
        (status = 413, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "target and source are one card already (an absorbed id names its survivor)"),
        (status = 422, body = ErrorBody, description = "the merge would be refused: over max_merge_group"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn preview(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let config = project(&api, &headers, &p)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(api.config.pipeline.max_input_bytes),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let request: PreviewRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.target.client_id == request.source.client_id {
        return Err(ApiError::bad_request("target and source name the same card"));
    }
    let (target, _) = live_card(&api, &p, &request.target.client_id).await?;
    let (source, _) = live_card(&api, &p, &request.source.client_id).await?;
    if target.id == source.id {
        return Err(ApiError::conflict(format!(
            "target and source are one card already: {} lives on in {}",
            if target.id == request.target.client_id {
                &request.source.client_id
            } else {
                &request.target.client_id
            },
            target.id
        )));
    }
    let size = target.doc.group_size + source.doc.group_size;
    if size > config.max_merge_group {
        return Err(ApiError::rejected(crate::matching::group_limit_reason(size, config.max_merge_group)));
    }
    let group = [target.clone(), source.clone()];
    let keep = match request.keep_name_from {
        KeepName::Target => &target.id,
        KeepName::Source => &source.id,
    };
    let mut merged = merged_card(&group, Some((keep, now())));
    let survivor = if merged.id == target.id { &target } else { &source };
    merged.doc.revision = merged.next_revision(Some(survivor));
    let mut absorbed = api.store.absorbed_ids(&target.id).await?;
    absorbed.extend(api.store.absorbed_ids(&source.id).await?);
    absorbed.push(if merged.id == target.id { source.id.clone() } else { target.id.clone() });
    let answer = PreviewAnswer {
        name_options: [("target", &target), ("source", &source)]
            .into_iter()
            .filter_map(name_option)
            .collect(),
        over_limit: over_limit(&merged),
        card: views::card(&merged, config, absorbed, now()),
        target_revision: target.doc.revision,
        source_revision: source.doc.revision,
    };
    Ok(Json(answer).into_response())
}

/// A card's name and the claim it stands on.
fn name_option((from, card): (&'static str, &Client)) -> Option<NameOption> {
    let name = card.doc.name.clone()?;
    let claim = card.doc.names.iter().filter(|c| c.name == name).max_by_key(|c| (c.rank, c.at));
    let source = claim.map_or_else(|| "profile".to_string(), |c| c.source.clone());
    Some(NameOption { from, name, source })
}

/// Contact types with more hand-added values than a card may hold (SPEC identity rule 6):
/// the merge keeps them all; an operator may want to remove some first.
fn over_limit(card: &Client) -> Vec<OverLimit> {
    let manual = |(kind, values): (&String, &Vec<crate::model::CardValue>)| {
        let values: Vec<String> =
            values.iter().filter(|v| v.source == Source::Manual).map(|v| v.display().to_string()).collect();
        (values.len() > MAX_MANUAL_CONTACTS).then(|| OverLimit { contact_type: kind.clone(), values })
    };
    card.doc.contacts.iter().filter_map(manual).collect()
}
