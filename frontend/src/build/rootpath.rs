//! Container paths resolved inside a root directory on the host, as the kernel would with
//! that directory as `/`: `..` stops at the root and symlinks (absolute or relative) are
//! followed inside it. Without this, `/bin/x` in an image whose `/bin` is a symlink to
//! `/usr/bin` would be written to the host's `/usr/bin`.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// Symlinks followed before giving up, as Linux's ELOOP limit.
const MAX_LINKS: usize = 40;

/// The host path of container path `path` in `root`, following every symlink that exists
/// along the way, the last component included. Missing components are kept as written.
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." | "" => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let host = join(root, &done).join(&part);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("too many levels of symbolic links in {path:?}");
                }
                let target = std::fs::read_link(&host)?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            _ => done.push(part),
        }
    }
    Ok(join(root, &done))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("/usr/bin", r.join("bin")).unwrap();
        symlink("../../../../etc", r.join("usr/escape")).unwrap();
        assert_eq!(resolve(r, "/bin/x").unwrap(), r.join("usr/bin/x"));
        assert_eq!(
            resolve(r, "/usr/escape/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve(r, "../../x").unwrap(), r.join("x"));
    }

    #[test]
    fn symlink_loops_are_refused() {
        let root = tempfile::tempdir().unwrap();
        symlink("b", root.path().join("a")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        assert!(resolve(root.path(), "/a").is_err());
    }
}
