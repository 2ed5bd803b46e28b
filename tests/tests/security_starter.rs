//! Attacks from SECURITY.md's table made end to end against the installed starters by the
//! plain test user: odd argument vectors given to starter-suid (T01), loader, malloc and
//! `APPTAINER_*` variables given to it (T02), fds the caller leaves open or closes (T03),
//! `--pwd` through an inherited fd (T32), the caller's umask (T06), signals and ptrace from
//! a PID namespace to the caller's host processes and to its PID 1 (T34), tiny rlimits and
//! RLIMIT_FSIZE (T04), staging names
//! planted in /tmp (T18), submounts of a bound tree (T15), file capabilities in the
//! image (T23), TIOCLINUX (T33), ptrace of the running setuid starter by the caller (T05), `--config`/`APPTAINER_CONF` (T08), the starter that stays
//! as PID 1 and `/proc/<pid>/exe` of the container process (T05, T31), `--net` (T35) and the
//! setuid mount of a user's squashfs under the default `iflimited` (T24). Each test also
//! shows that nothing was left mounted or attached to a loop device.

use apptainer_tests::launch::{action, pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::{
    assert_no_leftover_mounts, mounts_snapshot, require, serial, setuid_starter, tempdir_for,
    test_account, Out, UserCmd, TEST_USER,
};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// A library that announces itself when a dynamic loader runs its constructor.
const MARKER_SO_C: &str = "#include <stdio.h>\n\
__attribute__((constructor)) static void hit(void){fputs(\"INJECTED-LIBRARY-LOADED\\n\",stderr);}\n\
unsigned int la_version(unsigned int v){fputs(\"INJECTED-LIBRARY-LOADED\\n\",stderr);return v;}\n";

/// Lists its open fds with their targets, then writes the list to the file `argv[1]`.
const SHOW_FDS_C: &str = "#include <stdio.h>\n#include <fcntl.h>\n#include <unistd.h>\n\
int main(int c,char**v){char out[65536];int n=0;for(int fd=0;fd<4096;fd++){\
if(fcntl(fd,F_GETFD)==-1)continue;char p[64],t[512];snprintf(p,sizeof p,\"/proc/self/fd/%d\",fd);\
ssize_t l=readlink(p,t,sizeof t-1);t[l<0?0:l]=0;n+=snprintf(out+n,sizeof out-n,\"%d %s\\n\",fd,t);}\
if(c<2)return 2;FILE*f=fopen(v[1],\"w\");if(!f)return 3;fputs(out,f);return fclose(f)?4:0;}\n";

/// Prints the size of its own `security.capability` xattr, its capability sets and whether it could read /mnt/secret.
const SHOW_CAPS_C: &str = "#include <stdio.h>\n#include <string.h>\n#include <fcntl.h>\n\
#include <sys/xattr.h>\n\
int main(void){char x[64];printf(\"xattr=%zd\\n\",getxattr(\"/bin/showcaps\",\"security.capability\",x,sizeof x));FILE*f=fopen(\"/proc/self/status\",\"r\");char l[256];\
while(f&&fgets(l,sizeof l,f))if(!strncmp(l,\"Cap\",3))fputs(l,stdout);\
printf(\"secret=%s\\n\",open(\"/mnt/secret\",O_RDONLY)<0?\"denied\":\"READ\");return 0;}\n";

/// Tries TIOCLINUX (paste selection, subcode 3) on fd 0, also with bit 32 of the request set.
const TIOCLINUX_C: &str = "#define _GNU_SOURCE\n#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n\
#include <sys/ioctl.h>\nint main(void){char c=3;unsigned long r[2]={TIOCLINUX,TIOCLINUX|(1UL<<32)};\
for(int i=0;i<2;i++){errno=0;int x=ioctl(0,r[i],&c);printf(\"%d %s\\n\",x,strerrorname_np(errno));}return 0;}\n";

/// For each pid argument: can /proc/<pid>/environ be read, can it be ptrace-attached.
const PROBE_PID_C: &str =
    "#define _GNU_SOURCE\n#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n\
#include <stdlib.h>\n#include <fcntl.h>\n#include <sys/ptrace.h>\n#include <sys/wait.h>\n\
int main(int c,char**v){for(int i=1;i<c;i++){int pid=atoi(v[i]);char p[64];\
snprintf(p,sizeof p,\"/proc/%d/environ\",pid);errno=0;int fd=open(p,O_RDONLY);\
printf(\"environ=%s \",fd<0?strerrorname_np(errno):\"ok\");errno=0;\
long r=ptrace(PTRACE_ATTACH,pid,0,0);printf(\"ptrace=%s\\n\",r<0?strerrorname_np(errno):\"ok\");\
if(r==0){waitpid(pid,0,__WALL);ptrace(PTRACE_DETACH,pid,0,0);}}return 0;}\n";

/// `PTRACE_ATTACH`, then `PTRACE_SEIZE`, on each pid after the first argument (a directory):
/// writes one `attach=… seize=…` line per pid to DIR/result, then creates DIR/ready and
/// waits to be killed, so an attach it got is still held while the test looks at the target.
const PTRACE_OUT_C: &str =
    "#define _GNU_SOURCE\n#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n\
#include <stdlib.h>\n#include <unistd.h>\n#include <sys/ptrace.h>\n\
static const char*res(long r,int e){return r<0?strerrorname_np(e):\"ok\";}\n\
int main(int c,char**v){if(c<3)return 2;char p[4096];snprintf(p,sizeof p,\"%s/result\",v[1]);\
FILE*f=fopen(p,\"w\");if(!f)return 3;for(int i=2;i<c;i++){int pid=atoi(v[i]);\
errno=0;long a=ptrace(PTRACE_ATTACH,pid,0,0);int ea=errno;\
errno=0;long s=ptrace(PTRACE_SEIZE,pid,0,0);int es=errno;\
fprintf(f,\"attach=%s seize=%s\\n\",res(a,ea),res(s,es));}if(fclose(f))return 4;\
snprintf(p,sizeof p,\"%s/ready\",v[1]);f=fopen(p,\"w\");if(!f||fclose(f))return 5;\
for(;;)pause();}\n";

/// Execs its first argument with an empty argv (argc = 0) and an empty environment.
const ARGC0_C: &str = "#include <stdio.h>\n#include <unistd.h>\n\
int main(int c,char**v){char*a[]={0};char*e[]={0};if(c<2)return 126;\
execve(v[1],a,e);perror(\"execve\");return 127;}\n";

fn image() -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", "none")
}

fn digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Asserts the starter refused: exit 255, one `FATAL:` line, no stdout.
#[track_caller]
fn assert_fatal(out: &Out) {
    assert_eq!(out.code(), 255, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].starts_with("FATAL:   "), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn the_setuid_starter_refuses_argc_zero_huge_and_non_utf8_arguments_without_mounting() {
    let _guard = serial();
    let Some(suid) = setuid_starter() else {
        require!(false, "starter-suid installed");
        return;
    };
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the argc = 0 launcher"
    );
    let before = mounts_snapshot();
    let dir = tempdir_for(TEST_USER);
    let launcher = dir.path().join("argc0");
    let src = dir.path().join("argc0.c");
    std::fs::write(&src, ARGC0_C).unwrap();
    let built = Command::new("gcc")
        .arg("-o")
        .arg(&launcher)
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success(), "gcc failed");

    // argc = 0 and no environment at all.
    assert_fatal(&UserCmd::program(&launcher, &[&suid]).run());
    // Arguments that are not UTF-8, and a megabyte of argv and of envp.
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe\x80");
    assert_fatal(
        &UserCmd::program(&suid, &[bad, bad])
            .env("APPTAINER_X", bad)
            .run(),
    );
    let big = "A".repeat(100_000);
    let args: Vec<&str> = (0..10).map(|_| big.as_str()).collect();
    let mut cmd = UserCmd::program(&suid, &args);
    for i in 0..10 {
        cmd = cmd.env(format!("BIG{i}"), &big);
    }
    assert_fatal(&cmd.run());
    assert_no_leftover_mounts(&before);
}

#[test]
fn the_setuid_starter_kept_as_pid_1_cannot_be_read_or_written_from_inside_the_container() {
    let _guard = serial();
    require!(ready(Mode::Setuid), READY);
    let suid = setuid_starter().unwrap();
    let img = image();
    let starter_before = digest(&suid);
    let before = mounts_snapshot();
    // With --pid the starter stays as PID 1 of the container; a process of the container
    // must not reach its memory, environment or executable.
    let script = "cat /proc/1/comm; grep ^Uid: /proc/1/status; \
        for f in mem environ; do cat /proc/1/$f >/dev/null 2>&1 && echo read-$f; done; \
        readlink /proc/1/exe >/dev/null 2>&1 && echo readlink-exe; \
        (echo x >>/proc/1/exe) 2>/dev/null && echo wrote-exe; echo done";
    let out = action(
        Mode::Setuid,
        "exec",
        &["--pid"],
        &img.sif,
        &["sh", "-c", script],
    )
    .run();
    out.assert_success();
    let uid = test_account().uid;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"starter-suid"), "{out:?}");
    let ids: Vec<&str> = lines[1].split_whitespace().skip(1).collect();
    assert_eq!(ids, vec![uid.to_string(); 4], "{out:?}");
    assert_eq!(&lines[2..], ["done"], "{out:?}");
    assert_eq!(digest(&suid), starter_before, "starter-suid changed");
    assert_no_leftover_mounts(&before);
}

fn proc_self_exe_cannot_be_opened_for_writing(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let starters: Vec<_> = [
        apptainer_tests::starter_bin(),
        apptainer_tests::starter_suid_bin(),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .map(|p| (digest(&p), p))
    .collect();
    let image_before = digest(&img.sif);
    let before = mounts_snapshot();
    // --writable-tmpfs so that a read-only root is not what stops the write.
    let script = "readlink /proc/self/exe; (echo x >>/proc/self/exe) 2>/dev/null && echo wrote; \
        (echo x >>/proc/$$/exe) 2>/dev/null && echo wrote-shell; echo done";
    let out = action(
        mode,
        "exec",
        &["--writable-tmpfs"],
        &img.sif,
        &["sh", "-c", script],
    )
    .run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(!lines[0].contains("starter"), "{out:?}");
    assert_eq!(lines[1], "done", "{out:?}");
    for (sum, p) in &starters {
        assert_eq!(&digest(p), sum, "{} changed", p.display());
    }
    assert_eq!(digest(&img.sif), image_before, "the image changed");
    assert_no_leftover_mounts(&before);
}

fn net_gives_the_container_only_a_loopback_interface(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let before = mounts_snapshot();
    let out = action(
        mode,
        "exec",
        &["--net"],
        &img.sif,
        &["cat", "/proc/net/dev"],
    )
    .run();
    out.assert_success();
    // The first two lines are headers; each other line is `name: counters`.
    let names: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{out:?}");
    assert_no_leftover_mounts(&before);
}

#[test]
fn a_setuid_run_mounts_the_sif_with_squashfuse_under_the_default_iflimited() {
    let _guard = serial();
    require!(ready(Mode::Setuid), READY);
    let conf = std::fs::read_to_string(apptainer_tests::conf_path()).unwrap();
    require!(
        conf.lines()
            .any(|l| l.trim() == "allow setuid-mount squashfs = iflimited"),
        "the installed conf at its default `allow setuid-mount squashfs = iflimited`"
    );
    let img = image();
    let before = mounts_snapshot();
    // Without a PID namespace the host's /proc is visible: list the SIF files held open by
    // a squashfuse process of the caller while the container runs (ours, apptainer-squashfuse,
    // whose comm the kernel cuts to 15 bytes, or squashfuse_ll for the compressors it hands on).
    let script = "for p in /proc/[0-9]*; do \
        case \"$(cat $p/comm 2>/dev/null)\" in squashfuse* | apptainer-squas*) \
        for fd in $p/fd/*; do readlink $fd; done;; esac; done 2>/dev/null";
    let out = action(Mode::Setuid, "exec", &[], &img.sif, &["sh", "-c", script]).run();
    out.assert_success();
    let sif = img.sif.to_str().unwrap();
    assert!(
        out.stdout.lines().any(|l| l == sif),
        "no squashfuse process holds {sif}: {out:?}"
    );
    assert_no_leftover_mounts(&before);
}

fn gcc(src: &str, out: &Path, flags: &[&str]) {
    let c = out.with_extension("c");
    std::fs::write(&c, src).unwrap();
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success(), "gcc failed for {}", out.display());
}

/// Writes a Plan for the setuid starter that runs `script` in `img` to the image's
/// directory (readable by the caller) and returns its path.
fn setuid_plan(img: &PulledImage, script: &str) -> std::path::PathBuf {
    let plan = serde_json::json!({
        "version": 1,
        "image": { "path": img.sif, "kind": "sif", "writable": false },
        "namespaces": { "user": false, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": ["proc", "sys", { "dev": { "minimal": true } }, "devpts"],
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/sh", "-c", script], "env": ["PATH=/bin"], "cwd": "/" }
    });
    let file = img.dir.path().join("plan.json");
    std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
    file
}

#[test]
fn loader_malloc_and_apptainer_variables_given_to_the_setuid_starter_have_no_effect() {
    let _guard = serial();
    require!(ready(Mode::Setuid), READY);
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the injected library"
    );
    let suid = setuid_starter().unwrap();
    let img = image();
    let dir = img.dir.path();
    let lib = dir.join("evil.so");
    gcc(MARKER_SO_C, &lib, &["-shared", "-fPIC"]);
    // A directory where LD_LIBRARY_PATH would find the marker under the starter's own
    // library names, and a conf the starter must not read.
    let libdir = dir.join("libs");
    std::fs::create_dir(&libdir).unwrap();
    for name in ["libgcc_s.so.1", "libc.so.6"] {
        std::fs::copy(&lib, libdir.join(name)).unwrap();
    }
    let conf = dir.join("evil.conf");
    std::fs::write(&conf, "this is not a configuration\n").unwrap();
    let plan_file = setuid_plan(&img, "id -u; env");
    let lib_s = lib.to_str().unwrap();
    let injected = [
        ("LD_AUDIT", lib_s),
        ("LD_LIBRARY_PATH", libdir.to_str().unwrap()),
        ("LD_SHOW_AUXV", "1"),
        ("LD_DEBUG", "all"),
        ("GCONV_PATH", dir.to_str().unwrap()),
        ("MALLOC_CHECK_", "3"),
        ("MALLOC_PERTURB_", "165"),
        ("GLIBC_TUNABLES", "glibc.malloc.check=3"),
        ("APPTAINER_CONF", conf.to_str().unwrap()),
        ("APPTAINER_MESSAGELEVEL", "5"),
        ("APPTAINERENV_INJECTED", "1"),
    ];
    let before = mounts_snapshot();
    // The variables are exported by the shell just before it execs the starter, so that
    // setpriv and the shell itself run without them.
    let pairs: Vec<String> = injected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec![
        "-c".to_string(),
        "s=$0; p=$1; shift; for kv; do export \"$kv\"; done; exec \"$s\" 3<\"$p\"".to_string(),
        suid.to_str().unwrap().to_string(),
        plan_file.to_str().unwrap().to_string(),
    ];
    args.extend(pairs);
    let cmd = UserCmd::program("/bin/sh", &args);
    let out = cmd.run();
    out.assert_success();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("INJECTED-LIBRARY-LOADED"), "{out:?}");
    // LD_SHOW_AUXV and LD_DEBUG print AT_* lines and `file=`/`binding` traces when honoured.
    assert!(!all.contains("AT_"), "{out:?}");
    assert!(!all.contains("file="), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&test_account().uid.to_string().as_str()),
        "{out:?}"
    );
    // The container's environment is the plan's, not the caller's.
    for (k, _) in injected {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{k}="))),
            "{k}: {out:?}"
        );
    }
    assert_no_leftover_mounts(&before);
}

fn inherited_fds_and_closed_stdio_never_reach_the_container(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the fd lister"
    );
    let img = image();
    let dir = img.dir.path();
    let lister = dir.join("showfds");
    gcc(SHOW_FDS_C, &lister, &["-static"]);
    let report = dir.join("fds");
    let before = mounts_snapshot();
    // The caller closes 0-2 and leaves directories, its mount namespace and the image
    // open on other fds; apptainer runs with the lister bound in from the caller's dir.
    let d = dir.to_str().unwrap();
    let mut argv: Vec<&str> = vec!["exec"];
    argv.extend(mode.flag());
    argv.extend([
        "-B",
        d,
        img.arg(),
        lister.to_str().unwrap(),
        report.to_str().unwrap(),
    ]);
    let script = "exec \"$@\" 0<&- 1>&- 2>&- 5</ 6</etc 7</proc/self/ns/mnt 9<\"$0\"";
    let mut sh_args = vec!["-c", script, img.arg()];
    let bin = apptainer_tests::apptainer_bin();
    sh_args.push(bin.to_str().unwrap());
    sh_args.extend(argv);
    let out = UserCmd::program("/bin/sh", &sh_args).run();
    assert!(out.success(), "{out:?}");
    let fds = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        fds, "0 /dev/null\n1 /dev/null\n2 /dev/null\n",
        "open fds in the container"
    );
    assert_no_leftover_mounts(&before);
}

fn a_working_directory_through_an_inherited_fd_is_refused(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let before = mounts_snapshot();
    let mut argv: Vec<&str> = vec!["exec"];
    argv.extend(mode.flag());
    argv.extend(["--pwd", "/proc/self/fd/5", img.arg(), "pwd"]);
    let bin = apptainer_tests::apptainer_bin();
    let mut sh_args = vec!["-c", "exec \"$0\" \"$@\" 5</etc", bin.to_str().unwrap()];
    sh_args.extend(argv);
    let out = UserCmd::program("/bin/sh", &sh_args).run();
    out.assert_one_error("/proc/self/fd/5");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_no_leftover_mounts(&before);
}

/// Modes and owners of what the starter creates or mounts in the container, as seen from
/// inside a run made under `umask`.
fn container_modes_under_umask(mode: Mode, img: &PulledImage, umask: &str) -> String {
    let listing = "stat -c '%n %a %U' / /tmp /var/tmp /dev /dev/shm /dev/pts /dev/null \
        /etc/passwd /etc/group /etc/hosts /etc/resolv.conf \"$HOME\" 2>&1";
    let mut sh_args = vec![
        "-c".to_string(),
        format!("umask {umask}; exec \"$@\""),
        "sh".to_string(),
        apptainer_tests::apptainer_bin()
            .to_str()
            .unwrap()
            .to_string(),
        "exec".to_string(),
    ];
    sh_args.extend(mode.flag().map(str::to_string));
    sh_args.extend(["--writable-tmpfs", img.arg(), "sh", "-c", listing].map(str::to_string));
    let out = UserCmd::program("/bin/sh", &sh_args).cwd("/").run();
    out.assert_success();
    out.stdout
}

fn the_callers_umask_does_not_change_the_modes_the_starter_creates(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let before = mounts_snapshot();
    let usual = container_modes_under_umask(mode, &img, "022");
    assert!(usual.starts_with("/ "), "{usual}");
    for umask in ["000", "777"] {
        let got = container_modes_under_umask(mode, &img, umask);
        assert_eq!(got, usual, "umask {umask}");
    }
    assert_no_leftover_mounts(&before);
}

fn a_pid_namespace_cannot_signal_the_callers_host_processes(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let acct = test_account();
    // A host process of the caller, which a container with --pid must not reach.
    let mut victim = Command::new("setpriv")
        .arg(format!("--reuid={}", acct.uid))
        .arg(format!("--regid={}", acct.gid))
        .args(["--init-groups", "sleep", "600"])
        .spawn()
        .unwrap();
    let pid = victim.id().to_string();
    let before = mounts_snapshot();
    let script = format!(
        "kill -TERM {pid} 2>/dev/null; echo term=$?; kill -KILL {pid} 2>/dev/null; echo kill=$?"
    );
    let out = action(mode, "exec", &["--pid"], &img.sif, &["sh", "-c", &script]).run();
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    out.assert_success();
    assert_eq!(out.stdout, "term=1\nkill=1\n", "{out:?}");
    assert!(alive, "the host process was killed from the container");
    assert_no_leftover_mounts(&before);
}

/// `program args…` as the test user (real ids, groups, clean environment), not waited for.
fn spawn_as_test_user(program: &Path, args: &[&std::ffi::OsStr]) -> std::process::Child {
    let acct = test_account();
    Command::new("setpriv")
        .arg(format!("--reuid={}", acct.uid))
        .arg(format!("--regid={}", acct.gid))
        .arg("--init-groups")
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", apptainer_tests::CLEAN_PATH)
        .env("HOME", &acct.home)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills the container (its first process, found by `argv0`, and that process's parent,
/// the starter kept as PID 1) and the host victim, and reaps both, even when the test fails.
struct PtraceRun {
    container: std::process::Child,
    victim: std::process::Child,
    argv0: String,
}

impl PtraceRun {
    /// The host pid of the container process whose command line starts with `argv0`.
    fn probe_pid(&self) -> Option<String> {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.parse::<u32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .starts_with(format!("{}\0", self.argv0).as_bytes())
                .then_some(name)
        })
    }
}

impl Drop for PtraceRun {
    fn drop(&mut self) {
        if let Some(probe) = self.probe_pid() {
            let init = status_field(&probe, "PPid")
                .filter(|p| status_field(p, "Name").is_some_and(|n| n.starts_with("starter")));
            for pid in init.iter().chain([&probe]) {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = self.container.kill();
        let _ = self.container.wait();
        let _ = self.victim.kill();
        let _ = self.victim.wait();
    }
}

/// Yama's `kernel.yama.ptrace_scope`, 0 (classic ptrace rules) on a kernel without Yama.
fn yama_ptrace_scope() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

/// What a process may do, from its /proc status: ids, groups, capability sets, seccomp.
const PRIVILEGE_FIELDS: [&str; 11] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

/// With `--pid`, a container process tries `PTRACE_ATTACH` and `PTRACE_SEIZE` on a host
/// process of the same caller and on its PID 1 (the starter, kept as init). The host
/// process is not in the container's PID namespace, so its pid names nothing there
/// (ESRCH), whatever Yama says (this kernel has none, so same-uid ptrace is otherwise
/// allowed; with `--userns` the kernel would also refuse, EPERM, a tracer outside the
/// target's user namespace). The setuid starter as PID 1 went from root to the caller, which left it not
/// dumpable (EPERM, as for its memory in T05); the user-namespace starter never changed
/// its ids and is the caller's own dumpable process, attachable like any other (unless
/// Yama refuses), so the test checks that it holds nothing the container's process lacks. The probe holds any
/// attach it got while the test reads the host process's status: still running, no tracer.
fn a_pid_namespace_cannot_ptrace_the_callers_host_processes_or_its_init(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the ptrace probe"
    );
    let img = image();
    let dir = img.dir.path();
    let probe = dir.join("ptrace-out");
    gcc(PTRACE_OUT_C, &probe, &["-static"]);
    let victim = spawn_as_test_user(Path::new("sleep"), &[std::ffi::OsStr::new("600")]);
    let host_pid = victim.id().to_string();
    let before = mounts_snapshot();
    let os = std::ffi::OsStr::new;
    let mut args = vec![os("exec")];
    args.extend(mode.flag().map(os));
    args.extend([os("--pid"), os("-B"), dir.as_os_str(), img.sif.as_os_str()]);
    args.extend([probe.as_os_str(), dir.as_os_str(), os(&host_pid), os("1")]);
    let container = spawn_as_test_user(&apptainer_tests::apptainer_bin(), &args);
    let argv0 = probe.to_str().unwrap().to_string();
    let mut run = PtraceRun {
        container,
        victim,
        argv0,
    };
    let ready_file = dir.join("ready");
    while !ready_file.exists() {
        let exited = run.container.try_wait().unwrap();
        assert!(exited.is_none(), "the container exited early: {exited:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let result = std::fs::read_to_string(dir.join("result")).unwrap();
    let probe_pid = run.probe_pid().expect("the probe's host pid");
    let init = status_field(&probe_pid, "PPid").unwrap();
    let init_name = status_field(&init, "Name");
    let privileges = |pid: &str| PRIVILEGE_FIELDS.map(|f| (f, status_field(pid, f)));
    let (init_has, probe_has) = (privileges(&init), privileges(&probe_pid));
    let (state, tracer) = (
        status_field(&host_pid, "State"),
        status_field(&host_pid, "TracerPid"),
    );
    let alive = run.victim.try_wait().unwrap().is_none();
    drop(run);
    let (init_line, expected_name) = match mode {
        Mode::Setuid => ("attach=EPERM seize=EPERM", "starter-suid"),
        // Yama from ptrace_scope 1 refuses a tracer that is not an ancestor.
        Mode::Userns if yama_ptrace_scope() > 0 => ("attach=EPERM seize=EPERM", "starter"),
        // Already attached: a second tracer (SEIZE) is refused.
        Mode::Userns => ("attach=ok seize=EPERM", "starter"),
    };
    assert_eq!(
        result,
        format!("attach=ESRCH seize=ESRCH\n{init_line}\n"),
        "host process {host_pid}, then PID 1"
    );
    assert_eq!(init_name.as_deref(), Some(expected_name), "PID 1");
    assert_eq!(init_has, probe_has, "PID 1 and the container's process");
    assert!(alive, "the host process exited");
    assert_eq!(state.as_deref(), Some("S (sleeping)"), "host process state");
    assert_eq!(tracer.as_deref(), Some("0"), "host process tracer");
    assert_no_leftover_mounts(&before);
}

#[test]
fn tiny_rlimits_make_the_setuid_starter_fail_or_run_without_leaving_anything_behind() {
    let _guard = serial();
    require!(ready(Mode::Setuid), READY);
    let suid = setuid_starter().unwrap();
    let img = image();
    let plan = setuid_plan(&img, "id -u");
    let uid = test_account().uid.to_string();
    let run = |limit: &str| {
        let script = format!("ulimit {limit} && exec \"$0\" 3<\"$1\"");
        UserCmd::program(
            "/bin/bash",
            &[
                "-c",
                &script,
                suid.to_str().unwrap(),
                plan.to_str().unwrap(),
            ],
        )
        .run()
    };
    let before = mounts_snapshot();
    // Too few fds for the mounts: one clear error.
    let out = run("-n 5");
    assert_fatal(&out);
    assert!(out.stderr.contains("Too many open files"), "{out:?}");
    assert_no_leftover_mounts(&before);
    // Either the container runs as the caller or the run fails without output; in both
    // cases nothing stays mounted. Under RLIMIT_FSIZE = 0 the starter's write of a
    // generated file fails with EFBIG, reported (a_file_size_limit_gives_one_fatal_line…).
    for limit in ["-n 4", "-f 0", "-u 1", "-v 20000", "-s 16", "-c 0"] {
        let out = run(limit);
        if out.success() {
            assert_eq!(out.stdout, format!("{uid}\n"), "ulimit {limit}: {out:?}");
        } else {
            assert!(out.stdout.is_empty(), "ulimit {limit}: {out:?}");
        }
        assert_no_leftover_mounts(&before);
    }
}

/// Removes the planted symlinks even when the test fails.
struct Planted(Vec<std::path::PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn names_planted_in_tmp_by_the_caller_are_not_followed(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let target = tempdir_for(TEST_USER);
    // The starter stages the root in a tmpfs it mounts over /tmp; the caller plants the
    // staging names in the host's /tmp as symlinks to a directory of its own.
    let mut planted = Planted(Vec::new());
    for name in ["lower", "stubs", "root", "session", "apptainer"] {
        let link = Path::new("/tmp").join(name);
        if link.symlink_metadata().is_err() {
            let out = UserCmd::program(
                "ln",
                &[
                    "-s",
                    target.path().to_str().unwrap(),
                    link.to_str().unwrap(),
                ],
            )
            .run();
            out.assert_success();
            planted.0.push(link);
        }
    }
    // Every staging name must be planted, or the test would pass without testing anything
    // (stale entries of another run in /tmp take names).
    require!(
        planted.0.len() == 5,
        "/tmp/lower, stubs, root, session and apptainer free to plant (stale entries in /tmp?)"
    );
    let before = mounts_snapshot();
    let flags: &[&str] = &["--writable-tmpfs"];
    let out = action(
        mode,
        "exec",
        flags,
        &img.sif,
        &["sh", "-c", "echo x > /var/tmp/newfile && id -u"],
    )
    .run();
    out.assert_success();
    assert_eq!(out.stdout, format!("{}\n", test_account().uid), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
    assert!(left.is_empty(), "written through a planted link: {left:?}");
    for link in &planted.0 {
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            target.path(),
            "{}",
            link.display()
        );
    }
    assert_no_leftover_mounts(&before);
}

/// Unmounts the host tmpfs even when the test fails.
struct HostMount(std::path::PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn a_bound_tree_keeps_its_submounts_covering_what_they_mask(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    require!(
        apptainer_tests::is_root(),
        "root to mount a tmpfs on the host"
    );
    let img = image();
    let tree = tempdir_for(TEST_USER);
    let sub = tree.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("masked"), "under the mount\n").unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _mounted = HostMount(sub.clone());
    std::fs::write(sub.join("on-top"), "on the mount\n").unwrap();
    let before = mounts_snapshot();
    let bind = format!("{}:/mnt", tree.path().display());
    let script = "ls /mnt/sub; grep ' /mnt/sub ' /proc/self/mountinfo | cut -d' ' -f6";
    let out = action(
        mode,
        "exec",
        &["-B", &bind],
        &img.sif,
        &["sh", "-c", script],
    )
    .run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The submount is there (the bind was recursive), so the file it masks stays hidden,
    // and it gained nosuid and nodev like the bind itself.
    assert_eq!(lines.first(), Some(&"on-top"), "{out:?}");
    assert_eq!(lines.len(), 2, "{out:?}");
    let opts: Vec<&str> = lines[1].split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{out:?}"
    );
    assert_no_leftover_mounts(&before);
}

/// A SIF whose only program, /bin/showcaps, carries file capabilities; the SIF and its
/// directory belong to the test user.
fn image_with_file_caps() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempdir_for(TEST_USER);
    let root = dir.path().join("rootfs");
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "mnt", "home", "var/tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).ok()?;
    }
    let bin = root.join("bin/showcaps");
    gcc(SHOW_CAPS_C, &bin, &["-static"]);
    let caps = "cap_dac_override,cap_dac_read_search,cap_setuid,cap_sys_admin+eip";
    let st = Command::new("setcap").arg(caps).arg(&bin).status().ok()?;
    st.success().then_some(())?;
    let sqfs = dir.path().join("rootfs.sqfs");
    let st = Command::new("mksquashfs")
        .arg(&root)
        .arg(&sqfs)
        .args(["-noappend", "-quiet", "-no-progress", "-xattrs"])
        .status()
        .ok()?;
    st.success().then_some(())?;
    let data = sif::write::DataSource::File(std::fs::File::open(&sqfs).ok()?);
    let part = sif::write::DescriptorInput::new(sif::DataType::Partition, data).partition(
        sif::FsType::Squash,
        sif::PartType::PrimSys,
        sif::Arch::Amd64,
    );
    let sif_path = dir.path().join("caps.sif");
    sif::write::create_container(&sif_path, sif::write::CreateOptions::default(), vec![part])
        .ok()?;
    let acct = test_account();
    std::os::unix::fs::chown(&sif_path, Some(acct.uid), Some(acct.gid)).ok()?;
    Some((dir, sif_path))
}

fn file_capabilities_in_the_image_grant_nothing(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let tools = ["gcc", "setcap", "mksquashfs"];
    require!(
        tools.iter().all(|t| Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())),
        "gcc, setcap and mksquashfs"
    );
    let Some((dir, sif_path)) = image_with_file_caps() else {
        panic!("could not build the image with file capabilities");
    };
    // A root-only file the capabilities would open (cap_dac_override / cap_dac_read_search).
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bind = format!("{}:/mnt", dir.path().display());
    let before = mounts_snapshot();
    let out = action(mode, "exec", &["-B", &bind], &sif_path, &["/bin/showcaps"]).run();
    out.assert_success();
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        let line = out.stdout.lines().find(|l| l.starts_with(set));
        assert_eq!(
            line.map(|l| l.split_whitespace().nth(1)),
            Some(Some("0000000000000000")),
            "{set}: {out:?}"
        );
    }
    assert!(out.stdout.contains("secret=denied"), "{out:?}");
    // The setuid run shows the capabilities are really in the image (the user-namespace run
    // hides a root-namespace security.capability xattr from the container altogether).
    if mode == Mode::Setuid {
        assert!(!out.stdout.starts_with("xattr=-1"), "{out:?}");
    }
    assert_no_leftover_mounts(&before);
}

fn an_alternative_config_from_the_caller_is_refused_or_ignored(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    // A conf that would be noticed: no /proc in the container.
    let conf = img.dir.path().join("evil.conf");
    std::fs::write(&conf, "mount proc = no\nmount dev = no\n").unwrap();
    let conf = conf.to_str().unwrap();
    let before = mounts_snapshot();
    let mut cmds = Vec::new();
    for flag in ["-c", "--config"] {
        let mut argv = vec![flag, conf, "exec"];
        argv.extend(mode.flag());
        argv.extend([img.arg(), "true"]);
        cmds.push(UserCmd::new(&argv));
    }
    cmds.push(action(mode, "exec", &[], &img.sif, &["true"]).env("APPTAINER_CONFIG_FILE", conf));
    for cmd in cmds {
        let out = cmd.run();
        out.assert_one_error("--config requires to be root");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    // APPTAINER_CONF is no option of ours: the installed conf still applies.
    let out = action(
        mode,
        "exec",
        &[],
        &img.sif,
        &["sh", "-c", "test -r /proc/self/status && echo proc"],
    )
    .env("APPTAINER_CONF", conf)
    .run();
    out.assert_success();
    assert_eq!(out.stdout, "proc\n", "{out:?}");
    assert_no_leftover_mounts(&before);
}

fn tioclinux_is_refused_in_the_container(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the ioctl probe"
    );
    let img = image();
    let probe = img.dir.path().join("tioclinux");
    gcc(TIOCLINUX_C, &probe, &["-static"]);
    let bind = format!("{}:/mnt", img.dir.path().display());
    let before = mounts_snapshot();
    let out = action(mode, "exec", &["-B", &bind], &img.sif, &["/mnt/tioclinux"]).run();
    out.assert_success();
    // EPERM from the seccomp filter, whatever fd 0 is (a tty or not).
    assert_eq!(out.stdout, "-1 EPERM\n-1 EPERM\n", "{out:?}");
    assert_no_leftover_mounts(&before);
}

/// Kills the whole container (its PID 1) and reaps the frontend even when the test fails.
struct Running {
    child: std::process::Child,
    /// Found in the command line of the container's shell.
    marker: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let init = pid_with_cmdline(&self.marker).and_then(|sh| status_field(&sh, "PPid"));
        if let Some(pid) = init {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Field `name` of /proc/<pid>/status.
fn status_field(pid: &str, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))?;
    Some(line[name.len() + 1..].trim().to_string())
}

/// The host pid of the process whose command line contains `marker`.
fn pid_with_cmdline(marker: &str) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_str()?.to_string();
        name.parse::<u32>().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (text.starts_with("sh -c ") && text.contains(marker)).then_some(name)
    })
}

#[test]
fn the_caller_cannot_ptrace_or_read_the_setuid_starter_while_the_container_runs() {
    let _guard = serial();
    require!(ready(Mode::Setuid), READY);
    require!(
        Command::new("gcc").arg("--version").output().is_ok(),
        "gcc to build the ptrace probe"
    );
    let img = image();
    let dir = img.dir.path();
    let probe = dir.join("probe");
    gcc(PROBE_PID_C, &probe, &["-static"]);
    let ready_file = dir.join("ready");
    let acct = test_account();
    let before = mounts_snapshot();
    // The container's shell carries the (unique) image directory in its command line.
    let script = format!("echo > {}/ready; while :; do sleep 1; done", dir.display());
    let child = Command::new("setpriv")
        .arg(format!("--reuid={}", acct.uid))
        .arg(format!("--regid={}", acct.gid))
        .arg("--init-groups")
        .arg(apptainer_tests::apptainer_bin())
        .args(["exec", "--pid", "-B"])
        .arg(dir)
        .args([img.arg(), "sh", "-c", &script])
        .env_clear()
        .env("PATH", apptainer_tests::CLEAN_PATH)
        .env("HOME", &acct.home)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("{}/ready", dir.display());
    let mut run = Running { child, marker };
    while !ready_file.exists() {
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "the container exited early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shell = pid_with_cmdline(&run.marker).expect("container shell");
    let starter = status_field(&shell, "PPid").unwrap();
    assert_eq!(
        status_field(&starter, "Name").as_deref(),
        Some("starter-suid")
    );
    let uid = acct.uid.to_string();
    let out = UserCmd::program(&probe, &[&starter, &shell]).run();
    out.assert_success();
    // The shell is the caller's own process (the probe works); the starter is not
    // dumpable, so neither its environment nor ptrace are open to the caller.
    assert_eq!(
        out.stdout, "environ=EACCES ptrace=EPERM\nenviron=ok ptrace=ok\n",
        "{out:?}"
    );
    let ids = status_field(&starter, "Uid").unwrap();
    assert_eq!(
        ids.split_whitespace().collect::<Vec<_>>(),
        vec![uid.as_str(); 4]
    );
    drop(run);
    assert_no_leftover_mounts(&before);
}

/// Runs `program args…` as the test user under `ulimit -f blocks`, with `plan` on fd 3.
fn under_file_size_limit(blocks: &str, plan: Option<&Path>, program: &Path, args: &[&str]) -> Out {
    let script = match plan {
        Some(_) => "ulimit -f \"$0\" && exec \"$@\" 3<\"$PLAN\"",
        None => "ulimit -f \"$0\" && exec \"$@\"",
    };
    let mut argv = vec!["-c", script, blocks, program.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cmd = UserCmd::program("/bin/bash", &argv);
    match plan {
        Some(p) => cmd.env("PLAN", p).run(),
        None => cmd.run(),
    }
}

/// The caller's RLIMIT_FSIZE used to kill the starter with SIGXFSZ when it wrote the
/// container's generated files (exit 153), half-way through its mounts. Under a zero limit
/// the starter now fails with one FATAL line naming the write, and leaves nothing mounted.
/// The container still gets SIGXFSZ's default: neither ignored nor blocked, so its own
/// write beyond the limit kills it as it would on the host.
fn a_file_size_limit_gives_one_fatal_line_and_the_container_normal_sigxfsz(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let starter = match mode {
        Mode::Setuid => apptainer_tests::starter_suid_bin(),
        Mode::Userns => apptainer_tests::starter_bin(),
    };
    let plan = serde_json::json!({
        "version": 1,
        "image": { "path": img.sif, "kind": "sif", "writable": false },
        "namespaces": { "user": mode == Mode::Userns, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": [{ "file": { "dst": "/etc/passwd", "contents": "root:x:0:0::/:/bin/sh\n" } }],
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/true"], "env": ["PATH=/bin"], "cwd": "/" }
    });
    let file = img.dir.path().join("fsize-plan.json");
    std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
    let before = mounts_snapshot();
    let out = under_file_size_limit("0", Some(&file), &starter, &[]);
    assert_ne!(
        out.code(),
        128 + libc::SIGXFSZ,
        "killed by SIGXFSZ: {out:?}"
    );
    assert_fatal(&out);
    assert!(
        out.stderr.contains("/etc/passwd") && out.stderr.contains("File too large"),
        "{out:?}"
    );
    assert_no_leftover_mounts(&before);
    // Stderr a file under the same limit: the FATAL line itself cannot be written, and the
    // status still says that the starter refused (255), not that it panicked on the write.
    let log = img.dir.path().join("fsize-stderr");
    let script = "ulimit -f 0 && exec \"$0\" 3<\"$1\" 2>\"$2\"";
    let args = [script, starter.to_str().unwrap(), file.to_str().unwrap()];
    let out = UserCmd::program(
        "/bin/bash",
        &[&["-c"][..], &args, &[log.to_str().unwrap()]].concat(),
    )
    .run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(std::fs::read(&log).unwrap(), b"", "{out:?}");
    assert_no_leftover_mounts(&before);
    // Through the frontend, which hands the Plan to the starter: never killed by SIGXFSZ
    // (exit 153, as when the Plan went through a memfd), only the starter's one line.
    let args = [&["exec"][..], mode.flag().as_slice(), &[img.arg(), "true"]].concat();
    let out = under_file_size_limit("0", None, &apptainer_tests::apptainer_bin(), &args);
    assert_ne!(
        out.code(),
        128 + libc::SIGXFSZ,
        "killed by SIGXFSZ: {out:?}"
    );
    assert_fatal(&out);
    assert!(
        out.stderr.contains("/etc/passwd") && out.stderr.contains("File too large"),
        "{out:?}"
    );
    assert_no_leftover_mounts(&before);
    // 64 KiB is enough for the frontend's and the starter's own files; the container
    // writes 1 MiB to a file of its own in /tmp.
    let script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; f=$(mktemp) && \
        head -c 1048576 /dev/zero >\"$f\"; echo status=$?; rm -f \"$f\"";
    let mut args = vec!["exec"];
    args.extend(mode.flag());
    args.extend([img.arg(), "sh", "-c", script]);
    let out = under_file_size_limit("64", None, &apptainer_tests::apptainer_bin(), &args);
    out.assert_success();
    let mask = |name: &str| {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{out:?}"));
        u64::from_str_radix(line[name.len()..].trim(), 16)
            .unwrap_or_else(|e| panic!("{e}: {out:?}"))
    };
    let bit = 1u64 << (libc::SIGXFSZ - 1);
    assert_eq!(
        mask("SigIgn:") & bit,
        0,
        "SIGXFSZ ignored in the container: {out:?}"
    );
    assert_eq!(
        mask("SigBlk:") & bit,
        0,
        "SIGXFSZ blocked in the container: {out:?}"
    );
    assert!(
        out.stdout
            .contains(&format!("status={}", 128 + libc::SIGXFSZ)),
        "{out:?}"
    );
    assert_no_leftover_mounts(&before);
}

apptainer_tests::both_modes!(
    a_file_size_limit_gives_one_fatal_line_and_the_container_normal_sigxfsz,
    tioclinux_is_refused_in_the_container,
    an_alternative_config_from_the_caller_is_refused_or_ignored,
    file_capabilities_in_the_image_grant_nothing,
    a_bound_tree_keeps_its_submounts_covering_what_they_mask,
    names_planted_in_tmp_by_the_caller_are_not_followed,
    a_pid_namespace_cannot_signal_the_callers_host_processes,
    a_pid_namespace_cannot_ptrace_the_callers_host_processes_or_its_init,
    the_callers_umask_does_not_change_the_modes_the_starter_creates,
    inherited_fds_and_closed_stdio_never_reach_the_container,
    a_working_directory_through_an_inherited_fd_is_refused,
    proc_self_exe_cannot_be_opened_for_writing,
    net_gives_the_container_only_a_loopback_interface,
);
