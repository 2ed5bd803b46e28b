//! Attacks through a sandbox (a busybox root directory) that the plain test user owns and
//! keeps changing while the installed starters use it, fed Plans on fd 3 directly: a
//! rename-exchange race on a bind destination (T12), a mount point to create below a
//! symlinked parent (T13), and a file the user may not read because of a group they belong
//! to ("negative" group, T28). Both install modes. Also the memory of the setuid starter,
//! probed by the caller during its whole run (T05).

use apptainer_tests::launch::Mode;
use apptainer_tests::plans::run_plan_as;
use apptainer_tests::racer::{build_racer, Racer};
use apptainer_tests::{
    assert_no_leftover_mounts, mounts_snapshot, require, serial, setuid_starter, starter_bin,
    tempdir_for, test_user_exists, user_namespaces_available, Out, TempDir, UserCmd, TEST_USER,
    TEST_USER2,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const NEEDS: &str = "the installed starter for this mode, the apptest user, busybox and gcc";

/// Runs under the racer: at least this many, at most that many.
const RUNS: (u32, u32) = (150, 600);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn starter(mode: Mode) -> Option<PathBuf> {
    match mode {
        Mode::Setuid => setuid_starter(),
        Mode::Userns => Some(starter_bin()).filter(|p| p.is_file() && user_namespaces_available()),
    }
}

fn ready(mode: Mode) -> bool {
    starter(mode).is_some() && test_user_exists() && have("busybox") && have("gcc")
}

/// A user-owned directory holding `sandbox/` (a busybox root with /mnt/d a directory) and
/// whatever the test adds next to it.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempdir_for(TEST_USER);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("sandbox");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "mnt/d"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox");
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "echo", "id"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let s = Sandbox { dir };
        s.chown_to_user("sandbox");
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Gives `rel` and everything below it to the test user.
    fn chown_to_user(&self, rel: &str) {
        let ok = Command::new("chown")
            .args(["-R", "-h", TEST_USER])
            .arg(self.path(rel))
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// A Plan running `/bin/sh -c script` in the sandbox with `mounts` and `env`.
fn plan(mode: Mode, sandbox: &Path, mounts: Value, script: &str, env: &[String]) -> Value {
    let userns = mode == Mode::Userns;
    let mut e = vec!["PATH=/bin".to_string()];
    e.extend_from_slice(env);
    json!({
        "version": 1,
        "image": { "path": sandbox, "kind": "sandbox", "writable": userns },
        "namespaces": { "user": userns, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": mounts,
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/sh", "-c", script], "env": e, "cwd": "/" }
    })
}

/// Runs `starter` as `user` with `plan` on fd 3.
fn run(user: &str, starter: &Path, plan: &Value) -> Out {
    run_plan_as(user, starter, plan)
}

/// Prints the mount point of every mount whose root (field 4 of mountinfo) is the bind
/// source `$SRC`: where the bind landed, as the container sees it.
const WHERE_IS_SRC: &str = "while read -r id parent dev root mp rest; do \
    [ \"$root\" = \"$SRC\" ] && echo \"$mp\"; done < /proc/self/mountinfo; true";

/// The mountinfo root field of a bind of `src`: its path inside its filesystem.
fn root_field(src: &Path) -> String {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "TARGET", "-T"])
        .arg(src)
        .output()
        .unwrap();
    let mount = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rel = src.strip_prefix(&mount).expect("src below its mount point");
    format!("/{}", rel.display())
}

/// What the runs under the racer saw.
#[derive(Default, Debug)]
struct Tally {
    bound_inside: u32,
    refused: u32,
}

fn a_bind_destination_exchanged_with_a_symlink_never_mounts_outside_the_root(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), NEEDS);
    let st = starter(mode).unwrap();
    let sb = Sandbox::new();
    let racer = build_racer(sb.dir.path());
    // The bind source, and a directory of the user outside the sandbox that the symlink
    // names by its absolute host path. Inside the root that path does not exist.
    let src = sb.path("src");
    let outside = sb.path("outside");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "bound\n").unwrap();
    std::fs::create_dir(&outside).unwrap();
    let d = sb.path("sandbox/mnt/d");
    let l = sb.path("sandbox/mnt/l");
    std::os::unix::fs::symlink(&outside, &l).unwrap();
    sb.chown_to_user(".");
    let mounts = json!(["proc", { "bind": {
        "src": src, "dst": "/mnt/d", "read_only": true, "kind": "user" } }]);
    let p = plan(
        mode,
        &sb.path("sandbox"),
        mounts,
        WHERE_IS_SRC,
        &[format!("SRC={}", root_field(&src))],
    );
    let before = mounts_snapshot();
    // Without the racer the bind lands on /mnt/d.
    let out = run(TEST_USER, &st, &p);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "/mnt/d\n", "{out:?}");

    let mut t = Tally::default();
    {
        let _racer = Racer::start(&racer, &d, &l);
        for run_no in 1..=RUNS.1 {
            let out = run(TEST_USER, &st, &p);
            if out.success() {
                // Exactly one bind of src, on the directory, under /mnt: the name it has when
                // the container reads mountinfo may be either one.
                let lines: Vec<&str> = out.stdout.lines().collect();
                assert!(
                    lines.len() == 1 && ["/mnt/d", "/mnt/l"].contains(&lines[0]),
                    "the bind did not land inside the root: {out:?}"
                );
                t.bound_inside += 1;
            } else {
                assert_eq!(out.code(), 255, "{out:?}");
                let errors: Vec<&str> = out.stderr.lines().collect();
                assert!(
                    errors.len() == 1
                        && errors[0].starts_with("FATAL:   ")
                        && errors[0].contains("\"/mnt/d\""),
                    "{out:?}"
                );
                t.refused += 1;
            }
            if run_no >= RUNS.0 && t.bound_inside >= 5 && t.refused >= 5 {
                break;
            }
        }
    }
    eprintln!("{mode:?}: {t:?}");
    assert!(
        t.bound_inside > 0 && t.refused > 0,
        "the racer never changed the outcome: {t:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(left.is_empty(), "something was created outside: {left:?}");
    assert_no_leftover_mounts(&before);
}

fn a_mount_point_below_a_symlinked_parent_is_created_inside_the_root_or_refused(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), NEEDS);
    let st = starter(mode).unwrap();
    let sb = Sandbox::new();
    let src = sb.path("src");
    let outside = sb.path("outside");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "bound\n").unwrap();
    std::fs::create_dir(&outside).unwrap();
    // /mnt/out names a host directory by its absolute path (absent inside the root);
    // /mnt/in names /tmp of the root.
    std::os::unix::fs::symlink(&outside, sb.path("sandbox/mnt/out")).unwrap();
    std::os::unix::fs::symlink("/tmp", sb.path("sandbox/mnt/in")).unwrap();
    sb.chown_to_user(".");
    let before = mounts_snapshot();
    let env = [format!("SRC={}", root_field(&src))];
    for (dst, inside) in [("/mnt/out/c", None), ("/mnt/in/c", Some("/tmp/c"))] {
        let mounts = json!(["proc", { "bind": {
            "src": src, "dst": dst, "read_only": true, "kind": "user" } }]);
        let p = plan(mode, &sb.path("sandbox"), mounts, WHERE_IS_SRC, &env);
        let out = run(TEST_USER, &st, &p);
        match (out.success(), inside) {
            // Created and mounted where the symlink leads inside the root.
            (true, Some(at)) => assert_eq!(out.stdout, format!("{at}\n"), "{dst}: {out:?}"),
            (true, None) => panic!("{dst}: ran, so the mount point was made somewhere: {out:?}"),
            (false, _) => {
                let lines: Vec<&str> = out.stderr.lines().collect();
                assert!(
                    out.code() == 255 && lines.len() == 1 && lines[0].contains(dst),
                    "{dst}: want one FATAL line naming it: {out:?}"
                );
            }
        }
    }
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(left.is_empty(), "created outside the root: {left:?}");
    assert_no_leftover_mounts(&before);
}

/// Drops every supplementary group it can, then execs its arguments.
const DROP_GROUPS_C: &str = "#include <grp.h>\n#include <stdio.h>\n#include <unistd.h>\n\
int main(int c,char**v){if(c<2)return 2;if(setgroups(0,0))perror(\"setgroups\");execv(v[1],v+1);return 127;}\n";

/// Tries to shed the group that denies `/secret`, then reads it.
const READ_SECRET: &str = "/bin/dropgroups /bin/cat /secret || echo denied";

/// The container's `cat /secret` failed for lack of permission.
#[track_caller]
fn assert_denied(out: &Out) {
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "denied\n", "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
}

fn gid_of_group(name: &str) -> Option<u32> {
    let group = std::fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

fn a_file_denied_to_a_group_of_the_caller_stays_unreadable(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), NEEDS);
    require!(
        gid_of_group("apptblocked").is_some(),
        "group apptblocked with member apptest2 (scripts/test-setup.sh)"
    );
    let st = starter(mode).unwrap();
    let sb = Sandbox::new();
    let src = sb.path("dropgroups.c");
    std::fs::write(&src, DROP_GROUPS_C).unwrap();
    let ok = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(sb.path("sandbox/bin/dropgroups"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success(), "gcc dropgroups");
    // Readable by others, but not by the group apptblocked, of which the caller (apptest2,
    // who has no subgid range) is a member.
    let secret = sb.path("sandbox/secret");
    std::fs::write(&secret, "secret\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(0), gid_of_group("apptblocked")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let host = UserCmd::program("cat", &[secret.to_str().unwrap()])
        .user(TEST_USER2)
        .run();
    assert!(!host.success(), "the caller reads it on the host: {host:?}");
    // A user outside the group reads it: the mode is what the test says it is.
    let other = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&secret)
        .output()
        .unwrap();
    let other = String::from_utf8_lossy(&other.stdout);
    assert_eq!(other, "secret\n", "nobody cannot read it");
    let before = mounts_snapshot();
    let p = plan(mode, &sb.path("sandbox"), json!([]), READ_SECRET, &[]);
    let out = run(TEST_USER2, &st, &p);
    assert_denied(&out);
    // Fakeroot for a user without a subgid range: setgroups stays denied, the group stays.
    let mut fakeroot = p.clone();
    fakeroot["namespaces"]["user"] = json!(true);
    fakeroot["fakeroot"] = json!(true);
    fakeroot["image"]["writable"] = json!(false);
    let out = run(TEST_USER2, &st, &fakeroot);
    assert_denied(&out);
    // With a subgid range, newgidmap lets the user's own user namespaces call setgroups, so
    // fakeroot drops the groups as `unshare --map-auto` would: see SECURITY.md, T28.
    assert_no_leftover_mounts(&before);
}

/// Starts `argv[1]` with the file `argv[2]` on fd 3, then until it exits keeps probing it
/// the ways a tracer would, none of which stops it: open `/proc/<pid>/mem` for writing,
/// `/proc/<pid>/environ`, and `process_vm_readv` (EFAULT at address 0 means it was
/// allowed). Counts the probes made while it was still the starter (`comm` "starter…") and
/// those that were allowed then.
const PROBE_STARTER_C: &str = "#define _GNU_SOURCE\n#include <stdio.h>\n#include <string.h>\n\
#include <errno.h>\n#include <fcntl.h>\n#include <unistd.h>\n#include <sys/uio.h>\n#include <sys/wait.h>\n\
static int is_starter(pid_t p){char f[64],c[32]={0};snprintf(f,sizeof f,\"/proc/%d/comm\",p);\
int fd=open(f,O_RDONLY);if(fd<0)return 0;read(fd,c,sizeof c-1);close(fd);return !strncmp(c,\"starter\",7);}\n\
static int opens(const char*f,int fl){int fd=open(f,fl);if(fd<0)return 0;close(fd);return 1;}\n\
int main(int c,char**v){if(c<3)return 2;int plan=open(v[2],O_RDONLY);pid_t pid=fork();\
if(!pid){dup2(plan,3);execl(v[1],v[1],(char*)0);_exit(127);}\
long probes=0,bad=0;char mem[64],env[64];snprintf(mem,sizeof mem,\"/proc/%d/mem\",pid);\
snprintf(env,sizeof env,\"/proc/%d/environ\",pid);\
for(;;){int st;if(waitpid(pid,&st,WNOHANG)!=0)break;if(!is_starter(pid))continue;probes++;\
char b;struct iovec l={&b,1},r={(void*)0,1};errno=0;\
int ok=opens(mem,O_RDWR)|opens(env,O_RDONLY)|(process_vm_readv(pid,&l,1,&r,1,0)>=0||errno==EFAULT);\
if(ok&&is_starter(pid))bad++;}printf(\"probes=%ld bad=%ld\\n\",probes,bad);return 0;}\n";

#[test]
fn the_caller_cannot_read_or_write_the_memory_of_the_setuid_starter_at_any_point() {
    let _guard = serial();
    require!(ready(Mode::Setuid), NEEDS);
    let st = starter(Mode::Setuid).unwrap();
    let sb = Sandbox::new();
    let src = sb.path("probe.c");
    std::fs::write(&src, PROBE_STARTER_C).unwrap();
    let probe = sb.path("probe");
    let ok = Command::new("gcc")
        .arg("-o")
        .arg(&probe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success(), "gcc probe");
    let p = plan(
        Mode::Setuid,
        &sb.path("sandbox"),
        json!(["proc"]),
        "exit 0",
        &[],
    );
    let file = sb.path("plan.json");
    std::fs::write(&file, serde_json::to_vec(&p).unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = mounts_snapshot();
    let mut probes = 0;
    for _ in 0..20 {
        let out = UserCmd::program(&probe, &[st.to_str().unwrap(), file.to_str().unwrap()]).run();
        assert!(out.success(), "{out:?}");
        let counts: Vec<u64> = out
            .stdout
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse().ok()))
            .collect();
        assert_eq!(counts.len(), 2, "{out:?}");
        assert_eq!(
            counts[1], 0,
            "the caller reached the starter's memory: {out:?}"
        );
        probes += counts[0];
    }
    // The probes did reach the starter while it ran (from its first instruction on).
    assert!(probes > 0, "no probe saw the starter running");
    eprintln!("{probes} probes of the running setuid starter, none succeeded");
    assert_no_leftover_mounts(&before);
}

apptainer_tests::both_modes!(
    a_bind_destination_exchanged_with_a_symlink_never_mounts_outside_the_root,
    a_mount_point_below_a_symlinked_parent_is_created_inside_the_root_or_refused,
    a_file_denied_to_a_group_of_the_caller_stays_unreadable,
);
