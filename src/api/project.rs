//! `GET /v1/projects/{project}`: what an operator app needs to know of a project to act in
//! it: its channels (with their kind and group) and its approved message templates.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{project, Api, ApiResult, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    project_id: String,
    channels: Vec<ChannelView>,
    /// The templates `send_outbound` may name (none listed: any name is sent as given).
    templates: Vec<TemplateView>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelView {
    channel_id: String,
    /// `telegram`, `whatsapp`, `vk`, `instagram`, `web_chat`, `email`, ...
    #[schema(value_type = String)]
    kind: crate::config::ChannelKind,
    group: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    name: String,
    description: String,
    params: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}",
    params(("project" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn show(State(api): State<Api>, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let config = project(&api, &headers, &p)?;
    let channels = config
        .channels
        .iter()
        .map(|c| ChannelView { channel_id: c.id.clone(), kind: c.kind, group: c.group.clone() })
        .collect();
    let templates = config
        .templates
        .iter()
        .map(|t| TemplateView {
            name: t.name.clone(),
            description: t.description.clone(),
            params: t.params.clone(),
        })
        .collect();
    Ok(Json(ProjectView { project_id: config.id.clone(), channels, templates }).into_response())
}
