//! Agents' status: each agent reports its steps on a configuration; operators read them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use depot_api::types::{AgentReport, AgentStatus, MAX_REPORT_ERROR, MAX_REPORT_OUTPUT};
use depot_api::{ConfigName, ErrorBody, ErrorCode, HostName};

use crate::auth::{Reporter, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(put, path = "/api/v1/configs/{name}/agents/{host}", tag = "agents", params(("name" = String, Path), ("host" = String, Path)), request_body = AgentReport, responses((status = 204, description = "recorded (a report older than the stored one only refreshes last_seen)"), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this, or another token reports for this host", body = ErrorBody)), security(("token" = [])))]
pub async fn report(
    Reporter(caller): Reporter,
    State(state): State<AppState>,
    Path((name, host)): Path<(String, String)>,
    Json(report): Json<AgentReport>,
) -> Result<StatusCode, ApiError> {
    let name = ConfigName::parse(&name)?;
    let host = HostName::parse(&host)?;
    if !caller.may_read_config(&name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {} may not report for configuration {name}", caller.name),
        ));
    }
    let too_long = |what: &str, text: &Option<String>, limit: usize| match text {
        Some(text) if text.len() > limit => {
            Err(ApiError::new(ErrorCode::InvalidRequest, format!("{what} is longer than {limit} bytes")))
        }
        _ => Ok(()),
    };
    too_long("error", &report.error, MAX_REPORT_ERROR)?;
    too_long("output_tail", &report.output_tail, MAX_REPORT_OUTPUT)?;
    let reporter = caller.name.to_string();
    state.blocking(move |state| Ok(state.metadata.report_agent(&name, &host, &reporter, &report)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/configs/{name}/agents", tag = "agents", params(("name" = String, Path)), responses((status = 200, body = [AgentStatus]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<AgentStatus>>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.agents(&name)?)).await?))
}
