//! `GET /metrics` on the admin listener (behind its bearer token): what the recorder
//! counted, then the gauges of the server being scraped, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::admin::AdminState;
use crate::deliver::breaker::Status;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The scrape. A store that cannot answer leaves out the gauges it would give (and says
/// so in `forebay_store_up`), not the rest: counters matter most when the store ails.
pub async fn render(State(state): State<AdminState>) -> Response {
    let mut out = super::install().render();
    let counts = state.store.delivery_counts().await;
    let running = state.live.current();

    family(
        &mut out,
        "forebay_up",
        "gauge",
        "1 while this forebay process serves.",
    );
    sample(&mut out, "forebay_up", &[], 1);
    family(
        &mut out,
        "forebay_build_info",
        "gauge",
        "The running forebay's version, as a label.",
    );
    sample(
        &mut out,
        "forebay_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    family(
        &mut out,
        "forebay_store_up",
        "gauge",
        "1 when the store answered this scrape's queries; without it the backlog and dead-letter gauges are left out.",
    );
    sample(&mut out, "forebay_store_up", &[], u8::from(counts.is_ok()));
    store_size(&mut out, &state.capacity);

    match counts {
        Ok(counts) => {
            // Every configured destination shows, at 0 when it has nothing; a destination
            // no longer configured shows while the store holds open or dead deliveries
            // of it.
            let mut by_destination: BTreeMap<&str, (u64, u64)> = running
                .config
                .destinations
                .keys()
                .map(|name| (name.as_str(), (0, 0)))
                .collect();
            for c in &counts {
                let (backlog, dead) = by_destination.entry(c.destination.as_str()).or_default();
                if c.is_backlog() {
                    *backlog += c.count;
                } else if c.state == "dead" {
                    *dead += c.count;
                }
            }
            family(
                &mut out,
                "forebay_backlog",
                "gauge",
                "Deliveries still to be sent (pending, in flight or retrying), by destination.",
            );
            for (name, (backlog, _)) in &by_destination {
                sample(
                    &mut out,
                    "forebay_backlog",
                    &[("destination", name)],
                    backlog,
                );
            }
            family(
                &mut out,
                "forebay_dead_letter",
                "gauge",
                "Dead deliveries waiting in the dead-letter queue, by destination.",
            );
            for (name, (_, dead)) in &by_destination {
                sample(
                    &mut out,
                    "forebay_dead_letter",
                    &[("destination", name)],
                    dead,
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %crate::error_chain::Chain(&e), "metrics: cannot count deliveries")
        }
    }

    family(
        &mut out,
        "forebay_breaker_open",
        "gauge",
        "1 while a destination's circuit breaker is open or probing, 0 while it is closed.",
    );
    for (name, destination) in running.destinations.iter() {
        let open = destination.breaker.status() != Status::Closed;
        sample(
            &mut out,
            "forebay_breaker_open",
            &[("destination", name)],
            u8::from(open),
        );
    }

    family(
        &mut out,
        "forebay_route_paused",
        "gauge",
        "1 while a route is paused (by an operator, or by forebay with a reason shown by GET /api/v1/routes), 0 otherwise.",
    );
    for route in &running.config.routes {
        let paused = state
            .pauses
            .is_paused(crate::store::Pausable::Route, &route.name);
        sample(
            &mut out,
            "forebay_route_paused",
            &[("route", &route.name)],
            u8::from(paused),
        );
    }

    family(
        &mut out,
        "forebay_config_generation",
        "gauge",
        "The configuration in force: 1 at start, one more with each reload that applied.",
    );
    sample(
        &mut out,
        "forebay_config_generation",
        &[],
        running.generation,
    );
    family(
        &mut out,
        "forebay_config_reloads_total",
        "counter",
        "Reloads asked for (SIGHUP or POST /api/v1/reload), by result: applied, or refused (the file had errors; the running configuration stayed).",
    );
    let (applied, refused) = state.live.reload_counts();
    sample(
        &mut out,
        "forebay_config_reloads_total",
        &[("result", "applied")],
        applied,
    );
    sample(
        &mut out,
        "forebay_config_reloads_total",
        &[("result", "refused")],
        refused,
    );

    let mut response = out.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// The size cap's last measure (see [`crate::size_cap`]).
fn store_size(out: &mut String, capacity: &crate::size_cap::Capacity) {
    if let Some(usage) = capacity.usage() {
        family(
            out,
            "forebay_store_used_bytes",
            "gauge",
            "Bytes the store's data takes (rows and indexes), as storage.max_size counts them.",
        );
        sample(out, "forebay_store_used_bytes", &[], usage.used);
        family(
            out,
            "forebay_store_allocated_bytes",
            "gauge",
            "Bytes the store takes from the file system: its data and the free space it keeps for reuse.",
        );
        sample(out, "forebay_store_allocated_bytes", &[], usage.allocated);
    }
    if let Some(max) = capacity.max {
        family(
            out,
            "forebay_store_max_bytes",
            "gauge",
            "storage.max_size, in bytes.",
        );
        sample(out, "forebay_store_max_bytes", &[], max);
        family(
            out,
            "forebay_store_full",
            "gauge",
            "1 while the store is at storage.max_size with only waiting or dead events left: ingest answers 507.",
        );
        sample(out, "forebay_store_full", &[], u8::from(capacity.is_full()));
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_in_the_text_format() {
        let mut out = String::new();
        family(&mut out, "m", "gauge", "A gauge.");
        sample(&mut out, "m", &[], 1);
        sample(&mut out, "m", &[("a", "x"), ("b", "q\"\\\n")], 2.5);
        assert_eq!(
            out,
            "# HELP m A gauge.\n# TYPE m gauge\nm 1\nm{a=\"x\",b=\"q\\\"\\\\\\n\"} 2.5\n"
        );
    }
}
