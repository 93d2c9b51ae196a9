//! HTTP basic authentication for the TCP port, as supervisord checks it: the `username`, and
//! the `password` as written or, when it is `{SHA}` and a hex SHA-1, that digest.

use base64::Engine as _;

/// `[control.http]`'s username and password.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// Whether an `Authorization` header's value lets the client in.
    pub fn admit(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| {
            h.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .map(|(_, v)| v.trim())
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let Some((user, password)) = std::str::from_utf8(&decoded)
            .ok()
            .and_then(|t| t.split_once(':'))
        else {
            return false;
        };
        let user_ok = same(user.as_bytes(), self.username.as_bytes());
        let password_ok = match self.password.strip_prefix("{SHA}") {
            Some(hex) => same(
                sha1_smol::Sha1::from(password).hexdigest().as_bytes(),
                hex.to_ascii_lowercase().as_bytes(),
            ),
            None => same(password.as_bytes(), self.password.as_bytes()),
        };
        user_ok & password_ok
    }
}

/// Equal, in a time that does not tell how much of it matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn plain_and_sha_passwords_as_supervisord_takes_them() {
        let plain = Credentials {
            username: "user".into(),
            password: "123".into(),
        };
        assert!(plain.admit(Some(&header("user:123"))));
        assert!(
            plain.admit(
                Some(&header("user:123"))
                    .map(|h| h.replace("Basic", "basic"))
                    .as_deref()
            )
        );
        assert!(!plain.admit(Some(&header("user:1234"))));
        assert!(!plain.admit(Some(&header("user:12"))));
        assert!(!plain.admit(Some(&header("users:123"))));
        assert!(!plain.admit(Some(&header("user"))));
        assert!(!plain.admit(Some("Bearer x")));
        assert!(!plain.admit(Some("Basic !!!")));
        assert!(!plain.admit(None));
        // `echo -n 123 | sha1sum`, as supervisord's docs make a {SHA} password.
        let sha = Credentials {
            username: "user".into(),
            password: "{SHA}40BD001563085FC35165329EA1FF5C5ECBDBBEEF".into(),
        };
        assert!(sha.admit(Some(&header("user:123"))));
        assert!(!sha.admit(Some(&header(
            "user:{SHA}40BD001563085FC35165329EA1FF5C5ECBDBBEEF"
        ))));
    }
}
