//! Who may use the dashboard: a session cookie, a CSRF token for every form, and the
//! checks every request passes through.
//!
//! With `server.admin_token` set, `/login` takes the token and opens a session; without
//! one (the listener is then on loopback), a session opens on the first visit. Either
//! way every state-changing request must carry the session's CSRF token and, when the
//! browser sends one, an `Origin` of this listener: the session cookie alone, which a
//! browser attaches for any page, never changes anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use super::DashboardState;
use super::view::error_page;

/// The session cookie's name.
pub const COOKIE: &str = "forebay_session";
/// The form field (and, for scripts, the header) that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without a new login.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most open sessions; past it the one used least recently goes (a login loop cannot
/// grow memory, and a burst of new visitors does not end a session in use).
const MAX_SESSIONS: usize = 10_000;
/// Largest form a state-changing request may send.
const MAX_FORM: usize = 1024 * 1024;

/// The open sessions of this process (a restart logs everyone out).
pub struct Sessions {
    /// Signs CSRF tokens; made at start, never stored.
    key: [u8; 32],
    open: Mutex<HashMap<String, Lease>>,
}

/// When a session ends, and when it was last used.
struct Lease {
    expires: Instant,
    used: Instant,
}

/// The session a request belongs to.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            key: rand::random(),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Sessions {
    /// Opens a session, and the `Set-Cookie` value that hands it to the browser.
    pub fn open(&self) -> (Session, HeaderValue) {
        let id = new_id();
        if let Ok(mut open) = self.open.lock() {
            let now = Instant::now();
            open.retain(|_, lease| lease.expires > now);
            if open.len() >= MAX_SESSIONS
                && let Some(idle) = open
                    .iter()
                    .min_by_key(|(_, lease)| lease.used)
                    .map(|(k, _)| k.clone())
            {
                open.remove(&idle);
            }
            let lease = Lease {
                expires: now + LIFETIME,
                used: now,
            };
            open.insert(id.clone(), lease);
        }
        let cookie = format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            LIFETIME.as_secs()
        );
        let session = self.session(id);
        (
            session,
            HeaderValue::from_str(&cookie).expect("hex and ASCII"),
        )
    }

    /// A session for one request, never stored (its forms could post nothing).
    pub fn passing(&self) -> Session {
        self.session(new_id())
    }

    /// The live session the request's cookie names, if any.
    pub fn current(&self, headers: &HeaderMap) -> Option<Session> {
        let mut open = self.open.lock().ok()?;
        let now = Instant::now();
        // The first live one; using it marks it used.
        let id = cookies(headers, COOKIE).find(|id| match open.get_mut(*id) {
            Some(lease) if lease.expires > now => {
                lease.used = now;
                true
            }
            _ => false,
        })?;
        drop(open);
        Some(self.session(id.to_owned()))
    }

    /// Ends a session; the returned `Set-Cookie` clears it in the browser.
    pub fn close(&self, session: &Session) -> HeaderValue {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&session.id);
        }
        HeaderValue::from_static("forebay_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    fn session(&self, id: String) -> Session {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("any key");
        mac.update(id.as_bytes());
        let csrf = hex::encode(mac.finalize().into_bytes());
        Session { id, csrf }
    }
}

/// A session id nobody can guess.
fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The values of cookie `name` in the request's `Cookie` headers, in order. Read as
/// bytes: another cookie of this host with bytes outside ASCII must not hide the
/// session's. There may be several (a stale one set for another path comes first).
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|b| *b == b'=')?;
            (&pair[..at] == name.as_bytes()).then(|| std::str::from_utf8(&pair[at + 1..]).ok())?
        })
}

/// Every dashboard page but `/login` and the assets: finds (or, without a token,
/// opens) the session, sends a visitor without one to the login page, and checks the
/// origin and CSRF token of anything that is not a read.
pub async fn guard(State(state): State<DashboardState>, request: Request, next: Next) -> Response {
    let mut set_cookie = None;
    let session = match state.sessions.current(request.headers()) {
        Some(session) => session,
        None if state.admin.token.is_none() && request.method() == Method::GET => {
            let (session, cookie) = state.sessions.open();
            set_cookie = Some(cookie);
            session
        }
        // What only asks for headers gets them without a session kept for it.
        None if state.admin.token.is_none() && request.method() == Method::HEAD => {
            state.sessions.passing()
        }
        None if is_read(request.method()) => {
            let next = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let to = format!(
                "/login?next={}",
                percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC)
            );
            return Redirect::to(&to).into_response();
        }
        None => {
            return error_page(
                StatusCode::FORBIDDEN,
                "Your session has ended. Open the page again (and log in), then repeat what you did.",
            );
        }
    };
    let request = if is_read(request.method()) {
        request
    } else {
        match checked(request, &session).await {
            Ok(request) => request,
            Err(refusal) => return refusal,
        }
    };
    let mut request = request;
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// A state-changing request from a page of this dashboard: same origin, and the
/// session's CSRF token in the form (or header). The form is read here, bounded, and
/// handed on unchanged.
async fn checked(request: Request, session: &Session) -> Result<Request, Response> {
    let forbidden = |why: &str| error_page(StatusCode::FORBIDDEN, why);
    if !same_origin(request.headers()) {
        return Err(forbidden(
            "This request came from another site, so it was refused. Use the dashboard's own pages.",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large (at most 1 MiB).",
        )
    })?;
    let from_header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let presented = from_header.or_else(|| {
        form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
    });
    let valid = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes())));
    if !valid {
        return Err(forbidden(
            "The form's security token is missing or stale. Reload the page and try again.",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// `Origin`, when the browser sends it, names this listener (the `Host` it was asked
/// for). Browsers send it on every cross-site POST.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_closed() {
        let sessions = Sessions::default();
        let (session, cookie) = sessions.open();
        let cookie = cookie.to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let mut headers = HeaderMap::new();
        let pair = cookie.split(';').next().unwrap();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        let found = sessions.current(&headers).expect("open");
        assert_eq!(found.csrf, session.csrf);
        assert_ne!(found.csrf, sessions.open().0.csrf, "a token per session");
        sessions.close(&found);
        assert!(sessions.current(&headers).is_none());
    }

    #[test]
    fn the_session_cookie_is_found_beside_cookies_that_are_not_ascii() {
        let sessions = Sessions::default();
        let (session, _) = sessions.open();
        let mut headers = HeaderMap::new();
        let mut value = b"theme=caf\xc3\xa9; forebay_session=".to_vec();
        value.extend_from_slice(session.id.as_bytes());
        value.extend_from_slice(b"; other=\xff");
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&value).unwrap());
        assert_eq!(sessions.current(&headers).expect("found").id, session.id);
        // A stale session cookie (another path's, an old login) before the live one.
        let mut value = b"forebay_session=0000; forebay_session=\xff; forebay_session=".to_vec();
        value.extend_from_slice(session.id.as_bytes());
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&value).unwrap());
        assert_eq!(sessions.current(&headers).expect("found").id, session.id);
    }

    #[test]
    fn only_this_listener_is_the_same_origin() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8081"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            h
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://127.0.0.1:8081"))));
        assert!(!same_origin(&headers(Some("http://evil.example"))));
        assert!(!same_origin(&headers(Some("null"))));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:9999"))));
    }
}
