//! A small token server for the registry with `auth: token` that
//! `scripts/auth-registry-setup.sh` starts on 127.0.0.1:5002. It answers
//! `GET /token?service=..&scope=..` on 127.0.0.1:5003 the way Docker's token servers do: Basic
//! credentials in, an RS256 JWT out (signed with the setup's key through `openssl dgst`, the
//! certificate in the `x5c` header so the registry can check it against its rootcertbundle).
//!
//! Policy: `alice` may pull and push everywhere, `bob` may only pull, `mallory` gets tokens
//! with a broken signature (the registry refuses them), anonymous requests get tokens without
//! any access, and a wrong password gets 401. Every request is counted, so tests can see that
//! a client fetched tokens.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the token server listens; the registry's `realm` names it.
pub const ADDR: &str = "127.0.0.1:5003";
/// The token-auth registry.
pub const REGISTRY: &str = "127.0.0.1:5002";
/// Users and passwords the token server accepts (the htpasswd registry has the first two).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "Alice-pw-7f2e9c"),
    ("bob", "Bob-pw-31d8aa"),
    ("mallory", "Mallory-pw-0b5c11"),
];
const ISSUER: &str = "apptainer-test-token-server";
const SERVICE: &str = "apptainer-test-registry";

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// The signing key and certificate the setup script made.
fn key_dir() -> PathBuf {
    let state =
        std::env::var("APPTAINER_TEST_STATE").unwrap_or_else(|_| "/var/lib/apptainer-test".into());
    Path::new(&state).join("registry-auth").join("token")
}

/// True when the setup made the signing key (the token registry is configured).
pub fn configured() -> bool {
    key_dir().join("key.pem").is_file() && key_dir().join("cert.pem").is_file()
}

/// Starts the server once per test process; Err says why it could not.
pub fn ensure() -> Result<(), String> {
    STARTED
        .get_or_init(|| {
            let listener = TcpListener::bind(ADDR).map_err(|e| format!("binding {ADDR}: {e}"))?;
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let _ = serve(stream);
                    });
                }
            });
            Ok(())
        })
        .clone()
}

/// How many token requests were served so far.
pub fn requests() -> usize {
    REQUESTS.load(Ordering::SeqCst)
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    REQUESTS.fetch_add(1, Ordering::SeqCst);
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/token" {
        return respond(&mut stream, 404, r#"{"error":"not found"}"#);
    }
    let user = match authorization.as_deref().map(basic_user) {
        None => None,
        Some(Some(u)) => Some(u),
        Some(None) => {
            return respond(
                &mut stream,
                401,
                r#"{"details":"wrong username or password"}"#,
            )
        }
    };
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let token = match issue(user, &scopes) {
        Ok(t) => t,
        Err(e) => return respond(&mut stream, 500, &format!("{{\"details\":{e:?}}}")),
    };
    let body = format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#);
    respond(&mut stream, 200, &body)
}

fn respond(stream: &mut TcpStream, code: u16, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 401 {
        head.push_str("WWW-Authenticate: Basic realm=\"token\"\r\n");
    }
    write!(stream, "{head}\r\n{body}")?;
    stream.flush()
}

/// The user whose Basic credentials are right; None for anything else.
fn basic_user(header: &str) -> Option<&'static str> {
    let encoded = header.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    USERS
        .iter()
        .find(|(name, pw)| *name == u && *pw == p)
        .map(|(name, _)| *name)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access a user gets for the requested scopes (`repository:NAME:ACTIONS`).
fn access(user: Option<&str>, scopes: &[String]) -> Vec<serde_json::Value> {
    let Some(user) = user else {
        return Vec::new();
    };
    scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| *a == "pull" || (*a == "push" && user != "bob"))
                .collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect()
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A signed JWT for `user` with access to `scopes`.
fn issue(user: Option<&str>, scopes: &[String]) -> Result<String, String> {
    let cert = std::fs::read_to_string(key_dir().join("cert.pem")).map_err(|e| e.to_string())?;
    let der_b64: String = cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", REQUESTS.load(Ordering::SeqCst)),
        "access": access(user, scopes),
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut signature = sign(signing_input.as_bytes())?;
    if user == Some("mallory") {
        // A token the registry must refuse.
        for b in signature.iter_mut().take(8) {
            *b ^= 0xff;
        }
    }
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

/// RSA-SHA256 with the setup's key, by openssl (no crypto crate in the tests).
fn sign(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key_dir().join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(data)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_decode_and_policy_applies() {
        assert_eq!(
            percent_decode("repository%3Aprivate%2Fx%3Apull%2Cpush"),
            "repository:private/x:pull,push"
        );
        let scopes = vec!["repository:private/x:pull,push".to_string()];
        assert_eq!(
            access(Some("bob"), &scopes)[0]["actions"],
            serde_json::json!(["pull"])
        );
        assert_eq!(
            access(Some("alice"), &scopes)[0]["actions"],
            serde_json::json!(["pull", "push"])
        );
        assert!(access(None, &scopes).is_empty());
    }
}
