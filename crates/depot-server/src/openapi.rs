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
        blobs::upload, blobs::download, blobs::signatures, blobs::frames, blobs::assemble, components::add_signature,
        components::list, components::versions, components::version, components::push_version,
        components::delete_version, components::delete_component, components::deprecate, components::undeprecate,
        components::channels, components::set_channel, components::remove_channel,
        components::policy, components::set_policy, components::remove_policy,
        components::add_attestation, components::attestations, components::attestation,
        configs::list, configs::create, configs::show, configs::set_layers, configs::replace_layers, configs::bump, configs::rollback,
        configs::history, configs::delete, configs::set_strategy, configs::rollout, configs::rollout_action,
        agents::report, agents::list,
        pipelines::list, pipelines::create, pipelines::show, pipelines::set_gate, pipelines::promote,
        pipelines::approve, pipelines::reject, pipelines::delete, pipelines::rollback, pipelines::env, pipelines::set_env, pipelines::history,
        tokens::whoami, tokens::create, tokens::list, tokens::revoke,
        tokens::add_key, tokens::import_keys, tokens::keys, tokens::revoke_key,
        admin::healthz, admin::metrics, admin::gc,
    ),
    components(schemas(
        ErrorBody, ErrorCode, Role, Archive, depot_api::ComponentName, depot_api::ConfigName, depot_api::VersionLabel,
        depot_api::Digest, depot_api::PipelineName, depot_api::StageName, depot_api::TokenName, depot_api::HostName, BlobInfo, PushVersion, VersionInfo, ComponentSummary, LayerRef, Layer, Config,
        ConfigSummary, CreateConfig, SetLayers, ReplaceLayers, BumpLayer, BumpResult, RollbackConfig, HistoryEntry, CreateToken,
        TokenInfo, TokenCreated, GcReport, WhoAmI, AgentState, AgentReport, AgentStatus, Deprecation, Deprecated, VersionUse, DeprecateVersion,
        ChannelInfo, ChannelMove, SetChannel, SignaturePolicy, TrustedKey, SetPolicy, AttestationInfo, AddAttestation, AddSshKey, ImportSshKeys, SshKeyInfo, depot_api::semver_order::ChannelKind,
        depot_api::pipeline::StageRef, depot_api::pipeline::StageSpec, depot_api::pipeline::CreatePipeline,
        depot_api::pipeline::Stage, depot_api::pipeline::Pipeline, depot_api::pipeline::Gate,
        depot_api::pipeline::SetGate, depot_api::pipeline::StageHealth, depot_api::pipeline::StageStatus,
        depot_api::pipeline::PipelineStatus, depot_api::pipeline::Promote, depot_api::pipeline::PromotionState,
        depot_api::pipeline::Promotion, depot_api::pipeline::EnvChange, depot_api::pipeline::EnvView,
        depot_api::pipeline::EventKind, depot_api::pipeline::PipelineEvent,
        depot_api::rollout::Strategy, depot_api::rollout::Rolling,
        depot_api::rollout::OnFailure, depot_api::rollout::RolloutPhase, depot_api::rollout::RolloutStatus,
        depot_api::rollout::BatchStatus, depot_api::rollout::HostRollout, depot_api::rollout::RolloutAction,
        depot_api::rollout::RolloutRequest, depot_api::rollout::RolloutStep,
        SignatureInfo, AddSignature, BlobSignatures, BlobFrames, BlobFrame, Assembly, AssemblyPart,
    )),
    modifiers(&BearerToken, &Contract),
)]
pub struct ApiDoc;

/// An archive's bytes (`application/octet-stream`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // a schema only: the bytes are streamed, never held
pub struct Archive(Vec<u8>);

/// What every operation shares, written once here rather than on each handler: a unique
/// `operationId` (`configs_list`, `blobs_download_head`), and the answers the framework and the
/// extractors give (a bad name or path, a missing or refused token, a body that is not JSON, of the
/// wrong shape or too large), each with the API's error body.
struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let templated = path.contains('{');
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Head, item.head.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let tag = operation.tags.as_ref().and_then(|tags| tags.first()).cloned().unwrap_or_default();
                let id = operation.operation_id.clone().unwrap_or_default();
                let suffix = if method == HttpMethod::Head { "_head" } else { "" };
                operation.operation_id = Some(format!("{tag}_{id}{suffix}"));
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let json_body =
                    operation.request_body.as_ref().is_some_and(|body| body.content.contains_key("application/json"));
                let mut add = |status: &str, description: &str| {
                    let responses = &mut operation.responses.responses;
                    if !responses.contains_key(status) {
                        responses.insert(status.to_owned(), error_response(description));
                    }
                };
                if templated {
                    add(
                        "400",
                        "invalid-name or invalid-request: a name in the path or a query parameter does not parse",
                    );
                    add("404", "an object named in the path does not exist");
                } else if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add("400", "invalid-request: a query parameter does not parse");
                }
                if secured {
                    add("401", "unauthorized: no token, or one the registry does not know (with `WWW-Authenticate`)");
                    add("403", "forbidden: the token's role does not allow this");
                }
                if json_body {
                    add("400", "invalid-request: the body is not JSON");
                    add("404", "an object named in the body does not exist");
                    add("413", "too-large: the body is over 2 MiB");
                    add("415", "unsupported-media-type: the body is not `application/json`");
                    add("422", "invalid-body: JSON of the wrong shape, or a number out of range");
                }
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

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
