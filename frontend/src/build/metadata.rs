//! The stage's `/.singularity.d`: the base layout every image has (made where missing),
//! then what the sections ask for, as the reference writes it: `runscript.help`,
//! `labels.json`, the definition file (`Singularity`, earlier ones kept in
//! `bootstrap_history/`), `%environment` appended to `env/90-environment.sh`,
//! `startscript`, `runscript` and `test` (with `#!/bin/sh` unless the section has its own
//! shebang; section arguments go on the shebang line).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::{labels, scripts, StageContext};
use crate::deffile::{Script, SectionKind};
use crate::metadata::{base_files, BASE_DIRS, ROOT_SYMLINKS};

const SD: &str = ".singularity.d";

/// Makes the base directories, files and `/` symlinks that the root lacks; never replaces
/// what the base image already has.
pub fn ensure_base(root: &Path) -> Result<()> {
    for dir in BASE_DIRS {
        let p = root.join(dir);
        if fs::symlink_metadata(&p).is_err() {
            fs::create_dir_all(&p).with_context(|| format!("creating /{dir}"))?;
        }
    }
    for f in base_files() {
        let p = root.join(f.path);
        if fs::symlink_metadata(&p).is_err() {
            write_file(&p, f.content.as_bytes(), f.mode)?;
        }
    }
    for (name, target) in ROOT_SYMLINKS {
        let p = root.join(name);
        if fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(target, &p).with_context(|| format!("creating /{name}"))?;
        }
    }
    Ok(())
}

/// The section text as the reference keeps it: leading blank lines and trailing
/// whitespace dropped.
pub fn section_text(body: &str) -> String {
    let start = body
        .split_inclusive('\n')
        .take_while(|l| l.trim().is_empty())
        .map(str::len)
        .sum::<usize>();
    body[start..].trim_end().to_string()
}

/// `(shebang, script)`: the section's own `#!` line or `#!/bin/sh`, with the section's
/// arguments (comment dropped) appended.
pub fn shebang_script(s: &Script) -> (String, String) {
    let text = section_text(&s.body);
    let (mut shebang, script) = if text.trim_start().starts_with("#!") {
        let text = text.trim_start();
        match text.split_once('\n') {
            Some((first, rest)) => (first.trim().to_string(), rest.to_string()),
            None => (text.trim().to_string(), String::new()),
        }
    } else {
        ("#!/bin/sh".to_string(), text)
    };
    let args = s.args.split('#').next().unwrap_or("").trim();
    if !args.is_empty() {
        shebang.push(' ');
        shebang.push_str(args);
    }
    (shebang, script)
}

/// Writes every metadata file the stage's sections ask for.
pub fn insert(ctx: &StageContext<'_>) -> Result<()> {
    let root = ctx.rootfs;
    let opts = ctx.opts;
    let stage = ctx.stage;
    let help = stage
        .script(SectionKind::Help)
        .filter(|s| opts.runs("help") && !section_text(&s.body).is_empty());
    if let Some(h) = &help {
        let p = root.join(SD).join("runscript.help");
        if fs::symlink_metadata(&p).is_err() || opts.force {
            crate::info!("Adding help info");
            write_file(&p, format!("{}\n", section_text(&h.body)).as_bytes(), 0o644)?;
        } else {
            crate::warning!(
                "Help message already exists and force option is false, not overwriting"
            );
        }
    }
    insert_labels(ctx, help.is_some())?;
    insert_definition(root, &ctx.def.templated_text())?;
    if let Some(env) = stage
        .script(SectionKind::Environment)
        .filter(|s| opts.runs("environment") && !section_text(&s.body).is_empty())
    {
        crate::info!("Adding environment to container");
        append_environment(
            &root.join(SD).join("env/90-environment.sh"),
            &section_text(&env.body),
        )?;
    }
    for (kind, name, what) in [
        (SectionKind::Startscript, "startscript", "startscript"),
        (SectionKind::Runscript, "runscript", "runscript"),
        (SectionKind::Test, "test", "testscript"),
    ] {
        let Some(s) = stage.script(kind) else {
            continue;
        };
        if !opts.runs(kind.name()) || section_text(&s.body).is_empty() {
            continue;
        }
        crate::info!("Adding {what}");
        let (shebang, script) = shebang_script(&s);
        write_file(
            &root.join(SD).join(name),
            format!("{shebang}\n\n{script}\n").as_bytes(),
            0o755,
        )?;
    }
    Ok(())
}

fn insert_labels(ctx: &StageContext<'_>, has_help: bool) -> Result<()> {
    let root = ctx.rootfs;
    let path = root.join(SD).join("labels.json");
    let existing: BTreeMap<String, String> = match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            crate::warning!("ignoring unreadable /{SD}/labels.json: {e}");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    };
    let post_labels_path = root.join(scripts::LABELS_FILE.trim_start_matches('/'));
    let from_post = fs::read_to_string(&post_labels_path).unwrap_or_default();
    let _ = fs::remove_file(&post_labels_path);
    let now = time::OffsetDateTime::now_utc();
    let mut all = labels::build_labels(existing, &from_post, ctx.stage, has_help, now);
    let section = ctx.stage.labels();
    if ctx.opts.runs("labels") && !section.is_empty() {
        crate::info!("Adding labels");
        labels::add_section_labels(&mut all, &section, ctx.opts.force);
    }
    write_file(&path, &crate::metadata::labels_json(&all), 0o644)
}

/// Writes the definition to `Singularity`, moving an earlier one (a `localimage` base)
/// into `bootstrap_history/ApptainerN`.
fn insert_definition(root: &Path, text: &str) -> Result<()> {
    let def = root.join(SD).join("Singularity");
    if fs::symlink_metadata(&def).is_ok() {
        let history = root.join(SD).join("bootstrap_history");
        fs::create_dir_all(&history).context("creating bootstrap_history")?;
        let n = fs::read_dir(&history)?.count();
        fs::rename(&def, history.join(format!("Apptainer{n}")))
            .context("moving the previous definition file to bootstrap_history")?;
    }
    write_file(&def, text.as_bytes(), 0o644)
}

fn append_environment(path: &Path, script: &str) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return write_file(path, format!("#!/bin/sh\n\n{script}\n").as_bytes(), 0o755);
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(format!("\n{script}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces a file (never writing through a symlink the image put there).
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if let Ok(m) = fs::symlink_metadata(path) {
        if !m.is_dir() {
            fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?;
        }
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(body: &str, args: &str) -> Script {
        Script {
            body: body.into(),
            args: args.into(),
            args_words: args.split_whitespace().map(String::from).collect(),
        }
    }

    #[test]
    fn scripts_get_sh_unless_they_bring_a_shebang() {
        assert_eq!(
            shebang_script(&script("\n    echo hi\n\n", "")),
            ("#!/bin/sh".to_string(), "    echo hi".to_string())
        );
        assert_eq!(
            shebang_script(&script("#!/bin/bash\necho hi\n", "")),
            ("#!/bin/bash".to_string(), "echo hi".to_string())
        );
        assert_eq!(
            shebang_script(&script("echo hi\n", "-e # comment")).0,
            "#!/bin/sh -e"
        );
    }

    #[test]
    fn environment_is_appended_to_the_existing_script() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("90.sh");
        fs::write(&p, "#!/bin/sh\n# base\n").unwrap();
        append_environment(&p, "export A=1").unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "#!/bin/sh\n# base\n\nexport A=1\n"
        );
    }
}
