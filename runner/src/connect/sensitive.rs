//! Secret header values, shared by the static credentials (`auth`) and OAuth2 tokens
//! (`oauth2`).

use reqwest::header::HeaderValue;

/// A header value holding a secret, marked sensitive (hyper and reqwest then keep it out
/// of their own debug output).
pub(super) fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}
