//! `%files` and `%files from STAGE`: each `SOURCE [DESTINATION]` line copies what the source
//! pattern matches (glob) into the root, with `cp -fLr` semantics as the reference
//! (symlinks in the source are followed, directories copied whole, parents of the
//! destination made). Destinations are resolved inside the root, so an image's symlinks
//! never send a copy onto the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use super::idmap::SubIdMap;
use super::rootpath;
use crate::deffile::FileCopy;

/// Copies every line of a block. `src_root` is the root of an earlier stage for
/// `%files from`, or None for the host (relative sources are relative to the current
/// directory, as in the reference). `subids`: copy inside the fakeroot mapping (for a
/// stage whose files may belong to subordinate ids).
pub fn copy_all(
    copies: &[FileCopy],
    src_root: Option<&Path>,
    root: &Path,
    file: &str,
    subids: Option<&SubIdMap>,
) -> Result<()> {
    for copy in copies {
        copy_one(copy, src_root, root, subids)
            .map_err(|e| anyhow!("{file}:{}: %files: {e:#}", copy.line))?;
    }
    Ok(())
}

fn copy_one(
    copy: &FileCopy,
    src_root: Option<&Path>,
    root: &Path,
    subids: Option<&SubIdMap>,
) -> Result<()> {
    let sources = match_sources(&copy.src, src_root)?;
    let dst = if copy.dst.is_empty() {
        &copy.src
    } else {
        &copy.dst
    };
    let dest = rootpath::resolve(root, dst)?;
    if sources.len() > 1 || dst.ends_with('/') {
        fs::create_dir_all(&dest).with_context(|| format!("creating {dst:?} in the container"))?;
    } else if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("creating the parent of {dst:?} in the container"))?;
    }
    crate::verbose!("copying {:?} to {:?}", copy.src, dst);
    let mut args: Vec<std::ffi::OsString> = vec!["-fLr".into(), "--".into()];
    args.extend(sources.iter().map(|p| p.as_os_str().to_owned()));
    args.push(dest.as_os_str().to_owned());
    // Landlock keeps the copy beneath the root even where a symlink in the image would
    // lead it out (a directory copied over one the image has).
    const WHAT: &str = "build %files copy";
    let out = match subids {
        Some(map) => {
            crate::landlock::not_applied(WHAT, super::idmap::UNCONFINED);
            map.command("cp", &args).output()
        }
        None => crate::landlock::confined_step(WHAT, &[root], || {
            Command::new("cp").args(&args).output()
        }),
    };
    let out = out.context("running cp")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "copying {:?} to {:?}: {}",
            copy.src,
            dst,
            err.lines().next().unwrap_or("").trim()
        );
    }
    Ok(())
}

/// The paths `src` matches, on the host or inside `src_root`. No match is an error.
fn match_sources(src: &str, src_root: Option<&Path>) -> Result<Vec<PathBuf>> {
    let has_glob = src.contains(['*', '?', '[']);
    let found: Vec<PathBuf> = match src_root {
        Some(root) if !has_glob => {
            let p = rootpath::resolve(root, src)?;
            if fs::symlink_metadata(&p).is_ok() {
                vec![p]
            } else {
                Vec::new()
            }
        }
        Some(root) => {
            let pattern = root.join(src.trim_start_matches('/'));
            let mut v = Vec::new();
            for m in glob_paths(&pattern.to_string_lossy())? {
                // Re-resolve each match inside the stage root: a symlinked parent must not
                // lead out of it.
                let rel = m
                    .strip_prefix(root)
                    .unwrap_or(&m)
                    .to_string_lossy()
                    .into_owned();
                v.push(rootpath::resolve(root, &rel)?);
            }
            v
        }
        None if !has_glob => {
            let p = PathBuf::from(src);
            if fs::symlink_metadata(&p).is_ok() {
                vec![p]
            } else {
                Vec::new()
            }
        }
        None => glob_paths(src)?,
    };
    if found.is_empty() {
        bail!("no such file or directory: {src:?}");
    }
    Ok(found)
}

fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern).map_err(|e| anyhow!("bad pattern {pattern:?}: {e}"))?;
    Ok(paths.flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(src: &str, dst: &str) -> FileCopy {
        FileCopy {
            src: src.into(),
            dst: dst.into(),
            line: 3,
        }
    }

    #[test]
    fn globbed_sources_land_in_the_destination_directory() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(host.path().join("a.txt"), "a").unwrap();
        fs::write(host.path().join("b.txt"), "b").unwrap();
        let pattern = format!("{}/*.txt", host.path().display());
        copy_all(
            &[copy(&pattern, "/opt/data")],
            None,
            root.path(),
            "x.def",
            None,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("opt/data/a.txt")).unwrap(),
            "a"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("opt/data/b.txt")).unwrap(),
            "b"
        );
    }

    #[test]
    fn a_missing_source_names_the_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        let err = copy_all(
            &[copy("/nonexistent/zzz", "")],
            None,
            root.path(),
            "x.def",
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.def:3: %files: no such file or directory: \"/nonexistent/zzz\""
        );
    }

    #[test]
    fn files_from_a_stage_are_read_inside_that_stage() {
        let stage = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(stage.path().join("usr/bin")).unwrap();
        fs::write(stage.path().join("usr/bin/tool"), "t").unwrap();
        std::os::unix::fs::symlink("/usr/bin", stage.path().join("bin")).unwrap();
        copy_all(
            &[copy("/bin/tool", "/opt/tool")],
            Some(stage.path()),
            root.path(),
            "x.def",
            None,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("opt/tool")).unwrap(),
            "t"
        );
    }
}
