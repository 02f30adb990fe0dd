//! The bench's results: collected as JSON (`--json` prints it as is), or printed as a table.

use serde_json::{json, Map, Value};

use crate::{ceiling::Ceiling, publish::Published, run::Drain, sink::Stats, Args};

pub struct Report {
    fields: Map<String, Value>,
    ceiling: Option<f64>,
    /// The bare consumer's CPU per message, the measure the worker's is compared with.
    ceiling_client_us: Option<f64>,
    postgres: bool,
}

fn round(x: f64, places: i32) -> Value {
    let scale = 10f64.powi(places);
    json!((x * scale).round() / scale)
}

impl Report {
    pub fn new(args: &Args) -> Self {
        let mut fields = Map::new();
        fields.insert("events".into(), json!(args.events));
        fields.insert("webhooks".into(), json!(args.webhooks));
        fields.insert("log_level".into(), json!(args.log_level));
        fields.insert("delivery_log".into(), json!(args.delivery_log));
        fields.insert("rotating_secret".into(), json!(args.rotating_secret));
        fields.insert("standard_webhooks".into(), json!(args.standard_webhooks));
        let database = if args.postgres_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        fields.insert("database".into(), json!(database));
        Report {
            fields,
            ceiling: None,
            ceiling_client_us: None,
            postgres: args.postgres_url.is_some(),
        }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.into(), value);
    }

    pub fn ceiling(&mut self, c: &Ceiling) {
        self.ceiling = Some(c.per_second);
        self.ceiling_client_us = Some(c.client_us);
        self.set("ceiling_per_s", round(c.per_second, 0));
        self.set("ceiling_client_cores", round(c.client_cores, 2));
        self.set("ceiling_client_cpu_us", round(c.client_us, 1));
        self.set(
            "ceiling_broker_cpu_us",
            json!(c.broker_us.map(|b| round(b, 1))),
        );
    }

    /// The worker shares this process with the publisher and the ceiling's consumer before it:
    /// the RSS it starts from says how much of the peak was there before it.
    pub fn rss_reset(&mut self, reset: bool, rss_mib: f64) {
        self.set("peak_rss_reset_before_worker", json!(reset));
        self.set("rss_at_worker_start_mib", round(rss_mib, 1));
    }

    pub fn drain(&mut self, d: &Drain) {
        self.set("deliveries_per_s", round(d.per_second, 0));
        if let Some(ceiling) = self.ceiling {
            self.set("ratio_to_ceiling", round(d.per_second / ceiling, 2));
        }
        // The publisher, when events are published meanwhile, is a process of its own.
        self.set("worker_cpu_us", round(d.own_us, 1));
        if let Some(bare) = self.ceiling_client_us {
            // Issue 21's measure: what a delivery costs the worker against what receiving and
            // acking a message costs a bare client, in the same run.
            self.set(
                "worker_to_bare_consumer",
                round(d.own_us / bare.max(1e-9), 2),
            );
        }
        if self.postgres {
            self.set("postgres_cpu_us", round(d.postgres_us, 1));
        }
        self.set("broker_cpu_us", json!(d.broker_us.map(|b| round(b, 1))));
        self.set("sink_cpu_us", round(d.sink_us, 1));
        self.set("sink_cores", round(d.sink_cores, 2));
        self.set("peak_rss_mib", round(d.peak_rss_mib, 1));
        self.set("max_sampled_rss_mib", round(d.max_sampled_rss_mib, 1));
    }

    pub fn latency(&mut self, rate: Option<f64>, sent: &[u64], receipts: &[u64], from: usize) {
        self.set("publish_rate_per_s", json!(rate.map(|r| round(r, 0))));
        if let Some((p50, p99, max)) = crate::run::latencies(sent, receipts, from) {
            self.set("latency_p50_ms", round(p50, 1));
            self.set("latency_p99_ms", round(p99, 1));
            self.set("latency_max_ms", round(max, 1));
        }
    }

    /// The paced publisher's CPU per event (a process of its own).
    pub fn publisher(&mut self, p: &Published) {
        self.set("publisher_cpu_us", round(p.cpu_us_per_event(), 1));
    }

    /// What the second phase of `--half-load` cost, per delivery: the worker, the broker, the
    /// sink and (per event) the publisher.
    pub fn half_load(&mut self, d: &Drain, p: &Published) {
        self.set("half_load_worker_cpu_us", round(d.own_us, 1));
        self.set(
            "half_load_broker_cpu_us",
            json!(d.broker_us.map(|b| round(b, 1))),
        );
        self.set("half_load_sink_cpu_us", round(d.sink_us, 1));
        self.set("half_load_publisher_cpu_us", round(p.cpu_us_per_event(), 1));
    }

    /// The bare consumer's latency at the worker's publish rate ([`crate::ceiling::latency`]).
    pub fn bare_latency(&mut self, (p50, p99, max): (f64, f64, f64)) {
        self.set("bare_consumer_latency_p50_ms", round(p50, 1));
        self.set("bare_consumer_latency_p99_ms", round(p99, 1));
        self.set("bare_consumer_latency_max_ms", round(max, 1));
    }

    pub fn last_publish(&mut self, last_publish_ns: u64, last_receipt_ns: u64) {
        let ms = last_receipt_ns.saturating_sub(last_publish_ns) as f64 / 1e6;
        self.set("last_publish_to_last_receipt_ms", round(ms, 1));
    }

    pub fn totals(&mut self, s: &Stats, events: usize, metrics: String) {
        let webhooks = self.fields["webhooks"].as_u64().unwrap_or(1) as usize;
        self.set("deliveries", json!(s.count));
        // Each event reaches each of the webhooks once: beyond that, a receipt is a duplicate.
        let extra = events * webhooks.saturating_sub(1);
        self.set("duplicates", json!(s.duplicates.saturating_sub(extra)));
        self.set("bad_signatures", json!(s.bad_signatures));
        self.set("refused_503", json!(s.refused));
        let parked = metric(
            &metrics,
            "webhook_worker_deliveries_total{outcome=\"parked\"}",
        );
        self.set("parked", json!(parked));
    }

    /// Rows the delivery log wrote, and those it dropped because its writer fell behind.
    pub fn delivery_log(&mut self, metrics: &str) {
        let rows = metric(metrics, "webhook_worker_delivery_log_rows_total");
        self.set("delivery_log_rows", json!(rows));
        let dropped = metric(metrics, "webhook_worker_delivery_log_dropped_total");
        self.set("delivery_log_dropped", json!(dropped));
    }

    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", Value::Object(self.fields.clone()));
            return;
        }
        println!("| measure | value |\n|---|---|");
        for (key, value) in &self.fields {
            println!("| {key} | {value} |");
        }
    }
}

/// A sample's value in Prometheus text (0 when absent).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Every labelled sample of `name` in Prometheus text, as (`name{labels}`, value).
pub fn samples(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}
