//! Webhook authentication: HMAC-SHA256 of the raw body (GitHub, Gitea, Forgejo, Gogs) or a shared
//! token (GitLab), compared in constant time.

use std::fmt;

use ring::hmac;

/// The webhook secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Refuses an empty secret: an empty HMAC key would accept anyone who guesses that.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    /// Whether two settings hold the same secret (checked once, at start: not constant-time).
    pub fn same_as(&self, other: &Secret) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a delivery is not authentic. The same answer (401) for all: a caller learns nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no signature header")]
    Missing,
    #[error("the signature is not hex")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    /// A GitLab delivery, and no GitLab token is configured (`HOOKD_GITLAB_TOKEN`).
    #[error("GitLab deliveries are not accepted: HOOKD_GITLAB_TOKEN is not set")]
    NotConfigured,
}

/// Checks a hex HMAC-SHA256 `signature` (with or without `sha256=`) of `body`.
pub fn verify_hmac(secret: &Secret, body: &[u8], signature: Option<&str>) -> Result<(), AuthError> {
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::Missing)?;
    let hex_part = signature.strip_prefix("sha256=").unwrap_or(signature);
    let tag = hex::decode(hex_part).map_err(|_| AuthError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
    hmac::verify(&key, body, &tag).map_err(|_| AuthError::Mismatch)
}

/// Checks GitLab's `X-Gitlab-Token` against the configured token in constant time (both sides go
/// through an HMAC with a key of their own, whose tags are then compared by ring).
pub fn verify_token(secret: &Secret, token: Option<&str>) -> Result<(), AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"hookd token comparison");
    let expected = hmac::sign(&key, &secret.0);
    hmac::verify(&key, token.as_bytes(), expected.as_ref()).map_err(|_| AuthError::Mismatch)
}

/// The hex HMAC-SHA256 of `body` (for tests and tools that sign deliveries).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, body).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn github_documentation_vector() {
        // From GitHub's "Validating webhook deliveries" (hookd/tests/fixtures/SIGNATURE-VECTORS.txt).
        let s = secret("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_hmac(&s, b"Hello, World!", Some(sig)), Ok(()));
        // Gitea, Forgejo and Gogs send the same digest without the prefix.
        assert_eq!(verify_hmac(&s, b"Hello, World!", Some(&sig[7..])), Ok(()));
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            &sig[7..]
        );
    }

    #[test]
    fn adnanh_webhook_vectors() {
        let s = secret("secret");
        let sig = "f417af3a21bd70379b5796d5f013915e7029f62c580fb0f500f59a35a6f04c89";
        assert_eq!(verify_hmac(&s, br#"{"a": "z"}"#, Some(sig)), Ok(()));
        let empty = "f9e66e179b6747ae54108f82f8ade8b3c25d76fd30afde6c395822c530196169";
        assert_eq!(verify_hmac(&s, b"", Some(empty)), Ok(()));
    }

    #[test]
    fn refusals() {
        let s = secret("secret");
        let body = br#"{"a": "z"}"#;
        assert_eq!(verify_hmac(&s, body, None), Err(AuthError::Missing));
        assert_eq!(verify_hmac(&s, body, Some("")), Err(AuthError::Missing));
        assert_eq!(
            verify_hmac(&s, body, Some("sha256=zz")),
            Err(AuthError::Malformed)
        );
        let other = sign(b"other secret", body);
        assert_eq!(
            verify_hmac(&s, body, Some(&other)),
            Err(AuthError::Mismatch)
        );
        let truncated = &sign(b"secret", body)[..32];
        assert_eq!(
            verify_hmac(&s, body, Some(truncated)),
            Err(AuthError::Mismatch)
        );
        assert!(Secret::new(Vec::new()).is_none());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn gitlab_tokens() {
        let s = secret("hookd-test-secret");
        assert_eq!(verify_token(&s, Some("hookd-test-secret")), Ok(()));
        assert_eq!(
            verify_token(&s, Some("hookd-test-secreT")),
            Err(AuthError::Mismatch)
        );
        assert_eq!(verify_token(&s, Some("")), Err(AuthError::Missing));
        assert_eq!(verify_token(&s, None), Err(AuthError::Missing));
    }
}
