//! Access tokens a marketplace issues from its token endpoint and checks on every call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Issued access tokens and when each expires.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    issued: HashMap<String, Instant>,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No token, or one this marketplace never issued (or revoked).
    Unknown,
    /// A token past its lifetime.
    Expired,
}

impl TokenStore {
    /// A new random token valid for `lifetime`.
    pub(crate) fn issue(&mut self, prefix: &str, lifetime: Duration) -> String {
        let now = Instant::now();
        // Forget expired tokens so a long run does not grow the map without bound.
        self.issued.retain(|_, expires| *expires > now);
        let token = format!("{prefix}{:032x}", rand::random::<u128>());
        self.issued.insert(token.clone(), now + lifetime);
        token
    }

    /// Whether `token` is a live token.
    pub(crate) fn check(&self, token: Option<&str>) -> Result<(), TokenRefusal> {
        let token = token.ok_or(TokenRefusal::Unknown)?;
        // A map lookup by a random 128-bit token: its timing reveals nothing usable.
        match self.issued.get(token) {
            None => Err(TokenRefusal::Unknown),
            Some(expires) if *expires <= Instant::now() => Err(TokenRefusal::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Makes every issued token expired (a knob: the next call with one is refused).
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for expires in self.issued.values_mut() {
            *expires = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_pass_until_expired() {
        let mut store = TokenStore::default();
        let token = store.issue("Atza|", Duration::from_secs(3600));
        assert!(token.starts_with("Atza|"));
        assert_eq!(store.check(Some(&token)), Ok(()));
        assert_eq!(store.check(Some("Atza|other")), Err(TokenRefusal::Unknown));
        assert_eq!(store.check(None), Err(TokenRefusal::Unknown));
        store.expire_all();
        assert_eq!(store.check(Some(&token)), Err(TokenRefusal::Expired));
    }
}
