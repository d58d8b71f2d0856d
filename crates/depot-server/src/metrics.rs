//! `/metrics` in the Prometheus text format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Vec<(String, String)>, Counter>,
    pub blob_bytes_in: Counter,
    pub blob_bytes_out: Counter,
    pub watchers: Gauge,
    pub versions: Gauge,
    pub configurations: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("depot");
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let blob_bytes_in = Counter::default();
        let blob_bytes_out = Counter::default();
        let watchers = Gauge::default();
        let versions = Gauge::default();
        let configurations = Gauge::default();
        registry.register("http_requests", "HTTP requests by method and status", requests.clone());
        registry.register("blob_bytes_in", "Bytes of blobs uploaded", blob_bytes_in.clone());
        registry.register("blob_bytes_out", "Bytes of blobs served", blob_bytes_out.clone());
        registry.register("watchers", "Blocking queries waiting for a configuration change", watchers.clone());
        registry.register("versions", "Component versions", versions.clone());
        registry.register("configurations", "Configurations", configurations.clone());
        Metrics { registry, requests, blob_bytes_in, blob_bytes_out, watchers, versions, configurations }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
