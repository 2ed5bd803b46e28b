//! Attacks that need another apptainer.conf than the installed one, run against a second pair
//! of starters built with their conf under the alternative prefix (`make install-alt-starter`,
//! `APPTAINER_TEST_ALT_PREFIX`, default /opt/apptainer-alt). The plain test user feeds them
//! Plans on fd 3 directly. Covered: a tampered conf (T07), `limit container
//! owners/groups/paths` end to end (T09), an image swapped between check and mount under
//! those limits (T20), `allow setuid-mount squashfs = yes/no/iflimited` (T24),
//! `allow container sif/squashfs/dir = no`, and the starter killed with SIGKILL at points
//! all over its start-up (T04, T17).
//!
//! Every test changes the alternative conf through [`AltConf`], which holds this binary's
//! mutex and puts the original file, owner and modes back when dropped, also on a panic.

use apptainer_tests::launch::{pull_fixture, pull_fixture_into, PulledImage};
use apptainer_tests::plans::{assert_one_fatal, run_plan_as};
use apptainer_tests::racer::{build_racer, Racer};
use apptainer_tests::{
    assert_no_leftover_mounts, fixtures_built, installed, mounts_snapshot, require, serial,
    test_account, test_user_exists, Out, TEST_USER,
};
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;

const NEEDS: &str = "the alternative starters (make install-alt-starter), apptainer, fixtures, \
                     the apptest user, gcc and mksquashfs";

/// The prefix of the alternative starters and their conf.
fn alt_prefix() -> PathBuf {
    std::env::var_os("APPTAINER_TEST_ALT_PREFIX")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/apptainer-alt"))
}

fn alt_conf_path() -> PathBuf {
    alt_prefix().join("etc/apptainer/apptainer.conf")
}

/// The alternative setuid starter, if installed setuid root.
fn alt_setuid() -> Option<PathBuf> {
    let p = alt_prefix().join("libexec/apptainer/bin/starter-suid");
    let m = std::fs::metadata(&p).ok()?;
    (m.uid() == 0 && m.mode() & 0o4000 != 0).then_some(p)
}

/// The alternative user-namespace starter.
fn alt_userns() -> Option<PathBuf> {
    Some(alt_prefix().join("libexec/apptainer/bin/starter")).filter(|p| p.is_file())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ready() -> bool {
    alt_setuid().is_some()
        && alt_userns().is_some()
        && installed()
        && fixtures_built()
        && test_user_exists()
        && have("gcc")
        && have("mksquashfs")
}

/// Exclusive use of the alternative conf; restores it (content, owner, modes, directory
/// modes) when dropped, even while unwinding from a failed assertion.
struct AltConf {
    original: Vec<u8>,
    _lock: MutexGuard<'static, ()>,
}

impl AltConf {
    fn take() -> AltConf {
        let lock = serial();
        let original = std::fs::read(alt_conf_path()).expect("read the alternative conf");
        let guard = AltConf {
            original,
            _lock: lock,
        };
        guard.restore();
        guard
    }

    /// The original conf with each `(directive, value)` set (replacing that directive's
    /// line, or appended).
    fn set(&self, directives: &[(&str, &str)]) {
        let mut text = String::from_utf8(self.original.clone()).expect("conf is UTF-8");
        for (key, value) in directives {
            let line = format!("{key} = {value}");
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            match lines
                .iter()
                .position(|l| l.split('=').next().map(str::trim) == Some(*key))
            {
                Some(i) => lines[i] = line,
                None => lines.push(line),
            }
            text = lines.join("\n") + "\n";
        }
        self.write(text.as_bytes());
    }

    /// Replaces the conf's bytes, keeping it root-owned 0644.
    fn write(&self, bytes: &[u8]) {
        let path = alt_conf_path();
        let tmp = path.with_extension("conf.test-tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::os::unix::fs::chown(&tmp, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn restore(&self) {
        let path = alt_conf_path();
        let dir = path.parent().unwrap();
        for d in [dir, dir.parent().unwrap(), &alt_prefix()] {
            std::os::unix::fs::chown(d, Some(0), Some(0)).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let _ = std::fs::remove_file(&path); // it may be a symlink or a FIFO now
        self.write(&self.original);
    }
}

impl Drop for AltConf {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A Plan running `/bin/sh -c script` in `image`, for the setuid starter (`userns` false)
/// or the user-namespace one.
fn plan(image: &Path, kind: &str, userns: bool, script: &str) -> Value {
    json!({
        "version": 1,
        "image": { "path": image, "kind": kind, "writable": false },
        "namespaces": { "user": userns, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": ["proc", "sys", { "dev": { "minimal": true } }],
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/sh", "-c", script], "env": ["PATH=/bin"], "cwd": "/" }
    })
}

/// Runs `starter` as the test user with `plan` on fd 3.
fn run(starter: &Path, plan: &Value) -> Out {
    run_plan_as(TEST_USER, starter, plan)
}

/// Asserts the container ran and printed `want`.
#[track_caller]
fn assert_ran(out: &Out, want: &str) {
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, want, "{out:?}");
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn gid_of_group(name: &str) -> Option<u32> {
    let group = std::fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

fn image() -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", "none")
}

#[test]
fn a_conf_not_owned_by_root_or_writable_by_others_makes_the_setuid_starter_refuse() {
    require!(ready(), NEEDS);
    let conf = AltConf::take();
    let st = alt_setuid().unwrap();
    let img = image();
    let p = plan(&img.sif, "sif", false, "echo ran");
    let before = mounts_snapshot();
    // The untouched conf runs, so each refusal below comes from the tampering alone.
    assert_ran(&run(&st, &p), "ran\n");
    let acct = test_account();
    let path = alt_conf_path();
    let dir = path.parent().unwrap().to_path_buf();
    let prefix = alt_prefix();
    type Tamper = Box<dyn Fn()>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "conf owned by the caller",
            Box::new({
                let path = path.clone();
                move || chown(&path, acct.uid, 0)
            }),
            "not by root",
        ),
        (
            "conf group-writable",
            Box::new({
                let path = path.clone();
                move || std::fs::set_permissions(&path, PermissionsExt::from_mode(0o664)).unwrap()
            }),
            "writable by group or others",
        ),
        (
            "conf other-writable",
            Box::new({
                let path = path.clone();
                move || std::fs::set_permissions(&path, PermissionsExt::from_mode(0o646)).unwrap()
            }),
            "writable by group or others",
        ),
        (
            "parent directory owned by the caller",
            Box::new({
                let dir = dir.clone();
                move || chown(&dir, acct.uid, acct.gid)
            }),
            "not by root",
        ),
        (
            "parent directory group-writable",
            Box::new({
                let dir = dir.clone();
                move || std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o775)).unwrap()
            }),
            "writable by group or others",
        ),
        (
            "the prefix other-writable",
            Box::new({
                let prefix = prefix.clone();
                move || std::fs::set_permissions(&prefix, PermissionsExt::from_mode(0o757)).unwrap()
            }),
            "writable by group or others",
        ),
        (
            "conf a symlink to a root-owned copy",
            Box::new({
                let path = path.clone();
                move || {
                    let copy = path.with_extension("conf.copy");
                    std::fs::copy(&path, &copy).unwrap();
                    std::fs::remove_file(&path).unwrap();
                    std::os::unix::fs::symlink(&copy, &path).unwrap();
                }
            }),
            "symbolic link",
        ),
        (
            "conf a FIFO",
            Box::new({
                let path = path.clone();
                move || {
                    std::fs::remove_file(&path).unwrap();
                    let ok = Command::new("mkfifo").arg(&path).status().unwrap();
                    assert!(ok.success());
                }
            }),
            "not a regular file",
        ),
    ];
    for (what, tamper, needle) in cases {
        tamper();
        let out = run(&st, &p);
        conf.restore();
        eprintln!("{what}: {}", out.stderr.trim());
        assert_one_fatal(&out, needle);
    }
    let _ = std::fs::remove_file(path.with_extension("conf.copy"));
    // Content the parser must refuse rather than fall back to defaults.
    let original = String::from_utf8(conf.original.clone()).unwrap();
    let contents: [(&str, Vec<u8>, &str); 4] = [
        (
            "duplicate key",
            format!("{original}allow setuid = yes\n").into_bytes(),
            "is already set on line",
        ),
        (
            "NUL byte",
            original
                .replace("\nallow setuid = yes\n", "\nallow setuid = y\0es\n")
                .into_bytes(),
            "\"allow setuid\" must be",
        ),
        (
            "unknown key",
            format!("{original}allow everything = yes\n").into_bytes(),
            "unknown directive",
        ),
        ("2 MiB", vec![b'#'; 2 << 20], "larger than the limit"),
    ];
    for (what, bytes, needle) in contents {
        conf.write(&bytes);
        let out = run(&st, &p);
        eprintln!("{what}: {}", out.stderr.trim());
        assert_one_fatal(&out, needle);
    }
    drop(conf);
    assert_no_leftover_mounts(&before);
}

/// A copy of `img`'s SIF at `dst`, owned by `uid:gid`, mode 0644.
fn copy_image(img: &PulledImage, dst: &Path, uid: u32, gid: u32) -> PathBuf {
    copy_image_file(&img.sif, dst, uid, gid)
}

fn user_dir(parent: &Path, name: &str) -> PathBuf {
    let acct = test_account();
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    chown(&d, acct.uid, acct.gid);
    d
}

#[test]
fn limit_container_owners_groups_and_paths_are_enforced_on_the_opened_image() {
    require!(ready(), NEEDS);
    require!(
        gid_of_group("apptblocked").is_some(),
        "group apptblocked (scripts/test-setup.sh)"
    );
    let conf = AltConf::take();
    let img = image();
    let acct = test_account();
    let top = img.dir.path();
    let allowed = user_dir(top, "allowed");
    let sibling = user_dir(top, "allowed2");
    let mine = copy_image(&img, &allowed.join("mine.sif"), acct.uid, acct.gid);
    let roots = copy_image(&img, &allowed.join("roots.sif"), 0, 0);
    let blocked_gid = gid_of_group("apptblocked").unwrap();
    let grouped = copy_image(&img, &allowed.join("grouped.sif"), acct.uid, blocked_gid);
    let outside = copy_image(&img, &sibling.join("x.sif"), acct.uid, acct.gid);
    let link = allowed.join("link.sif");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let dotdot = allowed.join("../allowed2/x.sif");
    let before = mounts_snapshot();
    let starters = [
        (alt_setuid().unwrap(), false),
        (alt_userns().unwrap(), true),
    ];
    for (st, userns) in &starters {
        let go = |image: &Path| run(st, &plan(image, "sif", *userns, "echo ran"));
        conf.set(&[("limit container paths", allowed.to_str().unwrap())]);
        assert_ran(&go(&mine), "ran\n");
        // A sibling sharing the prefix as a string, a symlink out, and `..` out.
        assert_one_fatal(&go(&outside), "outside 'limit container paths'");
        assert_one_fatal(&go(&link), "outside 'limit container paths'");
        assert_one_fatal(&go(&dotdot), "outside 'limit container paths'");
        conf.set(&[("limit container owners", "root")]);
        assert_ran(&go(&roots), "ran\n");
        assert_one_fatal(&go(&mine), "owner not in 'limit container owners'");
        conf.set(&[("limit container groups", "apptblocked")]);
        assert_ran(&go(&grouped), "ran\n");
        assert_one_fatal(&go(&mine), "group not in 'limit container groups'");
    }
    drop(conf);
    assert_no_leftover_mounts(&before);
}

/// Lists, from inside a container that sees the host's /sys and /proc, `loop <file>` for
/// every loop device's backing file and `fuse <file>` for every file a FUSE server
/// (squashfuse_ll, or apptainer-squashfuse, whose name the kernel cuts to 15 bytes) holds
/// open.
const SHOW_BACKING: &str = "for f in /sys/block/loop*/loop/backing_file; do \
    [ -r $f ] && echo \"loop $(cat $f)\"; done 2>/dev/null; \
    for p in /proc/[0-9]*; do case \"$(cat $p/comm 2>/dev/null)\" in squashfuse*|apptainer-squas*) \
    for fd in $p/fd/*; do echo \"fuse $(readlink $fd)\"; done;; esac; done 2>/dev/null; true";

/// How the setuid starter mounted `sif`: "loop" (kernel squashfs) or "fuse" (squashfuse).
fn mounted_with(st: &Path, sif: &Path) -> String {
    let out = run(st, &plan(sif, "sif", false, SHOW_BACKING));
    out.assert_success();
    // A set: squashfuse may hold the file open more than once.
    let ways: std::collections::BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, f)| Path::new(f) == sif)
        .map(|(how, _)| how.to_string())
        .collect();
    assert_eq!(ways.len(), 1, "want one kind of mount of {sif:?}: {out:?}");
    ways.into_iter().next().unwrap()
}

#[test]
fn allow_setuid_mount_squashfs_chooses_between_the_kernel_and_squashfuse() {
    require!(ready(), NEEDS);
    require!(
        apptainer_tests::fuse_available(),
        "FUSE and squashfuse for the user"
    );
    let conf = AltConf::take();
    let img = image();
    let st = alt_setuid().unwrap();
    let before = mounts_snapshot();
    let top = img.dir.path().to_str().unwrap().to_string();
    let cases = [
        (vec![("allow setuid-mount squashfs", "yes")], "loop"),
        (vec![("allow setuid-mount squashfs", "no")], "fuse"),
        (vec![("allow setuid-mount squashfs", "iflimited")], "fuse"),
        (
            vec![
                ("allow setuid-mount squashfs", "iflimited"),
                ("limit container paths", top.as_str()),
            ],
            "loop",
        ),
        (
            vec![
                ("allow setuid-mount squashfs", "no"),
                ("limit container paths", top.as_str()),
            ],
            "fuse",
        ),
    ];
    for (directives, want) in cases {
        conf.set(&directives);
        assert_eq!(mounted_with(&st, &img.sif), want, "with {directives:?}");
        assert_no_leftover_mounts(&before);
    }
}

/// The loop devices whose backing file is `file`, from the host's /sys.
fn loop_devices_backing(file: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end()) == file)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Polls until `done` (the deadline is a safety net, not a measured time).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `shared loop devices`: with `yes`, containers of one image started (three at once) while
/// another runs use that container's read-only loop device; with `no`, each attaches its
/// own. Counted while all four run, from the host.
#[test]
fn shared_loop_devices_serve_running_containers_of_one_image_from_one_device() {
    require!(ready(), NEEDS);
    let conf = AltConf::take();
    let img = image();
    let st = alt_setuid().unwrap();
    let before = mounts_snapshot();
    for (shared, want) in [("yes", 1), ("no", 4)] {
        conf.set(&[
            ("allow setuid-mount squashfs", "yes"),
            ("shared loop devices", shared),
        ]);
        let sync = apptainer_tests::tempdir_for(TEST_USER);
        let d = sync.path().to_path_buf();
        let spawn = |n: usize| {
            let script = format!(
                "touch {0}/ready{n}; while [ ! -e {0}/go ]; do sleep 0.05; done; echo ran",
                d.display()
            );
            let mut p = plan(&img.sif, "sif", false, &script);
            let bind =
                json!({ "bind": { "src": d, "dst": d, "read_only": false, "kind": "user" } });
            p["mounts"].as_array_mut().unwrap().push(bind);
            let st = st.clone();
            std::thread::spawn(move || run(&st, &p))
        };
        let ready = |n: usize| d.join(format!("ready{n}")).exists();
        let mut runs = vec![spawn(0)];
        wait_until("the first container runs", || ready(0));
        runs.extend((1..4).map(spawn));
        wait_until("four containers run", || (0..4).all(ready));
        let devices = loop_devices_backing(&img.sif);
        std::fs::write(d.join("go"), "").unwrap();
        for r in runs {
            assert_ran(&r.join().unwrap(), "ran\n");
        }
        assert_eq!(
            devices.len(),
            want,
            "shared loop devices = {shared}: {devices:?}"
        );
    }
    drop(conf);
    assert_no_leftover_mounts(&before);
}

/// The SIF's squashfs partition alone, as a user-owned bare squashfs image.
fn bare_squashfs(img: &PulledImage) -> PathBuf {
    let mut f = std::fs::File::open(&img.sif).unwrap();
    let part = sif::primary_partition(&mut f).expect("the fixture has a primary partition");
    let bytes = std::fs::read(&img.sif).unwrap();
    let (start, end) = (part.offset as usize, (part.offset + part.size) as usize);
    let out = img.dir.path().join("root.sqfs");
    std::fs::write(&out, &bytes[start..end]).unwrap();
    let acct = test_account();
    chown(&out, acct.uid, acct.gid);
    out
}

#[test]
fn allow_container_no_refuses_that_image_type_in_both_modes() {
    require!(ready(), NEEDS);
    let conf = AltConf::take();
    let img = image();
    let sqfs = bare_squashfs(&img);
    let sandbox = pull_fixture_into(
        TEST_USER,
        img.dir.path(),
        "entrypoint",
        "none",
        "sandbox",
        &["--sandbox"],
    );
    let before = mounts_snapshot();
    let images = [
        ("sif", &img.sif, "allow container sif"),
        ("squashfs", &sqfs, "allow container squashfs"),
        ("sandbox", &sandbox, "allow container dir"),
    ];
    for (st, userns) in [
        (alt_setuid().unwrap(), false),
        (alt_userns().unwrap(), true),
    ] {
        for (kind, image, directive) in &images {
            conf.set(&[]);
            assert_ran(&run(&st, &plan(image, kind, userns, "echo ran")), "ran\n");
            conf.set(&[(directive, "no")]);
            let out = run(&st, &plan(image, kind, userns, "echo ran"));
            assert_one_fatal(&out, "disabled by 'allow container'");
        }
    }
    drop(conf);
    assert_no_leftover_mounts(&before);
}

/// A SIF like the fixture's, plus `/which` containing `name`, owned by the test user.
fn marked_sif(img: &PulledImage, name: &str) -> PathBuf {
    let root = img.dir.path().join(format!("root-{name}"));
    let ok = Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(&root)
        .arg("-o")
        .arg(sif_offset(&img.sif).to_string())
        .arg(&img.sif)
        .status()
        .unwrap();
    assert!(ok.success(), "unsquashfs");
    std::fs::write(root.join("which"), format!("{name}\n")).unwrap();
    let sqfs = img.dir.path().join(format!("{name}.sqfs"));
    let ok = Command::new("mksquashfs")
        .arg(&root)
        .arg(&sqfs)
        .args(["-noappend", "-quiet", "-no-progress"])
        .status()
        .unwrap();
    assert!(ok.success(), "mksquashfs");
    let sif = img.dir.path().join(format!("{name}.sif"));
    let data = sif::write::DataSource::File(std::fs::File::open(&sqfs).unwrap());
    let part = sif::write::DescriptorInput::new(sif::DataType::Partition, data).partition(
        sif::FsType::Squash,
        sif::PartType::PrimSys,
        sif::Arch::Amd64,
    );
    sif::write::create_container(&sif, sif::write::CreateOptions::default(), vec![part])
        .expect("write the SIF");
    let acct = test_account();
    chown(&sif, acct.uid, acct.gid);
    std::fs::set_permissions(&sif, std::fs::Permissions::from_mode(0o644)).unwrap();
    sif
}

fn sif_offset(sif: &Path) -> u64 {
    let mut f = std::fs::File::open(sif).unwrap();
    sif::primary_partition(&mut f).unwrap().offset
}

/// Runs under a racer: at least this many, at most that many.
const RUNS: (u32, u32) = (150, 600);

/// What the runs under the racer saw.
#[derive(Default, Debug)]
struct Tally {
    allowed_ran: u32,
    refused: u32,
}

/// Runs the setuid starter on `path` `min` times, and on until both outcomes were seen a
/// few times (at most `max` runs), asserting each run either ran the allowed image or was
/// refused by `rule`.
fn race_image(
    (st, userns): (&Path, bool),
    path: &Path,
    rule: &str,
    (min, max): (u32, u32),
) -> Tally {
    let mut t = Tally::default();
    let p = plan(path, "sif", userns, "cat /which");
    for run_no in 1..=max {
        let out = run(st, &p);
        assert!(
            !out.stdout.contains("disallowed"),
            "the disallowed image was mounted: {out:?}"
        );
        if out.success() {
            assert_eq!(out.stdout, "allowed\n", "{out:?}");
            t.allowed_ran += 1;
        } else {
            assert_one_fatal(&out, rule);
            t.refused += 1;
        }
        if run_no >= min && t.allowed_ran >= 5 && t.refused >= 5 {
            break;
        }
    }
    t
}

#[test]
fn an_image_swapped_between_check_and_mount_is_never_the_disallowed_one() {
    require!(ready(), NEEDS);
    let conf = AltConf::take();
    let img = image();
    let acct = test_account();
    let top = img.dir.path();
    let racer = build_racer(top);
    let allowed_sif = marked_sif(&img, "allowed");
    let disallowed_sif = marked_sif(&img, "disallowed");
    let before = mounts_snapshot();
    // Owners: a root-owned allowed image and a user-owned disallowed one, exchanged in a
    // directory of the user.
    let swap = user_dir(top, "swap");
    let owned = (
        copy_image_file(&allowed_sif, &swap.join("image.sif"), 0, 0),
        copy_image_file(&disallowed_sif, &swap.join("other.sif"), acct.uid, acct.gid),
    );
    // Paths: inside the allowed directory, the image exchanged with a symlink to an image
    // outside it.
    let inside = user_dir(top, "inside");
    let elsewhere = user_dir(top, "elsewhere");
    let out = copy_image_file(
        &disallowed_sif,
        &elsewhere.join("x.sif"),
        acct.uid,
        acct.gid,
    );
    let linked = (
        copy_image_file(&allowed_sif, &inside.join("image.sif"), acct.uid, acct.gid),
        inside.join("link.sif"),
    );
    std::os::unix::fs::symlink(&out, &linked.1).unwrap();
    let inside = inside.to_str().unwrap();
    let races = [
        (
            ("limit container owners", "root"),
            &owned,
            "owner not in 'limit container owners'",
        ),
        (
            ("limit container paths", inside),
            &linked,
            "outside 'limit container paths'",
        ),
    ];
    // The user-namespace starter is slower to start: fewer runs, still both outcomes.
    let starters = [
        (alt_setuid().unwrap(), false, RUNS),
        (alt_userns().unwrap(), true, (60, 300)),
    ];
    for (st, userns, runs) in &starters {
        for (directive, (a, b), rule) in &races {
            conf.set(&[*directive]);
            let tally = {
                let _r = Racer::start(&racer, a, b);
                race_image((st, *userns), a, rule, *runs)
            };
            eprintln!("{st:?} {directive:?}: {tally:?}");
            assert!(
                tally.allowed_ran > 0 && tally.refused > 0,
                "the racer never changed the outcome: {tally:?}"
            );
        }
    }
    drop(conf);
    assert_no_leftover_mounts(&before);
}

fn copy_image_file(src: &Path, dst: &Path, uid: u32, gid: u32) -> PathBuf {
    std::fs::copy(src, dst).unwrap();
    chown(dst, uid, gid);
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).unwrap();
    dst.to_path_buf()
}

/// Pids of the processes holding `file` open (any fd), seen as root.
fn holders(file: &Path) -> Vec<String> {
    let mut pids = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
        {
            pids.push(proc_dir.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

/// Waits (a few seconds at most) for every process holding `file` to go, then asserts none
/// is left: a killed starter's helpers exit with the mount they serve.
#[track_caller]
fn assert_no_holder_left(file: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !holders(file).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = holders(file);
    assert!(left.is_empty(), "processes still hold {file:?}: {left:?}");
}

#[test]
fn a_starter_killed_at_any_point_leaves_no_mount_loop_device_or_helper_behind() {
    require!(ready(), NEEDS);
    let conf = AltConf::take();
    let img = image();
    let plan_file = img.dir.path().join("kill-plan.json");
    let before = mounts_snapshot();
    let cases = [
        (alt_setuid().unwrap(), false, "yes"),
        (alt_setuid().unwrap(), false, "no"),
        (alt_userns().unwrap(), true, "no"),
    ];
    for (st, userns, kernel) in cases {
        conf.set(&[("allow setuid-mount squashfs", kernel)]);
        let p = plan(&img.sif, "sif", userns, "echo started; exec sleep 5");
        std::fs::write(&plan_file, serde_json::to_vec(&p).unwrap()).unwrap();
        std::fs::set_permissions(&plan_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Kill points spread over the whole start-up, from before the conf is read to after
        // the container process runs: the delay grows until a few kills came after the
        // container printed "started". The delays only pick the points; nothing is timed.
        let (mut early, mut late) = (0, 0);
        for delay_ms in (0..2000).step_by(5) {
            if late >= 3 {
                break;
            }
            let mut child = Command::new("setpriv")
                .args([
                    &format!("--reuid={TEST_USER}"),
                    &format!("--regid={TEST_USER}"),
                    "--init-groups",
                    "--",
                    "/bin/sh",
                    "-c",
                    "exec \"$0\" 3<\"$1\"",
                ])
                .arg(&st)
                .arg(&plan_file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            match String::from_utf8_lossy(&out.stdout).contains("started") {
                true => late += 1,
                false => early += 1,
            }
            assert_no_holder_left(&img.sif);
            assert_no_leftover_mounts(&before);
        }
        eprintln!("{st:?} setuid-mount {kernel}: {early} killed while starting, {late} after");
        assert!(
            early > 0 && late > 0,
            "the kills did not spread over the start-up: {early} before, {late} after"
        );
    }
}
