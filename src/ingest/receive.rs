//! The `/in/{source}` handler: method and size checks, capped read, verification,
//! dedup key, durable commit, answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use super::IngestState;
use super::body::{check_declared_length, read_capped};
use super::dedup::DedupRule;
use super::request::Unverified;
use super::verify::Answer;
use crate::config::Source;
use crate::http_error::ApiError;
use crate::id;
use crate::live::Running;
use crate::store::{EventInput, Inserted, NewDelivery, NewEvent, NewRejected};

pub async fn receive(
    State(state): State<IngestState>,
    source_name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let arrived = std::time::Instant::now();
    // A name that is not valid text cannot be a configured source.
    let Ok(Path(source_name)) = source_name else {
        let response =
            ApiError::not_found("unknown_source", "no source has that name").into_response();
        crate::metrics::ingest_answered(None, response.status(), arrived.elapsed());
        return response;
    };
    // The configuration this request is served by, start to end (see `live`).
    let running = state.live.current();
    // Only configured names become label values: a sender cannot add series.
    let known = running
        .config
        .sources
        .contains_key(&source_name)
        .then(|| source_name.clone());
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let response = match handle(state, &running, source_name, remote_addr, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    crate::metrics::ingest_answered(known.as_deref(), response.status(), arrived.elapsed());
    response
}

/// The store is at `storage.max_size` with nothing it may evict: refused before the body
/// is read, so that a full store costs senders nothing but a retry.
fn store_full(state: &IngestState) -> ApiError {
    let max = state.capacity.max.unwrap_or_default();
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "store_full",
        format!(
            "forebay's store has reached its size cap ({}) and cannot make room now (what it holds still waits for delivery or is dead-lettered); nothing was stored, retry later (operators: deliver or discard dead letters, or raise storage.max_size)",
            bytesize::ByteSize::b(max).display().iec()
        ),
    )
    .with_header(
        header::RETRY_AFTER,
        HeaderValue::from(state.retry_after_secs),
    )
}

async fn handle(
    state: IngestState,
    running: &Running,
    source_name: String,
    remote_addr: Option<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(source) = running.config.sources.get(&source_name).cloned() else {
        let fix = if crate::config::is_valid_name(&source_name) {
            format!("add [sources.{source_name}] to the configuration")
        } else {
            "source names use only letters, digits, `-` and `_`; check the URL".to_owned()
        };
        return Err(ApiError::not_found(
            "unknown_source",
            format!("no source named {source_name:?}; {fix}"),
        ));
    };
    if state.capacity.is_full() {
        return Err(store_full(&state));
    }
    if let Some(limit) = &source.edge_limit
        && let Err(refusal) = limit.check(&source.name, remote_addr.map(|a| a.ip()))
    {
        return Ok(rate_limited(&state, &source, limit, request, remote_addr, refusal).await);
    }
    let (parts, body) = request.into_parts();
    // A GET or HEAD the source does not take for events may still be its provider's
    // challenge (SPEC section 4); it is read (capped) to find out.
    let for_events = source.methods.contains(&parts.method);
    if !for_events && !source.verifier.answers_challenges_on(&parts.method) {
        return Err(method_not_allowed(&source));
    }
    let declared = check_declared_length(&parts.headers, source.max_body)?;
    let (body, charge) = read_capped(
        body,
        source.max_body,
        declared,
        state.read_timeout,
        &state.budget,
    )
    .await?;

    // The event's id is made as the request is stamped, from the same clock reading, so
    // an event received at t has an id of time t and time ranges seek by id exactly.
    let (event_id, received_at_ms) = id::new_stamped(id::EVENT);
    let unverified = Unverified::new(&source.name, parts, body, remote_addr, received_at_ms);
    // A provider challenge (Meta's `hub.challenge`, Twitter's CRC, Asana's handshake)
    // is answered, not stored.
    match source.verifier.challenge(&unverified) {
        Some(Ok(answer)) => return Ok(answer_challenge(&state, &source, unverified, answer).await),
        Some(Err(reason)) => {
            let reason = reason.to_string();
            let rejected_id = record_rejected(&state, &source, unverified, &reason).await;
            tracing::info!(source = %source.name, rejected = %rejected_id, %reason, "refused a provider challenge");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "challenge_refused",
                reason,
            ));
        }
        None if !for_events => return Err(method_not_allowed(&source)),
        None => {}
    }
    let verified = match source.verifier.verify(unverified) {
        Ok(v) => v,
        Err(rejected) => {
            let reason = rejected.reason.to_string();
            let rejected_id = record_rejected(&state, &source, rejected.request, &reason).await;
            tracing::info!(source = %source.name, rejected = %rejected_id, %reason, "rejected a request that failed verification");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "verification_failed",
                format!("verification failed: {reason}"),
            ));
        }
    };
    // A signed handshake (Slack's `url_verification`, Zoom's `endpoint.url_validation`,
    // Twitch's `webhook_callback_verification`) is answered, not stored.
    if let Some(answer) = source.verifier.answer(&verified) {
        tracing::info!(source = %source.name, "answered a provider handshake");
        return Ok(answer_response(answer));
    }

    let evaluated = match &source.dedup {
        DedupRule::Expr(_) => {
            let input = event_input(&event_id, verified.request());
            running.programs.dedup_key(&source.name, &input).await
        }
        _ => None,
    };
    let dedup_key = source
        .dedup
        .key_for(&source.verifier, verified.request(), evaluated);
    let deliveries: Vec<NewDelivery> = source
        .routes
        .iter()
        .map(|r| NewDelivery {
            id: id::new(id::DELIVERY),
            route: r.name.clone(),
            destination: r.destination.clone(),
            needs_preparing: r.needs_preparing(),
            ordered: r.ordering_key.is_some(),
            delay_ms: r.delay_ms(),
            priority: r.config.priority,
        })
        .collect();
    let mut event = NewEvent::with_guard(
        verified,
        event_id,
        dedup_key,
        source.dedup_window.as_millis_i64(),
        deliveries,
        Some(Arc::new(charge)),
    );
    // After verification and the dedup key, which see the request as it came.
    source.redact.apply_to_event(&mut event);
    let inserted = state
        .store
        .insert_event(event)
        .await
        .map_err(|e| ApiError::unavailable(&e, state.retry_after_secs))?;
    match &inserted {
        Inserted::New { .. } => {
            tracing::debug!(source = %source.name, event = %inserted.event_id(), "stored");
            if source.routes.iter().any(|r| r.needs_preparing()) {
                state.prepare_wake.notify_one();
            }
            if source.routes.iter().any(|r| !r.needs_preparing()) {
                state.wake.notify_one();
            }
        }
        Inserted::Duplicate { original_id } => {
            crate::metrics::dedup_hit(&source.name);
            tracing::debug!(source = %source.name, original = %original_id, "duplicate")
        }
    }
    Ok(success(&source, inserted.event_id()))
}

/// Keeps a refused request (SPEC section 5: rejected requests are recorded with their
/// reason) and returns its id. The sender's answer does not depend on it; failing to
/// record it is the operator's problem, reported in the log.
async fn record_rejected(
    state: &IngestState,
    source: &Source,
    request: Unverified,
    reason: &str,
) -> String {
    let rejected_id = id::new(id::REJECTED);
    // Never delivered, so redacted at once whatever `when` says; and before the body is
    // cut to the limit, which would leave JSON that no longer parses.
    let redacted = (!source.redact.is_empty()).then(|| {
        source.redact.apply(
            &crate::store::headers::encode(&request.headers),
            &request.body,
        )
    });
    let mut record = NewRejected::new(
        request,
        rejected_id.clone(),
        reason.to_owned(),
        state.rejected_body_limit,
    );
    if let Some(r) = redacted.flatten() {
        record.headers = r.headers;
        record.body =
            Bytes::copy_from_slice(&r.body[..r.body.len().min(state.rejected_body_limit)]);
    }
    if let Err(e) = state.store.insert_rejected(record).await {
        crate::throttled!(warn, source = %source.name, rejected = %rejected_id, error = %crate::error_chain::Chain(&e), "could not record a rejected request");
    }
    rejected_id
}

/// Answers 429 with `Retry-After` (whole seconds, at least 1) without reading the body;
/// the first refusal of each second is kept with the rejected requests, its body not
/// read, saying how many were refused since the last one kept.
async fn rate_limited(
    state: &IngestState,
    source: &Source,
    limit: &super::edge_limit::EdgeLimit,
    request: Request,
    remote_addr: Option<SocketAddr>,
    refusal: super::edge_limit::Refusal,
) -> Response {
    crate::metrics::rate_limited(&source.name, refusal.scope.as_str());
    let retry_after = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!("{}; retry after {retry_after}s", refusal.message);
    let now_ms = crate::clock::now_ms();
    let now_secs = u64::try_from(now_ms / 1000).unwrap_or_default();
    if let Some(skipped) = limit.keep_refusal(now_secs) {
        let (parts, _unread) = request.into_parts();
        let reason = if skipped == 0 {
            format!("rate limited: {}", refusal.message)
        } else {
            format!(
                "rate limited: {} ({skipped} more refused since the last one kept; forebay_ingest_rate_limited_total counts them all)",
                refusal.message
            )
        };
        let unread = Unverified::new(&source.name, parts, Bytes::new(), remote_addr, now_ms);
        record_rejected(state, source, unread, &reason).await;
    }
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Answers a challenge; one that needs the operator (`notice`) is also logged and kept
/// with the rejected requests, where the admin API shows it.
async fn answer_challenge(
    state: &IngestState,
    source: &Source,
    request: Unverified,
    answer: Answer,
) -> Response {
    match answer.notice {
        Some(notice) => {
            let kept = record_rejected(state, source, request, notice).await;
            tracing::warn!(source = %source.name, rejected = %kept, "{notice}");
        }
        None => {
            tracing::info!(source = %source.name, method = %request.method, "answered a provider challenge")
        }
    }
    answer_response(answer)
}

fn answer_response(answer: Answer) -> Response {
    let mut response = (answer.status, Body::from(answer.body)).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = answer.content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in answer.headers {
        headers.insert(name, value);
    }
    response
}

fn method_not_allowed(source: &Source) -> ApiError {
    let allowed: Vec<&str> = source.methods.iter().map(|m| m.as_str()).collect();
    let allow =
        HeaderValue::from_str(&allowed.join(", ")).unwrap_or(HeaderValue::from_static("POST"));
    let challenges = if source.verifier.answers_challenges_on(&Method::GET)
        || source.verifier.answers_challenges_on(&Method::HEAD)
    {
        format!(
            " (and answers {}'s challenges, which this request is not)",
            source.verifier.kind_name()
        )
    } else {
        String::new()
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "source {:?} accepts {}{challenges}; add the method to its `methods` if this sender needs it",
            source.name,
            allowed.join(", ")
        ),
    )
    .with_header(header::ALLOW, allow)
}

/// The configured success answer (default `200 {"id":"evt_…"}`).
fn success(source: &Source, event_id: &str) -> Response {
    let cfg = &source.response;
    let status = StatusCode::from_u16(cfg.status).unwrap_or(StatusCode::OK);
    let (body, content_type) = match &cfg.body {
        // Xero and Okta want an empty answer (Xero treats a body as a failure).
        None if source.verifier.wants_empty_answer() => {
            return (status, Body::empty()).into_response();
        }
        // Ids are `evt_` and hex, nothing JSON would escape.
        None => (
            format!(r#"{{"id":"{event_id}"}}"#),
            cfg.content_type.as_deref().unwrap_or("application/json"),
        ),
        Some(template) => (
            template.replace("{id}", event_id),
            cfg.content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8"),
        ),
    };
    let mut response = (status, Body::from(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// What a `jq:` or `js:` dedup key sees of a request (the event it is about to become).
fn event_input(event_id: &str, req: &Unverified) -> EventInput {
    EventInput {
        id: event_id.to_owned(),
        source: req.source.clone(),
        received_at_ms: req.received_at_ms,
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: req.body.to_vec(),
    }
}
