//! `--bind src[:dst[:opts]]` and `--mount type=bind,src=..,dst=..[,ro]` specifications, parsed
//! into one `BindSpec` each. Only the syntax is checked here; whether the source exists and
//! the caller may use it is checked when the mount list is built (and again by the starter).

use anyhow::{bail, Result};
use std::path::PathBuf;

/// One user-requested bind mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec {
    /// Host path as typed (made absolute later, against the current directory).
    pub src: PathBuf,
    /// Absolute path in the container.
    pub dst: String,
    pub read_only: bool,
}

/// Parses `--bind` values that clap already split on `,`. A piece that is only an option
/// (`ro`, `rw`, `image-src=..`, `id=..`) belongs to the bind before it, as in
/// `-B /data:/data:ro,/scratch`.
pub fn parse_bind_list(values: &[String]) -> Result<Vec<BindSpec>> {
    let mut joined: Vec<String> = Vec::new();
    for piece in values.iter().flat_map(|v| v.split(',')) {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        match joined.last_mut() {
            Some(prev) if is_bind_option(piece) => {
                prev.push(',');
                prev.push_str(piece);
            }
            _ => joined.push(piece.to_string()),
        }
    }
    joined.iter().map(|s| parse_bind(s)).collect()
}

fn is_bind_option(piece: &str) -> bool {
    matches!(piece, "ro" | "rw") || piece.starts_with("image-src=") || piece.starts_with("id=")
}

/// Parses one `src[:dst[:opt,opt]]`.
pub fn parse_bind(spec: &str) -> Result<BindSpec> {
    let mut parts = spec.splitn(3, ':');
    let src = parts.next().unwrap_or_default();
    if src.is_empty() {
        bail!("bind spec {spec:?}: empty source path");
    }
    let dst = match parts.next() {
        None | Some("") => src.to_string(),
        Some(d) => d.to_string(),
    };
    let mut read_only = false;
    if let Some(opts) = parts.next() {
        for opt in opts.split(',') {
            match opt {
                "ro" => read_only = true,
                "rw" | "" => read_only = false,
                o if o.starts_with("image-src=") || o.starts_with("id=") => {
                    bail!(
                        "bind spec {spec:?}: image binds ({o}) are not supported by this build yet"
                    )
                }
                o => bail!("bind spec {spec:?}: unknown option {o:?} (expected ro or rw)"),
            }
        }
    }
    check_destination(spec, &dst)?;
    Ok(BindSpec {
        src: PathBuf::from(src),
        dst,
        read_only,
    })
}

/// Parses `--mount` values; each is one comma-separated key=value specification.
pub fn parse_mount_list(values: &[String]) -> Result<Vec<BindSpec>> {
    values.iter().map(|v| parse_mount(v)).collect()
}

/// Parses one `type=bind,source=..,destination=..[,ro|readonly]` (Docker's `--mount` syntax).
pub fn parse_mount(spec: &str) -> Result<BindSpec> {
    let (mut kind, mut src, mut dst, mut read_only) = (None, None, None, false);
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => kind = Some(value.to_string()),
            "source" | "src" => src = Some(value.to_string()),
            "destination" | "dst" | "target" => dst = Some(value.to_string()),
            "ro" | "readonly" => read_only = value.is_empty() || value == "true",
            "bind-propagation" => {}
            "image-src" | "id" => {
                bail!(
                    "mount spec {spec:?}: image binds ({key}) are not supported by this build yet"
                )
            }
            _ => bail!("mount spec {spec:?}: unknown field {key:?}"),
        }
    }
    match kind.as_deref() {
        Some("bind") => {}
        Some(other) => bail!("mount spec {spec:?}: type {other:?} is not supported (only bind)"),
        None => bail!("mount spec {spec:?}: missing type=bind"),
    }
    let Some(src) = src.filter(|s| !s.is_empty()) else {
        bail!("mount spec {spec:?}: missing source");
    };
    let Some(dst) = dst.filter(|s| !s.is_empty()) else {
        bail!("mount spec {spec:?}: missing destination");
    };
    check_destination(spec, &dst)?;
    Ok(BindSpec {
        src: PathBuf::from(src),
        dst,
        read_only,
    })
}

fn check_destination(spec: &str, dst: &str) -> Result<()> {
    if !dst.starts_with('/') {
        bail!("bind spec {spec:?}: destination {dst:?} must be an absolute path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(src: &str, dst: &str, ro: bool) -> BindSpec {
        BindSpec {
            src: src.into(),
            dst: dst.into(),
            read_only: ro,
        }
    }

    #[test]
    fn bind_lists_keep_options_with_their_bind() {
        let got = parse_bind_list(&[
            "/data:/d:ro".into(),
            "/scratch".into(),
            "/x:/y,/z:/w:rw".into(),
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                b("/data", "/d", true),
                b("/scratch", "/scratch", false),
                b("/x", "/y", false),
                b("/z", "/w", false)
            ]
        );
    }

    #[test]
    fn bind_rejects_unknown_options_and_relative_destinations() {
        assert!(parse_bind("/a:/b:rx").is_err());
        assert!(parse_bind("/a:b").is_err());
        assert!(parse_bind(":/b").is_err());
    }

    #[test]
    fn mount_spec_accepts_docker_spelling() {
        assert_eq!(
            parse_mount("type=bind,source=/opt,destination=/hostopt,ro").unwrap(),
            b("/opt", "/hostopt", true)
        );
        assert_eq!(
            parse_mount("type=bind,src=/a,dst=/b").unwrap(),
            b("/a", "/b", false)
        );
        assert!(parse_mount("type=tmpfs,dst=/b").is_err());
        assert!(parse_mount("type=bind,src=/a").is_err());
    }
}
