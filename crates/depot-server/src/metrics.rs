//! `/metrics`: the registry's own metrics, the process's (`process_*`, as Prometheus' clients name
//! them) and a build-info gauge, in the classic Prometheus text format (0.0.4) or, when the scraper
//! asks for it in `Accept`, in OpenMetrics.
//!
//! Every label value comes from a closed set that the registry defines (an HTTP method it routes,
//! a route template of its route table, a status it answers), never from what a client sends, so
//! that no request can add a series.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the classic text format, which plain scrapers (and `promtool`) read.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics, sent when `Accept` prefers it.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long the stored counts (versions, configurations) are reused: a scrape, however frequent,
/// costs the database at most one pair of `COUNT(*)` queries per period.
pub const COUNTS_MAX_AGE: Duration = Duration::from_secs(15);

/// Buckets of the request-duration histogram, in seconds: from a cached read to a blocking query
/// that waited its longest (5 minutes).
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0];

/// The methods the registry routes, and one value for every other.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    GET,
    HEAD,
    PUT,
    POST,
    PATCH,
    DELETE,
    OPTIONS,
    OTHER,
}

impl From<&Method> for HttpMethod {
    fn from(method: &Method) -> Self {
        match *method {
            Method::GET => HttpMethod::GET,
            Method::HEAD => HttpMethod::HEAD,
            Method::PUT => HttpMethod::PUT,
            Method::POST => HttpMethod::POST,
            Method::PATCH => HttpMethod::PATCH,
            Method::DELETE => HttpMethod::DELETE,
            Method::OPTIONS => HttpMethod::OPTIONS,
            _ => HttpMethod::OTHER,
        }
    }
}

/// A request's labels: its method, the route template it matched (`/api/v1/configs/{name}`;
/// `unmatched` for a path no route has), and the status of the answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: HttpMethod,
    pub route: String,
    pub status: u16,
}

/// The labels of the duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: HttpMethod,
    pub route: String,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: DurationFamily,
    pub blob_received: Counter,
    pub blob_sent: Counter,
    pub connections: Gauge,
    pub connections_refused: Counter,
    pub connections_evicted: Counter,
    pub watchers: Gauge,
    pub versions: Gauge,
    pub configurations: Gauge,
    /// When the counts were last read from the store.
    counted_at: Mutex<Option<Instant>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("depot");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS.iter().copied()));
        let (blob_received, blob_sent, connections_refused, connections_evicted) =
            (Counter::default(), Counter::default(), Counter::default(), Counter::default());
        let (connections, watchers, versions, configurations) =
            (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("http_requests", "HTTP requests answered, by method, route and status", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer's head, by method and route",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "blob_received",
            "Bytes of blob uploads received",
            Unit::Bytes,
            blob_received.clone(),
        );
        registry.register_with_unit("blob_sent", "Bytes of blobs sent to clients", Unit::Bytes, blob_sent.clone());
        registry.register("http_connections", "Client connections open now", connections.clone());
        registry.register(
            "http_connections_refused",
            "Connections closed at once because --max-connections were open, each with a request in progress",
            connections_refused.clone(),
        );
        registry.register(
            "http_connections_evicted",
            "Connections with no request in progress closed to make room for a new one at --max-connections",
            connections_evicted.clone(),
        );
        registry.register("watchers", "Blocking queries waiting for a configuration change", watchers.clone());
        registry.register("versions", "Component versions stored", versions.clone());
        registry.register("configurations", "Configurations stored", configurations.clone());
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build.get_or_create(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]).set(1);
        registry.register("build_info", "The running depot's version (always 1)", build);
        Metrics {
            registry: root,
            requests,
            request_duration,
            blob_received,
            blob_sent,
            connections,
            connections_refused,
            connections_evicted,
            watchers,
            versions,
            configurations,
            counted_at: Mutex::new(None),
        }
    }

    /// Whether the stored counts are older than [`COUNTS_MAX_AGE`] (and so are to be read again);
    /// marks them as being read now.
    pub fn counts_are_stale(&self) -> bool {
        let mut counted_at = self.counted_at.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *counted_at {
            Some(at) if now.duration_since(at) < COUNTS_MAX_AGE => false,
            _ => {
                *counted_at = Some(now);
                true
            }
        }
    }

    /// The metrics in the format `accept` prefers, and its content type.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        if accept.is_some_and(prefers_openmetrics) {
            (OPENMETRICS_FORMAT, text)
        } else {
            (TEXT_FORMAT, classic_text(&text))
        }
    }
}

/// Whether an `Accept` header ranks OpenMetrics above the classic text format (and at all).
/// Prometheus asks for OpenMetrics first; curl and plain scrapers send `*/*` or nothing.
fn prefers_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
            "text/plain" | "text/*" | "*/*" => text = text.max(quality),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// OpenMetrics text as the classic format (0.0.4) says it: a counter's HELP and TYPE name its
/// samples (`_total`), and there is no `# UNIT` or `# EOF`. Samples and histograms are written
/// the same way in both.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|marker| {
            let rest = line.strip_prefix(marker)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{marker}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `process_*`: CPU, memory, file descriptors, threads and start time, read from the kernel at
/// each scrape, under the names every Prometheus client uses.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let process = metrics_process::collector::collect();
        if let Some(seconds) = process.cpu_seconds_total {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            ("process_open_fds", "Number of open file descriptors", process.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", process.max_fds),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", process.virtual_memory_bytes),
            ("process_resident_memory_bytes", "Resident memory size in bytes", process.resident_memory_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                process.start_time_seconds,
            ),
            ("process_threads", "Number of OS threads in the process", process.threads),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value as i64);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_the_scraper_prefers_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(prefers_openmetrics(prometheus));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
        assert!(!prefers_openmetrics("text/plain, application/openmetrics-text;q=0.5"));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let metrics = Metrics::new();
        metrics.blob_received.inc_by(3);
        let (content_type, text) = metrics.render(None);
        assert_eq!(content_type, TEXT_FORMAT);
        assert!(text.contains("# HELP depot_blob_received_bytes_total Bytes"), "{text}");
        assert!(text.contains("# TYPE depot_blob_received_bytes_total counter"), "{text}");
        assert!(text.contains("\ndepot_blob_received_bytes_total 3\n"), "{text}");
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"), "{text}");
        let (content_type, text) = metrics.render(Some("application/openmetrics-text"));
        assert_eq!(content_type, OPENMETRICS_FORMAT);
        assert!(text.contains("# TYPE depot_blob_received_bytes counter") && text.ends_with("# EOF\n"), "{text}");
    }
}
