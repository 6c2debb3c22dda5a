//! `/events` (search, newest first, cursor pages), `/events/{id}` (the request as it
//! came, its body, dedup facts and deliveries), and the same for `/rejected`.

use askama::Template;
use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::DashboardState;
use super::session::Session;
use super::view::{Frame, Lenient, api_error, body_text, header_lines, render, size, when};
use crate::admin::events::{ListParams, SearchParams};
use crate::admin::json::{EventJson, RejectedJson, RequestJson};

/// The search form as the visitor filled it in, to show it again.
#[derive(Deserialize, Default)]
pub struct Echo {
    #[serde(default)]
    source: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    dedup_key: String,
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "dashboard/events.html")]
struct EventsPage {
    page: Frame,
    form: Echo,
    sources: Vec<String>,
    states: &'static [&'static str],
    rows: Vec<Row>,
    next: Option<String>,
    last_hour: String,
    error: Option<String>,
}

/// One line of a list of requests.
struct Row {
    id: String,
    source: String,
    received_at: String,
    method: String,
    size: String,
    /// Route → state of each delivery (events only).
    deliveries: Vec<(String, String)>,
    /// Why it was refused (rejected requests only).
    reason: String,
}

impl Row {
    fn of(r: &RequestJson) -> Self {
        Self {
            id: r.id.clone(),
            source: r.source.clone(),
            received_at: when(&r.received_at),
            method: r.method.clone(),
            size: size(r.body_size),
            deliveries: Vec::new(),
            reason: String::new(),
        }
    }
}

pub async fn list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    query: Result<Query<SearchParams>, QueryRejection>,
    Lenient(echo): Lenient<Echo>,
    uri: http::Uri,
) -> Response {
    let found = crate::admin::events::list(State(state.admin.clone()), query).await;
    let (rows, next, error) = match found {
        Ok(page) => {
            let rows = page
                .0
                .data
                .iter()
                .map(|e| Row {
                    deliveries: e
                        .deliveries
                        .iter()
                        .map(|d| (d.route.clone(), d.state.clone()))
                        .collect(),
                    ..Row::of(&e.request)
                })
                .collect();
            (rows, page.0.next_cursor, None)
        }
        // A search that does not compile is shown beside the form, not as an error page.
        Err(e) if e.status == StatusCode::BAD_REQUEST => (Vec::new(), None, Some(e.message)),
        Err(e) => return api_error(e),
    };
    render(
        StatusCode::OK,
        &EventsPage {
            page: Frame::new("events", &session, state.has_login()),
            form: echo,
            sources: state.admin.source_names(),
            states: &crate::admin::deliveries::STATES,
            rows,
            next: next.map(|cursor| with_cursor(&uri, &cursor)),
            last_hour: crate::clock::rfc3339(crate::clock::now_ms() - 3_600_000),
            error,
        },
    )
}

/// This page's address with `cursor` set: the filters kept, the notice of the last
/// action dropped (it was said once).
pub(super) fn with_cursor(uri: &http::Uri, cursor: &str) -> String {
    let kept = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| !matches!(k.as_ref(), "cursor" | "notice" | "n"))
        .collect::<Vec<_>>();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in kept {
        query.append_pair(&k, &v);
    }
    query.append_pair("cursor", cursor);
    format!("{}?{}", uri.path(), query.finish())
}

#[derive(Template)]
#[template(path = "dashboard/event.html")]
struct EventPage {
    page: Frame,
    title: &'static str,
    request: RequestView,
    event: Option<EventJson>,
    reason: Option<String>,
}

/// A stored request, ready to show.
struct RequestView {
    id: String,
    source: String,
    received_at: String,
    request_line: String,
    remote_addr: String,
    headers: Vec<(String, String)>,
    body: String,
    body_kind: &'static str,
    size: String,
}

impl From<&RequestJson> for RequestView {
    fn from(r: &RequestJson) -> Self {
        let (body, body_kind) = body_text(r.body.as_ref());
        let target = match &r.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", r.path),
            _ => r.path.clone(),
        };
        Self {
            id: r.id.clone(),
            source: r.source.clone(),
            received_at: r.received_at.clone(),
            request_line: format!("{} {target}", r.method),
            remote_addr: r.remote_addr.clone().unwrap_or_default(),
            headers: header_lines(&r.headers),
            body,
            body_kind,
            size: size(r.body_size),
        }
    }
}

pub async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::events::show(State(state.admin.clone()), path).await {
        Ok(event) => render(
            StatusCode::OK,
            &EventPage {
                page: Frame::new("events", &session, state.has_login()),
                title: "Event",
                request: RequestView::from(&event.0.request),
                event: Some(event.0),
                reason: None,
            },
        ),
        Err(e) => api_error(e),
    }
}

#[derive(Template)]
#[template(path = "dashboard/rejected.html")]
struct RejectedPage {
    page: Frame,
    source: String,
    sources: Vec<String>,
    rows: Vec<Row>,
    next: Option<String>,
}

pub async fn rejected_list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    query: Result<Query<ListParams>, QueryRejection>,
    uri: http::Uri,
) -> Response {
    let source = query
        .as_ref()
        .ok()
        .and_then(|q| q.source.clone())
        .unwrap_or_default();
    match crate::admin::events::list_rejected(State(state.admin.clone()), query).await {
        Ok(page) => render(
            StatusCode::OK,
            &RejectedPage {
                page: Frame::new("rejected", &session, state.has_login()),
                source,
                sources: state.admin.source_names(),
                rows: page
                    .0
                    .data
                    .iter()
                    .map(|r: &RejectedJson| Row {
                        reason: r.reason.clone(),
                        ..Row::of(&r.request)
                    })
                    .collect(),
                next: page.0.next_cursor.map(|c| with_cursor(&uri, &c)),
            },
        ),
        Err(e) => api_error(e),
    }
}

pub async fn rejected_show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::events::show_rejected(State(state.admin.clone()), path).await {
        Ok(rejected) => render(
            StatusCode::OK,
            &EventPage {
                page: Frame::new("rejected", &session, state.has_login()),
                title: "Rejected request",
                request: RequestView::from(&rejected.0.request),
                event: None,
                reason: Some(rejected.0.reason),
            },
        ),
        Err(e) => api_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::with_cursor;

    #[test]
    fn the_next_page_keeps_the_filters_and_drops_the_notice() {
        let uri: http::Uri = "/dead-letters?route=r&notice=retried&n=2&cursor=old"
            .parse()
            .unwrap();
        assert_eq!(with_cursor(&uri, "c2"), "/dead-letters?route=r&cursor=c2");
    }
}
