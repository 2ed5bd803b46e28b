//! OCI → SIF / sandbox conversion checked against independent tools, through the installed
//! `apptainer build`:
//! - the squashfs of a converted multi-layer image, extracted with `unsquashfs`, has the same
//!   tree (types, modes, owners, link counts, symlink targets) as `umoci unpack` of the same
//!   image (the fixtures' expected listings), plus only the `/.singularity.d` metadata;
//! - a sandbox built as a plain user has the same tree, owned by that user;
//! - the layers that try to write outside the root (`escape` fixtures) change nothing on the
//!   host, for SIF and sandbox builds;
//! - the generated runscript and environment behave as documented when run by the image's
//!   own shell (busybox `sh` in a chroot of the extracted image).

use apptainer_tests::{
    fixture_oci_archive, fixtures, fixtures_built, installed, is_root, require, test_account,
    test_user_exists, user_tempdir, UserCmd,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the conversion adds to every image, beyond what the layers hold.
const ADDED: &[&str] = &[
    ".exec",
    ".run",
    ".shell",
    ".test",
    "singularity",
    "environment",
    "etc/hosts",
    "etc/resolv.conf",
];

fn ready() -> bool {
    is_root() && installed() && test_user_exists() && fixtures_built()
}

/// `apptainer build OUT SRC` (extra args first) in `dir`, as root or as the test user, with
/// the cache under `dir`.
fn build(dir: &Path, as_root: bool, args: &[&str]) -> apptainer_tests::Out {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    let cmd = UserCmd::new(&all)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cachedir"));
    let cmd = if as_root { cmd.root() } else { cmd };
    cmd.run()
}

fn partition_offset(sif: &Path) -> u64 {
    let mut f = std::fs::File::open(sif).unwrap_or_else(|e| panic!("open {}: {e}", sif.display()));
    sif::primary_partition(&mut f)
        .unwrap_or_else(|e| panic!("{}: {e}", sif.display()))
        .offset
}

/// Extracts a SIF's squashfs as root (ownership and modes kept) into `dest`.
fn unsquash(sif: &Path, dest: &Path) {
    let out = Command::new("unsquashfs")
        .args(["-q", "-no-xattrs", "-d"])
        .arg(dest)
        .arg("-o")
        .arg(partition_offset(sif).to_string())
        .arg(sif)
        .output()
        .expect("run unsquashfs");
    assert!(
        out.status.success(),
        "unsquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One line per path as the fixtures' expected listings: `type mode uid:gid nlink path [-> target]`.
fn listing(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args(["-mindepth", "1", "-printf", "%y %#m %U:%G %n %P"])
        .args([
            "-a",
            "(",
            "-type",
            "l",
            "-printf",
            " -> %l\\n",
            "-o",
            "-printf",
            "\\n",
            ")",
        ])
        .current_dir(root)
        .output()
        .expect("run find");
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    lines
}

fn path_of(line: &str) -> &str {
    let rest = line.splitn(5, ' ').nth(4).unwrap_or("");
    rest.split(" -> ").next().unwrap_or(rest)
}

fn expected(name_tag: &str) -> Vec<String> {
    let p = fixtures().join("expected").join(format!("{name_tag}.list"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(String::from)
        .collect()
}

/// Lines of `ours` that the layers do not explain must be conversion metadata, and every
/// line of the independent unpack must be in `ours` (after `normalise`).
fn assert_same_tree(ours: &[String], theirs: &[String], normalise: impl Fn(&str) -> String) {
    let ours_set: BTreeSet<String> = ours.iter().map(|l| normalise(l)).collect();
    let theirs_set: BTreeSet<String> = theirs.iter().map(|l| normalise(l)).collect();
    let missing: Vec<&String> = theirs_set.difference(&ours_set).collect();
    assert!(
        missing.is_empty(),
        "missing or different after conversion: {missing:#?}"
    );
    let extra: Vec<&String> = ours_set
        .difference(&theirs_set)
        .filter(|l| {
            let p = path_of(l);
            !(p.starts_with(".singularity.d") || ADDED.contains(&p))
        })
        .collect();
    assert!(
        extra.is_empty(),
        "entries the layers do not have: {extra:#?}"
    );
}

/// Removes a tree that may hold read-only directories.
fn force_remove(dir: &Path) {
    let _ = Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(dir)
        .status();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn multilayer_sif_matches_an_independent_unpack_of_the_layers() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    let dir = user_tempdir();
    let archive = fixture_oci_archive("multilayer", "latest");
    let src = format!("oci-archive:{}", archive.display());
    build(dir.path(), true, &["out.sif", &src]).assert_success();
    let root = dir.path().join("root");
    unsquash(&dir.path().join("out.sif"), &root);
    // `etc/hosts` and `etc/resolv.conf` are emptied by the conversion, as the reference does;
    // only their presence is compared.
    assert_same_tree(&listing(&root), &expected("multilayer_latest"), |l| {
        l.to_string()
    });
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep.txt")).unwrap(),
        "keep v2\n"
    );
    force_remove(&root);
}

#[test]
fn entrypoint_and_busybox_sifs_match_an_independent_unpack() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    for (name, tag) in [
        ("busybox", "latest"),
        ("entrypoint", "both"),
        ("multiarch", "amd64"),
    ] {
        let dir = user_tempdir();
        let src = format!("oci-archive:{}", fixture_oci_archive(name, tag).display());
        build(dir.path(), true, &["out.sif", &src]).assert_success();
        let root = dir.path().join("root");
        unsquash(&dir.path().join("out.sif"), &root);
        assert_same_tree(&listing(&root), &expected(&format!("{name}_{tag}")), |l| {
            l.to_string()
        });
        force_remove(&root);
    }
}

#[test]
fn sandbox_built_by_a_user_matches_the_unpack_and_belongs_to_the_user() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    let dir = user_tempdir();
    let src = format!(
        "oci-archive:{}",
        fixture_oci_archive("multilayer", "latest").display()
    );
    build(dir.path(), false, &["--sandbox", "sb", &src]).assert_success();
    let account = test_account();
    let owner = format!("{}:{}", account.uid, account.gid);
    let ours = listing(&dir.path().join("sb"));
    for l in &ours {
        assert_eq!(
            l.split(' ').nth(2),
            Some(owner.as_str()),
            "not owned by the user: {l}"
        );
    }
    // Ownership is the user's (no privilege to chown); everything else must match.
    let drop_owner = |l: &str| {
        let mut f: Vec<&str> = l.splitn(5, ' ').collect();
        f[2] = "-";
        f.join(" ")
    };
    assert_same_tree(&ours, &expected("multilayer_latest"), drop_owner);
}

#[test]
fn escaping_layers_change_nothing_outside_the_image() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    let hostname_before = std::fs::read("/etc/hostname").ok();
    for tag in ["traversal", "absolute", "symlink-dir", "hardlink-out"] {
        let dir = user_tempdir();
        let src = format!(
            "oci-archive:{}",
            fixture_oci_archive("escape", tag).display()
        );
        build(dir.path(), false, &["out.sif", &src]).assert_success();
        build(dir.path(), false, &["--sandbox", "sb", &src]).assert_success();
        let root = dir.path().join("root");
        unsquash(&dir.path().join("out.sif"), &root);
        // What the entry names is kept, confined to the image's own root.
        let inside = match tag {
            "traversal" => Some("tmp/apptainer-test-escape-traversal"),
            "absolute" => Some("tmp/apptainer-test-escape-absolute"),
            "symlink-dir" => Some("tmp/apptainer-test-escape-symlink"),
            _ => None,
        };
        if let Some(p) = inside {
            assert!(root.join(p).exists(), "{tag}: {p} not kept inside the SIF");
            assert!(
                dir.path().join("sb").join(p).exists(),
                "{tag}: {p} not kept inside the sandbox"
            );
        }
        force_remove(&root);
    }
    let leaked: Vec<PathBuf> = std::fs::read_dir("/tmp")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("apptainer-test-escape")
        })
        .collect();
    assert!(leaked.is_empty(), "written outside the image: {leaked:?}");
    assert_eq!(std::fs::read("/etc/hostname").ok(), hostname_before);
}

/// Runs the extracted image's `/.singularity.d/runscript` with its own busybox shell.
fn run_runscript(root: &Path, args: &[&str], no_eval: bool) -> String {
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.arg(root)
        .args(["/bin/sh", "/.singularity.d/runscript"])
        .args(args);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOSTVAR", "from-host");
    if no_eval {
        cmd.env("SINGULARITY_NO_EVAL", "1");
    }
    let out = cmd.output().expect("run chroot");
    assert!(
        out.status.success(),
        "runscript {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn runscripts_follow_entrypoint_and_cmd_as_documented() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    // (tag, args, expected [..] lines in default mode, expected with --no-eval)
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("entrypoint-only", &[], "[ep]\n", "[ep]\n"),
        (
            "entrypoint-only",
            &["a b", "$HOSTVAR"],
            "[ep]\n[a b]\n[from-host]\n",
            "[ep]\n[a b]\n[$HOSTVAR]\n",
        ),
        ("cmd-only", &[], "[cmd]\n", "[cmd]\n"),
        ("cmd-only", &["/usr/bin/showargs", "x"], "[x]\n", "[x]\n"),
        (
            "both",
            &[],
            "[ep]\n[default arg]\n[two]\n",
            "[ep]\n[default arg]\n[two]\n",
        ),
        ("both", &["-R"], "[ep]\n[-R]\n", "[ep]\n[-R]\n"),
    ];
    let mut extracted: Vec<(String, tempfile::TempDir)> = Vec::new();
    for (tag, args, eval, literal) in cases {
        if !extracted.iter().any(|(t, _)| t == tag) {
            let dir = user_tempdir();
            let src = format!(
                "oci-archive:{}",
                fixture_oci_archive("entrypoint", tag).display()
            );
            build(dir.path(), true, &["out.sif", &src]).assert_success();
            unsquash(&dir.path().join("out.sif"), &dir.path().join("root"));
            extracted.push((tag.to_string(), dir));
        }
        let root = extracted
            .iter()
            .find(|(t, _)| t == tag)
            .unwrap()
            .1
            .path()
            .join("root");
        assert_eq!(run_runscript(&root, args, false), *eval, "{tag} {args:?}");
        assert_eq!(
            run_runscript(&root, args, true),
            *literal,
            "{tag} {args:?} --no-eval"
        );
    }
}

#[test]
fn image_env_and_labels_reach_the_metadata() {
    require!(ready(), "root, installed apptainer, test user and fixtures");
    let dir = user_tempdir();
    let src = format!(
        "oci-archive:{}",
        fixture_oci_archive("entrypoint", "none").display()
    );
    build(dir.path(), true, &["out.sif", &src]).assert_success();
    let root = dir.path().join("root");
    unsquash(&dir.path().join("out.sif"), &root);
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(["/bin/sh", "-c"])
        .arg(". /.singularity.d/env/10-docker2singularity.sh; printf '%s|' \"$QUOTED\" \"$SPACED\" \"$JAVA_HOME\" \"$EMPTY\" \"$PATH\"")
        .env_clear()
        .env("PATH", "/bin")
        .output()
        .expect("run chroot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "it's \"quoted\" $HOME `x` back\\slash|hello  world|/opt/java||/opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|"
    );
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(".singularity.d/labels.json")).unwrap())
            .unwrap();
    assert_eq!(labels["org.example.version"], "1.0");
    assert_eq!(
        labels["org.example.description"],
        "a test image with spaces"
    );
    assert_eq!(
        labels["org.label-schema.usage.singularity.deffile.bootstrap"],
        "oci-archive"
    );
    assert!(labels["org.label-schema.usage.apptainer.version"].is_string());
}
