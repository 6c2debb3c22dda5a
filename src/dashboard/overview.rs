//! `/`: the last hour at a glance: events per source as a stacked bar chart,
//! what the hour's attempts left their deliveries in, and every destination with its breaker,
//! pause, backlog and recent error rate.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::DashboardState;
use super::session::Session;
use super::view::{Frame, api_error, render};
use crate::admin::activity::{ActivityJson, ActivityParams};
use crate::admin::flow::DestinationJson;

/// Twelve bars (of five minutes, over the last hour).
const BUCKETS: usize = 12;
/// The chart's drawing area, in SVG units.
const CHART_W: i64 = 600;
const CHART_H: i64 = 120;
/// Colours of the sources, in order (a source past the last takes the first again).
const COLOURS: [&str; 6] = [
    "#2f6fde", "#e07b28", "#2e9e5b", "#b3439b", "#7c5cd6", "#c9a227",
];

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct Overview {
    page: Frame,
    total_events: u64,
    legend: Vec<Legend>,
    bars: Vec<Bar>,
    peak: u64,
    states: Vec<(String, u64)>,
    destinations: Vec<DestinationRow>,
}

struct Legend {
    source: String,
    colour: &'static str,
    total: u64,
}

/// One rectangle of the chart.
struct Bar {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    colour: &'static str,
    title: String,
}

struct DestinationRow {
    d: DestinationJson,
    attempts: u64,
    error_rate: String,
}

pub async fn page(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    let activity = match crate::admin::activity::activity(
        State(state.admin.clone()),
        Ok(axum::extract::Query(ActivityParams::last_hour(BUCKETS))),
    )
    .await
    {
        Ok(a) => a.0,
        Err(e) => return api_error(e),
    };
    let destinations =
        match crate::admin::flow::destinations(axum::extract::State(state.admin.clone())).await {
            Ok(page) => page.0.data,
            Err(e) => return api_error(e),
        };
    let (legend, bars, peak) = chart(&activity);
    let rows = destinations
        .into_iter()
        .map(|d| {
            let seen = activity
                .destinations
                .iter()
                .find(|a| a.destination == d.name);
            let (attempts, failed) = seen.map_or((0, 0), |a| (a.attempts, a.failed));
            DestinationRow {
                d,
                attempts,
                error_rate: if attempts == 0 {
                    "–".to_owned()
                } else {
                    format!("{:.1}%", failed as f64 * 100.0 / attempts as f64)
                },
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &Overview {
            page: Frame::new("overview", &session, state.has_login()),
            total_events: legend.iter().map(|l| l.total).sum(),
            legend,
            bars,
            peak,
            states: activity.deliveries.into_iter().collect(),
            destinations: rows,
        },
    )
}

/// The stacked bars: one column per bucket, one segment per source.
fn chart(activity: &ActivityJson) -> (Vec<Legend>, Vec<Bar>, u64) {
    let buckets = activity.sources.first().map_or(BUCKETS, |s| s.events.len());
    let bucket_minutes = activity.bucket_ms / 60_000;
    let per_bucket: Vec<u64> = (0..buckets)
        .map(|b| activity.sources.iter().map(|s| s.events[b]).sum())
        .collect();
    let peak = per_bucket.iter().copied().max().unwrap_or(0);
    let column = CHART_W / i64::try_from(buckets.max(1)).unwrap_or(1);
    let scale = |v: u64| i64::try_from(v * CHART_H as u64 / peak.max(1)).unwrap_or(0);
    let mut bars = Vec::new();
    let mut stacked = vec![0u64; buckets];
    let legend = activity
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let colour = COLOURS[i % COLOURS.len()];
            for (b, &n) in s.events.iter().enumerate().filter(|(_, n)| **n > 0) {
                let bottom = scale(stacked[b]);
                stacked[b] += n;
                let top = scale(stacked[b]);
                let ago = (buckets - b) as u64 * bucket_minutes;
                bars.push(Bar {
                    x: i64::try_from(b).unwrap_or(0) * column + 2,
                    y: CHART_H - top,
                    width: column - 4,
                    height: (top - bottom).max(1),
                    colour,
                    title: format!(
                        "{}: {n} events, {ago}–{} min ago",
                        s.source,
                        ago - bucket_minutes
                    ),
                });
            }
            Legend {
                source: s.source.clone(),
                colour,
                total: s.events.iter().sum(),
            }
        })
        .collect();
    (legend, bars, peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::activity::SourceActivityJson;

    #[test]
    fn bars_stack_per_bucket_and_the_tallest_fills_the_chart() {
        let source = |name: &str, events: Vec<u64>| SourceActivityJson {
            source: name.into(),
            events,
        };
        let activity = ActivityJson {
            since: String::new(),
            until: String::new(),
            bucket_ms: 300_000,
            sources: vec![source("a", vec![1, 3]), source("b", vec![0, 1])],
            deliveries: Default::default(),
            destinations: Vec::new(),
        };
        let (legend, bars, peak) = chart(&activity);
        assert_eq!(peak, 4);
        assert_eq!(legend.iter().map(|l| l.total).collect::<Vec<_>>(), [4, 1]);
        assert_eq!(bars.len(), 3, "no bar for an empty bucket");
        let top = bars.iter().map(|b| b.y).min().unwrap();
        assert_eq!(top, 0, "the busiest bucket reaches the top");
        assert_eq!(bars[0].title, "a: 1 events, 10–5 min ago");
    }
}
