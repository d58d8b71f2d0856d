//! The pages. Each is a route ([`View`]) rendered into its `<main>` by [`render_main`], so the
//! live updates of `/ui/events` send exactly what a reload would show.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use depot_api::pipeline::{EventKind, PipelineStatus, StageHealth};
use depot_api::types::{AgentState, AgentStatus, Config, Layer, Role};
use depot_api::{ComponentName, ConfigName, PipelineName};
use maud::{DOCTYPE, Markup, html};

use crate::Dashboard;
use crate::session::{Signed, Streaming};

/// A page of the dashboard, as its URL names it.
#[derive(Debug, Clone)]
pub enum View {
    Overview,
    Config { name: ConfigName, diff: Option<(u64, u64)> },
    Components,
    Component(ComponentName),
    History { pipeline: PipelineName, kind: Option<String> },
    Tokens,
}

impl View {
    /// The view of a dashboard path and query (for `/ui/events`).
    fn parse(path: &str) -> Option<View> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
        let rest = path.strip_prefix("/ui/")?;
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        Some(match parts.as_slice() {
            [] => View::Overview,
            ["configs", name] => View::Config {
                name: ConfigName::parse(name).ok()?,
                diff: params
                    .get("from")
                    .zip(params.get("to"))
                    .and_then(|(f, t)| Some((f.parse().ok()?, t.parse().ok()?))),
            },
            ["components"] => View::Components,
            ["components", name] => View::Component(ComponentName::parse(name).ok()?),
            ["pipelines", name, "history"] => View::History {
                pipeline: PipelineName::parse(name).ok()?,
                kind: params.get("kind").filter(|k| !k.is_empty()).map(|k| k.to_string()),
            },
            ["tokens"] => View::Tokens,
            _ => return None,
        })
    }
}

/// A page's title and main part, or the error page to show instead.
pub async fn render_main(dashboard: &Dashboard, signed: &Signed, view: &View) -> Result<(String, Markup), Response> {
    let registry = &dashboard.registry;
    let caller = &signed.caller;
    let failed = |e: depot_registry::Error| registry_error(&e);
    match view {
        View::Overview => {
            let pipelines = registry.pipelines(caller).await.map_err(failed)?;
            let mut statuses = Vec::with_capacity(pipelines.len());
            for pipeline in &pipelines {
                statuses.push(registry.pipeline_status(caller, pipeline.name.clone()).await.map_err(failed)?);
            }
            let staged: std::collections::HashSet<&ConfigName> =
                pipelines.iter().flat_map(|p| p.stages.iter().map(|s| &s.config)).collect();
            let mut others = Vec::new();
            for summary in registry.configs(caller).await.map_err(failed)? {
                if staged.contains(&summary.name) {
                    continue;
                }
                let agents = registry.agents(caller, summary.name.clone()).await.map_err(failed)?;
                others.push((health(&agents, &summary.hash), summary));
            }
            Ok(("Overview".to_owned(), overview_main(signed, &statuses, &others)))
        }
        View::Config { name, diff } => {
            let config = registry.config(caller, name).await.map_err(failed)?;
            let agents = registry.agents(caller, name.clone()).await.map_err(failed)?;
            let history = registry.config_history(caller, name.clone()).await.map_err(failed)?;
            let rollout = registry.rollout(caller, name.clone()).await.map_err(failed)?;
            Ok((
                format!("Configuration {name}"),
                config_main(signed, &config, &agents, &history, rollout.as_ref(), *diff),
            ))
        }
        View::Components => {
            let components = registry.components(caller).await.map_err(failed)?;
            Ok((
                "Components".to_owned(),
                html! {
                    h1 { "Components" }
                    table {
                        thead { tr { th { "Component" } th { "Versions" } th { "Newest" } } }
                        tbody {
                            @for c in &components {
                                tr {
                                    td { a href={ "/ui/components/" (c.name) } { (c.name) } }
                                    td.num { (c.versions) }
                                    td { @if let Some(v) = &c.newest { code { (v) } } }
                                }
                            }
                        }
                    }
                },
            ))
        }
        View::Component(name) => {
            let mut versions = registry.versions(caller, name.clone()).await.map_err(failed)?;
            versions.reverse();
            let channels = registry.channels(caller, name.clone()).await.map_err(failed)?;
            Ok((format!("Component {name}"), component_main(signed, name, &versions, &channels)))
        }
        View::History { pipeline, kind } => {
            let events = registry.pipeline_history(caller, pipeline.clone(), None).await.map_err(failed)?;
            Ok((format!("History of {pipeline}"), history_main(pipeline, &events, kind.as_deref())))
        }
        View::Tokens => {
            let tokens = registry.tokens(caller).await.map_err(failed)?;
            Ok(("Tokens".to_owned(), tokens_main(signed, &tokens, None)))
        }
    }
}

async fn show(dashboard: &Dashboard, signed: &Signed, view: View) -> Response {
    match render_main(dashboard, signed, &view).await {
        Ok((title, main)) => layout(signed, &title, main).into_response(),
        Err(response) => response,
    }
}

/// Every page: the view its URL names (the same parsing as the live updates of `/ui/events`).
pub async fn view(State(dashboard): State<Dashboard>, signed: Signed, uri: axum::http::Uri) -> Response {
    let path = uri.path_and_query().map_or("/ui/", |p| p.as_str());
    let Some(view) = View::parse(path) else { return not_found() };
    show(&dashboard, &signed, view).await
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    path: String,
    /// The fingerprint of the main part the page shows ([`fingerprint`]): nothing is sent until
    /// it changes.
    #[serde(default)]
    since: String,
}

/// How often a live page is rendered again to see whether it changed.
const LIVE_INTERVAL: Duration = Duration::from_millis(800);

/// A short digest of a page's main part, to tell whether it changed.
fn fingerprint(html: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(html.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a live stream is: watching a page that shows `last`, or done (it said `end`).
enum Live {
    Watching { last: String },
    Ended,
}

/// Server-sent events for a page: its main part, rendered again every [`LIVE_INTERVAL`] and
/// sent (`main`) when it changed. It ends (`end`) with the session, the page's object, or the
/// registry; a session has at most [`crate::session::STREAMS_PER_SESSION`] streams.
pub async fn events(
    State(dashboard): State<Dashboard>,
    Streaming(signed): Streaming,
    Query(query): Query<EventsQuery>,
) -> Response {
    let Some(view) = View::parse(&query.path) else { return StatusCode::NO_CONTENT.into_response() };
    let Some(guard) = signed.stream(&dashboard) else {
        return (StatusCode::TOO_MANY_REQUESTS, "too many live pages open in this session").into_response();
    };
    let closing = dashboard.closing();
    let state = (dashboard, signed, view, Live::Watching { last: query.since }, guard);
    let stream = futures_util::stream::unfold(state, move |(dashboard, signed, view, live, guard)| {
        let mut closing = closing.clone();
        async move {
            let mut last = match live {
                Live::Watching { last } => last,
                Live::Ended => return None,
            };
            loop {
                // Signed out, or the token revoked since: the stream ends.
                if *closing.borrow() || !crate::session::still_signed(&dashboard, &signed).await {
                    break;
                }
                let Ok((_, main)) = render_main(&dashboard, &signed, &view).await else { break };
                let html = main.into_string();
                let print = fingerprint(&html);
                if print != last {
                    last = print;
                    let event = Event::default().event("main").id(last.clone()).data(html);
                    return Some((
                        Ok::<_, Infallible>(event),
                        (dashboard, signed, view, Live::Watching { last }, guard),
                    ));
                }
                tokio::select! {
                    _ = tokio::time::sleep(LIVE_INTERVAL) => {}
                    _ = closing.changed() => {}
                }
            }
            let end = Event::default().event("end").data("");
            Some((Ok(end), (dashboard, signed, view, Live::Ended, guard)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

// --- layout ----------------------------------------------------------------------------------

/// A page that stays up to date while open (its URL names a [`View`]).
pub fn layout(signed: &Signed, title: &str, main: Markup) -> Markup {
    page(signed, title, main, true)
}

/// A page shown once, in answer to a form (a confirmation, a token just created): no live
/// updates, which would replace it with the view at its URL.
pub fn layout_once(signed: &Signed, title: &str, main: Markup) -> Markup {
    page(signed, title, main, false)
}

fn page(signed: &Signed, title: &str, main: Markup, live: bool) -> Markup {
    let caller = &signed.caller;
    // Rendered once, escaped by maud already: its fingerprint tells the live stream what the
    // page shows.
    let html = main.into_string();
    let print = fingerprint(&html);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        a.brand href="/ui/" { "depot" }
                        a href="/ui/" { "Overview" }
                        a href="/ui/components" { "Components" }
                        @if caller.role == Role::Admin { a href="/ui/tokens" { "Tokens" } }
                    }
                    form.signout method="post" action="/ui/sign-out" {
                        input type="hidden" name="csrf" value=(signed.csrf);
                        span.who { (caller.name) " (" (caller.role.as_str()) ")" }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main data-live=[live.then_some(print.as_str())] { (maud::PreEscaped(html)) }
            }
        }
    }
}

/// The `head` of every page; signed-out pages have no script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · depot" }
            link rel="stylesheet" href="/ui/static/ui.css";
            @if script { script src="/ui/static/ui.js" defer {} }
        }
    }
}

pub fn layout_signed_out(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { main #main.narrow { (main) } }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str, hint: &str) -> Response {
    let page = layout_signed_out(
        "Error",
        html! {
            h1 { (message) }
            @if !hint.is_empty() { p { (hint) } }
            p { a href="/ui/" { "Back to the overview" } }
        },
    );
    (status, page).into_response()
}

fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "No such page", "")
}

/// A registry error as a page: its status and message.
pub fn registry_error(error: &depot_registry::Error) -> Response {
    let code = error.error_code();
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if code == depot_api::ErrorCode::Internal {
        tracing::error!("dashboard: {error}");
        "Internal error; see the registry's log".to_owned()
    } else {
        error.to_string()
    };
    error_page(status, &message, "")
}

// --- pieces ----------------------------------------------------------------------------------

fn when(at: &DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

fn short(hex: &str) -> &str {
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    &hex[..hex.len().min(12)]
}

fn health_markup(health: &StageHealth) -> Markup {
    let class = if health.failed > 0 {
        "health failed"
    } else if health.pending > 0 {
        "health pending"
    } else if health.agents > 0 {
        "health ok"
    } else {
        "health none"
    };
    html! {
        p class=(class) {
            @if health.agents == 0 { "no agents" } @else {
                span.count { (health.active) "/" (health.agents) " active" }
                @if health.failed > 0 { ", " span.count { (health.failed) " failed" } }
                @if health.pending > 0 { ", " span.count { (health.pending) " behind" } }
            }
        }
    }
}

/// How the agents of a configuration are doing with its current hash.
pub fn health(agents: &[AgentStatus], hash: &str) -> StageHealth {
    let mut health = StageHealth { agents: agents.len() as u64, ..StageHealth::default() };
    for agent in agents {
        match agent.report.state {
            AgentState::Failed | AgentState::RolledBack | AgentState::Untrusted => health.failed += 1,
            AgentState::Active if agent.report.hash == hash => health.active += 1,
            _ => health.pending += 1,
        }
    }
    health
}

fn layers_markup(layers: &[Layer]) -> Markup {
    html! {
        ul.layers {
            @for layer in layers {
                li {
                    a href={ "/ui/components/" (layer.component) } { (layer.component) }
                    " " code.version { (layer.version) }
                    @if let Some(channel) = &layer.channel { " " span.tag title="tracks this channel" { (channel) } }
                }
            }
        }
    }
}

/// A form that posts one action (it asks for confirmation first).
pub fn action_button(signed: &Signed, action: &str, label: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        form.action method="post" action=(action) {
            input type="hidden" name="csrf" value=(signed.csrf);
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

// --- overview --------------------------------------------------------------------------------

fn overview_main(
    signed: &Signed,
    pipelines: &[PipelineStatus],
    others: &[(StageHealth, depot_api::types::ConfigSummary)],
) -> Markup {
    let operate = signed.may_operate();
    html! {
        h1 { "Overview" }
        @if pipelines.is_empty() && others.is_empty() {
            p { "Nothing yet: push a version and create a configuration (" code { "depot push" } ", " code { "depot config create" } ")." }
        }
        @for pipeline in pipelines {
            section.pipeline aria-labelledby={ "p-" (pipeline.name) } {
                h2 id={ "p-" (pipeline.name) } {
                    (pipeline.name)
                    " " small { "tracks " code { (pipeline.track) } }
                    " " a.small href={ "/ui/pipelines/" (pipeline.name) "/history" } { "history" }
                }
                div.stages {
                    @for stage in &pipeline.stages {
                        article.stage data-stage=(stage.stage.name) {
                            h3 {
                                (stage.stage.name)
                                @if stage.stage.gate != depot_api::pipeline::Gate::None { " " span.tag { (stage.stage.gate.as_str()) } }
                            }
                            p { a href={ "/ui/configs/" (stage.stage.config) } { (stage.stage.config) } " · revision " (stage.revision) }
                            (layers_markup(&stage.layers))
                            (health_markup(&stage.health))
                            @if let Some(rollout) = &stage.rollout {
                                @if !matches!(rollout.phase, depot_api::rollout::RolloutPhase::Completed) {
                                    p.rollout { "Rollout to revision " (rollout.to) ": " (rollout.phase.as_str()) ", batch " (rollout.started_batches) "/" (rollout.batches.len()) }
                                }
                            }
                            @if operate {
                                @if let Some(after) = &stage.stage.after {
                                    (action_button(signed, &format!("/ui/pipelines/{}/promote", pipeline.name), &format!("Promote from {after}"), &[("to", stage.stage.name.as_str())]))
                                }
                            }
                        }
                    }
                }
                @if !pipeline.pending.is_empty() {
                    div.pending {
                        h3 { "Waiting for approval" }
                        @for promotion in &pipeline.pending {
                            div.promotion {
                                p {
                                    "#" (promotion.id) ": " (promotion.from) " → " (promotion.to) ", asked by " (promotion.requested_by) " "
                                    (when(&promotion.requested_at))
                                }
                                (layers_markup(&promotion.layers))
                                @if operate {
                                    (action_button(signed, &format!("/ui/pipelines/{}/promotions/{}/approve", pipeline.name, promotion.id), "Approve", &[]))
                                    (action_button(signed, &format!("/ui/pipelines/{}/promotions/{}/reject", pipeline.name, promotion.id), "Reject", &[]))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !others.is_empty() {
            section aria-labelledby="others" {
                h2 #others { "Configurations" }
                table {
                    thead { tr { th { "Configuration" } th { "Revision" } th { "Layers" } th { "Agents" } th { "Changed" } } }
                    tbody {
                        @for (health, config) in others {
                            tr data-config=(config.name) {
                                td { a href={ "/ui/configs/" (config.name) } { (config.name) } }
                                td.num { (config.revision) }
                                td.num { (config.layers) }
                                td { (health_markup(health)) }
                                td { (when(&config.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

// --- configuration ---------------------------------------------------------------------------

fn config_main(
    signed: &Signed,
    config: &Config,
    agents: &[AgentStatus],
    history: &[depot_api::types::HistoryEntry],
    rollout: Option<&depot_api::rollout::RolloutStatus>,
    diff: Option<(u64, u64)>,
) -> Markup {
    let operate = signed.may_operate();
    let base = format!("/ui/configs/{}", config.name);
    html! {
        h1 { "Configuration " (config.name) }
        p {
            "Revision " (config.revision) ", hash " code { (short(&config.hash)) } ", changed " (when(&config.updated_at))
            @if let Some(stage) = &config.stage {
                " · stage " strong { (stage.stage) } " of pipeline "
                a href={ "/ui/pipelines/" (stage.pipeline) "/history" } { (stage.pipeline) }
            }
        }
        h2 { "Layers" }
        table {
            thead { tr { th { "Component" } th { "Version" } th { "Follows" } th { "Digest" } @if operate { th { span.sr-only { "Actions" } } } } }
            tbody {
                @for layer in &config.layers {
                    tr {
                        td { a href={ "/ui/components/" (layer.component) } { (layer.component) } }
                        td { code { (layer.version) } }
                        td { @if let Some(channel) = &layer.channel { "channel " code { (channel) } } @else { "pinned" } }
                        td { code { (short(layer.digest.as_str())) } }
                        @if operate { td { (action_button(signed, &format!("{base}/bump"), "Bump", &[("component", layer.component.as_str())])) } }
                    }
                }
            }
        }
        @if operate && config.revision > 1 {
            (action_button(signed, &format!("{base}/rollback"), "Roll back to the previous revision", &[]))
        }
        @if let Some(rollout) = rollout {
            section.rollout aria-labelledby="rollout" {
                h2 #rollout { "Rollout" }
                p { "Revision " (rollout.from) " → " (rollout.to) ": " strong { (rollout.phase.as_str()) }
                    @if let Some(reason) = &rollout.reason { " (" (reason) ")" } }
                ol.batches {
                    @for batch in &rollout.batches {
                        li {
                            "Batch " (batch.number) (if batch.started { "" } else { " (not started)" }) ": "
                            @for (i, host) in batch.hosts.iter().enumerate() {
                                @if i > 0 { ", " }
                                (host.host)
                                @if let Some(state) = host.state { " " span.state { (state.as_str()) } }
                                @if let Some(failed) = &host.failed { " " span.error { (failed) } }
                            }
                        }
                    }
                }
                @if operate {
                    div.actions {
                        @match rollout.phase {
                            depot_api::rollout::RolloutPhase::Running => {
                                (action_button(signed, &format!("{base}/rollout"), "Pause", &[("action", "pause")]))
                                (action_button(signed, &format!("{base}/rollout"), "Abort", &[("action", "abort")]))
                            }
                            depot_api::rollout::RolloutPhase::Paused => {
                                (action_button(signed, &format!("{base}/rollout"), "Resume", &[("action", "resume")]))
                                (action_button(signed, &format!("{base}/rollout"), "Abort", &[("action", "abort")]))
                            }
                            depot_api::rollout::RolloutPhase::Halted => {
                                (action_button(signed, &format!("{base}/rollout"), "Continue", &[("action", "continue")]))
                                (action_button(signed, &format!("{base}/rollout"), "Abort", &[("action", "abort")]))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        h2 { "Agents" }
        @if agents.is_empty() { p { "No agent has reported yet." } } @else {
            table.agents {
                thead { tr { th { "Host" } th { "Revision" } th { "State" } th { "Last seen" } th { "Failure" } } }
                tbody {
                    @for agent in agents {
                        tr data-host=(agent.host) {
                            td { (agent.host) }
                            td.num { (agent.report.revision) @if !agent.current { " " span.tag { "behind" } } }
                            td { span class={ "state " (agent.report.state.as_str()) } { (agent.report.state.as_str()) } }
                            td { (when(&agent.last_seen)) }
                            td {
                                @if let Some(error) = &agent.report.error { span.error { (error) } }
                                @if let Some(output) = &agent.report.output_tail {
                                    details { summary { "Hook output" } pre { (output) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        form.diff method="get" action=(base) {
            label { "From " select name="from" { @for h in history { option value=(h.revision) selected[diff.map(|d| d.0) == Some(h.revision)] { (h.revision) } } } }
            label { " to " select name="to" { @for h in history { option value=(h.revision) selected[diff.map_or(h.revision == config.revision, |d| d.1 == h.revision)] { (h.revision) } } } }
            " " button type="submit" { "Compare" }
        }
        @if let Some((from, to)) = diff {
            (diff_markup(history, from, to))
        }
        @if history.len() > HISTORY_ROWS { p.hint { "The newest " (HISTORY_ROWS) " of " (history.len()) " revisions; " code { "depot config history " (config.name) } " lists them all." } }
        table.history {
            thead { tr { th { "Revision" } th { "When" } th { "Who" } th { "Change" } } }
            tbody {
                @for entry in history.iter().rev().take(HISTORY_ROWS) {
                    tr { td.num { (entry.revision) } td { (when(&entry.at)) } td { (entry.actor) } td { (entry.change) } }
                }
            }
        }
    }
}

/// The layers that differ between two revisions.
fn diff_markup(history: &[depot_api::types::HistoryEntry], from: u64, to: u64) -> Markup {
    let find = |revision| history.iter().find(|h| h.revision == revision);
    let (Some(a), Some(b)) = (find(from), find(to)) else {
        return html! { p.error { "No such revision." } };
    };
    let mut rows = Vec::new();
    for layer in &b.layers {
        match a.layers.iter().find(|l| l.component == layer.component) {
            Some(old) if old.version == layer.version && old.digest == layer.digest => {}
            Some(old) => rows.push((layer.component.to_string(), old.version.to_string(), layer.version.to_string())),
            None => rows.push((layer.component.to_string(), "—".to_owned(), layer.version.to_string())),
        }
    }
    for old in &a.layers {
        if !b.layers.iter().any(|l| l.component == old.component) {
            rows.push((old.component.to_string(), old.version.to_string(), "—".to_owned()));
        }
    }
    html! {
        section.diff aria-label="Differences" {
            h3 { "Revision " (from) " → " (to) }
            @if rows.is_empty() { p { "The same layers." } } @else {
                table {
                    thead { tr { th { "Component" } th { (from) } th { (to) } } }
                    tbody { @for (component, old, new) in &rows { tr { td { (component) } td { code { (old) } } td { code { (new) } } } } }
                }
            }
        }
    }
}

// --- component -------------------------------------------------------------------------------

fn component_main(
    signed: &Signed,
    name: &ComponentName,
    versions: &[depot_api::types::VersionInfo],
    channels: &[depot_api::types::ChannelInfo],
) -> Markup {
    let operate = signed.may_operate();
    html! {
        h1 { "Component " (name) }
        h2 { "Versions" }
        table.versions {
            thead { tr { th { "Version" } th { "Digest" } th { "Size" } th { "Labels" } th { "Pushed" } th { "Signatures" } th { "Deprecation" } } }
            tbody {
                @for v in versions {
                    tr data-version=(v.version) {
                        td { code { (v.version) } }
                        td { code { (short(v.digest.as_str())) } }
                        td.num { (human_size(v.size)) }
                        td { @for (key, value) in &v.labels { span.tag { (key) "=" (value) } " " } }
                        td { (v.creator) ", " (when(&v.created_at)) }
                        td {
                            @if v.signatures.is_empty() { "none" }
                            @for s in &v.signatures {
                                span.tag title=(s.fingerprint) { (s.signer.as_deref().unwrap_or(&s.fingerprint[..s.fingerprint.len().min(20)])) } " "
                            }
                        }
                        td {
                            @if let Some(d) = &v.deprecated {
                                span.error { "deprecated: " (d.reason) }
                                @if let Some(r) = &d.replacement { " (use " code { (r) } ")" }
                                @if operate {
                                    (action_button(signed, &format!("/ui/components/{name}/versions/{}/deprecation", v.version), "Undeprecate", &[("undo", "yes")]))
                                }
                            } @else if operate {
                                form.action method="post" action={ "/ui/components/" (name) "/versions/" (v.version) "/deprecation" } {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    label.sr-only for={ "reason-" (v.version) } { "Reason" }
                                    input id={ "reason-" (v.version) } name="reason" placeholder="reason" required;
                                    button type="submit" { "Deprecate" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Channels" }
        @if channels.is_empty() { p { "No channel names a version yet." } }
        @for channel in channels {
            details.channel {
                summary { code { (channel.name) } " → " code { (channel.version) } " (" (channel.kind.as_str()) ", moved " (when(&channel.updated_at)) ")" }
                ol {
                    @for step in channel.history.iter().rev() {
                        li {
                            (when(&step.at)) ": "
                            (step.from.as_ref().map_or("—".to_owned(), |v| v.to_string())) " → "
                            (step.to.as_ref().map_or("—".to_owned(), |v| v.to_string()))
                            " by " (step.actor) " (" (step.reason) ")"
                        }
                    }
                }
            }
        }
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The most history rows a page shows (the CLI lists them all).
const HISTORY_ROWS: usize = 200;

// --- history ---------------------------------------------------------------------------------

const EVENT_KINDS: [EventKind; 8] = [
    EventKind::Push,
    EventKind::Promote,
    EventKind::PromotionRequested,
    EventKind::Env,
    EventKind::Rollback,
    EventKind::Deprecate,
    EventKind::Agent,
    EventKind::Rollout,
];

fn history_main(pipeline: &PipelineName, events: &[depot_api::pipeline::PipelineEvent], kind: Option<&str>) -> Markup {
    html! {
        h1 { "History of " (pipeline) }
        form.filter method="get" action={ "/ui/pipelines/" (pipeline) "/history" } {
            label for="kind" { "Show " }
            select #kind name="kind" {
                option value="" selected[kind.is_none()] { "everything" }
                @for k in EVENT_KINDS { option value=(k.as_str()) selected[kind == Some(k.as_str())] { (k.as_str()) } }
            }
            " " button type="submit" { "Filter" }
        }
        p.hint { "The newest " (HISTORY_ROWS) " entries at most; " code { "depot history " (pipeline) } " lists them all." }
        table.history {
            thead { tr { th { "When" } th { "What" } th { "Stage" } th { "Who" } th { "Summary" } } }
            tbody {
                @for event in events.iter().rev().filter(|e| kind.is_none_or(|k| e.kind.as_str() == k)).take(HISTORY_ROWS) {
                    tr {
                        td { (when(&event.at)) }
                        td { span.tag { (event.kind.as_str()) } }
                        td { @if let Some(stage) = &event.stage { (stage) } }
                        td { (event.actor) }
                        td { (event.summary) }
                    }
                }
            }
        }
    }
}

// --- tokens ----------------------------------------------------------------------------------

pub fn tokens_main(signed: &Signed, tokens: &[depot_api::types::TokenInfo], created: Option<&str>) -> Markup {
    html! {
        h1 { "Tokens" }
        @if let Some(secret) = created {
            div.created role="status" {
                p { "The new token, shown once: copy it now." }
                pre.secret { (secret) }
            }
        }
        table {
            thead { tr { th { "Name" } th { "Role" } th { "Configurations" } th { "Created" } th { span.sr-only { "Actions" } } } }
            tbody {
                @for token in tokens {
                    tr data-token=(token.name) {
                        td { (token.name) }
                        td { (token.role.as_str()) }
                        td { @if let Some(p) = &token.config_pattern { code { (p) } } }
                        td { (token.created_by) ", " (when(&token.created_at)) }
                        td { @if token.name.as_str() != signed.caller.name {
                            (action_button(signed, &format!("/ui/tokens/{}/revoke", token.name), "Revoke", &[]))
                        } }
                    }
                }
            }
        }
        h2 { "New token" }
        form.create method="post" action="/ui/tokens" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label for="name" { "Name" } input #name name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._-]*";
            label for="role" { "Role" }
            select #role name="role" { option value="viewer" { "viewer" } option value="operator" { "operator" } option value="agent" { "agent" } option value="admin" { "admin" } }
            label for="pattern" { "Configurations (agents)" } input #pattern name="config_pattern" placeholder="web-*";
            button type="submit" { "Create" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_paths_name_their_views() {
        assert!(matches!(View::parse("/ui/"), Some(View::Overview)));
        assert!(matches!(
            View::parse("/ui/configs/web-prod?from=2&to=3"),
            Some(View::Config { diff: Some((2, 3)), .. })
        ));
        assert!(
            matches!(View::parse("/ui/pipelines/web/history?kind=push"), Some(View::History { kind: Some(k), .. }) if k == "push")
        );
        assert!(View::parse("/ui/configs/../../etc").is_none());
        assert!(View::parse("/api/v1/configs").is_none());
        assert!(View::parse("/ui/pipelines/web/promote").is_none(), "a form's answer is not live");
    }
}
