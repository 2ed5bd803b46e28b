//! Launching containers: from the action command's options, the image and apptainer.conf to
//! a `Plan`, checked with the starter's own `validate`, then handed to the starter on fd 3.
//! Everything up to `build_plan` is a pure computation over explicit inputs; the I/O (conf,
//! host files, exec) sits in `launch` alone.

pub mod action;
pub mod bind;
pub mod direct;
pub mod environment;
pub mod identity;
pub mod image;
pub mod image_facts;
pub mod mounts;
pub mod overlay;
pub mod starter_exec;
pub mod unsquash;

pub use action::Action;

use crate::cli::GlobalOpts;
use anyhow::{bail, Context, Result};
use bind::BindSpec;
use identity::Identity;
use image::ResolvedImage;
use starter::plan::{Namespaces, Plan, PlanImage, PLAN_VERSION};
use std::path::{Path, PathBuf};

/// Everything the action flags ask for, independent of clap.
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    pub binds: Vec<BindSpec>,
    pub no_mount: Vec<String>,
    pub home: Option<String>,
    pub no_home: bool,
    pub cwd: Option<String>,
    pub workdir: Option<PathBuf>,
    pub contain: bool,
    pub cleanenv: bool,
    pub env: Vec<(String, String)>,
    pub env_files: Vec<PathBuf>,
    pub no_env: Vec<String>,
    pub no_eval: bool,
    pub writable_tmpfs: bool,
    pub writable: bool,
    pub userns: bool,
    pub fakeroot: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: Option<String>,
    /// `--dns` name servers.
    pub dns: Option<Vec<String>>,
    /// `--scratch` directories.
    pub scratch: Vec<String>,
    pub net: bool,
    pub no_init: bool,
    pub no_umask: bool,
    pub app: Option<String>,
    pub shell: Option<String>,
    pub disable_cache: bool,
    /// `--no-https`: plain HTTP to registries for `docker://` images.
    pub no_https: bool,
    /// `--nv` / `--rocm`: bind the host's GPU libraries (see `crate::gpu`).
    pub nv: bool,
    pub rocm: bool,
    /// `--no-nv` / `--no-rocm`: override `always use nv/rocm`.
    pub no_nv: bool,
    pub no_rocm: bool,
    /// `--keep-privs`, `--no-privs`, `--add-caps`, `--drop-caps`, names canonical.
    pub capabilities: starter::plan::CapRequest,
    /// `--overlay DIR|IMAGE[:ro]` arguments, in order.
    pub overlay: Vec<String>,
    /// `--unsquash`: run from a temporary extraction of the image (see `unsquash`).
    pub unsquash: bool,
    /// Prepared for joining an instance (`exec instance://`): nothing is mounted, so the
    /// image is never extracted.
    pub join: bool,
}

/// Starts `image` for `action`; on success the frontend is replaced by the starter.
/// `instance://NAME` joins a running instance instead (crate::instance::join).
pub fn launch(
    action: Action,
    image: &str,
    args: Vec<String>,
    opts: LaunchOptions,
    g: &GlobalOpts,
) -> Result<()> {
    starter_exec::defer_file_size_signal();
    if let Some(name) = image.strip_prefix("instance://") {
        return crate::instance::join::launch(action, name, args, opts, g);
    }
    exec_prepared(prepare(action, image, args, opts, g)?)
}

/// Hands the Plan to the starter; on success the frontend is replaced by it.
pub fn exec_prepared(mut p: Prepared) -> Result<()> {
    let json = serde_json::to_vec(&p.plan).context("cannot encode the launch plan")?;
    crate::debug!("launch plan: {}", String::from_utf8_lossy(&json));
    // This process becomes the starter: the extraction goes once it exits.
    if let Some(e) = p.extracted.take() {
        e.remove_after_exit(std::process::id())?;
    }
    starter_exec::exec(&p.starter, &json, &p.image_name)?;
    Ok(())
}

/// A checked Plan and the starter that is to run it.
pub struct Prepared {
    pub starter: starter_exec::StarterChoice,
    pub plan: Plan,
    /// The image as resolved (absolute path of a local file or of the cached SIF).
    pub image_path: PathBuf,
    pub image_name: String,
    /// The image's temporary extraction, if it runs from one: whoever starts the starter
    /// hands it over for removal (`unsquash::Extracted::remove_after_exit`).
    pub extracted: Option<unsquash::Extracted>,
}

/// Everything up to the starter: the image resolved, the starter chosen, the Plan built and
/// passed through the starter's own `validate`.
pub fn prepare(
    action: Action,
    image: &str,
    args: Vec<String>,
    opts: LaunchOptions,
    g: &GlobalOpts,
) -> Result<Prepared> {
    check_combinations(&opts)?;
    let conf = load_conf(g)?;
    let img = image::resolve(image, opts.disable_cache, opts.no_https)?;
    let image_name = image::display_name(&img.path);
    let id = Identity::current()?;
    if opts.fakeroot && id.uid != 0 {
        warn_without_subids(&id);
    }
    let libexec_bin = Path::new(conf::paths::LIBEXECDIR).join("bin");
    // The SIF's descriptors are read once, for both the --writable check and the mode.
    let sif_overlay =
        img.kind == starter::plan::ImageKind::Sif && overlay::has_overlay_partition(&img.path);
    let overlays = overlay_layers(&opts, &img, &conf, id.uid, sif_overlay)?;
    // Fakeroot, writable images and overlays (a SIF's own partition too, mounted read-only
    // by default) exist only in a user namespace here.
    let sif_overlay = sif_overlay && conf.allow_user_ns;
    // Root writes a sandbox without one (a root build's %post), as the reference does.
    let root_sandbox = id.uid == 0 && img.kind == starter::plan::ImageKind::Sandbox;
    let want_userns = opts.userns
        || opts.fakeroot
        || (opts.writable && !root_sandbox)
        || !overlays.is_empty()
        || sif_overlay;
    let starter = starter_exec::choose(&libexec_bin, id.uid, want_userns, conf.allow_setuid)?;
    crate::debug!(
        "using starter {:?} (setuid: {})",
        starter.path.display(),
        starter.setuid
    );
    let extracted = if !opts.join && unsquash::wanted(&img, opts.unsquash, !starter.setuid) {
        if opts.writable {
            bail!("--writable cannot be used with an image run from a temporary extraction");
        }
        Some(unsquash::extract(&img)?)
    } else {
        None
    };
    let img = extracted.as_ref().map_or(img, |e| e.sandbox.clone());
    let env_file = environment::read_env_files(&opts.env_files, image)?;
    let host = HostInputs::read(&conf, &img, action);
    let inputs = PlanInputs {
        action,
        args: &args,
        opts: &opts,
        conf: &conf,
        img: &img,
        id: &id,
        host: &host,
        env_file,
        setuid: starter.setuid,
    };
    let mut plan = build_plan(&inputs)?;
    plan.overlays = overlays;
    // Appended after every other mount: the GPU files land on top of what the image has.
    plan.mounts.extend(crate::gpu::plan_mounts(&conf, &opts));
    let policy = policy(&conf);
    starter::plan::validate(plan.clone(), &policy, &id.caller(starter.setuid))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Prepared {
        starter,
        plan,
        image_name,
        image_path: img.path,
        extracted,
    })
}

/// `--overlay` and `--writable` on a SIF, checked with the reference's messages.
fn overlay_layers(
    opts: &LaunchOptions,
    img: &ResolvedImage,
    conf: &conf::Conf,
    uid: u32,
    sif_overlay: bool,
) -> Result<Vec<starter::plan::PlanOverlay>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let specs = opts
        .overlay
        .iter()
        .map(|s| overlay::parse(s, &cwd))
        .collect::<Result<Vec<_>>>()?;
    let req = overlay::Request {
        specs: &specs,
        writable_tmpfs: opts.writable_tmpfs,
        writable: opts.writable,
        image: &img.path,
        image_kind: img.kind,
        sif_overlay,
        uid,
    };
    overlay::check(&req, conf)
}

/// The starter maps only the caller's own ids under `--fakeroot` when /etc/subuid or
/// /etc/subgid has no usable range for them; say so, as the reference does, since `chown`
/// to other ids (what package managers do) will then fail.
fn warn_without_subids(id: &Identity) {
    let has_range = |file: &str| {
        conf::load_subids(file)
            .ok()
            .is_some_and(|ids| ids.lookup(Some(&id.name), id.uid).is_ok())
    };
    if !has_range(conf::SUBUID_FILE) || !has_range(conf::SUBGID_FILE) {
        crate::warning!(
            "User not listed in {} or {}, trying root-mapped namespace",
            conf::SUBUID_FILE,
            conf::SUBGID_FILE
        );
    }
}

/// Flag combinations the reference refuses, and warnings for what this build lacks.
fn check_combinations(opts: &LaunchOptions) -> Result<()> {
    if opts.writable && opts.writable_tmpfs {
        bail!("--writable and --writable-tmpfs cannot be used together");
    }
    Ok(())
}

/// The rules of `conf` as the starter applies them, with `limit container owners/groups`
/// resolved in the host's passwd and group files (read without the starter's ownership
/// checks: this is only the early check).
fn policy(conf: &conf::Conf) -> starter::plan::Policy {
    let read = |file| conf::load_accounts(file).unwrap_or_default();
    starter::plan::Policy::resolved(conf, &read(conf::PASSWD_FILE), &read(conf::GROUP_FILE))
}

/// The conf the starter will apply. `--config` cannot change it: the starter only trusts its
/// built-in path, so another file would make the frontend's early checks lie.
fn load_conf(g: &GlobalOpts) -> Result<conf::Conf> {
    let builtin = Path::new(conf::paths::CONF_FILE);
    if let Some(other) = g.config.as_deref().filter(|p| *p != builtin) {
        let suid = Path::new(conf::paths::LIBEXECDIR).join("bin/starter-suid");
        if !nix::unistd::Uid::current().is_root() && suid.exists() {
            bail!("--config requires to be root or an unprivileged installation");
        }
        bail!(
            "--config {:?}: the action commands only use {:?} in this build",
            other.display(),
            builtin.display()
        );
    }
    conf::load(builtin).map_err(|e| anyhow::anyhow!("{e}"))
}

/// What the frontend reads from the host and the image for the Plan.
pub struct HostInputs {
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    pub env_home: Option<PathBuf>,
    pub resolv_conf: Option<String>,
    pub hostname: Option<String>,
    pub files: mounts::ImageFiles,
    /// Whether the image has `/bin/sh`; unknown (assumed yes) for SIF and squashfs.
    pub has_shell: bool,
    /// The image's env scripts, when known (see `direct`).
    pub env_scripts: Option<Vec<(String, String)>>,
}

impl HostInputs {
    fn read(conf: &conf::Conf, img: &ResolvedImage, action: Action) -> HostInputs {
        let facts = image_facts::read(img);
        // The image's passwd and group are only needed to extend them with the caller.
        let (passwd, group) = if conf.config_passwd || conf.config_group {
            (facts.passwd, facts.group)
        } else {
            (None, None)
        };
        HostInputs {
            env: std::env::vars_os().collect(),
            env_home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute()),
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
            files: mounts::ImageFiles { passwd, group },
            // Only `exec` can do without a shell; the others fail clearly in the container.
            has_shell: action != Action::Exec || facts.has_shell,
            env_scripts: facts.env_scripts,
        }
    }
}

/// The inputs of `build_plan`.
pub struct PlanInputs<'a> {
    pub action: Action,
    pub args: &'a [String],
    pub opts: &'a LaunchOptions,
    pub conf: &'a conf::Conf,
    pub img: &'a ResolvedImage,
    pub id: &'a Identity,
    pub host: &'a HostInputs,
    pub env_file: Vec<(String, String)>,
    pub setuid: bool,
}

/// Computes the Plan: mounts, environment and the container process.
pub fn build_plan(inp: &PlanInputs<'_>) -> Result<Plan> {
    let opts = inp.opts;
    let mreq = mounts::MountRequest {
        binds: opts.binds.clone(),
        no_mount: opts.no_mount.clone(),
        home: opts.home.clone(),
        no_home: opts.no_home,
        contain: opts.contain,
        workdir: opts.workdir.clone(),
        cwd: opts.cwd.clone(),
        fakeroot: opts.fakeroot,
        hostname: opts.hostname.clone(),
        dns: opts.dns.clone(),
        scratch: opts.scratch.clone(),
    };
    let facts = mounts::HostFacts {
        id: inp.id,
        env_home: inp.host.env_home.clone(),
        resolv_conf: inp.host.resolv_conf.clone(),
        hostname: inp.host.hostname.clone(),
    };
    let mplan = mounts::compute(inp.conf, &mreq, &facts, &inp.host.files)?;
    let env_req = environment::EnvRequest {
        cleanenv: opts.cleanenv,
        no_eval: opts.no_eval,
        env: opts.env.clone(),
        env_file: inp.env_file.clone(),
        no_env: opts.no_env.clone(),
    };
    let rt = environment::RuntimeVars {
        container: inp.img.path.to_string_lossy().into_owned(),
        name: image::display_name(&inp.img.path),
        command: inp.action.name().into(),
        app: opts.app.clone(),
        shell: opts.shell.clone(),
        home: mplan.home.clone(),
    };
    let env = environment::compute(&inp.host.env, &env_req, &rt)?;
    let process = container_process(inp, &env, &mplan.cwd)?;
    Ok(Plan {
        version: PLAN_VERSION,
        image: PlanImage {
            path: inp.img.path.clone(),
            kind: inp.img.kind,
            writable: opts.writable,
        },
        namespaces: Namespaces {
            user: !inp.setuid,
            pid: opts.pid,
            ipc: opts.ipc,
            uts: opts.uts,
            net: opts.net,
        },
        hostname: opts.hostname.clone(),
        mounts: mplan.mounts,
        writable_tmpfs: opts.writable_tmpfs,
        fakeroot: opts.fakeroot,
        capabilities: opts.capabilities.clone(),
        init: opts.pid && !opts.no_init,
        overlays: Vec::new(),
        instance: false,
        join: None,
        process: starter::plan::Process {
            argv: process.argv,
            env: process
                .env
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            cwd: mplan.cwd,
            umask: process.umask,
        },
    })
}

fn container_process(
    inp: &PlanInputs<'_>,
    env: &environment::ContainerEnv,
    cwd: &str,
) -> Result<action::Process> {
    let script_opts = action::ScriptOptions {
        umask: if inp.opts.no_umask {
            Some(0o022)
        } else {
            caller_umask()
        },
        quiet: !crate::log::enabled(crate::log::Level::Info),
    };
    let scripts = inp.host.env_scripts.as_deref();
    let evaluated = scripts.filter(|_| inp.action == Action::Exec && inp.opts.app.is_none());
    if let Some(vars) = evaluated.and_then(|s| direct::environment(s, env, cwd)) {
        if let Some(p) = action::direct(inp.args, vars, &script_opts) {
            crate::debug!(
                "executing {:?} without a shell: the image's env scripts were evaluated here",
                p.path
            );
            return Ok(p);
        }
    }
    if inp.host.has_shell {
        return Ok(action::through_shell(
            inp.action,
            inp.args,
            env,
            &script_opts,
        ));
    }
    if inp.action != Action::Exec {
        bail!(
            "image {:?} has no /bin/sh: only 'exec' of an absolute path can run in it",
            inp.img.path.display()
        );
    }
    let Some(p) = action::direct(inp.args, env.flattened(), &script_opts) else {
        bail!(
            "image {:?} has no /bin/sh: give the command as an absolute path or a name in PATH",
            inp.img.path.display()
        );
    };
    crate::verbose!(
        "image has no /bin/sh: executing {:?} directly, without the image's environment scripts",
        p.path
    );
    Ok(p)
}

/// The caller's umask, read without changing it (`Umask:` of /proc/self/status).
fn caller_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starter::plan::ImageKind;

    fn identity(home: &Path, cwd: &Path) -> Identity {
        Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            name: "u".into(),
            gecos: String::new(),
            passwd_home: home.into(),
            shell: "/bin/sh".into(),
            cwd: cwd.into(),
        }
    }

    fn host(home: &Path) -> HostInputs {
        HostInputs {
            env: vec![("HOME".into(), home.into()), ("FOO".into(), "bar".into())],
            env_home: Some(home.into()),
            resolv_conf: Some("nameserver 127.0.0.1\n".into()),
            hostname: Some("node1".into()),
            files: mounts::ImageFiles::default(),
            has_shell: true,
            env_scripts: None,
        }
    }

    /// The plans the frontend builds for the default conf pass the starter's own rules,
    /// in both modes and with the common options.
    #[test]
    fn default_plans_pass_the_starters_validation() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let conf = conf::Conf::default();
        let img = ResolvedImage {
            path: "/images/x.sif".into(),
            kind: ImageKind::Sif,
        };
        let id = identity(&home, &home);
        let host = host(&home);
        let args = vec!["/bin/true".to_string()];
        let variants = [
            LaunchOptions::default(),
            LaunchOptions {
                contain: true,
                cleanenv: true,
                pid: true,
                ipc: true,
                ..Default::default()
            },
            LaunchOptions {
                hostname: Some("box".into()),
                uts: true,
                ..Default::default()
            },
        ];
        for opts in &variants {
            for setuid in [true, false] {
                let inputs = PlanInputs {
                    action: Action::Exec,
                    args: &args,
                    opts,
                    conf: &conf,
                    img: &img,
                    id: &id,
                    host: &host,
                    env_file: Vec::new(),
                    setuid,
                };
                let plan = build_plan(&inputs).unwrap();
                assert_eq!(plan.namespaces.user, !setuid);
                assert_eq!(plan.process.argv[0], "/bin/sh");
                assert_eq!(plan.process.argv[3], "/.singularity.d/actions/exec");
                assert_eq!(plan.process.argv[4], "/bin/true");
                assert!(plan
                    .process
                    .env
                    .iter()
                    .any(|e| e == "APPTAINER_COMMAND=exec"));
                let foo = plan.process.env.iter().any(|e| e == "FOO=bar");
                assert_eq!(foo, !opts.cleanenv, "{opts:?}");
                let policy = policy(&conf);
                let validated = starter::plan::validate(plan, &policy, &id.caller(setuid));
                assert!(validated.is_ok(), "{opts:?} setuid={setuid}: {validated:?}");
            }
        }
    }
}
