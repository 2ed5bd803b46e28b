//! SCIF apps (`%apprun NAME`, `%appinstall NAME`, ...): each app gets
//! `/scif/apps/NAME/{bin,lib,scif/...}` and `/scif/data/NAME/{input,output}`, its files
//! and metadata, and the `SCIF_APP*` variables in `env/94-appsbase.sh`. `%appinstall`
//! runs with `%post`, from the app's directory, after the stage's own `%post`.

use std::fmt::Write as _;
use std::fs;

use anyhow::{Context, Result};

use super::metadata::{section_text, shebang_script, write_file};
use super::{files, StageContext};
use crate::deffile::SectionKind;

/// Lays out every app of the stage and returns the `%appinstall` script to append to
/// `%post` (empty when there is none).
pub fn prepare(ctx: &StageContext<'_>) -> Result<String> {
    let names = ctx.stage.app_names();
    if names.is_empty() {
        return Ok(String::new());
    }
    let mut install = String::new();
    let mut appsbase = String::from("#!/bin/sh\n");
    for app in &names {
        layout_app(ctx, app)?;
        appsbase.push_str(&appsbase_lines(app));
        if let Some(s) = ctx.stage.app_script(app, SectionKind::AppInstall) {
            let body = section_text(&s.body);
            if !body.is_empty() && ctx.opts.runs("appinstall") {
                let _ = write!(
                    install,
                    "\n# %appinstall {app}\ncd /\n. \"/scif/apps/{app}/scif/env/01-base.sh\"\ncd \"/scif/apps/{app}\"\n{body}\ncd /\n"
                );
            }
        }
    }
    write_file(
        &ctx.rootfs.join(".singularity.d/env/94-appsbase.sh"),
        appsbase.as_bytes(),
        0o755,
    )?;
    Ok(install)
}

fn appsbase_lines(app: &str) -> String {
    let id = app.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    let base = format!("/scif/apps/{app}");
    let meta = format!("{base}/scif");
    let vars = [
        ("APPDATA", format!("/scif/data/{app}")),
        ("APPROOT", base.clone()),
        ("APPMETA", meta.clone()),
        ("APPBIN", format!("{base}/bin")),
        ("APPLIB", format!("{base}/lib")),
        ("APPRUN", format!("{meta}/runscript")),
        ("APPTEST", format!("{meta}/test")),
        ("APPHELP", format!("{meta}/runscript.help")),
        ("APPLABELS", format!("{meta}/labels.json")),
        ("APPENV", format!("{meta}/env/90-environment.sh")),
    ];
    let mut s = String::new();
    for (k, v) in &vars {
        let _ = writeln!(s, "SCIF_{k}_{id}=\"{v}\"");
    }
    let names: Vec<String> = vars.iter().map(|(k, _)| format!("SCIF_{k}_{id}")).collect();
    let _ = writeln!(s, "export {}", names.join(" "));
    s
}

fn layout_app(ctx: &StageContext<'_>, app: &str) -> Result<()> {
    let root = ctx.rootfs;
    let base = root.join("scif/apps").join(app);
    for d in ["bin", "lib", "scif/env"] {
        fs::create_dir_all(base.join(d))
            .with_context(|| format!("creating /scif/apps/{app}/{d}"))?;
    }
    for d in ["input", "output"] {
        fs::create_dir_all(root.join("scif/data").join(app).join(d))
            .with_context(|| format!("creating /scif/data/{app}/{d}"))?;
    }
    let meta = base.join("scif");
    let env01 = format!(
        "#!/bin/sh\nSCIF_APPNAME={app}\nSCIF_APPROOT=\"/scif/apps/{app}\"\nSCIF_APPMETA=\"/scif/apps/{app}/scif\"\nSCIF_DATA=\"/scif/data\"\nSCIF_APPDATA=\"/scif/data/{app}\"\nSCIF_APPINPUT=\"/scif/data/{app}/input\"\nSCIF_APPOUTPUT=\"/scif/data/{app}/output\"\nexport SCIF_APPNAME SCIF_APPROOT SCIF_APPMETA SCIF_DATA SCIF_APPDATA SCIF_APPINPUT SCIF_APPOUTPUT\n"
    );
    write_file(&meta.join("env/01-base.sh"), env01.as_bytes(), 0o755)?;
    let stage = ctx.stage;
    if let Some(s) = stage.app_script(app, SectionKind::AppEnv) {
        write_file(
            &meta.join("env/90-environment.sh"),
            format!("#!/bin/sh\n\n{}\n", section_text(&s.body)).as_bytes(),
            0o755,
        )?;
    }
    for (kind, name) in [
        (SectionKind::AppRun, "runscript"),
        (SectionKind::AppStart, "startscript"),
        (SectionKind::AppTest, "test"),
    ] {
        if let Some(s) = stage.app_script(app, kind) {
            let (shebang, script) = shebang_script(&s);
            write_file(
                &meta.join(name),
                format!("{shebang}\n\n{script}\n").as_bytes(),
                0o755,
            )?;
        }
    }
    if let Some(s) = stage.app_script(app, SectionKind::AppHelp) {
        write_file(
            &meta.join("runscript.help"),
            format!("{}\n", section_text(&s.body)).as_bytes(),
            0o644,
        )?;
    }
    let app_labels = stage.app_labels(app);
    let mut l = std::collections::BTreeMap::new();
    l.insert("SCIF_APP_NAME".to_string(), app.to_string());
    for (k, v) in app_labels {
        l.insert(k, v);
    }
    write_file(
        &meta.join("labels.json"),
        &crate::metadata::labels_json(&l),
        0o644,
    )?;
    let copies = stage.app_files(app);
    if !copies.is_empty() {
        // %appfiles destinations are relative to the app's directory.
        let rel: Vec<_> = copies
            .into_iter()
            .map(|mut c| {
                let dst = if c.dst.is_empty() {
                    c.src.clone()
                } else {
                    c.dst.clone()
                };
                c.dst = format!("/scif/apps/{app}/{}", dst.trim_start_matches('/'));
                c
            })
            .collect();
        files::copy_all(&rel, None, root, &ctx.def.file, None)?;
    }
    Ok(())
}
