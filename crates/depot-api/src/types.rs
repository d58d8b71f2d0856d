//! Requests and responses of `/api/v1`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::names::{ComponentName, ConfigName, Digest, HostName, TokenName, VersionLabel};

/// What a token may do. Each route names the least role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read configurations (those matching the token's pattern) and blobs, report status.
    Agent,
    /// Read everything but tokens.
    Viewer,
    /// Push, configure, delete.
    Operator,
    /// Tokens and garbage collection, and everything else.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}` (admin, operator, agent or viewer)")),
        }
    }
}

/// `GET /api/v1/whoami`: the token making the request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub config_pattern: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// `PUT /api/v1/components/{component}/versions/{version}`
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushVersion {
    /// The blob this version names; upload it first (`PUT /api/v1/blobs/{digest}`).
    pub digest: Digest,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Build channels this version takes (`edge`, `nightly-YYYY-MM-DD`, `sha-<hex>`), for a build
    /// of the main branch. Rolling channels move by themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<VersionLabel>,
    /// Keep a label that looks like a version but is not semver (`01.2.3`, `1.2`) as it is: it
    /// then moves no channel. Without this such a label is refused, naming the semver meant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_form: bool,
    /// SSHSIG signatures of the version (PEM, namespace `depot`, over the text of `depot sign
    /// --print-message`), attached with it: a component whose policy requires signatures takes a
    /// new version only with enough of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
}

/// `PUT /api/v1/components/{component}/channels/{channel}`: points a manual channel at a version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetChannel {
    pub version: VersionLabel,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    pub component: ComponentName,
    pub version: VersionLabel,
    pub digest: Digest,
    pub size: u64,
    pub created_at: DateTime<Utc>,
    /// The name of the token that pushed it.
    pub creator: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Set when the version was deprecated: it stays downloadable, but no rolling channel names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecation>,
    /// SSH signatures over the component, the version and the digest (see `depot sign`).
    #[serde(default)]
    pub signatures: Vec<SignatureInfo>,
}

/// An SSHSIG signature (namespace `depot`) of a version, as attached. The registry checked that
/// it is valid over the version's component, version and digest with the key it names; whether
/// that key is trusted is for each host to decide (`depot agent --trust`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignatureInfo {
    /// The key's `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// `ssh-ed25519`, …
    pub key_type: String,
    /// The PEM text (`-----BEGIN SSH SIGNATURE-----`), as `ssh-keygen -Y verify -s` reads it.
    pub signature: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    /// Who the key belongs to: its principals in the component's signature policy, when the
    /// policy trusts it (`depot policy`); otherwise unknown to the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// `POST /api/v1/components/{component}/versions/{version}/signatures`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddSignature {
    /// An SSHSIG signature in PEM, namespace `depot`, over the text of `depot sign --print-message`.
    pub signature: String,
}

/// `GET|PUT /api/v1/components/{component}/policy`: the signatures a component's versions need
/// before the registry takes them (pushed) or puts them in a configuration (set, bumped,
/// promoted). Hosts never rely on it: they check signatures themselves (`depot agent --trust`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignaturePolicy {
    pub component: ComponentName,
    /// Valid signatures needed, each by another trusted key.
    pub require_signatures: u32,
    /// The trusted keys, in the allowed_signers format (`principals [options] key`), as set.
    pub allowed_signers: String,
    /// Each trusted key: its principals and `SHA256:…` fingerprint.
    pub keys: Vec<TrustedKey>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustedKey {
    pub principals: String,
    pub fingerprint: String,
}

/// `PUT /api/v1/components/{component}/policy`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    /// Valid signatures needed, each by another trusted key: 1 or more.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    #[serde(deserialize_with = "crate::bounded::count")]
    pub require_signatures: u32,
    /// The trusted keys in the allowed_signers format; at least `require_signatures` of them.
    pub allowed_signers: String,
}

/// `GET /api/v1/blobs/{digest}/frames`: the frames of a seekable `.tar.zst` (see `depot pack`),
/// in order, as the registry read them from the blob: the first frame starts at byte 0 and each
/// next one where the previous ends. A host fetches the frames it lacks with `Range` requests
/// and checks each against its sha256. Empty for a blob without a seek table (gzip, plain tar,
/// or a `.tar.zst` of one stream), which is fetched whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobFrames {
    pub digest: Digest,
    /// The blob's size: the frames, then the seek table.
    pub size: u64,
    pub frames: Vec<BlobFrame>,
}

/// The head of `PUT /api/v1/blobs/{digest}/assembly`: the blob as a sequence of parts, each a
/// range of a blob the registry holds or the next bytes of the request's body. The body is this
/// head as one line of JSON, a newline, then the bytes of the inline parts in order. The registry
/// streams the parts into a new blob exactly as it streams an upload, checks its digest and that
/// it is an archive, and only then keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assembly {
    pub parts: Vec<AssemblyPart>,
}

/// One part of an [`Assembly`]: `length` bytes at `offset` of blob `from`, or, without `from`,
/// the next `length` bytes of the body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssemblyPart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Digest>,
    #[serde(default)]
    pub offset: u64,
    pub length: u64,
}

/// One frame of a [`BlobFrames`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobFrame {
    /// Its length in the blob.
    pub compressed: u64,
    /// The length of its content, as the seek table says.
    pub decoded: u64,
    /// The sha256 (lowercase hex) of its bytes in the blob.
    pub sha256: String,
}

/// `GET /api/v1/blobs/{digest}/signatures`: the signatures of each version with that content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobSignatures {
    pub component: ComponentName,
    pub version: VersionLabel,
    pub signatures: Vec<SignatureInfo>,
    /// The version's attestations, without their statements (a host that requires one fetches
    /// the statements of that type).
    #[serde(default)]
    pub attestations: Vec<AttestationInfo>,
}

/// An attestation of a version: an in-toto statement (an SBOM, SLSA provenance) whose subjects
/// include the version's content, with the signatures made over it (SSHSIG, namespace `depot`,
/// over `depot_trust::attestation::message`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttestationInfo {
    /// The sha256 of the statement's bytes.
    pub digest: Digest,
    /// `https://slsa.dev/provenance/v1`, `https://cyclonedx.org/bom`, `https://spdx.dev/Document`, …
    pub predicate_type: String,
    /// The statement's size in bytes.
    pub size: u64,
    pub signatures: Vec<SignatureInfo>,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    /// The statement's text, where asked for (hosts' `GET /blobs/{digest}/signatures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// `POST /api/v1/components/{component}/versions/{version}/attestations`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddAttestation {
    /// The in-toto statement, as text: its bytes are what its digest and signatures cover.
    pub statement: String,
    /// SSHSIG signatures over the attestation's signed text, one per key.
    #[serde(default)]
    pub signatures: Vec<String>,
}

/// `PUT …/versions/{version}/deprecation`: the version, and what its deprecation did to the
/// configurations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deprecated {
    #[serde(flatten)]
    pub version: VersionInfo,
    /// Configurations tracking a channel that named it: each moved to the channel's new version.
    #[serde(default)]
    pub moved: Vec<ConfigName>,
    /// Configurations whose current revision still runs it: pinned to it, or tracking a channel
    /// left with no other version or one that still names it.
    #[serde(default)]
    pub still_running: Vec<VersionUse>,
    /// The channels that still name it: build and manual channels, which a deprecation does not
    /// move (a push or `depot channel set` does).
    #[serde(default)]
    pub channels: Vec<VersionLabel>,
}

/// A configuration's layer on a version, as of its current revision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionUse {
    pub config: ConfigName,
    pub revision: u64,
    /// The channel the layer tracks; none when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<VersionLabel>,
}

/// Why a version was withdrawn from the channels, and what to use instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deprecation {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<VersionLabel>,
    pub at: DateTime<Utc>,
    /// The name of the token that deprecated it.
    pub by: String,
}

/// `PUT /api/v1/components/{component}/versions/{version}/deprecation`
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeprecateVersion {
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<VersionLabel>,
    /// The configurations it moves take their new revision on every agent at once, past a
    /// rolling configuration's rollout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

/// A channel of a component (`latest`, `1.4`, `1`): the version it names now, and how it moved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelInfo {
    pub name: VersionLabel,
    pub kind: crate::semver_order::ChannelKind,
    pub version: VersionLabel,
    pub updated_at: DateTime<Utc>,
    /// Oldest first.
    pub history: Vec<ChannelMove>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelMove {
    pub at: DateTime<Utc>,
    /// None when the channel was created.
    pub from: Option<VersionLabel>,
    /// None when the channel was removed (no version qualifies any more).
    pub to: Option<VersionLabel>,
    pub actor: String,
    /// `pushed 1.4.2`, `deprecated 1.4.2: …`.
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentSummary {
    pub name: ComponentName,
    pub versions: u64,
    pub newest: Option<VersionLabel>,
}

/// A layer as written: `component@version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayerRef {
    pub component: ComponentName,
    pub version: VersionLabel,
}

impl LayerRef {
    /// `web:1.4.2` or `web@1.4.2`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (component, version) = text
            .split_once(':')
            .or_else(|| text.split_once('@'))
            .ok_or_else(|| format!("`{text}` is not COMPONENT:VERSION"))?;
        Ok(LayerRef {
            component: ComponentName::parse(component).map_err(|e| e.to_string())?,
            version: VersionLabel::parse(version).map_err(|e| e.to_string())?,
        })
    }
}

impl std::fmt::Display for LayerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.component, self.version)
    }
}

/// A resolved layer of a configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Layer {
    pub component: ComponentName,
    pub version: VersionLabel,
    pub digest: Digest,
    /// The channel this layer tracks (`latest`, `1.4`): when it moves, the configuration gets a
    /// new revision on its own. None for a pinned layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<VersionLabel>,
}

impl std::fmt::Display for Layer {
    /// `web:1.4.2`, or `web:1.4 (1.4.2)` for a layer tracking a channel.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.channel {
            Some(channel) => write!(f, "{}:{channel} ({})", self.component, self.version),
            None => write!(f, "{}:{}", self.component, self.version),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Config {
    pub name: ConfigName,
    /// Grows by one with every change.
    pub revision: u64,
    /// sha256 over each layer's digest hex and a newline, in order (seed 001): same content,
    /// same hash, whatever the version labels.
    pub hash: String,
    pub updated_at: DateTime<Utc>,
    pub layers: Vec<Layer>,
    /// Set when the configuration is a stage of a pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<crate::pipeline::StageRef>,
    /// How a new revision reaches the agents.
    #[serde(default)]
    pub strategy: crate::rollout::Strategy,
}

/// The configuration hash of seed 001.
pub fn config_hash(layers: &[Layer]) -> String {
    let mut hasher = Sha256::new();
    for layer in layers {
        hasher.update(layer.digest.hex().as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigSummary {
    pub name: ConfigName,
    pub revision: u64,
    pub hash: String,
    pub updated_at: DateTime<Utc>,
    pub layers: u64,
}

/// `POST /api/v1/configs`
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateConfig {
    pub name: ConfigName,
    pub layers: Vec<LayerRef>,
}

/// `PATCH /api/v1/configs/{name}`: set these layers (replacing the component's layer, or adding
/// it at the end), in one revision.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetLayers {
    pub layers: Vec<LayerRef>,
    #[serde(default, deserialize_with = "crate::bounded::revision_opt")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub expect_revision: Option<u64>,
}

/// `PUT /api/v1/configs/{name}`: replace the whole list of layers with these, in this order, in
/// one revision (the history keeps the old list).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplaceLayers {
    pub layers: Vec<LayerRef>,
    #[serde(default, deserialize_with = "crate::bounded::revision_opt")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub expect_revision: Option<u64>,
}

/// `POST /api/v1/configs/{name}/bump`
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BumpLayer {
    pub component: ComponentName,
    #[serde(default, deserialize_with = "crate::bounded::revision_opt")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub expect_revision: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BumpResult {
    pub config: Config,
    pub component: ComponentName,
    pub previous: VersionLabel,
    pub current: VersionLabel,
}

/// `POST /api/v1/configs/{name}/rollback`
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackConfig {
    /// Defaults to the revision before the current one.
    #[serde(default, deserialize_with = "crate::bounded::revision_opt")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub to_revision: Option<u64>,
    #[serde(default, deserialize_with = "crate::bounded::revision_opt")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub expect_revision: Option<u64>,
    /// Every agent at once, past a rolling configuration's rollout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub revision: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// What changed, for people: `web 1.4.1 → 1.4.2`.
    pub change: String,
    pub hash: String,
    pub layers: Vec<Layer>,
}

/// Where an agent is with its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AgentState {
    Downloading,
    Deploying,
    Active,
    Failed,
    RolledBack,
    /// A layer lacked a valid signature from a key the host trusts (`depot agent --trust`):
    /// refused before it was unpacked.
    Untrusted,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Downloading => "downloading",
            AgentState::Deploying => "deploying",
            AgentState::Active => "active",
            AgentState::Failed => "failed",
            AgentState::RolledBack => "rolled-back",
            AgentState::Untrusted => "untrusted",
        }
    }
}

/// The longest `error` an agent report may carry, in bytes.
pub const MAX_REPORT_ERROR: usize = 4 * 1024;
/// The longest `output_tail` (the end of the hooks' output) an agent report may carry, in bytes.
pub const MAX_REPORT_OUTPUT: usize = 16 * 1024;

/// `PUT /api/v1/configs/{name}/agents/{host}`: one agent's step on a configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentReport {
    /// The configuration revision the agent is working on (or has active).
    #[serde(deserialize_with = "crate::bounded::revision")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub revision: u64,
    /// That revision's configuration hash.
    pub hash: String,
    pub state: AgentState,
    /// When the agent made the report; a report sent late (the registry was down) never replaces
    /// a newer one.
    pub reported_at: DateTime<Utc>,
    /// Why it failed or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The end of the hooks' output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    /// Milliseconds per step (`download`, `unpack`, `hooks`, `health`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "crate::bounded::integers")]
    pub timings_ms: BTreeMap<String, u64>,
}

/// `GET /api/v1/configs/{name}/agents`: the last report of each agent of a configuration, with
/// what the registry knows about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatus {
    pub host: HostName,
    pub config: ConfigName,
    /// When the registry last heard from this agent.
    pub last_seen: DateTime<Utc>,
    /// The token the agent reports with.
    pub reporter: String,
    /// Whether the agent is on the configuration's current revision.
    pub current: bool,
    #[serde(flatten)]
    pub report: AgentReport,
}

/// `POST /api/v1/tokens`
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    pub name: TokenName,
    pub role: Role,
    /// For agent tokens: the configurations they may read, as a glob (`web-*`).
    #[serde(default)]
    pub config_pattern: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub name: TokenName,
    pub role: Role,
    pub config_pattern: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// `POST /api/v1/keys`: an SSH public key for the SSH front-end, with a role like a token's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddSshKey {
    pub name: TokenName,
    pub role: Role,
    /// For agent keys: the configurations they may read, as a glob (`web-*`).
    #[serde(default)]
    pub config_pattern: Option<String>,
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// `POST /api/v1/keys/import`: every key of an authorized_keys file, with one role.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportSshKeys {
    pub role: Role,
    #[serde(default)]
    pub config_pattern: Option<String>,
    /// The file's text: one key a line, blank lines and `#` comments allowed; options before
    /// the key type are ignored. Each key is named from its comment (`alice@laptop` →
    /// `alice-laptop`), else from its fingerprint.
    pub authorized_keys: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKeyInfo {
    pub name: TokenName,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key as given, one OpenSSH line.
    pub public_key: String,
    pub role: Role,
    pub config_pattern: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// The secret is shown once, in this response.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    pub versions_removed: Vec<LayerRef>,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub uploads_removed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_is_over_digests_only() {
        let digest = Digest::from_hex(&"ab".repeat(32)).unwrap();
        let layer = |version: &str| Layer {
            component: ComponentName::parse("web").unwrap(),
            version: VersionLabel::parse(version).unwrap(),
            digest: digest.clone(),
            channel: None,
        };
        assert_eq!(config_hash(&[layer("1.0.0")]), config_hash(&[layer("renamed")]));
        // sha256("abab…ab\n")
        let expected: String =
            Sha256::digest(format!("{}\n", "ab".repeat(32)).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(config_hash(&[layer("1.0.0")]), expected);
    }

    #[test]
    fn layer_refs_parse_both_separators() {
        assert_eq!(LayerRef::parse("web:1.2.3").unwrap().to_string(), "web:1.2.3");
        assert_eq!(LayerRef::parse("web@1.2.3").unwrap().to_string(), "web:1.2.3");
        assert!(LayerRef::parse("web").is_err());
        assert!(LayerRef::parse("we/b:1").is_err());
    }
}
