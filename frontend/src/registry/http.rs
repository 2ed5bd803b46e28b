//! Pieces of registry HTTP shared by the pull client and the authenticated session: bounded
//! reading of small bodies, the registry's error text, and transport errors in words.

use super::auth::{Challenge, Credentials};
use std::io::Read;

/// Manifests, tokens and error bodies are small; refuse absurd ones instead of buffering.
pub const MAX_DOCUMENT: u64 = 8 << 20;

/// Reads a small response body, refusing more than [`MAX_DOCUMENT`] bytes.
pub fn read_document(resp: ureq::Response) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut body)?;
    if body.len() as u64 > MAX_DOCUMENT {
        return Err(std::io::Error::other("document larger than 8 MiB"));
    }
    Ok(body)
}

/// The registry's error text (`{"errors":[{"code":..,"message":..}]}`), else the status line.
pub fn error_detail(resp: ureq::Response) -> String {
    let status = format!("{} {}", resp.status(), resp.status_text());
    error_message(resp).unwrap_or(status)
}

/// The messages of a registry error body (a code in lower case where the message is empty),
/// or `None` when the body is unreadable or not such a document.
pub fn error_message(resp: ureq::Response) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let body = read_document(resp).ok()?;
    let e = serde_json::from_slice::<Errors>(&body).ok()?;
    if e.errors.is_empty() {
        return None;
    }
    Some(
        e.errors
            .iter()
            .map(|i| {
                if i.message.is_empty() {
                    i.code.to_lowercase()
                } else {
                    i.message.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// `head` followed by the transport error's causes that it does not already say (rustls says
/// why a handshake failed only there).
pub fn describe_transport(head: String, t: &ureq::Transport) -> String {
    let mut msg = head;
    let mut cause = std::error::Error::source(t);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    msg
}

/// Whether a transport error says the server's certificate was not accepted.
pub fn is_certificate_problem(detail: &str) -> bool {
    ["UnknownIssuer", "NotValidForName", "certificate"]
        .iter()
        .any(|w| detail.contains(w))
}

/// A certificate problem in words, with what to do about it.
pub fn untrusted_certificate(detail: &str) -> String {
    format!("TLS certificate not trusted ({detail}); install the registry's CA in the system trust store, or use --no-https only for a plain-HTTP registry")
}

/// The request for a token from a Bearer challenge's realm: the challenge's scope, else
/// `scope`, and the user's credentials if there are any. `Err` says why there can be none.
pub fn token_request(
    agent: &ureq::Agent,
    challenge: &Challenge,
    scope: Option<String>,
    credentials: &Credentials,
) -> Result<ureq::Request, String> {
    let realm = challenge.params.get("realm").map(String::as_str);
    let Some(realm) = realm.filter(|r| r.starts_with("https://") || r.starts_with("http://"))
    else {
        return Err("the registry gave no usable token realm".into());
    };
    let mut req = agent.get(realm);
    if let Some(service) = challenge.params.get("service") {
        req = req.query("service", service);
    }
    if let Some(scope) = challenge.params.get("scope").cloned().or(scope) {
        req = req.query("scope", &scope);
    }
    if let Some(basic) = credentials.basic_header() {
        req = req.set("Authorization", &basic);
    }
    Ok(req)
}

/// The token in a token server's answer (`token`, else `access_token`), `None` if it has
/// none; an error if the answer is not JSON of that shape.
pub fn parse_token(body: &[u8]) -> serde_json::Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: Token = serde_json::from_slice(body)?;
    Ok(t.token.or(t.access_token).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_joins_the_registry_messages() {
        let body = r#"{"errors":[{"code":"DENIED","message":"requested access is denied"},{"code":"UNAUTHORIZED"}]}"#;
        let resp = ureq::Response::new(403, "Forbidden", body).unwrap();
        assert_eq!(
            error_detail(resp),
            "requested access is denied; unauthorized"
        );
    }

    #[test]
    fn error_detail_falls_back_to_the_status_line() {
        let resp = ureq::Response::new(502, "Bad Gateway", "<html>oops</html>").unwrap();
        assert_eq!(error_detail(resp), "502 Bad Gateway");
    }

    #[test]
    fn parse_token_prefers_token_and_refuses_empty_or_non_json() {
        let both = br#"{"token":"a","access_token":"b"}"#;
        assert_eq!(parse_token(both).unwrap().as_deref(), Some("a"));
        let access = br#"{"access_token":"b"}"#;
        assert_eq!(parse_token(access).unwrap().as_deref(), Some("b"));
        assert_eq!(parse_token(br#"{"token":""}"#).unwrap(), None);
        assert!(parse_token(b"not json").is_err());
    }

    #[test]
    fn certificate_problems_are_recognised() {
        assert!(is_certificate_problem(
            "invalid peer certificate: UnknownIssuer"
        ));
        assert!(!is_certificate_problem("Connection refused (os error 111)"));
        assert!(untrusted_certificate("x").starts_with("TLS certificate not trusted (x); "));
    }
}
