//! The registry protocol beyond the happy path, against small registries run inside the
//! test on 127.0.0.1 that serve the real busybox fixture image: the anonymous Bearer token
//! flow from `WWW-Authenticate`, retries after 5xx, and a clear refusal after repeated 429.

use apptainer_tests::{
    fixture_layout, fixtures_built, installed, require, test_user_exists, user_tempdir, UserCmd,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Request, &str) -> Response + Send + Sync>;

/// Starts a registry answering with `handler(request, own address)`; returns its address.
fn start(handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let own = addr.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            let own = own.clone();
            std::thread::spawn(move || serve(stream, &handler, &own));
        }
    });
    addr
}

fn serve(stream: TcpStream, handler: &Handler, own: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
        let req = Request {
            method,
            path,
            headers,
        };
        let resp = handler(&req, own);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if req.method != "HEAD" {
            bytes.extend_from_slice(&resp.body);
        }
        if stream.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// The busybox fixture's manifest and blobs, by registry path under `/v2/<repo>/`.
fn fixture_routes(repo: &str) -> HashMap<String, (String, Vec<u8>)> {
    let layout = fixture_layout("busybox");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = &index["manifests"][0];
    let digest = desc["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest = blob(&digest);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut routes = HashMap::new();
    let media = desc["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    routes.insert(
        format!("/v2/{repo}/manifests/latest"),
        (media.clone(), manifest.clone()),
    );
    routes.insert(format!("/v2/{repo}/manifests/{digest}"), (media, manifest));
    let mut blobs = vec![parsed["config"]["digest"].as_str().unwrap().to_string()];
    for l in parsed["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in blobs {
        routes.insert(
            format!("/v2/{repo}/blobs/{d}"),
            ("application/octet-stream".into(), blob(&d)),
        );
    }
    routes
}

fn ok(ct: &str, body: Vec<u8>) -> Response {
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), ct.into())],
        body,
    }
}

fn status(code: u16, headers: Vec<(String, String)>) -> Response {
    Response {
        status: code,
        headers,
        body: b"{}".to_vec(),
    }
}

fn pull(addr: &str, repo: &str) -> (apptainer_tests::Out, apptainer_tests::TempDir) {
    let tmp = user_tempdir();
    let out = UserCmd::new(&[
        "pull",
        "--no-https",
        "out.sif",
        &format!("docker://{addr}/{repo}:latest"),
    ])
    .cwd(tmp.path())
    .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
    .run();
    (out, tmp)
}

fn ready() -> bool {
    installed() && test_user_exists() && fixtures_built()
}

#[test]
fn anonymous_bearer_token_flow_is_followed() {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    let routes = fixture_routes("auth/img");
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let handler: Handler = Arc::new(move |req, own| {
        if req.path.starts_with("/token?") {
            // The scope and service from the challenge must come back to the realm.
            if req.path.contains("scope=repository%3Aauth%2Fimg%3Apull")
                && req.path.contains("service=test-registry")
            {
                counter.fetch_add(1, Ordering::SeqCst);
                return ok("application/json", br#"{"token":"tok-123"}"#.to_vec());
            }
            return status(400, vec![]);
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-123") {
            let challenge = format!(
                r#"Bearer realm="http://{own}/token",service="test-registry",scope="repository:auth/img:pull""#
            );
            return status(401, vec![("WWW-Authenticate".into(), challenge)]);
        }
        match routes.get(&req.path) {
            Some((ct, body)) => ok(ct, body.clone()),
            None => status(404, vec![]),
        }
    });
    let addr = start(handler);
    let (out, tmp) = pull(&addr, "auth/img");
    out.assert_success();
    assert!(tmp.path().join("out.sif").is_file());
    assert!(
        token_requests.load(Ordering::SeqCst) >= 1,
        "no token was requested"
    );
}

#[test]
fn server_errors_are_retried() {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    let routes = fixture_routes("flaky/img");
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = failures.clone();
    let handler: Handler = Arc::new(move |req, _| {
        // The first two manifest requests fail with 503.
        if req.path.contains("/manifests/") && seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return status(503, vec![("Retry-After".into(), "0".into())]);
        }
        match routes.get(&req.path) {
            Some((ct, body)) => ok(ct, body.clone()),
            None => status(if req.path == "/v2/" { 200 } else { 404 }, vec![]),
        }
    });
    let addr = start(handler);
    let (out, tmp) = pull(&addr, "flaky/img");
    out.assert_success();
    assert!(out.stderr.contains("HTTP 503, retrying"), "{out:?}");
    assert!(tmp.path().join("out.sif").is_file());
}

#[test]
fn persistent_rate_limiting_gives_a_clear_error() {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let handler: Handler = Arc::new(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
        status(429, vec![("Retry-After".into(), "0".into())])
    });
    let addr = start(handler);
    let (out, tmp) = pull(&addr, "busy/img");
    out.assert_failure();
    let fatal: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("FATAL:"))
        .collect();
    assert_eq!(fatal.len(), 1, "{out:?}");
    assert!(
        fatal[0].contains("rate limit") && fatal[0].contains("429"),
        "{out:?}"
    );
    assert!(
        hits.load(Ordering::SeqCst) > 1,
        "the request was not retried"
    );
    assert!(!tmp.path().join("out.sif").exists());
}

#[test]
fn a_sif_artifact_is_refused_with_a_hint_to_use_oras() {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    let hex = "0".repeat(64);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.sylabs.sif.config.v1+json","digest":"sha256:{hex}","size":2}},"layers":[{{"mediaType":"application/vnd.sylabs.sif.layer.v1.sif","digest":"sha256:{hex}","size":1024}}]}}"#
    );
    let handler: Handler = Arc::new(move |req, _| {
        if req.path.ends_with("/manifests/latest") {
            return ok(
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone().into_bytes(),
            );
        }
        status(if req.path == "/v2/" { 200 } else { 404 }, vec![])
    });
    let addr = start(handler);
    let (out, tmp) = pull(&addr, "sif/artifact");
    out.assert_failure();
    let fatal: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("FATAL:"))
        .collect();
    assert_eq!(fatal.len(), 1, "{out:?}");
    assert!(
        fatal[0].contains("try changing the protocol to oras://"),
        "{out:?}"
    );
    assert!(!tmp.path().join("out.sif").exists());
}

#[test]
fn a_cached_digest_pinned_image_needs_no_registry_request() {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    let routes = fixture_routes("pinned/img");
    let digest = routes
        .keys()
        .find_map(|k| k.strip_prefix("/v2/pinned/img/manifests/sha256:"))
        .map(|hex| format!("sha256:{hex}"))
        .expect("manifest by digest");
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let handler: Handler = Arc::new(move |req, _| {
        count.fetch_add(1, Ordering::SeqCst);
        match routes.get(&req.path) {
            Some((ct, body)) => ok(ct, body.clone()),
            None => status(if req.path == "/v2/" { 200 } else { 404 }, vec![]),
        }
    });
    let addr = start(handler);
    let tmp = user_tempdir();
    let reference = format!("docker://{addr}/pinned/img@{digest}");
    let run = |name: &str| {
        UserCmd::new(&["pull", "--no-https", name, &reference])
            .cwd(tmp.path())
            .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
            .run()
    };
    run("first.sif").assert_success();
    assert!(requests.load(Ordering::SeqCst) > 0);
    requests.store(0, Ordering::SeqCst);
    let second = run("second.sif");
    second.assert_success();
    assert!(
        second.stderr.contains("Using cached SIF image"),
        "{second:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "the registry was asked again"
    );
}
