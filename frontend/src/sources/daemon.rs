//! `docker-daemon:IMAGE:TAG`: asks the Docker Engine API over its unix socket
//! (`/var/run/docker.sock`, or `DOCKER_HOST=unix://...`, or `--docker-host`) for
//! `GET /images/{name}/get`, a `docker save` stream read as a docker archive.

use super::docker_archive;
use crate::cache::Cache;
use crate::oci::FetchedImage;
use crate::registry::Platform;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The daemon's socket from `host` (`unix:///path`), else the default.
pub fn socket_path(host: Option<&str>) -> Result<PathBuf> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => bail!("unsupported docker host {h:?}: only unix:// sockets are supported"),
        },
    }
}

/// Fetches `name` (which must include its tag) from the daemon at `host`.
pub fn fetch(
    name: &str,
    host: Option<&str>,
    platform: &Platform,
    cache: &Cache,
) -> Result<FetchedImage> {
    let label = format!("docker-daemon:{name}");
    let last = name.rsplit('/').next().unwrap_or(name);
    if !last.contains(':') && !name.contains('@') {
        bail!("{label}: the tag must be included (docker-daemon:IMAGE:TAG)");
    }
    let socket = socket_path(host)?;
    let mut stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "{label}: cannot connect to the docker daemon at {}",
            socket.display()
        )
    })?;
    // HTTP/1.0 so the daemon sends the body unchunked and closes the connection at its end.
    write!(
        stream,
        "GET /images/{}/get HTTP/1.0\r\nHost: docker\r\nUser-Agent: apptainer-rs\r\n\r\n",
        encode_path(name)
    )
    .with_context(|| format!("{label}: writing to the docker daemon"))?;
    let mut reader = BufReader::new(stream);
    let status =
        read_head(&mut reader).with_context(|| format!("{label}: reading the daemon's answer"))?;
    if status != 200 {
        let mut body = String::new();
        reader.take(64 * 1024).read_to_string(&mut body).ok();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| body.trim().to_string());
        bail!("{label}: docker daemon answered HTTP {status}: {msg}");
    }
    docker_archive::fetch(reader, &label, None, platform, cache)
}

/// Reads the status line and headers; returns the status code.
fn read_head(reader: &mut impl BufRead) -> Result<u16> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {:?}", line.trim()))?;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            bail!("the daemon sent a chunked answer to an HTTP/1.0 request");
        }
    }
    Ok(status)
}

/// Percent-encodes what may not appear raw in a path (names hold `/`, `:`, `@`).
fn encode_path(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' | b':' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_must_be_a_unix_socket() {
        assert_eq!(socket_path(None).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            socket_path(Some("unix:///run/d.sock")).unwrap(),
            PathBuf::from("/run/d.sock")
        );
        assert!(socket_path(Some("tcp://1.2.3.4:2375")).is_err());
    }

    #[test]
    fn status_and_headers_are_read() {
        let mut r = &b"HTTP/1.0 404 Not Found\r\nContent-Type: x\r\n\r\nbody"[..];
        assert_eq!(read_head(&mut r).unwrap(), 404);
        assert_eq!(r, b"body");
    }
}
