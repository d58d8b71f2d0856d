//! The API's JSON types: any body the registry or a client may receive; what parses must write
//! back to JSON that parses to the same value.
#![no_main]

use depot_api::pipeline::*;
use depot_api::types::*;
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($data:expr, $($ty:ty),+ $(,)?) => {$(
        if let Ok(value) = serde_json::from_slice::<$ty>($data) {
            let written = serde_json::to_string(&value).expect("serialises");
            let again: $ty = serde_json::from_str(&written)
                .unwrap_or_else(|e| panic!("{} does not read back {written}: {e}", stringify!($ty)));
            assert_eq!(serde_json::to_string(&again).expect("serialises"), written, "{}", stringify!($ty));
        }
    )+};
}

fuzz_target!(|data: &[u8]| {
    round_trip!(
        data,
        AgentReport,
        AgentStatus,
        Approve,
        BlobInfo,
        BumpLayer,
        BumpResult,
        ChannelInfo,
        ChannelMove,
        ComponentSummary,
        Config,
        ConfigSummary,
        CreateConfig,
        CreatePipeline,
        CreateToken,
        DeprecateVersion,
        Deprecated,
        Deprecation,
        EnvChange,
        EnvView,
        GcReport,
        HistoryEntry,
        Layer,
        LayerRef,
        Pipeline,
        PipelineEvent,
        PipelineStatus,
        Promote,
        Promotion,
        PushVersion,
        RollbackConfig,
        SetChannel,
        SetGate,
        SetLayers,
        Stage,
        StageHealth,
        StageRef,
        StageSpec,
        StageStatus,
        TokenCreated,
        TokenInfo,
        VersionInfo,
        VersionUse,
        WhoAmI,
        depot_api::ErrorBody,
    );
});
