//! HTTP for the OCI distribution API on ureq: scheme choice (`--no-https`, plain HTTP for
//! loopback registries as Docker does), the anonymous or credentialed Bearer token dance,
//! Basic auth, and retries with backoff on connection errors, 429 and 5xx.

use super::auth::{parse_challenge, Challenge, CredentialStore, Credentials};
use super::http::{
    describe_transport, error_message, is_certificate_problem, parse_token, token_request,
    untrusted_certificate,
};
pub use super::http::{read_document, MAX_DOCUMENT};
use super::reference::Reference;
use std::sync::Arc;
use std::time::Duration;

const MAX_ATTEMPTS: u32 = 5;
const MAX_RETRY_AFTER: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what}: {detail} (registry {registry})")]
    NotFound {
        what: String,
        registry: String,
        detail: String,
    },
    #[error("{what}: access denied by {registry} ({detail}); the repository may not exist, or it needs credentials (apptainer registry login)")]
    Unauthorized {
        what: String,
        registry: String,
        detail: String,
    },
    #[error("{what}: {registry} refused the credentials of user {user:?} ({detail}); check the username and the password or token")]
    Refused {
        what: String,
        registry: String,
        user: String,
        detail: String,
    },
    #[error("{what}: rate limit reached at {registry} (HTTP 429 Too Many Requests) after {attempts} attempts; wait and retry, or log in to the registry for a higher limit")]
    RateLimited {
        what: String,
        registry: String,
        attempts: u32,
    },
    #[error("{what}: registry {registry} answered HTTP {code} ({detail})")]
    Status {
        what: String,
        registry: String,
        code: u16,
        detail: String,
    },
    #[error("{what}: cannot reach registry {registry}: {detail}")]
    Transport {
        what: String,
        registry: String,
        detail: String,
    },
    #[error("{what}: token request to {realm} failed: {detail}")]
    Token {
        what: String,
        realm: String,
        detail: String,
    },
}

/// Client options that do not depend on the image.
#[derive(Clone)]
pub struct ClientOptions {
    /// Use plain HTTP (`--no-https`, `APPTAINER_NOHTTPS`).
    pub no_https: bool,
    pub credentials: Arc<dyn CredentialStore>,
}

/// A client for one repository on one registry.
pub struct Client {
    agent: ureq::Agent,
    reference: Reference,
    scheme: &'static str,
    /// Whether the scheme may still fall back to plain HTTP (loopback registries only).
    may_downgrade: bool,
    credentials: Credentials,
    authorization: Option<String>,
}

impl Client {
    pub fn new(reference: &Reference, opts: &ClientOptions) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .redirects(5)
            .user_agent(concat!("apptainer-rs/", env!("CARGO_PKG_VERSION")))
            // A proxy cannot reach this machine's loopback registry on our behalf.
            .try_proxy_from_env(!reference.is_loopback())
            .build();
        let credentials = opts.credentials.credentials_for(&reference.registry);
        let authorization = match &credentials {
            Credentials::Bearer(t) => Some(format!("Bearer {t}")),
            _ => None,
        };
        Client {
            agent,
            reference: reference.clone(),
            scheme: if opts.no_https { "http" } else { "https" },
            may_downgrade: !opts.no_https && reference.is_loopback(),
            credentials,
            authorization,
        }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// A client for another thread, sharing the connection pool and carrying over the
    /// scheme and token this one settled on.
    pub fn fork(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            reference: self.reference.clone(),
            scheme: self.scheme,
            may_downgrade: self.may_downgrade,
            credentials: self.credentials.clone(),
            authorization: self.authorization.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/v2/{}/{}",
            self.scheme,
            self.reference.api_host(),
            self.reference.repository,
            path
        )
    }

    /// Sends `method` to `/v2/<repo>/<path>`, authenticating and retrying as needed.
    /// `what` names the object for error messages.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        what: &str,
    ) -> Result<ureq::Response, RegistryError> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.request(method, &self.url(path));
            if !accept.is_empty() {
                req = req.set("Accept", accept);
            }
            if let Some(auth) = &self.authorization {
                req = req.set("Authorization", auth);
            }
            let err = match req.call() {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            match err {
                ureq::Error::Status(401, resp) if !authenticated => {
                    authenticated = true;
                    attempt -= 1;
                    let header = resp.header("www-authenticate").unwrap_or("").to_string();
                    self.authenticate(&header, what)?;
                }
                ureq::Error::Status(401, resp) => return Err(self.denied(what, error_detail(resp))),
                ureq::Error::Status(403, resp) => {
                    return Err(RegistryError::Unauthorized {
                        what: what.into(),
                        registry: self.reference.registry.clone(),
                        detail: error_detail(resp),
                    })
                }
                ureq::Error::Status(404, resp) => {
                    let mut detail = error_detail(resp);
                    if detail == "not found" {
                        // HEAD answers carry no error body.
                        detail = if path.starts_with("manifests/") {
                            "manifest unknown".into()
                        } else {
                            "blob unknown".into()
                        };
                    }
                    return Err(RegistryError::NotFound {
                        what: what.into(),
                        registry: self.reference.registry.clone(),
                        detail,
                    });
                }
                ureq::Error::Status(code, resp) if code == 429 || code >= 500 => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(self.final_status(code, resp, what, attempt));
                    }
                    let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                    crate::warning!(
                        "{what}: registry answered HTTP {code}, retrying in {}s",
                        wait.as_secs()
                    );
                    std::thread::sleep(wait);
                }
                ureq::Error::Status(code, resp) => {
                    return Err(RegistryError::Status {
                        what: what.into(),
                        registry: self.reference.registry.clone(),
                        code,
                        detail: error_detail(resp),
                    })
                }
                ureq::Error::Transport(t) => {
                    let detail = describe_transport(t.to_string(), &t);
                    if is_certificate_problem(&detail) {
                        // An HTTPS server whose certificate we do not trust: never fall
                        // back to plain HTTP, and never retry; say what is wrong.
                        return Err(RegistryError::Transport {
                            what: what.into(),
                            registry: self.reference.registry.clone(),
                            detail: untrusted_certificate(&detail),
                        });
                    }
                    if self.may_downgrade {
                        // Docker treats loopback registries as insecure: plain HTTP is fine
                        // there, and the local test registry speaks nothing else.
                        crate::verbose!(
                            "{}: HTTPS failed ({t}), using plain HTTP",
                            self.reference.registry
                        );
                        self.scheme = "http";
                        self.may_downgrade = false;
                        attempt -= 1;
                        continue;
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(RegistryError::Transport {
                            what: what.into(),
                            registry: self.reference.registry.clone(),
                            detail,
                        });
                    }
                    let wait = backoff(attempt);
                    crate::warning!("{what}: {detail}; retrying in {}s", wait.as_secs());
                    std::thread::sleep(wait);
                }
            }
            // Once a request got through, the scheme is settled.
        }
    }

    /// A 401: the user's credentials were refused, or there were none.
    fn denied(&self, what: &str, detail: String) -> RegistryError {
        match &self.credentials {
            Credentials::Basic { username, .. } => RegistryError::Refused {
                what: what.into(),
                registry: self.reference.registry.clone(),
                user: username.clone(),
                detail,
            },
            _ => RegistryError::Unauthorized {
                what: what.into(),
                registry: self.reference.registry.clone(),
                detail,
            },
        }
    }

    fn final_status(
        &self,
        code: u16,
        resp: ureq::Response,
        what: &str,
        attempts: u32,
    ) -> RegistryError {
        if code == 429 {
            RegistryError::RateLimited {
                what: what.into(),
                registry: self.reference.registry.clone(),
                attempts,
            }
        } else {
            RegistryError::Status {
                what: what.into(),
                registry: self.reference.registry.clone(),
                code,
                detail: error_detail(resp),
            }
        }
    }

    /// Answers a 401: a Bearer challenge gets a token (anonymous, or with Basic credentials);
    /// a Basic challenge gets the user's credentials if there are any.
    fn authenticate(&mut self, header: &str, what: &str) -> Result<(), RegistryError> {
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            what: what.into(),
            registry: self.reference.registry.clone(),
            detail: detail.into(),
        };
        let Some(challenge) = parse_challenge(header) else {
            return Err(unauthorized("authentication required"));
        };
        match challenge.scheme.as_str() {
            "bearer" => {
                let token = self.fetch_token(&challenge, what)?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
            "basic" => match self.credentials.basic_header() {
                Some(h) => {
                    self.authorization = Some(h);
                    Ok(())
                }
                None => Err(unauthorized("authentication required")),
            },
            other => Err(unauthorized(&format!(
                "unsupported authentication scheme {other:?}"
            ))),
        }
    }

    fn fetch_token(&mut self, challenge: &Challenge, what: &str) -> Result<String, RegistryError> {
        let realm = challenge.params.get("realm").cloned().unwrap_or_default();
        let token_err = |detail: String| RegistryError::Token {
            what: what.into(),
            realm: realm.clone(),
            detail,
        };
        let scope = format!("repository:{}:pull", self.reference.repository);
        let req = token_request(&self.agent, challenge, Some(scope), &self.credentials)
            .map_err(&token_err)?;
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) if code == 401 || code == 403 => {
                return Err(self.denied(what, format!("token refused: {}", error_detail(r))))
            }
            Err(e) => return Err(token_err(e.to_string())),
        };
        let body = read_document(resp).map_err(|e| token_err(e.to_string()))?;
        parse_token(&body)
            .map_err(|e| token_err(e.to_string()))?
            .ok_or_else(|| token_err("no token in the answer".into()))
    }
}

/// The registry's error text, else the status ("not found" for a 404).
fn error_detail(resp: ureq::Response) -> String {
    let status = match resp.status() {
        404 => "not found".to_string(),
        code => format!("{code} {}", resp.status_text()),
    };
    error_message(resp).unwrap_or(status)
}

fn retry_after(resp: &ureq::Response) -> Option<Duration> {
    let secs: u64 = resp.header("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER)))
}

/// 1, 2, 4, 8 seconds.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << (attempt - 1).min(3))
}
