//! Which page a poll run asks for next, and the URL that asks for it: `link`
//! (RFC 8288 `Link: <...>; rel="next"`), `cursor` (a value from the body sent back as a
//! query parameter) or `offset` (offset and limit parameters; a short page is the last).

use reqwest::{
    Url,
    header::{HeaderMap, LINK},
};
use serde::{Deserialize, Serialize};

use entrepot_api::resource::{Pagination, PollTrigger};

/// The page a poll run fetches next. Kept with the run's progress across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Page {
    /// The first page: the trigger's query with the watermark (offset 0 for `offset`).
    First,
    /// A URL the source gave in its `Link` header, fetched as it is.
    Url(String),
    /// A cursor from the previous page.
    Cursor(String),
    /// An offset into the result.
    Offset(u64),
}

/// Whether `page` can be asked of `endpoint`: a stored next-page URL only when it is on
/// the endpoint's origin, as when it was taken (`on_endpoint`). A run resumed after the
/// Connector's endpoint moved must not send the new credentials to the old host.
pub fn belongs_to(page: &Page, endpoint: &str) -> bool {
    let Page::Url(next) = page else { return true };
    let (Ok(next), Ok(home)) = (Url::parse(next), Url::parse(endpoint)) else { return false };
    next.origin() == home.origin()
}

/// The URL of `page`: `<endpoint><path>` with the trigger's query, the watermark
/// parameter and the page's own parameters; for a `Link` page, the source's URL. A cursor
/// that is itself a query string (starts with `?`, as Walmart's `nextCursor`) is the
/// whole query of the next page.
pub fn url(endpoint: &str, trigger: &PollTrigger, watermark: Option<&str>, page: &Page) -> Result<Url, String> {
    if let Page::Url(next) = page {
        if !belongs_to(page, endpoint) {
            return Err(format!(
                "the next page's URL is not on the origin of the Connector's endpoint `{endpoint}`; not asked"
            ));
        }
        return Url::parse(next).map_err(|e| format!("the next page's URL `{next}` is not a URL: {e}"));
    }
    let base = format!("{endpoint}/{}", trigger.path.trim_start_matches('/'));
    let mut url = Url::parse(&base).map_err(|e| format!("`{base}` is not a URL: {e}"))?;
    if let Page::Cursor(cursor) = page
        && let Some(query) = cursor.strip_prefix('?')
    {
        url.set_query(Some(query));
        return Ok(url);
    }
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in &trigger.query {
            query.append_pair(name, value);
        }
        if let (Some(w), Some(value)) = (&trigger.watermark, watermark) {
            query.append_pair(&w.param, value);
        }
        match (&trigger.pagination, page) {
            (Some(Pagination::Cursor { param, .. }), Page::Cursor(cursor)) => {
                query.append_pair(param, cursor);
            }
            (Some(Pagination::Offset { param, limit_param, page_size }), Page::First | Page::Offset(_)) => {
                let offset = if let Page::Offset(o) = page { *o } else { 0 };
                query.append_pair(param, &offset.to_string()).append_pair(limit_param, &page_size.to_string());
            }
            _ => {}
        }
    }
    // Appending nothing still leaves a bare `?`.
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

/// What a page gave that decides the next one.
pub struct PageEnd<'a> {
    /// The URL the page was fetched from (a relative `Link` is resolved against it).
    pub url: &'a Url,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The cursor read from the body (`cursor` pagination; the next URL for `nextUrl`);
    /// empty counts as none.
    pub cursor: Option<String>,
    /// How many records the page held.
    pub records: usize,
}

/// The page after `current`; `None` when `current` was the last. A `Link` to another
/// origin than the Connector's endpoint is refused: the Connector's credentials would
/// go with it.
pub fn next(
    pagination: Option<&Pagination>,
    current: &Page,
    end: PageEnd<'_>,
    endpoint: &str,
) -> Result<Option<Page>, String> {
    let next = match pagination {
        None => None,
        Some(Pagination::Link {}) => {
            let values = end.headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok());
            match next_link(values) {
                None => None,
                Some(target) => Some(on_endpoint(end.url, &target, endpoint, "the Link header's")?),
            }
        }
        Some(Pagination::NextUrl { .. }) => match end.cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(target) => Some(on_endpoint(end.url, &target, endpoint, "the body's")?),
        },
        Some(Pagination::Cursor { .. }) => end.cursor.filter(|c| !c.is_empty()).map(Page::Cursor),
        Some(Pagination::Offset { page_size, .. }) => {
            let offset = if let Page::Offset(o) = current { *o } else { 0 };
            (end.records > 0 && end.records >= *page_size as usize).then(|| Page::Offset(offset + end.records as u64))
        }
    };
    Ok(next)
}

/// `target` resolved against the page's URL, as the next page, when it stays on the
/// Connector's endpoint; `what` names where it came from, for the message.
fn on_endpoint(here: &Url, target: &str, endpoint: &str, what: &str) -> Result<Page, String> {
    let next = here.join(target).map_err(|e| format!("{what} next URL `{target}` is not a URL: {e}"))?;
    let home = Url::parse(endpoint).map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    if next.origin() != home.origin() {
        return Err(format!(
            "{what} next page {} is on another origin than the Connector's endpoint; \
             the Connector's credentials are not sent there",
            next.origin().ascii_serialization()
        ));
    }
    Ok(Page::Url(next.to_string()))
}

/// The target of the first `rel="next"` link in `Link` header values (RFC 8288: several
/// links per value, several values, `rel` quoted or not and possibly listing several
/// relations).
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let (params, remaining) = split_link_params(&after[close + 1..]);
            if params.split(';').any(is_rel_next) {
                return Some(after[..close].trim().to_string());
            }
            rest = remaining;
        }
    }
    None
}

/// Splits a link's parameters from the links after it: at the first comma outside quotes.
fn split_link_params(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

fn is_rel_next(param: &str) -> bool {
    param.split_once('=').is_some_and(|(name, value)| {
        name.trim().eq_ignore_ascii_case("rel")
            && value.trim().trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others_however_it_is_written() {
        let shopify = r#"<https://shop.example/admin/api/2026-10/orders.json?limit=2&page_info=abc>; rel="previous", <https://shop.example/admin/api/2026-10/orders.json?limit=2&page_info=def>; rel="next""#;
        assert_eq!(
            next_link([shopify]).as_deref(),
            Some("https://shop.example/admin/api/2026-10/orders.json?limit=2&page_info=def")
        );
        assert_eq!(next_link([r#"</items?p=2>; title="a, b"; rel=next"#]).as_deref(), Some("/items?p=2"));
        assert_eq!(
            next_link(["<https://x/1>; rel=\"prev\"", "<https://x/3>; REL=\"last next\""]).as_deref(),
            Some("https://x/3")
        );
        assert_eq!(next_link([r#"<https://x/1>; rel="prev""#, "garbage"]), None);
        assert_eq!(next_link([]), None);
    }

    fn trigger(yaml: &str) -> PollTrigger {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn urls_carry_the_query_the_watermark_and_the_page() {
        let t = trigger(
            "{interval: 30s, path: /items, query: {status: active}, watermark: {field: .u, param: since}, pagination: {offset: {param: offset, limitParam: limit, pageSize: 50}}}",
        );
        let first = url("http://erp/api", &t, Some("2026-01-01T00:00:00+01:00"), &Page::First).unwrap();
        assert_eq!(
            first.as_str(),
            "http://erp/api/items?status=active&since=2026-01-01T00%3A00%3A00%2B01%3A00&offset=0&limit=50"
        );
        let later = url("http://erp/api", &t, None, &Page::Offset(100)).unwrap();
        assert_eq!(later.as_str(), "http://erp/api/items?status=active&offset=100&limit=50");
        let bare = trigger("{interval: 30s, path: items}");
        assert_eq!(url("http://erp", &bare, None, &Page::First).unwrap().as_str(), "http://erp/items");
        let cursor = trigger("{interval: 30s, path: /o, pagination: {cursor: {field: .next, param: NextToken}}}");
        assert_eq!(
            url("http://a", &cursor, None, &Page::Cursor("x y".into())).unwrap().as_str(),
            "http://a/o?NextToken=x+y"
        );
    }

    #[test]
    fn a_link_to_another_origin_is_refused_and_a_relative_one_resolved() {
        let link = Pagination::Link {};
        let here = Url::parse("http://erp:8080/api/items?limit=2").unwrap();
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(LINK, v.parse().unwrap());
            h
        };
        let end = |h| PageEnd { url: &here, headers: h, cursor: None, records: 2 };
        let relative = headers("</api/items?page=2>; rel=next");
        let next = next(Some(&link), &Page::First, end(&relative), "http://erp:8080/api").unwrap();
        assert_eq!(next, Some(Page::Url("http://erp:8080/api/items?page=2".into())));
        let elsewhere = headers("<http://evil.example/steal>; rel=next");
        let err = super::next(Some(&link), &Page::First, end(&elsewhere), "http://erp:8080/api").unwrap_err();
        assert!(err.contains("http://evil.example"), "{err}");
    }

    #[test]
    fn a_stored_next_url_is_asked_only_of_the_endpoint_it_came_from() {
        let stored = Page::Url("https://old-erp.example.com/api/items?page=2".into());
        assert!(belongs_to(&stored, "https://old-erp.example.com/api"));
        assert!(!belongs_to(&stored, "https://new-erp.example.com/api"));
        assert!(!belongs_to(&stored, "http://old-erp.example.com/api"));
        assert!(belongs_to(&Page::Cursor("c".into()), "https://new-erp.example.com/api"));
        let trigger = trigger("{interval: 30s, path: /items}");
        let err = url("https://new-erp.example.com/api", &trigger, None, &stored).unwrap_err();
        assert!(err.contains("not on the origin of the Connector's endpoint"), "{err}");
    }

    #[test]
    fn a_next_url_from_the_body_is_followed_on_the_endpoint_only() {
        let next_url = Pagination::NextUrl { field: ".\"@odata.nextLink\"".into() };
        let here = Url::parse("http://erp:8080/d365/salesOrders").unwrap();
        let none = HeaderMap::new();
        let end =
            |cursor: Option<&str>| PageEnd { url: &here, headers: &none, cursor: cursor.map(Into::into), records: 2 };
        let page = next(
            Some(&next_url),
            &Page::First,
            end(Some("http://erp:8080/d365/salesOrders?$skiptoken=x")),
            "http://erp:8080/d365",
        );
        assert_eq!(page.unwrap(), Some(Page::Url("http://erp:8080/d365/salesOrders?$skiptoken=x".into())));
        assert_eq!(next(Some(&next_url), &Page::First, end(None), "http://erp:8080/d365").unwrap(), None);
        assert_eq!(next(Some(&next_url), &Page::First, end(Some("")), "http://erp:8080/d365").unwrap(), None);
        let err = next(Some(&next_url), &Page::First, end(Some("https://elsewhere.example/x")), "http://erp:8080/d365")
            .unwrap_err();
        assert!(err.contains("another origin"), "{err}");
    }

    #[test]
    fn an_offset_page_shorter_than_the_page_size_is_the_last() {
        let offset = Pagination::Offset { param: "o".into(), limit_param: "l".into(), page_size: 2 };
        let here = Url::parse("http://erp/items").unwrap();
        let none = HeaderMap::new();
        let after = |current: Page, records| {
            next(Some(&offset), &current, PageEnd { url: &here, headers: &none, cursor: None, records }, "http://erp")
                .unwrap()
        };
        assert_eq!(after(Page::First, 2), Some(Page::Offset(2)));
        assert_eq!(after(Page::Offset(2), 2), Some(Page::Offset(4)));
        assert_eq!(after(Page::Offset(4), 1), None);
        assert_eq!(after(Page::Offset(4), 0), None);
    }
}
