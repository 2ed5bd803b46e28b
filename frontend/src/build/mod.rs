//! Building an image from a definition file (`apptainer build OUT DEF`).
//!
//! Each stage is built in its own sandbox under a private (0700) temporary directory in
//! `$APPTAINER_TMPDIR`/`$TMPDIR`, in the reference's order: bootstrap, `%files from`,
//! `%setup` (host), `%files`, `%post` (in the container, through a nested
//! `apptainer exec --writable`, with `--fakeroot` when not root), metadata, `%test`.
//! Only the last stage is assembled, into a SIF or a sandbox, under a temporary name and
//! renamed, so a failed build leaves no output.

mod apps;
mod assemble;
mod bootstrap;
mod debootstrap;
mod files;
mod flags;
mod idmap;
pub mod inspect;
mod labels;
mod metadata;
mod rootpath;
mod scripts;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::deffile::{self, BuildArgs, DefFile, Stage};
use crate::pull::PullOptions;

pub use flags::DefFlags;

/// What the command line asked for.
pub struct BuildOptions {
    pub sandbox: bool,
    pub force: bool,
    pub notest: bool,
    /// `--section`: the sections to run (`all` by default; `none` runs none).
    pub sections: Vec<String>,
    pub update: bool,
    /// `--fakeroot`, or implied for a non-root caller.
    pub fakeroot: bool,
    pub fix_perms: bool,
    pub binds: Vec<String>,
    pub writable_tmpfs: bool,
    pub build_args: Vec<String>,
    pub build_arg_file: Option<PathBuf>,
    pub warn_unused_build_args: bool,
    /// How bootstrap agents fetch their base image.
    pub pull: PullOptions,
    /// The caller's subordinate ids when a fakeroot build maps them.
    pub subids: Option<idmap::SubIdMap>,
}

impl BuildOptions {
    /// Whether `--section` lets `name` run, as the reference's `RunSection`.
    pub fn runs(&self, name: &str) -> bool {
        if self.sections.is_empty() {
            return true;
        }
        self.sections
            .iter()
            .any(|s| s == "all" || s.eq_ignore_ascii_case(name))
    }
}

impl BuildOptions {
    /// Options from the command line. A caller who is not root builds with fakeroot, as
    /// in the reference.
    pub fn from_flags(
        f: &DefFlags,
        sandbox: bool,
        force: bool,
        fix_perms: bool,
        pull: PullOptions,
    ) -> BuildOptions {
        BuildOptions {
            sandbox,
            force,
            notest: f.notest,
            sections: f
                .section
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            update: f.update,
            fakeroot: f.fakeroot || !nix::unistd::geteuid().is_root(),
            fix_perms,
            binds: f.bind.clone(),
            writable_tmpfs: f.writable_tmpfs,
            build_args: f.build_arg.clone(),
            build_arg_file: f.build_arg_file.clone(),
            warn_unused_build_args: f.warn_unused_build_args,
            pull,
            subids: None,
        }
        .with_subids()
    }

    fn with_subids(mut self) -> BuildOptions {
        if self.fakeroot {
            self.subids = idmap::SubIdMap::for_caller();
            if self.subids.is_none() && !nix::unistd::geteuid().is_root() {
                // As the reference says it: %post runs with only root mapped (to the
                // caller), so it cannot give files to other users.
                crate::info!("User not listed in /etc/subuid, trying root-mapped namespace");
            }
        }
        self
    }
}

/// One stage's built root, kept for `%files from` of later stages.
struct BuiltStage {
    name: Option<String>,
    index: usize,
    rootfs: PathBuf,
}

/// Builds `out` from the definition file at `def_path`.
pub fn build_from_deffile(def_path: &Path, out: &Path, opts: &BuildOptions) -> Result<()> {
    let def = read_deffile(def_path, opts)?;
    let update_in_place = opts.update && opts.sandbox && out.is_dir();
    if opts.update && !opts.sandbox {
        bail!("--update is only supported with --sandbox");
    }
    if !update_in_place {
        crate::pull::check_output(out, opts.force)?;
    }
    let work = Workspace::create(opts.subids)?;
    let _interrupt = InterruptCleanup::install(work.path(), out, opts.subids)?;
    if !pulls_first(&def) {
        // The pull pipeline says it for OCI bootstraps.
        crate::info!("Starting build...");
    }
    let mut built: Vec<BuiltStage> = Vec::new();
    let mut oci_config = None;
    let last = def.stages.len() - 1;
    for (i, stage) in def.stages.iter().enumerate() {
        let rootfs = if i == last && update_in_place {
            out.to_path_buf()
        } else {
            let dir = work.path().join(format!("stage-{i}"));
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("rootfs")
        };
        let ctx = StageContext {
            def: &def,
            stage,
            index: i,
            rootfs: &rootfs,
            opts,
            earlier: &built,
            work: work.path(),
            bootstrap: !(i == last && update_in_place),
        };
        // The output keeps the OCI config of its own stage's base image.
        oci_config = build_stage(&ctx)?;
        built.push(BuiltStage {
            name: stage.name.clone(),
            index: i,
            rootfs,
        });
        release_unused_stages(&def, &built, i, opts);
    }
    let root = &built[last].rootfs;
    if update_in_place {
        crate::info!("Build complete: {}", out.display());
        return Ok(());
    }
    if opts.sandbox {
        assemble::to_sandbox(root, out, opts.force, opts.subids.as_ref())?;
    } else {
        assemble::to_sif(root, out, &def, opts, work.path(), oci_config.as_deref())?;
    }
    crate::info!("Build complete: {}", out.display());
    Ok(())
}

/// Removes the roots of earlier stages that no stage after `done` copies from: a
/// multi-stage build then holds only the roots it still needs.
fn release_unused_stages(def: &DefFile, built: &[BuiltStage], done: usize, opts: &BuildOptions) {
    let last = def.stages.len() - 1;
    for s in &built[..done.min(last)] {
        let needed = def.stages[done + 1..].iter().any(|later| {
            later.files().iter().any(|b| match b.from.as_deref() {
                Some(from) => s.name.as_deref() == Some(from) || from == s.index.to_string(),
                None => false,
            })
        });
        if !needed && s.rootfs.exists() {
            remove_root(&s.rootfs, opts.subids.as_ref());
        }
    }
}

fn pulls_first(def: &DefFile) -> bool {
    use crate::deffile::Agent;
    matches!(
        def.stages[0].header.agent,
        Agent::Docker | Agent::DockerArchive | Agent::DockerDaemon | Agent::Oci | Agent::OciArchive
    )
}

/// Reads, templates and parses the definition file; reports its warnings and unused
/// build args.
fn read_deffile(def_path: &Path, opts: &BuildOptions) -> Result<DefFile> {
    let name = def_path.display().to_string();
    let bytes = fs::read(def_path).with_context(|| format!("reading {name}"))?;
    let arg_file = match &opts.build_arg_file {
        Some(p) => Some((
            p.display().to_string(),
            fs::read_to_string(p)
                .with_context(|| format!("reading build arg file {}", p.display()))?,
        )),
        None => None,
    };
    let args = BuildArgs::new(
        &opts.build_args,
        arg_file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
    )?;
    let def = deffile::parse_bytes(&name, &bytes, &args).map_err(|e| anyhow!("{e}"))?;
    for w in &def.warnings {
        crate::warning!("{w}");
    }
    if let Some(msg) = def.unused_build_args_message(opts.warn_unused_build_args) {
        if opts.warn_unused_build_args {
            crate::warning!("{msg}");
        } else {
            bail!("{msg}");
        }
    }
    Ok(def)
}

/// Everything one stage's steps need.
struct StageContext<'a> {
    def: &'a DefFile,
    stage: &'a Stage,
    index: usize,
    rootfs: &'a Path,
    opts: &'a BuildOptions,
    earlier: &'a [BuiltStage],
    work: &'a Path,
    /// False for `--update` of an existing sandbox: build on what is there.
    bootstrap: bool,
}

impl StageContext<'_> {
    fn label(&self) -> String {
        match &self.stage.name {
            Some(n) => format!("stage {n}"),
            None => format!("stage {}", self.index + 1),
        }
    }
}

/// Builds one stage; returns its base image's OCI config when it has one.
fn build_stage(ctx: &StageContext<'_>) -> Result<Option<Vec<u8>>> {
    if ctx.def.stages.len() > 1 {
        crate::info!("Building {}", ctx.label());
    }
    if ctx.opts.runs("pre") {
        scripts::run_pre(ctx)?;
    }
    let oci_config = if ctx.bootstrap {
        bootstrap::run(ctx).with_context(|| format!("while bootstrapping {}", ctx.label()))?
    } else {
        None
    };
    metadata::ensure_base(ctx.rootfs)?;
    let post_apps = apps::prepare(ctx)?;
    if ctx.opts.runs("files") {
        for block in ctx.stage.files().iter().filter(|b| b.from.is_some()) {
            let from = block.from.as_deref().unwrap_or_default();
            let src = ctx
                .earlier
                .iter()
                .find(|s| s.name.as_deref() == Some(from) || s.index.to_string() == from)
                .ok_or_else(|| anyhow!("%files from {from:?}: no earlier stage has that name"))?;
            crate::info!("Copying files from {from}");
            files::copy_all(
                &block.copies,
                Some(&src.rootfs),
                ctx.rootfs,
                &ctx.def.file,
                ctx.opts.subids.as_ref(),
            )?;
        }
    }
    if ctx.opts.runs("setup") {
        scripts::run_setup(ctx)?;
    }
    if ctx.opts.runs("files") {
        for block in ctx.stage.files().iter().filter(|b| b.from.is_none()) {
            crate::info!("Copying files from host");
            files::copy_all(&block.copies, None, ctx.rootfs, &ctx.def.file, None)?;
        }
    }
    if ctx.opts.runs("post") {
        scripts::run_post(ctx, &post_apps)?;
    }
    metadata::insert(ctx)?;
    if !ctx.opts.notest && ctx.opts.runs("test") {
        scripts::run_test(ctx)?;
    }
    Ok(oci_config)
}

/// While a build runs, SIGINT, SIGTERM and SIGHUP remove its temporary tree and partial
/// output before leaving with 128 + the signal (the nested container and tools in the
/// same process group get the terminal's signal themselves). Dropping it restores the
/// default handling.
struct InterruptCleanup {
    handle: signal_hook::iterator::Handle,
}

impl InterruptCleanup {
    fn install(work: &Path, out: &Path, subids: Option<idmap::SubIdMap>) -> Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("installing the interrupt handler")?;
        let handle = signals.handle();
        let work = work.to_path_buf();
        let partial = partial_outputs(out);
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                crate::error!("build interrupted, cleaning up");
                remove_root(&work, subids.as_ref());
                for p in &partial {
                    if p.is_dir() {
                        remove_root(p, subids.as_ref());
                    } else {
                        let _ = fs::remove_file(p);
                    }
                }
                std::process::exit(128 + sig);
            }
        });
        Ok(InterruptCleanup { handle })
    }
}

impl Drop for InterruptCleanup {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// The temporary names an output is written under before its rename (the SIF writer's
/// and the sandbox move's).
fn partial_outputs(out: &Path) -> Vec<PathBuf> {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let pid = std::process::id();
    vec![
        out.with_file_name(format!(".{name}.tmp-{pid}")),
        out.with_file_name(format!(".{name}.build-{pid}")),
    ]
}

/// The private temporary directory of one build, removed with everything in it (even
/// directories the image made read-only) when the build ends.
struct Workspace {
    dir: Option<tempfile::TempDir>,
    subids: Option<idmap::SubIdMap>,
}

impl Workspace {
    fn create(subids: Option<idmap::SubIdMap>) -> Result<Workspace> {
        let base = ["APPTAINER_TMPDIR", "TMPDIR"]
            .iter()
            .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        // tempfile makes the directory 0700: other users must not reach the root being built.
        let dir = tempfile::Builder::new()
            .prefix("build-temp-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a temporary directory in {}", base.display()))?;
        Ok(Workspace {
            dir: Some(dir),
            subids,
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("workspace is open").path()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            remove_root(&path, self.subids.as_ref());
        }
    }
}

/// Removes a build tree, inside the fakeroot mapping when the build wrote subordinate
/// ids into it.
fn remove_root(root: &Path, subids: Option<&idmap::SubIdMap>) {
    if let Some(map) = subids {
        if map.remove_tree(root) {
            return;
        }
    }
    remove_tree(root);
}

/// Removes a tree, first giving the owner rwx on its directories (images have read-only
/// ones, which would stop the removal).
pub(crate) fn remove_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if fs::remove_dir_all(root).is_ok() {
        return;
    }
    for entry in walkdir::WalkDir::new(root).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
    if let Err(e) = fs::remove_dir_all(root) {
        crate::warning!("could not remove {}: {e}", root.display());
    }
}
