//! `type: sap-odata`: SAP S/4HANA OData services (external-API reference §9).
//!
//! - CSRF: before the first request a `GET` of the service root with
//!   `X-CSRF-Token: Fetch` (and the Connector's credentials) gets a token and the session
//!   cookies; both go with every request after. A `403` with `X-CSRF-Token: Required`
//!   drops them, and the request is sent once more with a fresh pair within the attempt.
//! - Every write is a repeatable request (OASIS): `Repeatability-Request-ID` is a UUID
//!   derived from the record's idempotency key and `Repeatability-First-Sent` the time
//!   the runner first accepted the record, so every retry repeats both and the service
//!   answers a repeat with its first answer. (The reference marks support as varying by
//!   service (U); a service without it still gets the key-derived id, harmlessly.)
//! - `create` is a `POST` to the entity set; `upsert` reads `<path>('<key>')` and creates
//!   it when absent or updates it with `PATCH` under `If-Match` (a `412` reads it again
//!   and patches once more within the attempt; a second one is retried later).
//! - Polls: records at `.d.results` (OData v2) or `.value` (v4), the next page at
//!   `__next` or `@odata.nextLink`.

use std::sync::Mutex;

use reqwest::{
    StatusCode,
    header::{COOKIE, HeaderMap, HeaderName, HeaderValue, SET_COOKIE},
};

use futures::future::BoxFuture;

use super::{
    Answer, Channel, PollDefaults, System, Unfit, Verdict, Write, WriteContext, describe_transport,
    generic_idempotency_header, odata, urlencode,
};
use entrepot_api::resource::{ConnectorSpec, Operation, Pagination};

const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// A CSRF token and the session cookies it belongs to.
#[derive(Clone)]
struct Session {
    token: HeaderValue,
    cookies: Option<HeaderValue>,
}

/// What an SAP Connector keeps: the current CSRF session.
pub struct SapOdata {
    session: Mutex<Option<Session>>,
    generic_header: Option<HeaderName>,
}

// By hand: the token and the cookies are credentials and stay out of logs.
impl std::fmt::Debug for SapOdata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SapOdata").finish_non_exhaustive()
    }
}

impl System for SapOdata {
    fn for_connector(&self, spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(Self { session: Mutex::new(None), generic_header: generic_idempotency_header(spec) }))
    }

    fn session<'a>(
        &'a self,
        http: &'a reqwest::Client,
        endpoint: &'a str,
        credentials: Option<(HeaderName, HeaderValue)>,
    ) -> BoxFuture<'a, Result<HeaderMap, String>> {
        Box::pin(SapOdata::session(self, http, endpoint, credentials))
    }

    fn session_expired(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        SapOdata::session_expired(self, status, headers)
    }

    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        SapOdata::write(self, write, context)
    }

    fn exchange<'a>(
        &'a self,
        channel: &'a dyn Channel,
        write: &'a Write,
        context: WriteContext<'a>,
    ) -> BoxFuture<'a, Option<Answer>> {
        Box::pin(exchange(channel, write, context))
    }

    fn poll_defaults(&self) -> PollDefaults {
        poll_defaults()
    }

    fn classify(&self, answer: &Answer) -> Option<Verdict> {
        odata::classify(answer)
    }
}

impl SapOdata {
    /// The type's shared instance (no Connector's spec, no session).
    pub(super) const fn shared() -> Self {
        Self { session: Mutex::new(None), generic_header: None }
    }

    fn cached(&self) -> Option<Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The session's headers, fetched from the service root when there is none.
    async fn session(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
        credentials: Option<(HeaderName, HeaderValue)>,
    ) -> Result<HeaderMap, String> {
        let session = match self.cached() {
            Some(session) => session,
            None => {
                let fetched = fetch(http, endpoint, credentials).await?;
                *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(fetched.clone());
                fetched
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(CSRF_HEADER, session.token);
        if let Some(cookies) = session.cookies {
            headers.insert(COOKIE, cookies);
        }
        Ok(headers)
    }

    /// `403` + `X-CSRF-Token: Required`: the token or its session expired.
    fn session_expired(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let required =
            headers.get(&CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("required"));
        if status == StatusCode::FORBIDDEN && required {
            *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return true;
        }
        false
    }

    /// The repeatability headers, stable across retries.
    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        if let Some(generic) = &self.generic_header {
            write.headers.remove(generic);
        }
        let (id, first_sent) = odata::delivery_key(&context);
        if let Ok(id) = HeaderValue::from_str(&id) {
            write.headers.insert("repeatability-request-id", id);
        }
        if let Ok(first) = HeaderValue::from_str(&imf_fixdate(first_sent)) {
            write.headers.insert("repeatability-first-sent", first);
        }
    }
}

/// `GET <endpoint>/` with `X-CSRF-Token: Fetch`.
async fn fetch(
    http: &reqwest::Client,
    endpoint: &str,
    credentials: Option<(HeaderName, HeaderValue)>,
) -> Result<Session, String> {
    let mut request =
        http.get(format!("{endpoint}/")).header(CSRF_HEADER, "Fetch").header("accept", "application/json");
    if let Some((name, value)) = credentials {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| format!("CSRF token fetch: {}", describe_transport(&e)))?;
    let status = response.status();
    let token = response
        .headers()
        .get(&CSRF_HEADER)
        .filter(|t| !t.as_bytes().eq_ignore_ascii_case(b"required"))
        .cloned()
        .ok_or_else(|| format!("CSRF token fetch: {status} without an X-CSRF-Token header"))?;
    // `name=value` of each cookie, attributes dropped, as a `Cookie` header sends them.
    let pairs: Vec<&str> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|pair| pair.contains('='))
        .collect();
    let cookies = (!pairs.is_empty()).then(|| HeaderValue::from_str(&pairs.join("; ")).ok()).flatten();
    Ok(Session { token, cookies })
}

/// An IMF-fixdate (`Sat, 28 Nov 2026 10:00:00 GMT`), as `Repeatability-First-Sent` needs.
fn imf_fixdate(unix_ms: i64) -> String {
    let at = jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// An upsert reads, then creates or patches under `If-Match`; a create is left to the
/// target.
async fn exchange(channel: &dyn Channel, write: &Write, context: WriteContext<'_>) -> Option<Answer> {
    let (Operation::Upsert, Some(key)) = (context.operation, context.ordering_key) else { return None };
    let entity = format!("{}('{}')", context.base_url, urlencode(&key.replace('\'', "''")));
    let etag_paths: &[&[&str]] = &[&["d", "__metadata", "etag"], &["@odata.etag"]];
    Some(odata::upsert(channel, write, context.base_url, &entity, etag_paths).await)
}

/// Records at `.d.results` (v2) or `.value` (v4); the next page at `__next` or
/// `@odata.nextLink`.
fn poll_defaults() -> PollDefaults {
    PollDefaults {
        records: Some(".d.results // .value".into()),
        pagination: Some(Pagination::NextUrl { field: r#".d.__next // ."@odata.nextLink""#.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sent_is_an_imf_fixdate() {
        assert_eq!(imf_fixdate(1_795_860_000_000), "Sat, 28 Nov 2026 10:00:00 GMT");
    }
}
