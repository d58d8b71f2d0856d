//! Agents' status: each agent reports its steps on a configuration; operators read them.

use axum::extract::State;
use axum::http::StatusCode;
use depot_api::types::{AgentReport, AgentStatus};
use depot_api::{ConfigName, ErrorBody, HostName};

use crate::auth::{Reporter, Viewer};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::Path;
use crate::state::AppState;

#[utoipa::path(put, path = "/api/v1/configs/{name}/agents/{host}", tag = "agents", params(("name" = depot_api::ConfigName, Path), ("host" = depot_api::HostName, Path)), request_body = AgentReport, responses((status = 204, description = "recorded (a report older than the stored one only refreshes last_seen)"), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this, or another token reports for this host", body = ErrorBody)), security(("token" = [])))]
pub async fn report(
    Reporter(caller): Reporter,
    State(state): State<AppState>,
    Path((name, host)): Path<(String, String)>,
    Json(report): Json<AgentReport>,
) -> Result<StatusCode, ApiError> {
    let (name, host) = (ConfigName::parse(&name)?, HostName::parse(&host)?);
    state.registry.report_agent(&caller, name, host, report).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/configs/{name}/agents", tag = "agents", params(("name" = depot_api::ConfigName, Path)), responses((status = 200, body = [AgentStatus]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<AgentStatus>>, ApiError> {
    Ok(Json(state.registry.agents(&caller, ConfigName::parse(&name)?).await?))
}
