//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use depot_api::types::*;
use depot_api::{ErrorBody, ErrorCode};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{admin, agents, blobs, components, configs, pipelines, tokens};

#[derive(OpenApi)]
#[openapi(
    info(title = "depot registry API", description = "Release registry: blobs, components and versions, configurations, pipelines, agents' status, tokens."),
    paths(
        blobs::upload, blobs::download,
        components::list, components::versions, components::version, components::push_version,
        components::delete_version, components::delete_component, components::deprecate, components::undeprecate,
        components::channels, components::set_channel, components::remove_channel,
        configs::list, configs::create, configs::show, configs::set_layers, configs::bump, configs::rollback,
        configs::history, configs::delete,
        agents::report, agents::list,
        pipelines::list, pipelines::create, pipelines::show, pipelines::set_gate, pipelines::promote,
        pipelines::approve, pipelines::reject, pipelines::delete, pipelines::rollback, pipelines::env, pipelines::set_env, pipelines::history,
        tokens::whoami, tokens::create, tokens::list, tokens::revoke,
        admin::healthz, admin::metrics, admin::gc,
    ),
    components(schemas(
        ErrorBody, ErrorCode, Role, BlobInfo, PushVersion, VersionInfo, ComponentSummary, LayerRef, Layer, Config,
        ConfigSummary, CreateConfig, SetLayers, BumpLayer, BumpResult, RollbackConfig, HistoryEntry, CreateToken,
        TokenInfo, TokenCreated, GcReport, WhoAmI, AgentState, AgentReport, AgentStatus, Deprecation, Deprecated, VersionUse, DeprecateVersion,
        ChannelInfo, ChannelMove, SetChannel, depot_api::semver_order::ChannelKind,
        depot_api::pipeline::StageRef, depot_api::pipeline::StageSpec, depot_api::pipeline::CreatePipeline,
        depot_api::pipeline::Stage, depot_api::pipeline::Pipeline, depot_api::pipeline::Gate,
        depot_api::pipeline::SetGate, depot_api::pipeline::StageHealth, depot_api::pipeline::StageStatus,
        depot_api::pipeline::PipelineStatus, depot_api::pipeline::Promote, depot_api::pipeline::PromotionState,
        depot_api::pipeline::Promotion, depot_api::pipeline::EnvChange, depot_api::pipeline::EnvView,
        depot_api::pipeline::EventKind, depot_api::pipeline::PipelineEvent,
    )),
    modifiers(&BearerToken),
)]
pub struct ApiDoc;

/// `Authorization: Bearer NAME.SECRET`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
