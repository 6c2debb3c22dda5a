//! `/deliveries` (by state, route and destination), `/deliveries/{id}` (the attempt
//! timeline, retry now, discard), and `/dead-letters` (retry or discard one, a
//! selection, or every dead delivery of a route or destination).

use askama::Template;
use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use super::DashboardState;
use super::session::Session;
use super::view::{
    FormFields, Frame, Lenient, api_error, body_text, error_page, header_lines, render, when,
};
use crate::admin::deliveries::{DeadParams, DeliveryParams};
use crate::admin::json::DeliveryDetailJson;

/// What the last action did, shown once above the page (fixed texts: nothing from the
/// address is echoed as a message).
#[derive(Deserialize, Default)]
pub struct Notice {
    notice: Option<String>,
    n: Option<usize>,
}

impl Notice {
    fn text(&self) -> Option<String> {
        let n = self.n.unwrap_or(1);
        let deliveries = if n == 1 { "delivery" } else { "deliveries" };
        match self.notice.as_deref()? {
            "retried" => Some(format!("Retrying {n} {deliveries} now.")),
            "discarded" => Some(format!("Discarded {n} {deliveries}.")),
            _ => None,
        }
    }
}

#[derive(Deserialize, Default)]
pub struct Echo {
    #[serde(default)]
    state: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    destination: String,
}

/// One delivery in a list.
struct Row {
    id: String,
    event_id: String,
    route: String,
    destination: String,
    state: String,
    attempts: i64,
    updated_at: String,
    next_attempt_at: String,
    last_error: String,
}

impl From<&DeliveryDetailJson> for Row {
    fn from(d: &DeliveryDetailJson) -> Self {
        Self {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            route: d.route.clone(),
            destination: d.destination.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            updated_at: when(&d.updated_at),
            next_attempt_at: when(&d.next_attempt_at),
            last_error: d.last_error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/deliveries.html")]
struct ListPage {
    page: Frame,
    dead_letters: bool,
    form: Echo,
    states: &'static [&'static str],
    routes: Vec<String>,
    destinations: Vec<String>,
    rows: Vec<Row>,
    next: Option<String>,
    notice: Option<String>,
}

fn list_page(
    state: &DashboardState,
    session: &Session,
    dead_letters: bool,
    form: Echo,
    found: Result<
        axum::Json<crate::admin::json::Page<DeliveryDetailJson>>,
        crate::http_error::ApiError,
    >,
    uri: &http::Uri,
    notice: &Notice,
) -> Response {
    let page = match found {
        Ok(page) => page.0,
        Err(e) => return api_error(e),
    };
    render(
        StatusCode::OK,
        &ListPage {
            page: Frame::new(
                if dead_letters { "dead" } else { "deliveries" },
                session,
                state.has_login(),
            ),
            dead_letters,
            form,
            states: &crate::admin::deliveries::STATES,
            routes: state.admin.route_names(),
            destinations: state.admin.destination_names(),
            rows: page.data.iter().map(Row::from).collect(),
            next: page
                .next_cursor
                .map(|c| super::events::with_cursor(uri, &c)),
            notice: notice.text(),
        },
    )
}

pub async fn list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    query: Result<Query<DeliveryParams>, QueryRejection>,
    Lenient(echo): Lenient<Echo>,
    Lenient(notice): Lenient<Notice>,
    uri: http::Uri,
) -> Response {
    let found = crate::admin::deliveries::list(State(state.admin.clone()), query).await;
    list_page(&state, &session, false, echo, found, &uri, &notice)
}

pub async fn dead(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    query: Result<Query<DeliveryParams>, QueryRejection>,
    Lenient(echo): Lenient<Echo>,
    Lenient(notice): Lenient<Notice>,
    uri: http::Uri,
) -> Response {
    let found = crate::admin::deliveries::dead(State(state.admin.clone()), query).await;
    list_page(&state, &session, true, echo, found, &uri, &notice)
}

#[derive(Template)]
#[template(path = "dashboard/delivery.html")]
struct DeliveryPage {
    page: Frame,
    d: DeliveryDetailJson,
    payload: Option<(String, &'static str)>,
    attempts: Vec<Attempt>,
    notice: Option<String>,
    can_retry: bool,
}

/// One attempt of the timeline, newest first.
struct Attempt {
    number: i64,
    started_at: String,
    duration_ms: i64,
    status: String,
    ok: bool,
    error: String,
    headers: Vec<(String, String)>,
    body: String,
}

pub async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    path: Result<Path<String>, PathRejection>,
    Lenient(notice): Lenient<Notice>,
) -> Response {
    let d = match crate::admin::deliveries::show(State(state.admin.clone()), path).await {
        Ok(d) => d.0,
        Err(e) => return api_error(e),
    };
    let attempts = d
        .attempt_log
        .iter()
        .rev()
        .map(|a| Attempt {
            number: a.number,
            started_at: a.started_at.clone(),
            duration_ms: a.duration_ms,
            status: a
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
            ok: a.error.is_none(),
            error: a.error.clone().unwrap_or_default(),
            headers: header_lines(&a.response_headers),
            body: body_text(Some(&a.response_body)).0,
        })
        .collect();
    render(
        StatusCode::OK,
        &DeliveryPage {
            page: Frame::new("deliveries", &session, state.has_login()),
            payload: d.payload.as_ref().map(|p| body_text(Some(p))),
            can_retry: matches!(
                d.state.as_str(),
                "pending" | "retrying" | "dead" | "superseded"
            ),
            attempts,
            notice: notice.text(),
            d,
        },
    )
}

pub async fn retry(
    State(state): State<DashboardState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::deliveries::retry(State(state.admin.clone()), path).await {
        Ok((_, d)) => {
            Redirect::to(&format!("/deliveries/{}?notice=retried", d.0.id)).into_response()
        }
        Err(e) => api_error(e),
    }
}

pub async fn discard(
    State(state): State<DashboardState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::deliveries::discard(State(state.admin.clone()), path).await {
        Ok(d) => Redirect::to(&format!("/deliveries/{}?notice=discarded", d.0.id)).into_response(),
        Err(e) => api_error(e),
    }
}

#[derive(Template)]
#[template(path = "dashboard/confirm.html")]
struct ConfirmPage {
    page: Frame,
    /// "every dead delivery", or which ones of a route or destination.
    what: String,
    route: String,
    destination: String,
    back: String,
}

/// The dead-letter form: `action` (`retry` or `discard`) for the checked `id`s, or,
/// with `all`, for every dead delivery of the `route` and `destination` shown.
/// Discarding all of them is asked again first (`confirm`): it cannot be undone.
pub async fn act_on_dead(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    form: Bytes,
) -> Response {
    let form = FormFields::parse(&form);
    let field = |name: &str| form.one(name);
    let ids = form.all("id");
    let action = field("action").unwrap_or_default();
    let retrying = match action.as_str() {
        "retry" => true,
        "discard" => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Choose Retry or Discard for the dead deliveries.",
            );
        }
    };
    let (route, destination) = (field("route"), field("destination"));
    // The dead letters as they were filtered (a query string, built now: the encoder
    // is not `Send`).
    let back = |notice: Option<(&str, usize)>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("route", &route), ("destination", &destination)] {
            if let Some(v) = value {
                query.append_pair(key, v);
            }
        }
        if let Some((notice, n)) = notice {
            query.append_pair("notice", notice);
            query.append_pair("n", &n.to_string());
        }
        format!("/dead-letters?{}", query.finish())
    };
    let admin = State(state.admin.clone());
    let n = if field("all").is_some() {
        if !retrying && field("confirm").is_none() {
            let what = match (&route, &destination) {
                (None, None) => "every dead delivery".to_owned(),
                (Some(r), None) => format!("every dead delivery of route {r}"),
                (None, Some(d)) => format!("every dead delivery to destination {d}"),
                (Some(r), Some(d)) => {
                    format!("every dead delivery of route {r} to destination {d}")
                }
            };
            return render(
                StatusCode::OK,
                &ConfirmPage {
                    page: Frame::new("dead", &session, state.has_login()),
                    what,
                    back: back(None),
                    route: route.unwrap_or_default(),
                    destination: destination.unwrap_or_default(),
                },
            );
        }
        let params = Ok(Query(DeadParams {
            route: route.clone(),
            destination: destination.clone(),
        }));
        let counted = if retrying {
            crate::admin::deliveries::retry_dead(admin, params).await
        } else {
            crate::admin::deliveries::discard_dead(admin, params).await
        };
        match counted {
            Ok(json) => json
                .0
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as usize,
            Err(e) => return api_error(e),
        }
    } else if ids.is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Tick the dead deliveries to act on, or use the buttons for all of them.",
        );
    } else {
        let (picked, mut done, mut handled, mut failed) = (ids.len(), 0, 0, None);
        for id in ids {
            let path = Ok(Path(id));
            let result = if retrying {
                crate::admin::deliveries::retry(admin.clone(), path)
                    .await
                    .map(|_| ())
            } else {
                crate::admin::deliveries::discard(admin.clone(), path)
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => done += 1,
                // Another hand got there first (retried, discarded): nothing to do.
                Err(e) if e.status == StatusCode::CONFLICT => handled += 1,
                // The rest are still tried; the page then says what was done.
                Err(e) => {
                    let (count, status, message) = failed.unwrap_or((0, e.status, e.message));
                    failed = Some((count + 1, status, message));
                }
            }
        }
        if let Some((count, status, message)) = failed {
            let verb = if retrying { "Retried" } else { "Discarded" };
            return error_page(
                status,
                &format!(
                    "{verb} {done} of the {picked} ticked deliveries{}; {count} could not be: {message}",
                    if handled > 0 {
                        format!(" ({handled} already retried or discarded)")
                    } else {
                        String::new()
                    }
                ),
            );
        }
        done
    };
    let notice = if retrying { "retried" } else { "discarded" };
    Redirect::to(&back(Some((notice, n)))).into_response()
}
