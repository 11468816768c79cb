//! The `Authorization: Basic` header (RFC 7617): base64 of `user:password`.

use base64::Engine;

/// Credentials as the client sent them. The password is bytes (RFC 7617 leaves its
/// charset to the client; browsers send UTF-8); the user must be UTF-8, as it goes to
/// REMOTE_USER, the access log and `$HTTP["remote-user"]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: .. }}", self.user)
    }
}

/// Why a header gives no credentials (each answered 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicError {
    NotBasic,
    BadBase64,
    NoColon,
    UserNotUtf8,
    /// A control character in the user name (it would reach logs and environments).
    BadUser,
}

impl std::fmt::Display for BasicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BasicError::NotBasic => "not Basic credentials",
            BasicError::BadBase64 => "invalid base64 in Basic credentials",
            BasicError::NoColon => "Basic credentials without ':'",
            BasicError::UserNotUtf8 => "user name is not UTF-8",
            BasicError::BadUser => "control character in the user name",
        })
    }
}

/// Longest header value looked at; longer credentials are refused without decoding.
const MAX_VALUE: usize = 4096;

/// Parses one `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, BasicError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(BasicError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::NotBasic);
    }
    let token = rest.trim();
    if token.len() > MAX_VALUE {
        return Err(BasicError::BadBase64);
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| BasicError::BadBase64)?;
    let colon = raw.iter().position(|&b| b == b':').ok_or(BasicError::NoColon)?;
    let user = std::str::from_utf8(&raw[..colon]).map_err(|_| BasicError::UserNotUtf8)?;
    if user.chars().any(char::is_control) {
        return Err(BasicError::BadUser);
    }
    Ok(Credentials { user: user.to_string(), password: raw[colon + 1..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_table() {
        let c = |u: &str, p: &[u8]| Ok(Credentials { user: u.into(), password: p.to_vec() });
        assert_eq!(parse_authorization("Basic YWxpY2U6czNjcmV0"), c("alice", b"s3cret"));
        assert_eq!(parse_authorization("basic   YWxpY2U6czNjcmV0 "), c("alice", b"s3cret"));
        assert_eq!(parse_authorization("Basic YWxpY2U6YTpi"), c("alice", b"a:b"));
        assert_eq!(parse_authorization("Basic OnB3"), c("", b"pw"));
        assert_eq!(parse_authorization("Bearer abc"), Err(BasicError::NotBasic));
        assert_eq!(parse_authorization("Basic"), Err(BasicError::NotBasic));
        assert_eq!(parse_authorization("Basic !!!"), Err(BasicError::BadBase64));
        assert_eq!(parse_authorization("Basic YWxpY2U="), Err(BasicError::NoColon));
        assert_eq!(parse_authorization("Basic /3g6eQ=="), Err(BasicError::UserNotUtf8));
        assert_eq!(parse_authorization("Basic YQph"), Err(BasicError::NoColon));
        assert_eq!(parse_authorization("Basic YQo6eA=="), Err(BasicError::BadUser));
        assert!(!format!("{:?}", parse_authorization("Basic YWxpY2U6czNjcmV0")).contains("s3cret"));
    }

    /// Arbitrary header values: a value or an error, never a panic.
    #[test]
    fn arbitrary_values_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"Basic YWxpY2U6=+/:\x00 \t";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let v: String = (0..len).map(|i| char::from(alphabet[((x >> (i % 59)) as usize + i) % alphabet.len()])).collect();
            if let Ok(c) = parse_authorization(&v) {
                assert!(!c.user.contains(':'));
            }
        }
    }
}
