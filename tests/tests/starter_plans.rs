//! The installed starters fed hand-written Plans on fd 3 by the unprivileged test user, with
//! no frontend in between: hostile Plans are refused with one `FATAL:` line and leave no
//! mount or loop device behind; valid Plans run a SIF whose process has the caller's ids, no
//! capabilities, no_new_privs, only fds 0-2, and gains nothing from setuid files, device
//! nodes, symlinked bind destinations, LD_PRELOAD or TIOCSTI. Both install modes.

use apptainer_tests::launch::Mode;
use apptainer_tests::{
    account, assert_no_leftover_mounts, mounts_snapshot, require, serial, setuid_starter,
    starter_bin, tempdir_for, test_account, test_user_exists, user_tempdir, Out, TEST_USER,
    TEST_USER2,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Small C programs compiled statically into the test image.
const SHOW_EUID_C: &str = "#include <stdio.h>\n#include <unistd.h>\n#include <fcntl.h>\n\
int main(void){printf(\"euid=%d\\nopen fds above 2:\",(int)geteuid());\
for(int fd=3;fd<4096;fd++)if(fcntl(fd,F_GETFD)!=-1)printf(\" %d\",fd);printf(\"\\n\");return 0;}\n";
/// Also tries the new mount API (open_tree of "/"), which the container must not have.
const TIOCSTI_C: &str = "#define _GNU_SOURCE\n#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n\
#include <fcntl.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n#include <sys/ioctl.h>\n\
int main(void){char c='x';unsigned long cmds[2]={TIOCSTI,TIOCSTI|(1UL<<32)};\
for(int i=0;i<2;i++){errno=0;int r=ioctl(0,cmds[i],&c);printf(\"tiocsti=%d errno=%s\\n\",r,strerrorname_np(errno));}\
errno=0;long t=syscall(SYS_open_tree,AT_FDCWD,\"/\",1);printf(\"open_tree=%ld errno=%s\\n\",t,strerrorname_np(errno));return 0;}\n";
const PRELOAD_C: &str = "#define _GNU_SOURCE\n#include <stdio.h>\n#include <errno.h>\n\
__attribute__((constructor)) static void hit(void){fprintf(stderr,\"PRELOADED in %s\\n\",program_invocation_short_name);}\n";

/// The test image: a SIF (squashfs of a busybox rootfs) built once per run, plus a
/// user-owned directory with a preload library and bind sources.
struct Fixture {
    sif: PathBuf,
    /// /proc, /sys and /dev are symlinks to /etc in this one.
    symlinked: PathBuf,
    preload: PathBuf,
    user_dir: PathBuf,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(build_fixture).as_ref()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build_fixture() -> Option<Fixture> {
    if !["mksquashfs", "gcc", "busybox"].iter().all(|t| have(t)) || !test_user_exists() {
        return None;
    }
    let dir = fixture_dir()?;
    let root = tempfile::tempdir_in("/var/tmp").ok()?;
    let r = root.path();
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "mnt", "evil", "home", "var/tmp",
    ] {
        std::fs::create_dir_all(r.join(d)).ok()?;
    }
    std::fs::copy(busybox_path()?, r.join("bin/busybox")).ok()?;
    for a in [
        "sh", "id", "cat", "ls", "grep", "env", "echo", "stat", "touch",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(a)).ok()?;
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").ok()?;
    compile(SHOW_EUID_C, &r.join("bin/showeuid"), &["-static"])?;
    std::fs::set_permissions(
        r.join("bin/showeuid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .ok()?;
    compile(TIOCSTI_C, &r.join("bin/tiocsti"), &["-static"])?;
    // /dev/mem, where the container cannot open it: the image is mounted nodev.
    Command::new("mknod")
        .arg(r.join("evil/mem"))
        .args(["c", "1", "1"])
        .status()
        .ok()?;
    std::os::unix::fs::symlink("/etc", r.join("mnt/abs")).ok()?;
    std::os::unix::fs::symlink("../../../../etc", r.join("mnt/rel")).ok()?;
    let sif = dir.join("test.sif");
    make_sif(r, &sif)?;
    // The same image with /proc, /sys and /dev replaced by symlinks into /etc.
    for d in ["proc", "sys", "dev"] {
        std::fs::remove_dir_all(r.join(d)).ok()?;
        std::os::unix::fs::symlink("/etc", r.join(d)).ok()?;
    }
    let symlinked = dir.join("symlinked.sif");
    make_sif(r, &symlinked)?;
    let preload = dir.join("evil.so");
    compile(PRELOAD_C, &preload, &["-shared", "-fPIC"])?;
    let user_dir = dir.join("data");
    std::fs::create_dir(&user_dir).ok()?;
    std::fs::write(user_dir.join("marker"), "from-the-host\n").ok()?;
    let acct = test_account();
    for p in [
        &sif,
        &symlinked,
        &preload,
        &user_dir,
        &user_dir.join("marker"),
    ] {
        std::os::unix::fs::chown(p, Some(acct.uid), Some(acct.gid)).ok()?;
    }
    Some(Fixture {
        sif,
        symlinked,
        preload,
        user_dir,
    })
}

/// A fixed directory, emptied on every run: the fixture lives in a static, which is never
/// dropped, so a temporary directory would be left behind by each run.
fn fixture_dir() -> Option<&'static Path> {
    let dir = Path::new("/var/tmp/apptainer-test-starter-fixture");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).ok()?;
    let acct = test_account();
    std::os::unix::fs::chown(dir, Some(acct.uid), Some(acct.gid)).ok()?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(dir)
}

/// Squashes `rootfs` and wraps it in a SIF at `sif`.
fn make_sif(rootfs: &Path, sif: &Path) -> Option<()> {
    let sqfs = sif.with_extension("sqfs");
    let ok = Command::new("mksquashfs")
        .arg(rootfs)
        .arg(&sqfs)
        .args(["-noappend", "-quiet", "-no-progress"])
        .status()
        .ok()?;
    assert!(ok.success(), "mksquashfs failed");
    let data = sif::write::DataSource::File(std::fs::File::open(&sqfs).ok()?);
    let part = sif::write::DescriptorInput::new(sif::DataType::Partition, data).partition(
        sif::FsType::Squash,
        sif::PartType::PrimSys,
        sif::Arch::Amd64,
    );
    sif::write::create_container(sif, sif::write::CreateOptions::default(), vec![part]).ok()?;
    std::fs::remove_file(&sqfs).ok()
}

fn busybox_path() -> Option<PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn compile(src: &str, out: &Path, flags: &[&str]) -> Option<()> {
    let c = out.with_extension("c");
    std::fs::write(&c, src).ok()?;
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&c)
        .status()
        .ok()?;
    std::fs::remove_file(&c).ok()?;
    st.success().then_some(())
}

const NEEDS: &str = "mksquashfs, gcc, busybox and the apptest user";

fn starter(mode: Mode) -> Option<PathBuf> {
    match mode {
        Mode::Userns => Some(starter_bin()).filter(|p| p.exists()),
        Mode::Setuid => setuid_starter(),
    }
}

/// Each installed starter with its mode, the user-namespace one first.
fn starters() -> impl Iterator<Item = (Mode, PathBuf)> {
    [Mode::Userns, Mode::Setuid]
        .into_iter()
        .filter_map(|mode| starter(mode).map(|st| (mode, st)))
}

/// A valid plan for `mode` that runs `script` with /bin/sh in the test SIF.
fn plan(mode: Mode, f: &Fixture, script: &str) -> Value {
    let home = test_account().home;
    json!({
        "version": 1,
        "image": { "path": f.sif, "kind": "sif", "writable": false },
        "namespaces": { "user": matches!(mode, Mode::Userns), "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": [
            "proc", "sys", { "dev": { "minimal": true } }, "devpts",
            { "bind": { "src": home, "dst": home, "read_only": false, "kind": "home" } },
            { "file": { "dst": "/etc/passwd", "contents": "root:x:0:0:root:/root:/bin/sh\napptest:x:1001:1001::/home/apptest:/bin/sh\n" } }
        ],
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/sh", "-c", script], "env": ["PATH=/bin", "HOME=/home/apptest"], "cwd": "/" }
    })
}

/// Runs `starter` as the test user with `plan` (raw bytes) on fd 3 and `env` added.
fn run_plan(starter: &Path, plan: &[u8], env: &[(&str, &str)]) -> Out {
    run_plan_as(TEST_USER, starter, plan, env)
}

fn run_plan_as(user: &str, starter: &Path, plan: &[u8], env: &[(&str, &str)]) -> Out {
    let dir = tempdir_for(user);
    let file = dir.path().join("plan.json");
    std::fs::write(&file, plan).unwrap();
    let acct = account(user).unwrap();
    std::os::unix::fs::chown(&file, Some(acct.uid), Some(acct.gid)).unwrap();
    let mut cmd = apptainer_tests::UserCmd::program(
        "/bin/sh",
        &[
            "-c",
            // Extra inherited fds (5, 6, 9) must never reach the container.
            "exec \"$0\" 3<\"$1\" 5</ 6</etc 9<\"$1\"",
            starter.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    for (k, v) in env {
        cmd = cmd.env(*k, *v);
    }
    cmd.user(user).run()
}

fn run_json(starter: &Path, plan: &Value) -> Out {
    run_plan(starter, &serde_json::to_vec(plan).unwrap(), &[])
}

/// Asserts a refusal: exit 255, one `FATAL:` line naming `needle`, nothing left mounted.
#[track_caller]
fn assert_refused(starter: &Path, plan: &[u8], needle: &str) {
    let before = mounts_snapshot();
    let out = run_plan(starter, plan, &[]);
    assert_eq!(out.code(), 255, "expected {needle:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(
        lines[0].starts_with("FATAL:   ") && lines[0].contains(needle),
        "expected {needle:?}: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_no_leftover_mounts(&before);
}

fn with(mut p: Value, pointer: &str, v: Value) -> Vec<u8> {
    *p.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = v;
    serde_json::to_vec(&p).unwrap()
}

/// Appends `m` to the plan's mount list.
fn add_mount(p: &mut Value, m: Value) {
    p["mounts"].as_array_mut().unwrap().push(m);
}

fn push_mount(mut p: Value, m: Value) -> Vec<u8> {
    add_mount(&mut p, m);
    serde_json::to_vec(&p).unwrap()
}

fn user_bind(src: &str, dst: &str) -> Value {
    json!({ "bind": { "src": src, "dst": dst, "read_only": false, "kind": "user" } })
}

fn hostile_plans_are_refused(mode: Mode) {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let Some(st) = starter(mode) else {
        require!(false, "the installed starter for this mode");
        return;
    };
    let f = fixture().unwrap();
    let p = plan(mode, f, "id");
    assert_refused(&st, b"{\"version\":1", "malformed plan");
    assert_refused(&st, &[b' '; (1 << 20) + 10], "larger than");
    assert_refused(&st, &with(p.clone(), "/version", json!(2)), "version 2");
    let mut extra = p.clone();
    extra["uid_map"] = json!("0 0 1");
    assert_refused(&st, &serde_json::to_vec(&extra).unwrap(), "unknown field");
    assert_refused(
        &st,
        &push_mount(p.clone(), user_bind("/tmp", "mnt")),
        "not absolute",
    );
    assert_refused(
        &st,
        &push_mount(p.clone(), user_bind("/tmp", "/mnt/../etc")),
        "not normalised",
    );
    assert_refused(
        &st,
        &push_mount(p.clone(), user_bind("/tmp", "/proc")),
        "reserved",
    );
    assert_refused(
        &st,
        &push_mount(
            p.clone(),
            json!({"file": {"dst": "/etc/ld.so.preload", "contents": "/x.so"}}),
        ),
        "/etc/ld.so.preload",
    );
    let home_bind =
        json!({ "bind": { "src": "/root", "dst": "/root", "read_only": false, "kind": "home" } });
    assert_refused(
        &st,
        &push_mount(p.clone(), home_bind),
        "not the caller's home directory",
    );
    // Reaching a source needs search permission on every parent, checked as the caller.
    assert_refused(
        &st,
        &push_mount(p.clone(), user_bind("/root/.ssh", "/mnt")),
        "cannot bind \"/root/.ssh\": Permission denied",
    );
    assert_refused(
        &st,
        &with(p.clone(), "/hostname", json!("box")),
        "UTS namespace",
    );
    assert_refused(
        &st,
        &with(p.clone(), "/process/argv", json!(["bin/sh", "-c", "id"])),
        "not absolute",
    );
    assert_refused(
        &st,
        &{
            let mut q = p.clone();
            q["process"]["umask"] = json!(0o1000);
            serde_json::to_vec(&q).unwrap()
        },
        "umask above 0777",
    );
    let flipped = !p["namespaces"]["user"].as_bool().unwrap();
    assert_refused(
        &st,
        &with(p.clone(), "/namespaces/user", json!(flipped)),
        "not allowed",
    );
    assert_refused(
        &st,
        &with(p.clone(), "/image/kind", json!("sandbox")),
        "Not a directory",
    );
    assert_refused(
        &st,
        &with(p.clone(), "/image/path", json!("/etc/shadow")),
        "cannot open image \"/etc/shadow\"",
    );
    // A SIF whose primary partition is not squashfs never reaches a loop device or FUSE.
    let fake = user_tempdir();
    let bogus = fake.path().join("bogus.sif");
    let part = sif::write::DescriptorInput::new(
        sif::DataType::Partition,
        sif::write::DataSource::Bytes(vec![0x53; 8192]),
    )
    .partition(
        sif::FsType::Squash,
        sif::PartType::PrimSys,
        sif::Arch::Amd64,
    );
    sif::write::create_container(&bogus, sif::write::CreateOptions::default(), vec![part]).unwrap();
    std::fs::set_permissions(fake.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        &st,
        &with(p.clone(), "/image/path", json!(bogus)),
        "root filesystem is not squashfs",
    );
}

#[test]
fn the_user_namespace_starter_refuses_hostile_plans() {
    hostile_plans_are_refused(Mode::Userns);
}

#[test]
fn the_setuid_starter_refuses_hostile_plans() {
    hostile_plans_are_refused(Mode::Setuid);
}

/// Reads `Name:\tvalue` from /proc/self/status output.
fn status_field<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn a_valid_plan_runs_confined(mode: Mode) {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let Some(st) = starter(mode) else {
        require!(false, "the installed starter for this mode");
        return;
    };
    let f = fixture().unwrap();
    let before = mounts_snapshot();
    let acct = test_account();
    let script = "/bin/showeuid; id; cat /proc/self/status; \
                  cat /evil/mem >/dev/null 2>&1 && echo DEVICE-OPENED; /bin/tiocsti; \
                  cat /etc/marker; env; grep ' / ' /proc/self/mountinfo";
    let mut p = plan(mode, f, script);
    add_mount(&mut p, user_bind(f.user_dir.to_str().unwrap(), "/mnt/abs"));
    let out = run_plan(
        &st,
        &serde_json::to_vec(&p).unwrap(),
        &[
            ("LD_PRELOAD", f.preload.to_str().unwrap()),
            ("APPTAINER_CONF", "/tmp/evil.conf"),
            ("RUST_BACKTRACE", "full"),
            ("RUST_MIN_STACK", "1"),
            ("RUST_LOG", "trace"),
        ],
    );
    assert!(out.success(), "{out:?}");
    let o = &out.stdout;
    let (u, g) = (acct.uid, acct.gid);
    assert_eq!(
        status_field(o, "Uid"),
        Some(format!("{u}\t{u}\t{u}\t{u}").as_str()),
        "{out:?}"
    );
    assert_eq!(
        status_field(o, "Gid"),
        Some(format!("{g}\t{g}\t{g}\t{g}").as_str()),
        "{out:?}"
    );
    assert_eq!(
        status_field(o, "Groups"),
        Some(g.to_string().as_str()),
        "{out:?}"
    );
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(o, cap),
            Some("0000000000000000"),
            "{cap}: {out:?}"
        );
    }
    assert_eq!(status_field(o, "NoNewPrivs"), Some("1"), "{out:?}");
    assert_eq!(status_field(o, "Seccomp"), Some("2"), "{out:?}");
    assert!(o.contains("open fds above 2:\n"), "{out:?}");
    assert!(
        o.starts_with(&format!("euid={}\n", acct.uid)),
        "setuid file gave privilege: {out:?}"
    );
    assert!(!o.contains("DEVICE-OPENED"), "{out:?}");
    assert_eq!(o.matches("tiocsti=-1 errno=EPERM").count(), 2, "{out:?}");
    assert!(o.contains("open_tree=-1 errno=ENOSYS"), "{out:?}");
    // The symlink /mnt/abs -> /etc in the image was followed inside the root only.
    assert!(o.contains("from-the-host"), "{out:?}");
    assert!(!Path::new("/etc/marker").exists());
    // The caller's own shell loads it; the setuid starter and the container must not.
    for injected in ["LD_PRELOAD", "APPTAINER_CONF", "RUST_"] {
        assert!(
            !o.contains(injected),
            "{injected} reached the container: {out:?}"
        );
    }
    if matches!(mode, Mode::Setuid) {
        // It was in effect (the caller's sh loaded it), yet neither the starter nor anything
        // after it in the container did.
        assert!(out.stderr.contains("PRELOADED in sh"), "{out:?}");
        assert!(!out.stderr.contains("PRELOADED in starter"), "{out:?}");
        assert_eq!(
            out.stderr.matches("PRELOADED").count(),
            2,
            "only setpriv and sh: {out:?}"
        );
    }
    assert!(
        o.lines()
            .any(|l| l.contains(" / ") && l.contains("nosuid") && l.contains("nodev")),
        "{out:?}"
    );
    // The container's root mount itself (mount point `/`, the image or the overlay over
    // it): its per-mount options carry nosuid and nodev.
    let root_opts: Vec<&str> = o
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 5 && f[4] == "/").then(|| f[5])
        })
        .collect();
    assert!(!root_opts.is_empty(), "no root mount in {out:?}");
    for opts in &root_opts {
        let opts: Vec<&str> = opts.split(',').collect();
        assert!(
            opts.contains(&"nosuid") && opts.contains(&"nodev"),
            "the root mount lacks nosuid or nodev ({opts:?}): {out:?}"
        );
    }
    assert_no_leftover_mounts(&before);
}

#[test]
fn the_user_namespace_starter_runs_a_sif_confined() {
    a_valid_plan_runs_confined(Mode::Userns);
}

#[test]
fn the_setuid_starter_runs_a_sif_confined() {
    a_valid_plan_runs_confined(Mode::Setuid);
}

#[test]
fn a_relative_symlink_destination_stays_inside_the_root() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    for (mode, st) in starters() {
        let mut p = plan(mode, f, "cat /etc/marker");
        add_mount(&mut p, user_bind(f.user_dir.to_str().unwrap(), "/mnt/rel"));
        let out = run_json(&st, &p);
        assert!(
            out.success() && out.stdout == "from-the-host\n",
            "{mode:?}: {out:?}"
        );
        assert!(!Path::new("/etc/marker").exists());
    }
}

#[test]
fn a_bound_file_the_caller_cannot_read_stays_unreadable() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    for (mode, st) in starters() {
        let mut p = plan(mode, f, "cat /mnt/x");
        add_mount(&mut p, user_bind("/etc/shadow", "/mnt/x"));
        let out = run_json(&st, &p);
        assert!(!out.stdout.contains("root:"), "{mode:?}: {out:?}");
    }
}

#[test]
fn the_exit_status_of_the_container_is_passed_through() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    for (mode, st) in starters() {
        assert_eq!(
            run_json(&st, &plan(mode, f, "exit 7")).code(),
            7,
            "{mode:?}"
        );
        assert_eq!(
            run_json(&st, &plan(mode, f, "kill -TERM $$")).code(),
            128 + 15,
            "{mode:?}"
        );
    }
}

#[test]
fn a_pid_namespace_shows_only_the_containers_processes() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    for (mode, st) in starters() {
        let mut p = plan(mode, f, "echo pid=$$; echo /proc/[0-9]*; hostname");
        p["namespaces"]["pid"] = json!(true);
        p["namespaces"]["uts"] = json!(true);
        p["hostname"] = json!("box");
        let out = run_json(&st, &p);
        // The shell expands the glob itself: it is the only process there is.
        assert_eq!(out.stdout, "pid=1\n/proc/1\nbox\n", "{mode:?}: {out:?}");
    }
}

#[test]
fn fakeroot_maps_the_caller_to_root_and_writable_tmpfs_accepts_writes() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let Some(st) = starter(Mode::Userns) else {
        return;
    };
    let f = fixture().unwrap();
    let mut p = plan(
        Mode::Userns,
        f,
        "id -u; touch /new && echo wrote; grep -E 'CapEff|CapBnd' /proc/self/status",
    );
    p["fakeroot"] = json!(true);
    p["writable_tmpfs"] = json!(true);
    let out = run_json(&st, &p);
    // Root of its own user namespace keeps that namespace's capabilities, as `unshare -r`.
    let (eff, bnd) = (
        status_field(&out.stdout, "CapEff"),
        status_field(&out.stdout, "CapBnd"),
    );
    assert!(
        out.stdout.starts_with("0\nwrote\n")
            && eff.is_some()
            && eff == bnd
            && eff != Some("0000000000000000"),
        "{out:?}"
    );
    let ro = run_json(&st, &plan(Mode::Userns, f, "touch /new"));
    assert!(
        !ro.success() && ro.stderr.contains("Read-only file system"),
        "{ro:?}"
    );
}

#[test]
fn a_sandbox_directory_runs_in_both_modes() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    let dir = user_tempdir();
    let rootfs = dir.path().join("rootfs");
    let st = Command::new("unsquashfs")
        .args(["-q", "-n", "-o", &sif_offset(&f.sif).to_string(), "-d"])
        .arg(&rootfs)
        .arg(&f.sif)
        .status();
    require!(st.is_ok_and(|s| s.success()), "unsquashfs with -o");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (mode, st) in starters() {
        let mut p = plan(
            mode,
            f,
            "cat /etc/passwd | grep -c apptest; /bin/showeuid | head -1",
        );
        p["image"] = json!({ "path": rootfs, "kind": "sandbox", "writable": false });
        let out = run_json(&st, &p);
        assert_eq!(
            out.stdout,
            format!("1\neuid={}\n", test_account().uid),
            "{mode:?}: {out:?}"
        );
    }
}

/// Offset of the squashfs partition in a SIF, from the sif reader.
fn sif_offset(sif: &Path) -> u64 {
    sif::read::primary_partition(&mut std::fs::File::open(sif).unwrap())
        .unwrap()
        .offset
}

/// Extraction is the frontend's job (launch/unsquash.rs, as in the reference's launcher): a
/// SIF Plan without FUSE gets one clear line and nothing is left behind.
#[test]
fn without_fuse_the_user_namespace_starter_refuses_a_sif_with_one_clear_line() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    require!(
        apptainer_tests::is_root() && have("unshare"),
        "root and unshare, to hide /dev/fuse"
    );
    let Some(st) = starter(Mode::Userns) else {
        return;
    };
    let f = fixture().unwrap();
    let dir = user_tempdir();
    let (plan_file, blocker) = (dir.path().join("plan.json"), dir.path().join("nofuse"));
    std::fs::write(
        &plan_file,
        serde_json::to_vec(&plan(Mode::Userns, f, "/bin/showeuid | head -1")).unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&plan_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&blocker, "").unwrap();
    let before = mounts_snapshot();
    // In a private mount namespace, /dev/fuse is covered by a file the caller cannot open.
    let script = "mount --bind \"$1\" /dev/fuse && exec setpriv --reuid=apptest --regid=apptest --init-groups \"$2\" 3<\"$3\"";
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args([&blocker, &st, &plan_file])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(out.stdout.is_empty(), "{stderr}");
    assert!(
        stderr.starts_with("FATAL:   FUSE is unavailable: cannot open \"/dev/fuse\": ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_no_leftover_mounts(&before);
}

#[test]
fn kernel_filesystems_are_not_mounted_through_symlinks_in_the_image() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    let f = fixture().unwrap();
    for (mode, st) in starters() {
        for (mount, pid) in [
            (json!("proc"), true),
            (json!("proc"), false),
            (json!("sys"), false),
            (json!({"dev": {"minimal": true}}), false),
        ] {
            let mut p = plan(mode, f, "true");
            p["image"]["path"] = json!(f.symlinked);
            p["namespaces"]["pid"] = json!(pid);
            p["mounts"] = json!([mount]);
            assert_refused(
                &st,
                &serde_json::to_vec(&p).unwrap(),
                "Too many levels of symbolic links",
            );
        }
    }
}

/// `user`'s /etc/subuid and /etc/subgid start, when it has a range.
fn subid_start(user: &str) -> Option<(String, String)> {
    let find = |file| {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_owned))
    };
    find("/etc/subuid").zip(find("/etc/subgid"))
}

#[test]
fn fakeroot_maps_the_subordinate_range_only_for_users_that_have_one() {
    let _guard = serial();
    require!(fixture().is_some(), NEEDS);
    require!(
        account(TEST_USER2).is_some()
            && subid_start(TEST_USER).is_some()
            && subid_start(TEST_USER2).is_none(),
        "apptest with an /etc/subuid and /etc/subgid range, apptest2 without"
    );
    require!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap and newgidmap (uidmap package)"
    );
    let f = fixture().unwrap();
    let script = "id -u; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
                  touch /owned && chown 1:1 /owned && stat -c %u:%g /owned";
    for (mode, st) in starters() {
        for user in [TEST_USER, TEST_USER2] {
            let acct = account(user).unwrap();
            let mut p = plan(mode, f, script);
            p["namespaces"]["user"] = json!(true);
            p["fakeroot"] = json!(true);
            p["writable_tmpfs"] = json!(true);
            p["mounts"] = json!(["proc"]);
            let out = run_plan_as(user, &st, &serde_json::to_vec(&p).unwrap(), &[]);
            let words: Vec<&str> = out.stdout.split_whitespace().collect();
            let expected = match subid_start(user) {
                Some((u, g)) => {
                    let (u, g): (Vec<&str>, Vec<&str>) =
                        (u.split(':').collect(), g.split(':').collect());
                    assert!(out.success(), "{mode:?} {user}: {out:?}");
                    let (uid, gid) = (acct.uid.to_string(), acct.gid.to_string());
                    [
                        vec!["0", "0", &uid, "1", "1", u[0], u[1]],
                        vec!["0", &gid, "1", "1", g[0], g[1], "allow", "1:1"],
                    ]
                    .concat()
                    .iter()
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                }
                None => {
                    assert!(
                        !out.success() && out.stderr.contains("chown"),
                        "{mode:?} {user}: chown without a range must fail: {out:?}"
                    );
                    [
                        "0",
                        "0",
                        &acct.uid.to_string(),
                        "1",
                        "0",
                        &acct.gid.to_string(),
                        "1",
                        "deny",
                    ]
                    .map(String::from)
                    .to_vec()
                }
            };
            assert_eq!(words, expected, "{mode:?} {user}: {out:?}");
        }
    }
}
