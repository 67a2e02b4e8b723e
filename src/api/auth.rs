//! Bearer tokens: compared in constant time against every configured token (a wrong token
//! costs as long as a right one, whichever it resembles), never logged.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiToken;

/// The configured token the request carries, if any.
pub(super) fn token<'a>(headers: &HeaderMap, tokens: &'a [ApiToken]) -> Option<&'a ApiToken> {
    let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?.trim();
    // Digests have one length, so the comparison does not leak a token's length either.
    let given = Sha256::digest(given.as_bytes());
    let mut found = None;
    for t in tokens {
        let equal = Sha256::digest(t.token.as_bytes()).ct_eq(&given);
        if bool::from(equal) {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<ApiToken> {
        vec![ApiToken {
            token: "secret-acme".into(),
            projects: vec!["acme".into()],
            write: false,
            operator: None,
            ingest: false,
        }]
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_a_configured_bearer_token_is_accepted() {
        assert!(token(&headers("Bearer secret-acme"), &tokens()).is_some());
        assert!(token(&headers("Bearer secret-acm"), &tokens()).is_none());
        assert!(token(&headers("secret-acme"), &tokens()).is_none(), "the scheme is required");
        assert!(token(&HeaderMap::new(), &tokens()).is_none());
    }
}
