//! `docker://` image references: `[host[:port]/]repo[:tag][@sha256:<hex>]`, normalised as
//! Docker does (`docker.io` default registry, `library/` for one-component names).

use crate::cache::Digest;
use std::fmt;

/// The registry that `docker.io` names; its API lives on another host.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as the user names it (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {0:?}: empty")]
    Empty(String),
    #[error("invalid image reference {0:?}: repository names must be lower-case letters, digits and separators (._-/)")]
    Repository(String),
    #[error("invalid image reference {0:?}: bad tag")]
    Tag(String),
    #[error("invalid image reference {0:?}: bad digest (expected sha256:<64 hex digits>)")]
    Digest(String),
    #[error("invalid image reference {0:?}: bad registry host")]
    Host(String),
}

impl Reference {
    /// Parses the part after `docker://` (a leading `//` is also accepted).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let s = input.trim_start_matches("//");
        if s.is_empty() {
            return Err(ReferenceError::Empty(input.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|_| ReferenceError::Digest(input.to_string()))?),
            ),
            None => (s, None),
        };
        let (rest, tag) = split_tag(rest);
        let (registry, repository) = split_registry(rest);
        let mut registry = registry.unwrap_or(DOCKER_HUB).to_string();
        if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            registry = DOCKER_HUB.to_string();
        }
        let mut repository = repository.to_string();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if !valid_host(&registry) {
            return Err(ReferenceError::Host(input.to_string()));
        }
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository(input.to_string()));
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag(input.to_string()));
            }
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the distribution API is reached on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What `/v2/<repo>/manifests/<this>` asks for: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The last path component, used for default output names.
    pub fn short_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// True for registries on the loopback interface, which Docker reaches over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.registry);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A `:tag` only counts after the last `/` (before it, `:` is a port).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// The first component names a registry if it has a `.` or `:` or is `localhost`.
fn split_registry(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, s),
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults_apply() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("//sylabsio/lolcow:3.7").unwrap();
        assert_eq!(r.repository, "sylabsio/lolcow");
        assert_eq!(r.tag.as_deref(), Some("3.7"));
        assert_eq!(r.short_name(), "lolcow");
    }

    #[test]
    fn registry_with_port_and_digest_parse() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("127.0.0.1:5000/test/busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "test/busybox");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        assert!(r.is_loopback());
        let r = Reference::parse("localhost/x:1").unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.repository, "x");
    }

    #[test]
    fn malformed_references_are_refused() {
        assert!(matches!(
            Reference::parse(""),
            Err(ReferenceError::Empty(_))
        ));
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(
            Reference::parse("alpine:"),
            Err(ReferenceError::Tag(_))
        ));
        assert!(matches!(
            Reference::parse("alpine@sha256:zz"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(
            Reference::parse("alpine:a b"),
            Err(ReferenceError::Tag(_))
        ));
    }
}
