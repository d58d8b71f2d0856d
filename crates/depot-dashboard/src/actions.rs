//! Actions. Each form posts twice: first without `confirmed`, answered with a page that says
//! what will happen ("3 hosts will switch to web 1.4.2") and a button that posts the same form
//! with `confirmed=yes`; then the registry does it, with the same rules as the CLI, in the
//! history under the signed-in token's name.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use depot_api::pipeline::Promote;
use depot_api::rollout::RolloutAction;
use depot_api::types::{CreateToken, Role};
use depot_api::{ComponentName, ConfigName, PipelineName, StageName, TokenName, VersionLabel};
use maud::html;

use crate::Dashboard;
use crate::pages::{error_page, layout_once, registry_error, tokens_main};
use crate::session::{Posted, Signed};

/// The confirmation page: what will happen, the form again with `confirmed=yes`, and a way back.
fn confirm(signed: &Signed, action: &str, title: &str, what: &str, fields: &[(&str, &str)], back: &str) -> Response {
    layout_once(
        signed,
        title,
        html! {
            h1 { (title) }
            p.confirm role="alert" { (what) }
            form.action method="post" action=(action) {
                input type="hidden" name="csrf" value=(signed.csrf);
                input type="hidden" name="confirmed" value="yes";
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                button.primary type="submit" autofocus { "Confirm" }
                " "
                a href=(back) { "Cancel" }
            }
        },
    )
    .into_response()
}

fn parse<T>(value: Result<T, depot_api::NameError>) -> Result<T, Response> {
    value.map_err(|e| error_page(StatusCode::BAD_REQUEST, &e.to_string(), ""))
}

fn refused_for_viewers(signed: &Signed) -> Result<(), Response> {
    if signed.may_operate() {
        return Ok(());
    }
    Err(error_page(
        StatusCode::FORBIDDEN,
        &format!("Token {} ({}) may not change anything", signed.caller.name, signed.caller.role.as_str()),
        "operators and admins may",
    ))
}

/// `N hosts` of a configuration, for "… will switch to …".
fn hosts(count: u64) -> String {
    if count == 1 { "1 host".to_owned() } else { format!("{count} hosts") }
}

/// How the hosts will move under `strategy`: at once, or in a rollout.
fn pace(strategy: &depot_api::rollout::Strategy) -> &'static str {
    match strategy {
        depot_api::rollout::Strategy::All => "",
        depot_api::rollout::Strategy::Rolling(_) => " A rollout starts: canaries first, then batches.",
    }
}

/// The revision a confirmation was shown for: the action is refused if the configuration
/// changed since, rather than doing something nobody confirmed.
fn shown_revision(form: &Option<String>) -> Option<u64> {
    form.as_deref().and_then(|r| r.parse().ok())
}

#[derive(serde::Deserialize)]
pub struct PromoteForm {
    to: String,
    confirmed: Option<String>,
}

pub async fn promote(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    posted: Posted<PromoteForm>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let pipeline = parse(PipelineName::parse(&name))?;
    let to = parse(StageName::parse(&form.to))?;
    let registry = &dashboard.registry;
    if form.confirmed.as_deref() != Some("yes") {
        let status =
            registry.pipeline_status(&signed.caller, pipeline.clone()).await.map_err(|e| registry_error(&e))?;
        let target = status.stages.iter().find(|s| s.stage.name == to);
        let source =
            target.and_then(|t| t.stage.after.as_ref()).and_then(|a| status.stages.iter().find(|s| &s.stage.name == a));
        let (Some(target), Some(source)) = (target, source) else {
            return Err(error_page(
                StatusCode::NOT_FOUND,
                &format!("{pipeline} has no stage {to} to promote into"),
                "",
            ));
        };
        let versions =
            source.layers.iter().map(|l| format!("{} {}", l.component, l.version)).collect::<Vec<_>>().join(", ");
        let what = format!(
            "{} of {}/{to} will switch to {versions} (from {}, revision {}).{}{}",
            hosts(target.health.agents),
            pipeline,
            source.stage.name,
            source.revision,
            pace(&target.strategy),
            if target.stage.gate == depot_api::pipeline::Gate::Approval {
                " The stage's gate asks another operator to approve it first."
            } else {
                ""
            }
        );
        return Ok(confirm(
            &signed,
            &format!("/ui/pipelines/{pipeline}/promote"),
            &format!("Promote into {to}?"),
            &what,
            &[("to", to.as_str())],
            "/ui/",
        ));
    }
    let request = Promote { to, from: None, components: Vec::new(), force: false };
    registry.promote(&signed.caller, pipeline, request).await.map_err(|e| registry_error(&e))?;
    Ok(Redirect::to("/ui/").into_response())
}

#[derive(serde::Deserialize)]
pub struct Confirmed {
    confirmed: Option<String>,
}

pub async fn decide(
    State(dashboard): State<Dashboard>,
    Path((name, id, decision)): Path<(String, u64, String)>,
    posted: Posted<Confirmed>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let pipeline = parse(PipelineName::parse(&name))?;
    let registry = &dashboard.registry;
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(error_page(StatusCode::NOT_FOUND, "No such page", "")),
    };
    if form.confirmed.as_deref() != Some("yes") {
        let status =
            registry.pipeline_status(&signed.caller, pipeline.clone()).await.map_err(|e| registry_error(&e))?;
        let Some(promotion) = status.pending.iter().find(|p| p.id == id) else {
            return Err(error_page(
                StatusCode::NOT_FOUND,
                &format!("Nothing waits for approval as #{id} in {pipeline}"),
                "",
            ));
        };
        let target = status.stages.iter().find(|s| s.stage.name == promotion.to);
        let agents = target.map_or(0, |s| s.health.agents);
        let strategy = target.map(|s| s.strategy.clone()).unwrap_or_default();
        let versions =
            promotion.layers.iter().map(|l| format!("{} {}", l.component, l.version)).collect::<Vec<_>>().join(", ");
        let (title, what) = if approve {
            (
                format!("Approve promotion #{id}?"),
                format!(
                    "{} of {pipeline}/{} will switch to {versions}.{}",
                    hosts(agents),
                    promotion.to,
                    pace(&strategy)
                ),
            )
        } else {
            (
                format!("Reject promotion #{id}?"),
                format!("{pipeline}/{} stays as it is; {versions} is not promoted.", promotion.to),
            )
        };
        return Ok(confirm(
            &signed,
            &format!("/ui/pipelines/{pipeline}/promotions/{id}/{decision}"),
            &title,
            &what,
            &[],
            "/ui/",
        ));
    }
    if approve {
        registry.approve(&signed.caller, pipeline, id).await
    } else {
        registry.reject(&signed.caller, pipeline, id).await
    }
    .map_err(|e| registry_error(&e))?;
    Ok(Redirect::to("/ui/").into_response())
}

#[derive(serde::Deserialize)]
pub struct RollbackForm {
    /// The revision whose layers come back, as the confirmation named it.
    to: Option<u64>,
    /// The revision the confirmation was shown for.
    revision: Option<String>,
    confirmed: Option<String>,
}

pub async fn rollback(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    posted: Posted<RollbackForm>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let name = parse(ConfigName::parse(&name))?;
    let registry = &dashboard.registry;
    let back = format!("/ui/configs/{name}");
    let config = registry.config(&signed.caller, &name).await.map_err(|e| registry_error(&e))?;
    let (Some("yes"), Some(to), Some(shown)) = (form.confirmed.as_deref(), form.to, shown_revision(&form.revision))
    else {
        let history = registry.config_history(&signed.caller, name.clone()).await.map_err(|e| registry_error(&e))?;
        let agents = registry.agents(&signed.caller, name.clone()).await.map_err(|e| registry_error(&e))?;
        let previous = history.iter().rev().find(|h| h.revision < config.revision && h.hash != config.hash);
        let Some(previous) = previous else {
            return Err(error_page(
                StatusCode::CONFLICT,
                &format!("{name} has no earlier revision with other layers"),
                "",
            ));
        };
        let versions =
            previous.layers.iter().map(|l| format!("{} {}", l.component, l.version)).collect::<Vec<_>>().join(", ");
        let what = format!(
            "{} of {name} will switch back to {versions} (the layers of revision {}) at once, without a rollout.",
            hosts(agents.len() as u64),
            previous.revision
        );
        let (to, revision) = (previous.revision.to_string(), config.revision.to_string());
        return Ok(confirm(
            &signed,
            &format!("{back}/rollback"),
            &format!("Roll {name} back?"),
            &what,
            &[("to", &to), ("revision", &revision)],
            &back,
        ));
    };
    // The configuration changed since the confirmation: the registry refuses (config-conflict).
    match &config.stage {
        Some(stage) => {
            registry
                .rollback_stage(
                    &signed.caller,
                    stage.pipeline.clone(),
                    stage.stage.clone(),
                    Some(to),
                    Some(shown),
                    true,
                )
                .await
        }
        None => registry.rollback_config(&signed.caller, name, Some(to), Some(shown), true).await,
    }
    .map_err(|e| registry_error(&e))?;
    Ok(Redirect::to(&back).into_response())
}

#[derive(serde::Deserialize)]
pub struct BumpForm {
    component: String,
    /// The revision and the version the confirmation was shown for.
    revision: Option<String>,
    target: Option<String>,
    confirmed: Option<String>,
}

pub async fn bump(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    posted: Posted<BumpForm>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let name = parse(ConfigName::parse(&name))?;
    let component = parse(ComponentName::parse(&form.component))?;
    let registry = &dashboard.registry;
    let back = format!("/ui/configs/{name}");
    let config = registry.config(&signed.caller, &name).await.map_err(|e| registry_error(&e))?;
    let Some(layer) = config.layers.iter().find(|l| l.component == component) else {
        return Err(error_page(StatusCode::NOT_FOUND, &format!("{name} has no layer of {component}"), ""));
    };
    let versions = registry.versions(&signed.caller, component.clone()).await.map_err(|e| registry_error(&e))?;
    let target = depot_store::rules::bump_target(&versions, &layer.version)
        .map(|t| t.version.to_string())
        .filter(|t| t != layer.version.as_str());
    if form.confirmed.as_deref() == Some("yes") {
        // What was confirmed, or nothing: a push or a change since asks again.
        if shown_revision(&form.revision) != Some(config.revision) || form.target != target {
            return Err(error_page(
                StatusCode::CONFLICT,
                &format!("{name} or {component} changed since the confirmation"),
                "review the configuration again",
            ));
        }
        registry.bump(&signed.caller, name, component, Some(config.revision)).await.map_err(|e| registry_error(&e))?;
        return Ok(Redirect::to(&back).into_response());
    }
    let agents = registry.agents(&signed.caller, name.clone()).await.map_err(|e| registry_error(&e))?;
    let what = match &target {
        Some(target) => format!(
            "{} of {name} will switch from {component} {} to {component} {target}.{}",
            hosts(agents.len() as u64),
            layer.version,
            pace(&config.strategy)
        ),
        None => format!("{component} {} is the newest version already: nothing will change.", layer.version),
    };
    let revision = config.revision.to_string();
    let mut fields = vec![("component", component.as_str()), ("revision", revision.as_str())];
    if let Some(target) = &target {
        fields.push(("target", target.as_str()));
    }
    Ok(confirm(&signed, &format!("{back}/bump"), &format!("Bump {component} in {name}?"), &what, &fields, &back))
}

#[derive(serde::Deserialize)]
pub struct RolloutForm {
    action: String,
    confirmed: Option<String>,
}

pub async fn rollout(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    posted: Posted<RolloutForm>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let name = parse(ConfigName::parse(&name))?;
    let back = format!("/ui/configs/{name}");
    let (action, what) = match form.action.as_str() {
        "pause" => (RolloutAction::Pause, "No new batch will start until it is resumed; hosts keep what they run."),
        "resume" => (RolloutAction::Resume, "Batches start again as the ones before them bake."),
        "abort" => (RolloutAction::Abort, "Every host goes back to the revision it ran before the rollout."),
        "continue" => (
            RolloutAction::Continue,
            "The rollout goes on past its halt, forgiving the failures so far; the failed hosts stay as they are.",
        ),
        _ => return Err(error_page(StatusCode::BAD_REQUEST, "Unknown rollout action", "")),
    };
    if form.confirmed.as_deref() != Some("yes") {
        return Ok(confirm(
            &signed,
            &format!("{back}/rollout"),
            &format!("{} the rollout of {name}?", capitalised(&form.action)),
            what,
            &[("action", &form.action)],
            &back,
        ));
    }
    dashboard.registry.rollout_action(&signed.caller, name, action).await.map_err(|e| registry_error(&e))?;
    Ok(Redirect::to(&back).into_response())
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

#[derive(serde::Deserialize)]
pub struct DeprecationForm {
    reason: Option<String>,
    undo: Option<String>,
    confirmed: Option<String>,
}

pub async fn deprecation(
    State(dashboard): State<Dashboard>,
    Path((name, version)): Path<(String, String)>,
    posted: Posted<DeprecationForm>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    refused_for_viewers(&signed)?;
    let component = parse(ComponentName::parse(&name))?;
    let version = parse(VersionLabel::parse(&version))?;
    let back = format!("/ui/components/{component}");
    let action = format!("{back}/versions/{version}/deprecation");
    let undo = form.undo.as_deref() == Some("yes");
    let reason = form.reason.clone().unwrap_or_default();
    if !undo && reason.trim().is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "A deprecation needs a reason",
            "say why, for the people who run it",
        ));
    }
    if form.confirmed.as_deref() != Some("yes") {
        return Ok(if undo {
            confirm(
                &signed,
                &action,
                &format!("Undeprecate {component} {version}?"),
                &format!(
                    "{component} {version} becomes eligible for rolling channels again; channels that would name it move back to it."
                ),
                &[("undo", "yes")],
                &back,
            )
        } else {
            confirm(
                &signed,
                &action,
                &format!("Deprecate {component} {version}?"),
                &format!(
                    "{component} {version} leaves every rolling channel; configurations tracking one move to its new version. Pinned configurations keep it, with a warning."
                ),
                &[("reason", &reason)],
                &back,
            )
        });
    }
    let registry = &dashboard.registry;
    if undo {
        registry.undeprecate(&signed.caller, component, version).await.map(|_| ())
    } else {
        registry.deprecate(&signed.caller, component, version, reason.trim(), None, false).await.map(|_| ())
    }
    .map_err(|e| registry_error(&e))?;
    Ok(Redirect::to(&back).into_response())
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    name: String,
    role: String,
    config_pattern: Option<String>,
}

pub async fn create_token(State(dashboard): State<Dashboard>, posted: Posted<TokenForm>) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    let name = parse(TokenName::parse(form.name.trim()))?;
    let role = match form.role.as_str() {
        "viewer" => Role::Viewer,
        "operator" => Role::Operator,
        "agent" => Role::Agent,
        "admin" => Role::Admin,
        _ => return Err(error_page(StatusCode::BAD_REQUEST, "Unknown role", "")),
    };
    let config_pattern = form.config_pattern.filter(|p| !p.trim().is_empty());
    let registry = &dashboard.registry;
    let created = registry
        .create_token(&signed.caller, CreateToken { name, role, config_pattern })
        .await
        .map_err(|e| registry_error(&e))?;
    let tokens = registry.tokens(&signed.caller).await.map_err(|e| registry_error(&e))?;
    Ok(layout_once(&signed, "Tokens", tokens_main(&signed, &tokens, Some(&created.token))).into_response())
}

pub async fn revoke_token(
    State(dashboard): State<Dashboard>,
    Path(name): Path<String>,
    posted: Posted<Confirmed>,
) -> Result<Response, Response> {
    let Posted { signed, form } = posted;
    let name = parse(TokenName::parse(&name))?;
    if signed.caller.role != Role::Admin {
        return Err(error_page(StatusCode::FORBIDDEN, "Only admins manage tokens", ""));
    }
    if form.confirmed.as_deref() != Some("yes") {
        return Ok(confirm(
            &signed,
            &format!("/ui/tokens/{name}/revoke"),
            &format!("Revoke token {name}?"),
            &format!("Everything using {name} (a host's agent, a CI job, a signed-in session) is refused from now on."),
            &[],
            "/ui/tokens",
        ));
    }
    dashboard.registry.revoke_token(&signed.caller, name).await.map_err(|e| registry_error(&e))?;
    Ok(Redirect::to("/ui/tokens").into_response())
}
