//! Registry authentication: parsing `WWW-Authenticate` challenges and the credentials a
//! request may carry. Pulls start anonymous; the `CredentialStore` hook is where user
//! credentials (docker config, `APPTAINER_DOCKER_USERNAME`, `--docker-login`, remote.yaml)
//! plug in, keyed by registry host.

use base64::Engine as _;
use std::collections::HashMap;
use std::fmt;

/// Credentials for one registry.
// Basic and Bearer are built by the credential stores of the registry-login work.
#[allow(dead_code)]
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    /// Username and password (or access token used as password).
    Basic { username: String, password: String },
    /// A bearer token to send as is (e.g. an identity token from a login).
    Bearer(String),
}

impl fmt::Debug for Credentials {
    // Never print secrets, even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// The `Authorization` value for Basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => {
                let raw = format!("{username}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            _ => None,
        }
    }
}

/// Where credentials for a registry come from. `registry` is the host as the user named
/// it (`docker.io` for Docker Hub), with port if any.
pub trait CredentialStore: Send + Sync {
    fn credentials_for(&self, registry: &str) -> Credentials;
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lower-cased).
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Bearer realm="...",service="...",scope="..."` (quoted values may contain commas).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope_parses() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull,push");
    }

    #[test]
    fn basic_challenge_and_header() {
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(creds.basic_header().unwrap(), "Basic dTpw");
        assert!(format!("{creds:?}").contains("redacted"));
    }
}
