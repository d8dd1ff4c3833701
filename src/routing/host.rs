//! Realm host normalization: the `Host` header lower-cased, its port and trailing dot removed,
//! then checked to be a plausible DNS name. The same function validates hosts in the config file,
//! so assignments and requests compare equal.

/// Longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("missing Host header")]
    Missing,
    #[error("invalid Host header")]
    Invalid,
}

/// Normalizes a `Host` header value (or a configured realm host) into the realm key.
///
/// ```
/// use kansas::routing::normalize_host;
/// assert_eq!(normalize_host("Chat.Example.COM:443").unwrap(), "chat.example.com");
/// assert_eq!(normalize_host("example.com.").unwrap(), "example.com");
/// assert!(normalize_host("bad host").is_err());
/// ```
/// Only ASCII letters, digits, `-`, `_` and `.` are allowed, in labels of 1–63 characters that
/// neither start nor end with `-`.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    let name = match raw.rsplit_once(':') {
        Some((name, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HostError::Invalid);
            }
            name
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(HostError::Invalid);
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(HostError::Invalid);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostError::Invalid);
        }
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        let cases = [
            ("chat.example.com", "chat.example.com"),
            ("Chat.Example.COM", "chat.example.com"),
            ("chat.example.com:443", "chat.example.com"),
            ("chat.example.com.", "chat.example.com"),
            ("chat.example.com.:9799", "chat.example.com"),
            ("  localhost ", "localhost"),
            ("127.0.0.1:9799", "127.0.0.1"),
            ("zulip_dev.local", "zulip_dev.local"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses() {
        assert_eq!(normalize_host(""), Err(HostError::Missing));
        let bad = [
            ".",
            "a..b",
            ".example.com",
            "exa mple.com",
            "example.com:",
            "example.com:12345678",
            "example.com:http",
            "[::1]:80",
            "ex/ample.com",
            "ex@ample.com",
            "é.example.com",
            "-",
            "-chat.example.com",
            "chat-.example.com",
        ];
        for input in bad {
            assert_eq!(normalize_host(input), Err(HostError::Invalid), "{input}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(normalize_host(&long_label), Err(HostError::Invalid));
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert_eq!(normalize_host(&long_name), Err(HostError::Invalid));
    }
}
