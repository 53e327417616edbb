//! What a scenario prints: one line for people, or one JSON object.

use std::collections::BTreeMap;

use serde_json::json;

use crate::load::Measured;

/// A scenario's result.
pub struct Report {
    /// The scenario ("put", "range", ...).
    pub scenario: String,
    /// Settings worth repeating (clients, rate, sizes, ...).
    pub settings: BTreeMap<&'static str, serde_json::Value>,
    /// What was measured.
    pub measured: Measured,
    /// What a request is ("requests", "events", "keepalives").
    pub unit: &'static str,
    /// Requests (or events) counted, if not the histogram's count.
    pub count: Option<u64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    fn count(&self) -> u64 {
        self.count.unwrap_or_else(|| self.measured.latency.len())
    }

    fn throughput(&self) -> f64 {
        self.count() as f64 / self.measured.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentiles(&self) -> Vec<(&'static str, f64)> {
        let h = &self.measured.latency;
        if h.is_empty() {
            return Vec::new();
        }
        vec![
            ("p50", ms(h.value_at_quantile(0.5))),
            ("p90", ms(h.value_at_quantile(0.9))),
            ("p99", ms(h.value_at_quantile(0.99))),
            ("p99.9", ms(h.value_at_quantile(0.999))),
            ("max", ms(h.max())),
        ]
    }

    /// The report as one line of text.
    pub fn line(&self) -> String {
        let settings: Vec<String> = self.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let latency: Vec<String> = self.percentiles().iter().map(|(p, v)| format!("{p}={v:.2}")).collect();
        let errors = if self.measured.errors.is_empty() {
            "errors=0".to_string()
        } else {
            format!("errors={:?}", self.measured.errors)
        };
        format!(
            "{} {} {}={} elapsed={:.2}s throughput={:.0}/s latency_ms {} {errors}",
            self.scenario,
            settings.join(" "),
            self.unit,
            self.count(),
            self.measured.elapsed.as_secs_f64(),
            self.throughput(),
            latency.join(" "),
        )
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        let latency: serde_json::Map<String, serde_json::Value> =
            self.percentiles().into_iter().map(|(p, v)| (p.to_string(), json!(v))).collect();
        json!({
            "scenario": self.scenario,
            "settings": self.settings,
            "unit": self.unit,
            "count": self.count(),
            "elapsed_s": self.measured.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "latency_ms": latency,
            "errors": self.measured.errors,
        })
    }
}
