//! `apptainer run|exec|shell|test`: the action commands and their flags (apptainer-facts.md
//! §1.4). Flags become a plain `launch::LaunchOptions`; everything after the image belongs to
//! the container's command, as in the reference (flags are not interspersed).

use super::{boolish, GlobalOpts};
use crate::env as envvars;
use crate::launch::{self, Action, LaunchOptions};
use anyhow::{bail, Result};
use clap::ArgAction;
use std::path::PathBuf;

/// The flags shared by every action command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ActionFlags {
    /// a user-bind path specification: src[:dest[:opts]], opts ro or rw (comma-separated list)
    #[arg(short = 'B', long = "bind", value_delimiter = ',', value_name = "spec")]
    pub bind: Vec<String>,
    /// a mount specification, e.g. type=bind,source=/opt,destination=/hostopt
    #[arg(long = "mount", value_name = "spec")]
    pub mount: Vec<String>,
    /// disable one or more default mounts: proc,sys,dev,devpts,home,tmp,hostfs,cwd,bind-paths or a bind path destination
    #[arg(long = "no-mount", value_delimiter = ',', env = "APPTAINER_NO_MOUNT")]
    pub no_mount: Vec<String>,
    /// a home directory specification: src[:dest]
    #[arg(
        short = 'H',
        long = "home",
        env = "APPTAINER_HOME",
        value_name = "spec"
    )]
    pub home: Option<String>,
    /// do not mount the user's home directory
    #[arg(long = "no-home", env = "APPTAINER_NO_HOME", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_home: bool,
    /// initial working directory for the payload inside the container
    #[arg(long = "pwd", hide = true, env = "APPTAINER_PWD")]
    pub pwd: Option<String>,
    /// initial working directory for the payload inside the container
    #[arg(long = "cwd", env = "APPTAINER_CWD")]
    pub cwd: Option<String>,
    /// working directory for /tmp, /var/tmp and $HOME when using --contain
    #[arg(short = 'W', long = "workdir", env = "APPTAINER_WORKDIR")]
    pub workdir: Option<PathBuf>,
    /// include /scratch-like directories backed by the session or --workdir
    #[arg(
        short = 'S',
        long = "scratch",
        value_delimiter = ',',
        env = "APPTAINER_SCRATCH"
    )]
    pub scratch: Vec<String>,
    /// use minimal /dev and empty other directories (e.g. /tmp and $HOME) instead of sharing filesystems from your host
    #[arg(short = 'c', long = "contain", env = "APPTAINER_CONTAIN", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub contain: bool,
    /// contain not only file systems, but also PID, IPC, and environment
    #[arg(short = 'C', long = "containall", env = "APPTAINER_CONTAINALL", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub containall: bool,
    /// clean environment before running container
    #[arg(short = 'e', long = "cleanenv", env = "APPTAINER_CLEANENV", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub cleanenv: bool,
    /// pass environment variable to contained process (K=V, repeatable or comma-separated)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// pass environment variables from file to contained process
    #[arg(long = "env-file", value_delimiter = ',', env = "APPTAINER_ENV_FILE")]
    pub env_file: Vec<PathBuf>,
    /// do not forward these host environment variables (comma-separated names)
    #[arg(long = "no-env", value_delimiter = ',', env = "APPTAINER_NOENV")]
    pub no_env: Vec<String>,
    /// do not shell evaluate environment variables or OCI container CMD/ENTRYPOINT
    #[arg(long = "no-eval", env = "APPTAINER_NO_EVAL", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_eval: bool,
    /// makes the file system accessible as read-write with non persistent data (with overlay support only)
    #[arg(long = "writable-tmpfs", env = "APPTAINER_WRITABLE_TMPFS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub writable_tmpfs: bool,
    /// by default all Apptainer containers are available as read only; this option makes the file system accessible as read/write
    #[arg(short = 'w', long = "writable", env = "APPTAINER_WRITABLE", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub writable: bool,
    /// use an overlayFS image for persistent data storage or as read-only layer of container
    #[arg(
        short = 'o',
        long = "overlay",
        value_delimiter = ',',
        env = "APPTAINER_OVERLAY"
    )]
    pub overlay: Vec<String>,
    /// run container in a new user namespace, allowing Apptainer to run completely unprivileged on recent kernels
    #[arg(short = 'u', long = "userns", env = "APPTAINER_USERNS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub userns: bool,
    /// run container with the appearance of running as root
    #[arg(short = 'f', long = "fakeroot", env = "APPTAINER_FAKEROOT", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub fakeroot: bool,
    /// run container in a new PID namespace
    #[arg(short = 'p', long = "pid", env = "APPTAINER_PID", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub pid: bool,
    /// do not run container in a new PID namespace
    #[arg(long = "no-pid", env = "APPTAINER_NO_PID", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_pid: bool,
    /// run container in a new IPC namespace
    #[arg(short = 'i', long = "ipc", env = "APPTAINER_IPC", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub ipc: bool,
    /// run container in a new UTS namespace
    #[arg(long = "uts", env = "APPTAINER_UTS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub uts: bool,
    /// set container hostname (implies --uts)
    #[arg(long = "hostname", env = "APPTAINER_HOSTNAME")]
    pub hostname: Option<String>,
    /// run container in a new network namespace (sets up a bridge network interface by default)
    #[arg(short = 'n', long = "net", env = "APPTAINER_NET", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub net: bool,
    /// specify desired network type separated by commas, each network will bring up a dedicated interface inside container
    #[arg(long = "network", value_delimiter = ',', env = "APPTAINER_NETWORK")]
    pub network: Vec<String>,
    /// list of DNS servers separated by commas to add in resolv.conf
    #[arg(long = "dns", env = "APPTAINER_DNS")]
    pub dns: Option<String>,
    /// do not start shim processes with --pid
    #[arg(long = "no-init", env = "APPTAINER_NOSHIMINIT", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_init: bool,
    /// do not propagate umask to the container, set default 0022 umask
    #[arg(long = "no-umask", env = "APPTAINER_NO_UMASK", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_umask: bool,
    /// apply settings for increased OCI/Docker compatibility (--containall --no-init --no-umask --no-eval --writable-tmpfs)
    #[arg(long = "compat", env = "APPTAINER_COMPAT", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub compat: bool,
    /// set an application to run inside a container
    #[arg(long = "app", env = "APPTAINER_APP")]
    pub app: Option<String>,
    /// path to program to use for interactive shell
    #[arg(short = 's', long = "shell", env = "APPTAINER_SHELL")]
    pub shell: Option<String>,
    /// enable experimental Nvidia support
    #[arg(long = "nv", env = "APPTAINER_NV", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub nv: bool,
    /// enable experimental Rocm support
    #[arg(long = "rocm", env = "APPTAINER_ROCM", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub rocm: bool,
    /// disable Nvidia support (overrides 'always use nv' of apptainer.conf)
    #[arg(long = "no-nv", hide = true, env = "APPTAINER_NO_NV", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_nv: bool,
    /// disable Rocm support (overrides 'always use rocm' of apptainer.conf)
    #[arg(long = "no-rocm", hide = true, env = "APPTAINER_NO_ROCM", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_rocm: bool,
    /// a list of capabilities to add
    #[arg(long = "add-caps", env = "APPTAINER_ADD_CAPS")]
    pub add_caps: Option<String>,
    /// a list of capabilities to drop
    #[arg(long = "drop-caps", env = "APPTAINER_DROP_CAPS")]
    pub drop_caps: Option<String>,
    /// let root user keep privileges in container (root only)
    #[arg(long = "keep-privs", env = "APPTAINER_KEEP_PRIVS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub keep_privs: bool,
    /// drop all privileges from root user in container
    #[arg(long = "no-privs", env = "APPTAINER_NO_PRIVS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_privs: bool,
    /// enable security features (SELinux, Apparmor, Seccomp)
    #[arg(long = "security", value_delimiter = ',', env = "APPTAINER_SECURITY")]
    pub security: Vec<String>,
    /// extract the image to a temporary sandbox and run from there
    #[arg(long = "unsquash", env = "APPTAINER_UNSQUASH", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub unsquash: bool,
    /// use http instead of https for docker:// registries (insecure)
    #[arg(long = "no-https", visible_alias = "nohttps", env = "APPTAINER_NOHTTPS", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_https: bool,
    /// don't use the cache when converting a remote image
    #[arg(long = "disable-cache", env = "APPTAINER_DISABLE_CACHE", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub disable_cache: bool,
}

/// `apptainer run [run options...] <container> [args...]`
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: ActionFlags,
    /// the container image: a SIF file, a sandbox directory or a URI (docker://, oci-archive:, ...)
    pub image: String,
    /// arguments given to the runscript
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `apptainer exec [exec options...] <container> <command> [args...]`
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub flags: ActionFlags,
    /// the container image: a SIF file, a sandbox directory or a URI (docker://, oci-archive:, ...)
    pub image: String,
    /// the command to run in the container, and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// `apptainer shell [shell options...] <container>`
pub type ShellArgs = RunArgs;
/// `apptainer test [exec options...] <image path>`
pub type TestArgs = RunArgs;

pub fn run(a: RunArgs, g: &GlobalOpts) -> Result<()> {
    start(Action::Run, a.flags, a.image, a.args, g)
}

pub fn exec(a: ExecArgs, g: &GlobalOpts) -> Result<()> {
    start(Action::Exec, a.flags, a.image, a.command, g)
}

pub fn shell(a: ShellArgs, g: &GlobalOpts) -> Result<()> {
    start(Action::Shell, a.flags, a.image, a.args, g)
}

pub fn test(a: TestArgs, g: &GlobalOpts) -> Result<()> {
    start(Action::Test, a.flags, a.image, a.args, g)
}

fn start(
    action: Action,
    flags: ActionFlags,
    image: String,
    args: Vec<String>,
    g: &GlobalOpts,
) -> Result<()> {
    let opts = launch_options(flags)?;
    launch::launch(action, &image, args, opts, g)
}

/// Turns the parsed flags (plus the environment variables clap cannot read itself) into the
/// launcher's options: `--compat` expanded, bind lists with their env values appended, `--env`
/// pairs split.
pub fn launch_options(f: ActionFlags) -> Result<LaunchOptions> {
    refuse_unsupported(&f)?;
    let capabilities = cap_request(&f)?;
    let mut binds = f.bind;
    // Apptainer appends the environment's bind lists to the command line's, it does not
    // replace them (EnvAppendValue in the reference).
    binds.extend(envvars::list("APPTAINER_BIND"));
    binds.extend(envvars::list("APPTAINER_BINDPATH"));
    let mut mounts = f.mount;
    mounts.extend(env_mount_list());
    let compat = f.compat;
    let containall = f.containall || compat;
    Ok(LaunchOptions {
        binds: launch::bind::parse_bind_list(&binds)?
            .into_iter()
            .chain(launch::bind::parse_mount_list(&mounts)?)
            .collect(),
        no_mount: f.no_mount,
        home: f.home,
        no_home: f.no_home,
        cwd: f.cwd.or(f.pwd).or_else(secondary_cwd_env),
        workdir: f.workdir,
        contain: f.contain || containall,
        cleanenv: f.cleanenv || containall,
        env: parse_env_pairs(&f.env)?,
        env_files: f.env_file,
        no_env: f.no_env,
        no_eval: f.no_eval || compat,
        writable_tmpfs: f.writable_tmpfs || compat,
        writable: f.writable,
        userns: f.userns || envvars::flag("APPTAINER_UNSHARE_USERNS"),
        fakeroot: f.fakeroot,
        pid: !f.no_pid && (f.pid || containall || envvars::flag("APPTAINER_UNSHARE_PID")),
        ipc: f.ipc || containall || envvars::flag("APPTAINER_UNSHARE_IPC"),
        uts: f.uts || f.hostname.is_some() || envvars::flag("APPTAINER_UNSHARE_UTS"),
        hostname: f.hostname,
        scratch: if f.scratch.is_empty() {
            envvars::list("APPTAINER_SCRATCHDIR")
        } else {
            f.scratch
        },
        dns: f.dns.as_deref().map(parse_dns).transpose()?,
        net: f.net || !f.network.is_empty() || envvars::flag("APPTAINER_UNSHARE_NET"),
        no_init: f.no_init || compat,
        no_umask: f.no_umask || compat,
        app: f.app.or_else(|| std::env::var("APPTAINER_APPNAME").ok()),
        shell: f.shell,
        disable_cache: f.disable_cache,
        no_https: f.no_https || envvars::flag("APPTAINER_NO_HTTPS"),
        nv: f.nv,
        rocm: f.rocm,
        no_nv: f.no_nv,
        no_rocm: f.no_rocm,
        capabilities,
        overlay: f.overlay,
        unsquash: f.unsquash,
        join: false,
    })
}

/// Options this build parses (so scripts that pass them get a clear answer) but whose
/// machinery does not exist yet. Refusing is better than silently running without them.
fn refuse_unsupported(f: &ActionFlags) -> Result<()> {
    let refused: [(&str, bool); 2] = [
        // Only the loopback-only network is available: CNI networks are not implemented.
        ("--network", f.network.iter().any(|n| n != "none")),
        ("--security", !f.security.is_empty()),
    ];
    if let Some((name, _)) = refused.iter().find(|(_, on)| *on) {
        bail!("{name} is not supported by this build yet");
    }
    Ok(())
}

/// `--keep-privs`, `--no-privs`, `--add-caps`, `--drop-caps` as the starter's request, names
/// made canonical (`chown` -> `CAP_CHOWN`). Only root keeps or gains capabilities, as in the
/// reference: a user's `--keep-privs` is an error, and since no capability database grants
/// users any, a user's `--add-caps` is a warning and adds nothing.
fn cap_request(f: &ActionFlags) -> Result<starter::plan::CapRequest> {
    let root = nix::unistd::getuid().is_root();
    if f.keep_privs && !root {
        bail!("--keep-privs requires root privileges");
    }
    let names = |list: &Option<String>, what: &str| {
        let mut known = Vec::new();
        let given = list.iter().flat_map(|l| l.split(',')).map(str::trim);
        for n in given.filter(|n| !n.is_empty()) {
            match cap_name(n) {
                Some(name) => known.push(name),
                None => crate::warning!("won't {what} unknown capability: {n}"),
            }
        }
        known
    };
    let (mut add, drop) = (names(&f.add_caps, "add"), names(&f.drop_caps, "drop"));
    if !root && !add.is_empty() {
        crate::warning!("not authorized to add capability: {}", add.join(","));
        add.clear();
    }
    Ok(starter::plan::CapRequest {
        keep_privs: f.keep_privs,
        no_privs: f.no_privs,
        add,
        drop,
    })
}

/// `--dns 1.1.1.1,8.8.8.8`: comma-separated IPv4 or IPv6 addresses.
fn parse_dns(list: &str) -> Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => bail!("--dns {s:?}: not an IP address"),
        })
        .collect()
}

/// `APPTAINER_MOUNT` holds one mount spec per line in the reference (a spec itself contains
/// commas), so it is split on newlines, not commas.
fn env_mount_list() -> Vec<String> {
    std::env::var("APPTAINER_MOUNT")
        .map(|v| {
            v.lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `APPTAINER_TARGET_PWD` / `APPTAINER_TARGET_CWD`: the reference's secondary names for `--pwd`.
fn secondary_cwd_env() -> Option<String> {
    ["APPTAINER_TARGET_CWD", "APPTAINER_TARGET_PWD"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Splits `--env` values: each is `K=V[,K2=V2...]`; a comma-separated piece without `=`
/// continues the previous value, so `--env LIST=a,b` keeps its comma.
pub fn parse_env_pairs(values: &[String]) -> Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for value in values {
        for piece in value.split(',') {
            match piece.split_once('=') {
                Some((k, v)) if !k.is_empty() => pairs.push((k.to_string(), v.to_string())),
                _ => match pairs.last_mut() {
                    Some((_, v)) => {
                        v.push(',');
                        v.push_str(piece);
                    }
                    None => bail!("--env {value:?}: expected KEY=VALUE"),
                },
            }
        }
    }
    Ok(pairs)
}

/// A capability as users spell it (`chown`, `Cap_Chown`, `all`) in the canonical form the
/// starter takes (`CAP_CHOWN`, `CAP_ALL`), or None if there is no such capability.
fn cap_name(s: &str) -> Option<String> {
    let up = s.trim().to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    (name == "CAP_ALL" || name.parse::<caps::Capability>().is_ok()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_made_canonical() {
        assert_eq!(cap_name(" net_raw"), Some("CAP_NET_RAW".into()));
        assert_eq!(cap_name("All"), Some("CAP_ALL".into()));
        assert_eq!(cap_name("cap_bogus"), None);
    }
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        cmd: TestCmd,
    }
    #[derive(clap::Subcommand, Debug)]
    enum TestCmd {
        Exec(ExecArgs),
        Run(RunArgs),
    }

    fn parse(args: &[&str]) -> TestCmd {
        TestCli::try_parse_from(std::iter::once("apptainer").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn arguments_after_the_image_belong_to_the_command() {
        let TestCmd::Exec(a) = parse(&["exec", "-B", "/a:/b,/c", "img.sif", "ls", "-l", "--color"])
        else {
            panic!("not exec")
        };
        assert_eq!(a.image, "img.sif");
        assert_eq!(a.command, ["ls", "-l", "--color"]);
        assert_eq!(a.flags.bind, ["/a:/b", "/c"]);
    }

    #[test]
    fn run_passes_option_like_arguments_to_the_runscript() {
        let TestCmd::Run(a) = parse(&["run", "--cleanenv", "img.sif", "--utc", "-R"]) else {
            panic!("not run")
        };
        assert!(a.flags.cleanenv);
        assert_eq!(a.args, ["--utc", "-R"]);
    }

    #[test]
    fn env_values_split_on_commas_but_keep_commas_inside_values() {
        let pairs = parse_env_pairs(&["A=1,B=x,y".into(), "C=".into()]).unwrap();
        assert_eq!(
            pairs,
            [
                ("A".into(), "1".into()),
                ("B".into(), "x,y".into()),
                ("C".into(), String::new())
            ]
        );
        assert!(parse_env_pairs(&["novalue".into()]).is_err());
    }

    #[test]
    fn compat_implies_its_five_options() {
        let opts = launch_options(ActionFlags {
            compat: true,
            ..Default::default()
        })
        .unwrap();
        assert!(opts.contain && opts.cleanenv && opts.pid && opts.ipc);
        assert!(opts.no_init && opts.no_umask && opts.no_eval && opts.writable_tmpfs);
    }

    #[test]
    fn network_none_means_a_loopback_only_network_namespace() {
        let opts = launch_options(ActionFlags {
            network: vec!["none".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(opts.net);
        let err = launch_options(ActionFlags {
            network: vec!["bridge".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--network is not supported by this build yet"
        );
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let err = launch_options(ActionFlags {
            security: vec!["seccomp:x.json".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--security is not supported by this build yet"
        );
    }
}
