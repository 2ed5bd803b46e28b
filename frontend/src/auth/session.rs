//! An authenticated HTTP session with one registry, for the requests the pull client does not
//! make: checking a login (`GET /v2/`) and ORAS uploads (POST/PUT with bodies, absolute
//! upload locations). It answers a 401 once per request: Basic credentials for a Basic
//! challenge, a token from the realm (credentials sent there, scope `pull` or `pull,push`)
//! for a Bearer one; a later 401 (an expired token) gets a fresh token the same way.
//! Error messages name the registry and never carry a credential.

use crate::registry::auth::{parse_challenge, Challenge, Credentials};
use crate::registry::http::{
    describe_transport, error_detail, is_certificate_problem, parse_token, read_document,
    token_request, untrusted_certificate,
};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "authentication to {registry} failed: wrong username or password (HTTP {code}: {detail})"
    )]
    Rejected {
        registry: String,
        code: u16,
        detail: String,
    },
    #[error("{what}: {registry} requires authentication (HTTP {code}: {detail}); log in with apptainer registry login, or set APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD")]
    NeedsLogin {
        what: String,
        registry: String,
        code: u16,
        detail: String,
    },
    #[error("{what}: {registry} refused the access token from {realm} (HTTP {code}: {detail}); the token is invalid or expired, or these credentials lack access")]
    TokenRefused {
        what: String,
        registry: String,
        realm: String,
        code: u16,
        detail: String,
    },
    #[error("{what}: registry {registry} answered HTTP {code} ({detail})")]
    Status {
        what: String,
        registry: String,
        code: u16,
        detail: String,
    },
    #[error("cannot reach registry {registry}: {detail}")]
    Transport { registry: String, detail: String },
    #[error("token request to {realm} for {registry} failed: {detail}")]
    Token {
        registry: String,
        realm: String,
        detail: String,
    },
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
    #[error("reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl SessionError {
    /// The HTTP status, for callers that treat e.g. 404 as an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            SessionError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A request body; files are reopened for each attempt.
pub enum Body<'a> {
    Empty,
    Bytes {
        data: &'a [u8],
        content_type: &'a str,
    },
    File {
        path: &'a Path,
        content_type: &'a str,
        /// Advanced as the file is sent.
        progress: Option<&'a indicatif::ProgressBar>,
    },
}

/// How often a 429 or 5xx answer is retried (after 2 s, then 4 s).
const BUSY_RETRIES: u32 = 2;

pub struct Session {
    agent: ureq::Agent,
    scheme: &'static str,
    may_downgrade: bool,
    /// `host[:port]` the API is on.
    host: String,
    repository: Option<String>,
    actions: &'static str,
    credentials: Credentials,
    authorization: Option<String>,
    /// The realm of the current Bearer token, if any.
    token_realm: Option<String>,
}

impl Session {
    /// A session with `host`; `repository` scopes tokens, `push` asks for `pull,push`.
    pub fn new(
        host: &str,
        repository: Option<&str>,
        push: bool,
        credentials: Credentials,
        no_https: bool,
    ) -> Session {
        let loopback = is_loopback(host);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .redirects(5)
            .user_agent(concat!("apptainer-rs/", env!("CARGO_PKG_VERSION")))
            .try_proxy_from_env(!loopback)
            .build();
        Session {
            agent,
            scheme: if no_https { "http" } else { "https" },
            may_downgrade: loopback && !no_https,
            host: host.to_string(),
            repository: repository.map(String::from),
            actions: if push { "pull,push" } else { "pull" },
            credentials,
            authorization: None,
            token_realm: None,
        }
    }

    /// `scheme://host/v2/<repository>/<path>` (or `/v2/` without a repository).
    pub fn url(&self, path: &str) -> String {
        match &self.repository {
            Some(r) => format!("{}://{}/v2/{r}/{path}", self.scheme, self.host),
            None => format!("{}://{}/v2/{path}", self.scheme, self.host),
        }
    }

    /// Makes a registry-relative `Location` header absolute.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}://{}{location}", self.scheme, self.host)
        }
    }

    /// Sends one request to `path` (registry-relative) or an absolute URL.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        accept: Option<&str>,
        body: &Body<'_>,
        what: &str,
    ) -> Result<ureq::Response, SessionError> {
        let mut answered_challenge = false;
        let mut busy_answers = 0;
        loop {
            let url = if target.contains("://") {
                target.to_string()
            } else {
                self.url(target)
            };
            let mut req = self.agent.request(method, &url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if let Some(auth) = &self.authorization {
                req = req.set("Authorization", auth);
            }
            let result = match body {
                Body::Empty => req.call(),
                Body::Bytes { data, content_type } => {
                    req.set("Content-Type", content_type).send_bytes(data)
                }
                Body::File {
                    path,
                    content_type,
                    progress,
                } => {
                    let f = std::fs::File::open(path).map_err(|e| SessionError::File {
                        path: path.display().to_string(),
                        source: e,
                    })?;
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    let reader: Box<dyn Read> = match progress {
                        Some(bar) => {
                            bar.set_position(0);
                            Box::new(bar.wrap_read(f))
                        }
                        None => Box::new(f),
                    };
                    req.set("Content-Type", content_type)
                        .set("Content-Length", &len.to_string())
                        .send(reader)
                }
            };
            match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !answered_challenge => {
                    answered_challenge = true;
                    let header = resp.header("www-authenticate").unwrap_or("").to_string();
                    self.answer(&header, what, resp)?;
                }
                Err(ureq::Error::Status(code, resp)) if code == 401 || code == 403 => {
                    return Err(self.denied(code, error_detail(resp), what));
                }
                Err(ureq::Error::Status(code, _))
                    if (code == 429 || code >= 500) && busy_answers < BUSY_RETRIES =>
                {
                    // A busy or briefly failing registry: wait and ask again (bodies are
                    // re-sent from the start; files are reopened).
                    busy_answers += 1;
                    let wait = Duration::from_secs(1 << busy_answers);
                    crate::warning!(
                        "{what}: registry {} answered HTTP {code}, retrying in {}s",
                        self.host,
                        wait.as_secs()
                    );
                    std::thread::sleep(wait);
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(SessionError::Status {
                        what: what.to_string(),
                        registry: self.host.clone(),
                        code,
                        detail: error_detail(resp),
                    })
                }
                Err(ureq::Error::Transport(t)) => {
                    let detail = transport_detail(&t);
                    // Loopback registries may speak plain HTTP (Docker's rule); a certificate
                    // error means the server does speak TLS, and is reported as such.
                    if self.may_downgrade && !detail.contains("certificate") {
                        crate::verbose!("{}: HTTPS failed ({detail}), using plain HTTP", self.host);
                        self.scheme = "http";
                        self.may_downgrade = false;
                        continue;
                    }
                    return Err(SessionError::Transport {
                        registry: self.host.clone(),
                        detail,
                    });
                }
            }
            // The scheme is settled once a server answered.
            self.may_downgrade = false;
        }
    }

    fn denied(&self, code: u16, detail: String, what: &str) -> SessionError {
        if let Some(realm) = &self.token_realm {
            if !matches!(self.credentials, Credentials::Anonymous) {
                return SessionError::TokenRefused {
                    what: what.to_string(),
                    registry: self.host.clone(),
                    realm: realm.clone(),
                    code,
                    detail,
                };
            }
        }
        if matches!(self.credentials, Credentials::Anonymous) {
            SessionError::NeedsLogin {
                what: what.to_string(),
                registry: self.host.clone(),
                code,
                detail,
            }
        } else {
            SessionError::Rejected {
                registry: self.host.clone(),
                code,
                detail,
            }
        }
    }

    /// Sets the `Authorization` for the next attempt from a 401's challenge.
    fn answer(
        &mut self,
        header: &str,
        what: &str,
        resp: ureq::Response,
    ) -> Result<(), SessionError> {
        let challenge = parse_challenge(header).filter(|c| !c.scheme.is_empty());
        match challenge {
            Some(c) if c.scheme == "bearer" => {
                self.token_realm = None;
                let token = self.fetch_token(&c, what)?;
                self.authorization = Some(format!("Bearer {token}"));
                self.token_realm = c.params.get("realm").cloned();
                Ok(())
            }
            Some(c) if c.scheme == "basic" => match self.credentials.basic_header() {
                // Credentials already sent and refused.
                Some(_) if self.authorization.is_some() => {
                    Err(self.denied(401, error_detail(resp), what))
                }
                Some(h) => {
                    self.authorization = Some(h);
                    Ok(())
                }
                None => Err(self.denied(401, error_detail(resp), what)),
            },
            _ => Err(self.denied(401, error_detail(resp), what)),
        }
    }

    fn fetch_token(&mut self, c: &Challenge, what: &str) -> Result<String, SessionError> {
        let realm = c.params.get("realm").cloned().unwrap_or_default();
        let token_err = |detail: String| SessionError::Token {
            registry: self.host.clone(),
            realm: realm.clone(),
            detail,
        };
        let scope = self
            .repository
            .as_ref()
            .map(|r| format!("repository:{r}:{}", self.actions));
        let req = token_request(&self.agent, c, scope, &self.credentials).map_err(&token_err)?;
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) if code == 401 || code == 403 => {
                return Err(self.denied(code, error_detail(r), what));
            }
            Err(ureq::Error::Status(code, r)) => {
                return Err(token_err(format!("HTTP {code} ({})", error_detail(r))))
            }
            Err(ureq::Error::Transport(t)) => return Err(token_err(transport_detail(&t))),
        };
        let body = read_document(resp).map_err(|e| token_err(e.to_string()))?;
        parse_token(&body)
            .map_err(|_| token_err("the answer is not a token".into()))?
            .ok_or_else(|| token_err("no token in the answer".into()))
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

/// A transport error in words, with its causes; certificate problems say so plainly.
fn transport_detail(t: &ureq::Transport) -> String {
    let head = t
        .message()
        .map(String::from)
        .unwrap_or_else(|| t.kind().to_string());
    let msg = describe_transport(head, t);
    if is_certificate_problem(&msg) {
        untrusted_certificate(&msg)
    } else {
        msg
    }
}
