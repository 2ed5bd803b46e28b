//! The script sections: `%setup` on the host, `%post` and `%test` in the container.
//!
//! `%post` runs as the reference runs it: a nested `apptainer exec --writable --cleanenv
//! --pwd /` of this same binary on the stage's sandbox, `/bin/sh -ex /.post.script`, with
//! `--fakeroot` when the caller is not root (uid 0 inside, mapped to the caller). `%test`
//! runs through a nested `apptainer test`. A failing section stops the build with its exit
//! status; a runtime that cannot run the section at all is a fatal error naming why.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::StageContext;
use crate::cli::ExitStatus;
use crate::deffile::SectionKind;

/// Where `%post` writes its environment and labels, as the reference names them.
pub const ENVIRONMENT_FILE: &str = "/.singularity.d/env/91-environment.sh";
pub const LABELS_FILE: &str = "/.build.labels";
const POST_SCRIPT: &str = ".post.script";

/// `/bin/sh -ex [ARGS] SCRIPT`, or `/bin/sh -ex -c "CMD SCRIPT"` for `%post -c CMD`.
fn sh_args(args_words: &[String], script: &str) -> Vec<String> {
    let mut v = vec!["-ex".to_string()];
    match args_words.split_first() {
        Some((c, rest)) if c == "-c" => {
            v.push("-c".into());
            let mut cmd = rest.join(" ");
            cmd.push(' ');
            cmd.push_str(script);
            v.push(cmd.trim_start().to_string());
        }
        _ => {
            v.extend(args_words.iter().cloned());
            v.push(script.to_string());
        }
    }
    v
}

/// `%setup`: on the host, with `APPTAINER_ROOTFS` naming the stage's root. Root runs it
/// as root; a fakeroot build runs it as root of the caller's subordinate-id mapping when
/// there is one, else as the caller (whose files are root's inside the container).
pub fn run_setup(ctx: &StageContext<'_>) -> Result<()> {
    let Some(script) = ctx.stage.script(SectionKind::Setup) else {
        return Ok(());
    };
    if script.body.trim().is_empty() {
        return Ok(());
    }
    crate::info!("Running setup scriptlet");
    let path = ctx.work.join(format!("setup-{}.sh", ctx.index));
    write_script(&path, &script.body)?;
    let args = sh_args(&script.args_words, &path.to_string_lossy());
    // Under fakeroot with subordinate ids, %setup runs as root of the same mapping as
    // %post (so it can give files to the image's users), as in the reference.
    let mut cmd = match &ctx.opts.subids {
        Some(map) => map.command("/bin/sh", &args),
        None => {
            let mut c = Command::new("/bin/sh");
            c.args(&args);
            c
        }
    };
    cmd.env("APPTAINER_ROOTFS", ctx.rootfs)
        .env("SINGULARITY_ROOTFS", ctx.rootfs)
        .env("APPTAINER_ENVIRONMENT", ENVIRONMENT_FILE)
        .env("SINGULARITY_ENVIRONMENT", ENVIRONMENT_FILE);
    let status = cmd.status().context("running %setup with /bin/sh")?;
    check_status("%setup", status)
}

/// `%pre` (deprecated in the reference, still run): on the host before the bootstrap.
pub fn run_pre(ctx: &StageContext<'_>) -> Result<()> {
    let Some(script) = ctx.stage.script(SectionKind::Pre) else {
        return Ok(());
    };
    if script.body.trim().is_empty() {
        return Ok(());
    }
    crate::info!("Running pre scriptlet");
    let path = ctx.work.join(format!("pre-{}.sh", ctx.index));
    write_script(&path, &script.body)?;
    let status = Command::new("/bin/sh")
        .args(sh_args(&script.args_words, &path.to_string_lossy()))
        .env("APPTAINER_ROOTFS", ctx.rootfs)
        .env("SINGULARITY_ROOTFS", ctx.rootfs)
        .env("APPTAINER_ENVIRONMENT", ENVIRONMENT_FILE)
        .env("SINGULARITY_ENVIRONMENT", ENVIRONMENT_FILE)
        .status()
        .context("running %pre with /bin/sh")?;
    check_status("%pre", status)
}

/// `%post` (plus the apps' `%appinstall`) in the container.
pub fn run_post(ctx: &StageContext<'_>, apps_install: &str) -> Result<()> {
    let post = ctx.stage.script(SectionKind::Post);
    let body = post.as_ref().map(|s| s.body.as_str()).unwrap_or("");
    if body.trim().is_empty() && apps_install.is_empty() {
        return Ok(());
    }
    crate::info!("Running post scriptlet");
    let script = ctx.rootfs.join(POST_SCRIPT);
    write_script(&script, &format!("{body}{apps_install}"))?;
    let args_words = post.map(|s| s.args_words).unwrap_or_default();
    let mut cmd = nested(ctx)?;
    cmd.args(["exec", "--writable", "--cleanenv", "--pwd", "/"]);
    if ctx.opts.fakeroot {
        cmd.arg("--fakeroot");
    }
    cmd.arg("--env")
        .arg(format!("APPTAINER_ENVIRONMENT={ENVIRONMENT_FILE}"))
        .arg("--env")
        .arg(format!("SINGULARITY_ENVIRONMENT={ENVIRONMENT_FILE}"))
        .arg("--env")
        .arg(format!("APPTAINER_LABELS={LABELS_FILE}"))
        .arg("--env")
        .arg(format!("SINGULARITY_LABELS={LABELS_FILE}"));
    for b in &ctx.opts.binds {
        cmd.arg("--bind").arg(b);
    }
    cmd.arg(ctx.rootfs).arg("/bin/sh");
    cmd.args(sh_args(&args_words, &format!("/{POST_SCRIPT}")));
    let result = run_nested(cmd, "%post");
    let _ = fs::remove_file(&script);
    result
}

/// `%test` in the finished stage, unless `--notest`.
pub fn run_test(ctx: &StageContext<'_>) -> Result<()> {
    let has_test = ctx
        .stage
        .script(SectionKind::Test)
        .is_some_and(|s| !s.body.trim().is_empty());
    if !has_test {
        return Ok(());
    }
    crate::info!("Running testscript");
    let mut cmd = nested(ctx)?;
    if crate::log::level() < 5 {
        cmd.arg("--silent");
    }
    cmd.args(["test", "--pwd", "/"]);
    if ctx.opts.fakeroot {
        cmd.arg("--fakeroot");
    }
    if ctx.opts.writable_tmpfs {
        cmd.arg("--writable-tmpfs");
    }
    for b in &ctx.opts.binds {
        cmd.arg("--bind").arg(b);
    }
    cmd.arg(ctx.rootfs);
    run_nested(cmd, "%test")
}

/// This same binary, with the caller's environment minus the `APPTAINER_*` settings that
/// would change what the nested command does (as the reference filters them).
fn nested(_ctx: &StageContext<'_>) -> Result<Command> {
    // /proc/self/exe is this very binary even if the installed file was replaced while
    // the build ran (its path then no longer names it), so the nested command always
    // matches the build's version.
    let exe = Path::new("/proc/self/exe");
    if !exe.exists() {
        bail!(
            "cannot run {} in the container: /proc is not mounted",
            "the build sections"
        );
    }
    let mut cmd = Command::new(exe);
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if keep_env(&k) {
            cmd.env(k, v);
        }
    }
    cmd.env("APPTAINER_MESSAGELEVEL", crate::log::level().to_string());
    Ok(cmd)
}

fn keep_env(key: &OsString) -> bool {
    let k = key.to_string_lossy();
    for prefix in ["APPTAINER_", "SINGULARITY_"] {
        if let Some(rest) = k.strip_prefix(prefix) {
            return matches!(
                rest,
                "NV" | "NVCCLI" | "ROCM" | "BINDPATH" | "BIND" | "MOUNT" | "CONFIG_FILE" | "TMPDIR"
            );
        }
    }
    true
}

/// Runs a nested apptainer, passing its stderr through while watching for the refusal of
/// a feature this build's runtime lacks.
fn run_nested(mut cmd: Command, section: &str) -> Result<()> {
    crate::debug!("running {cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting the container for {section}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let watcher = std::thread::spawn(move || {
        let mut refused: Option<String> = None;
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut out = std::io::stderr();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let _ = out.write_all(&line);
            let text = String::from_utf8_lossy(&line);
            if text.contains("not supported by this build yet") {
                refused = Some(text.trim().trim_start_matches("FATAL:").trim().to_string());
            }
            line.clear();
        }
        refused
    });
    let status = child
        .wait()
        .with_context(|| format!("waiting for {section}"))?;
    let refused = watcher.join().unwrap_or(None);
    if status.success() {
        return Ok(());
    }
    if let Some(why) = refused {
        bail!(
            "cannot run {section} in the container: the runtime refused it ({why}); \
             {section} needs `apptainer exec --writable` on a sandbox{}",
            if section == "%post" {
                " (with --fakeroot when not root)"
            } else {
                ""
            }
        );
    }
    check_status(section, status)
}

/// A failed section: one error line, then leave with its exit status.
fn check_status(section: &str, status: std::process::ExitStatus) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    crate::error!("While performing build: {section} failed with exit status {code}");
    Err(ExitStatus(code).into())
}

fn write_script(path: &Path, body: &str) -> Result<()> {
    fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_arguments_shape_the_shell_command() {
        assert_eq!(sh_args(&[], "/s"), ["-ex", "/s"]);
        assert_eq!(
            sh_args(&["-c".into(), "/bin/bash".into()], "/s"),
            ["-ex", "-c", "/bin/bash /s"]
        );
        assert_eq!(sh_args(&["-u".into()], "/s"), ["-ex", "-u", "/s"]);
    }
}
