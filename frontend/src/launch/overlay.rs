//! `--overlay DIR|IMAGE[:ro]` and `--writable` on a SIF: the user's layers over the image,
//! checked here for early, friendly errors with the reference's messages. The starter opens
//! each layer again as the caller, decides its kind from the opened file and enforces every
//! rule itself (one writable layer, `enable overlay`, the writer's exclusive lock).

use anyhow::{bail, Context, Result};
use starter::plan::{ImageKind, PlanOverlay};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What an overlay path holds, from its type and magic bytes (never from its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayKind {
    Dir,
    Ext3,
    Squashfs,
}

/// One `--overlay` argument, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySpec {
    pub path: PathBuf,
    pub kind: OverlayKind,
    pub writable: bool,
}

/// Splits `PATH[:ro|:rw]`; a squashfs image is always read-only.
pub fn parse(spec: &str, cwd: &Path) -> Result<OverlaySpec> {
    let (path, ro) = match spec.rsplit_once(':') {
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        _ => (spec, false),
    };
    if path.is_empty() {
        bail!("--overlay {spec:?}: no path given");
    }
    let path = cwd.join(path);
    let meta = std::fs::metadata(&path).with_context(|| format!("overlay {:?}", path.display()))?;
    let kind = if meta.is_dir() {
        OverlayKind::Dir
    } else if meta.is_file() {
        kind_of_image(&path)?
    } else {
        bail!(
            "overlay {:?}: not a directory or an image file",
            path.display()
        );
    };
    Ok(OverlaySpec {
        writable: !ro && kind != OverlayKind::Squashfs,
        path,
        kind,
    })
}

/// ext3 has 0xEF53 at byte 1080 (in its superblock at 1024); squashfs starts with `hsqs`.
fn kind_of_image(path: &Path) -> Result<OverlayKind> {
    let mut head = vec![0u8; 1082];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("overlay {:?}", path.display()))?;
    let n = super::image::read_up_to(&mut f, &mut head)?;
    if n >= 4 && &head[..4] == b"hsqs" {
        Ok(OverlayKind::Squashfs)
    } else if n == head.len() && head[1080..1082] == [0x53, 0xef] {
        Ok(OverlayKind::Ext3)
    } else {
        bail!(
            "overlay {:?}: not a directory, an ext3 image or a squashfs image",
            path.display()
        )
    }
}

/// The inputs of `check`: what the action flags and the image say.
pub struct Request<'a> {
    pub specs: &'a [OverlaySpec],
    pub writable_tmpfs: bool,
    pub writable: bool,
    pub image: &'a Path,
    pub image_kind: ImageKind,
    /// Whether the image is a SIF with an ext3 overlay partition ([`has_overlay_partition`]).
    pub sif_overlay: bool,
    pub uid: u32,
}

/// The reference's rules, checked before anything runs; the Plan's overlays on success.
pub fn check(req: &Request<'_>, conf: &conf::Conf) -> Result<Vec<PlanOverlay>> {
    let sif_writable = req.writable && req.image_kind == ImageKind::Sif;
    if req.specs.is_empty() && !sif_writable {
        return Ok(Vec::new());
    }
    if !conf.enable_overlay.allows_overlay() {
        bail!("overlay is disabled by 'enable overlay = no' in apptainer.conf");
    }
    if sif_writable && !req.sif_overlay {
        bail!(
            "no SIF writable overlay partition found in {}",
            req.image.display()
        );
    }
    let mut writer = sif_writable.then(|| req.image.to_path_buf());
    if req.writable && req.image_kind == ImageKind::Sandbox {
        writer = Some(req.image.to_path_buf());
    }
    for s in req.specs {
        check_allowed(s, conf)?;
        if !s.writable {
            continue;
        }
        if let Some(w) = &writer {
            bail!(
                "you can't specify more than one writable overlay, {} contains a writable overlay, requires to use '--overlay {}:ro'",
                w.display(),
                s.path.display()
            );
        }
        check_writable(s, req.uid)?;
        writer = Some(s.path.clone());
    }
    if let (true, Some(w)) = (req.writable_tmpfs, &writer) {
        bail!(
            "you can't specify --writable-tmpfs with another writable overlay image ({})",
            w.display()
        );
    }
    Ok(req
        .specs
        .iter()
        .map(|s| PlanOverlay {
            path: s.path.clone(),
            writable: s.writable,
        })
        .collect())
}

fn check_allowed(s: &OverlaySpec, conf: &conf::Conf) -> Result<()> {
    let (allowed, what) = match s.kind {
        OverlayKind::Dir => (conf.allow_container_dir, "sandbox"),
        OverlayKind::Ext3 => (conf.allow_container_extfs, "extFS"),
        OverlayKind::Squashfs => (conf.allow_container_squashfs, "squashFS"),
    };
    if !allowed {
        bail!(
            "overlay {:?}: configuration disallows users from running {what} containers",
            s.path.display()
        );
    }
    Ok(())
}

/// The writable layer must be the caller's to write: its own directory, or an image file it
/// may write (the starter's open for writing is the final word).
fn check_writable(s: &OverlaySpec, uid: u32) -> Result<()> {
    let meta =
        std::fs::metadata(&s.path).with_context(|| format!("overlay {:?}", s.path.display()))?;
    if s.kind == OverlayKind::Dir && meta.uid() != uid {
        bail!(
            "overlay {:?}: a writable overlay directory must be owned by you (use '{}:ro')",
            s.path.display(),
            s.path.display()
        );
    }
    if s.kind == OverlayKind::Ext3
        && nix::unistd::access(&s.path, nix::unistd::AccessFlags::W_OK).is_err()
    {
        bail!(
            "overlay {:?}: you cannot write to this image (use '{}:ro')",
            s.path.display(),
            s.path.display()
        );
    }
    Ok(())
}

/// Whether the SIF has an ext3 overlay partition (`apptainer overlay create IMAGE.sif`).
pub fn has_overlay_partition(image: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(image) else {
        return false;
    };
    sif::Image::load(&mut f).is_ok_and(|img| {
        img.descriptors().any(|d| {
            d.partition().is_some_and(|m| {
                m.part_type == sif::PartType::Overlay && m.fs_type == sif::FsType::Ext3
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext3(path: &Path) {
        let mut bytes = vec![0u8; 2048];
        bytes[1080] = 0x53;
        bytes[1081] = 0xef;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn specs_name_their_kind_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("ov")).unwrap();
        ext3(&d.join("o.img"));
        std::fs::write(d.join("s.sqfs"), b"hsqs and more").unwrap();
        std::fs::write(d.join("junk"), b"hello").unwrap();
        let p = |s| parse(s, d);
        assert_eq!(
            p("ov").unwrap(),
            OverlaySpec {
                path: d.join("ov"),
                kind: OverlayKind::Dir,
                writable: true
            }
        );
        assert!(!p("ov:ro").unwrap().writable);
        assert_eq!(p("o.img:rw").unwrap().kind, OverlayKind::Ext3);
        let sq = p("s.sqfs").unwrap();
        assert_eq!((sq.kind, sq.writable), (OverlayKind::Squashfs, false));
        let err = format!("{:#}", p("junk").unwrap_err());
        assert!(
            err.contains("not a directory, an ext3 image or a squashfs image"),
            "{err}"
        );
        assert!(p("missing").is_err());
    }

    #[test]
    fn one_writable_layer_and_no_writable_tmpfs_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("a")).unwrap();
        std::fs::create_dir(d.join("b")).unwrap();
        let uid = nix::unistd::Uid::current().as_raw();
        let specs = [parse("a", d).unwrap(), parse("b", d).unwrap()];
        let req = |specs, writable_tmpfs| Request {
            specs,
            writable_tmpfs,
            writable: false,
            image: Path::new("/x.sif"),
            image_kind: ImageKind::Sif,
            sif_overlay: false,
            uid,
        };
        let conf = conf::Conf::default();
        let err = check(&req(&specs, false), &conf).unwrap_err().to_string();
        assert!(err.contains("more than one writable overlay"), "{err}");
        let err = check(&req(&specs[..1], true), &conf)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--writable-tmpfs"), "{err}");
        let ro = [specs[0].clone(), parse("b:ro", d).unwrap()];
        assert_eq!(check(&req(&ro, false), &conf).unwrap().len(), 2);
        let off = conf::Conf {
            enable_overlay: conf::EnableOverlay::No,
            ..conf::Conf::default()
        };
        assert!(check(&req(&ro, false), &off).is_err());
    }
}
