//! SASL PLAIN (RFC 4616) on the server: check one `authzid NUL authcid NUL
//! passwd` message against the configured users.
//!
//! Kafka's rules, which this follows: the authorization id must be empty or
//! equal to the user name (acting as someone else is refused), and user and
//! password must both be non-empty.
//!
//! Invariant: the answer and the work done are the same for an unknown user
//! and a wrong password. Passwords are compared as SHA-256 digests in
//! constant time (so their lengths do not show either), and an unknown user
//! is compared against a dummy password.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Why a PLAIN message did not authenticate anyone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlainError {
    /// The message is not `authzid NUL authcid NUL passwd` in UTF-8 with a
    /// non-empty user and password.
    #[error("invalid SASL/PLAIN message: {0}")]
    Malformed(&'static str),
    /// The client asked to act as another user than the one it logs in as.
    #[error("authentication failed: authorization id differs from the user name")]
    AuthorizationIdMismatch,
    /// Unknown user or wrong password; deliberately not saying which.
    #[error("authentication failed: invalid username or password")]
    AuthenticationFailed,
}

/// Compared against when the user does not exist, so that case costs what
/// a wrong password costs. Its value does not matter: a match on it is
/// discarded.
const DUMMY_PASSWORD: &str = "rivulet-plain-dummy-password";

/// Checks a PLAIN message against `users` (name to clear-text password, as
/// in `sasl.jaas.config`'s `user_NAME` options); returns the user name.
pub fn authenticate(
    message: &[u8],
    users: &BTreeMap<String, String>,
) -> Result<String, PlainError> {
    let text = std::str::from_utf8(message).map_err(|_| PlainError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed(
            "expected authzid NUL username NUL password",
        ));
    };
    if user.is_empty() {
        return Err(PlainError::Malformed("username not specified"));
    }
    if password.is_empty() {
        return Err(PlainError::Malformed("password not specified"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::AuthorizationIdMismatch);
    }
    let (expected, known) = match users.get(user) {
        Some(expected) => (expected.as_str(), Choice::from(1)),
        None => (DUMMY_PASSWORD, Choice::from(0)),
    };
    let matches = Sha256::digest(password.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes()));
    if bool::from(matches & known) {
        Ok(user.to_string())
    } else {
        Err(PlainError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, String> {
        [("admin", "admin-secret"), ("alice", "alice-secret")]
            .into_iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn right_password_authenticates() {
        assert_eq!(
            authenticate(b"\0alice\0alice-secret", &users()),
            Ok("alice".to_string())
        );
        assert_eq!(
            authenticate(b"admin\0admin\0admin-secret", &users()),
            Ok("admin".to_string())
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let wrong = authenticate(b"\0alice\0admin-secret", &users());
        let prefix = authenticate(b"\0alice\0alice-secre", &users());
        let unknown = authenticate(b"\0mallory\0alice-secret", &users());
        assert_eq!(wrong, Err(PlainError::AuthenticationFailed));
        assert_eq!(prefix, Err(PlainError::AuthenticationFailed));
        assert_eq!(unknown, Err(PlainError::AuthenticationFailed));
    }

    #[test]
    fn unknown_user_does_not_match_the_dummy_password() {
        let message = format!("\0nobody\0{DUMMY_PASSWORD}");
        assert_eq!(
            authenticate(message.as_bytes(), &users()),
            Err(PlainError::AuthenticationFailed)
        );
        // Not even when no users are configured at all.
        assert_eq!(
            authenticate(message.as_bytes(), &BTreeMap::new()),
            Err(PlainError::AuthenticationFailed)
        );
    }

    #[test]
    fn another_authorization_id_is_refused() {
        assert_eq!(
            authenticate(b"admin\0alice\0alice-secret", &users()),
            Err(PlainError::AuthorizationIdMismatch)
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        for message in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0alice-secret\0",
            b"\0\0alice-secret",
            b"\0alice\0",
            b"\0al\xffice\0alice-secret",
        ] {
            let result = authenticate(message, &users());
            assert!(
                matches!(result, Err(PlainError::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn errors_say_what_failed_without_naming_the_cause_of_a_failed_login() {
        let text = PlainError::AuthenticationFailed.to_string();
        assert_eq!(text, "authentication failed: invalid username or password");
        assert!(PlainError::Malformed("username not specified")
            .to_string()
            .contains("username not specified"));
    }
}
