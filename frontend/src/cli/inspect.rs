//! `apptainer inspect` and `apptainer run-help`: an image's metadata, read from a sandbox
//! directory or a SIF (its `inspect-metadata.json` and definition objects, else the files
//! of its squashfs partition). Nothing is mounted or run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ArgAction;

use super::GlobalOpts;
use crate::build::inspect::{self, ImageFiles, Metadata, Select};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// show the labels for the image (default)
    #[arg(short = 'l', long, action = ArgAction::SetTrue)]
    pub labels: bool,
    /// show the Apptainer definition file that was used to generate the image (no `-d`
    /// here: it is the global `--debug`)
    #[arg(long, action = ArgAction::SetTrue)]
    pub deffile: bool,
    /// print structured json instead of sections
    #[arg(short = 'j', long, action = ArgAction::SetTrue)]
    pub json: bool,
    /// list all apps in a container
    #[arg(long = "list-apps", action = ArgAction::SetTrue)]
    pub list_apps: bool,
    /// inspect a specific app
    #[arg(long)]
    pub app: Option<String>,
    /// show the runscript for the image
    #[arg(short = 'r', long, action = ArgAction::SetTrue)]
    pub runscript: bool,
    /// show the startscript for the image
    #[arg(short = 's', long, action = ArgAction::SetTrue)]
    pub startscript: bool,
    /// show the test script for the image
    #[arg(short = 't', long, action = ArgAction::SetTrue)]
    pub test: bool,
    /// show the environment settings for the image
    #[arg(short = 'e', long, action = ArgAction::SetTrue)]
    pub environment: bool,
    /// inspect the runscript helpfile, if it exists
    #[arg(short = 'H', long, action = ArgAction::SetTrue)]
    pub helpfile: bool,
    /// show all available data (imply --json option)
    #[arg(long, action = ArgAction::SetTrue)]
    pub all: bool,
    /// the image: a SIF file or a sandbox directory
    pub image: PathBuf,
}

/// An opened image: its files, and for a SIF its stored metadata objects.
struct Opened {
    files: ImageFiles,
    sif_meta: Option<Metadata>,
    /// For a SIF: the definition object, if it has one.
    sif_deffile: Option<Option<String>>,
}

fn open(path: &Path) -> Result<Opened> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("Failed to open image {}", path.display()))?;
    if meta.is_dir() {
        return Ok(Opened {
            files: ImageFiles::Dir(path.to_path_buf()),
            sif_meta: None,
            sif_deffile: None,
        });
    }
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("Failed to open image {}", path.display()))?;
    let Ok(image) = sif::Image::load(&mut f) else {
        bail!(
            "Failed to open image {}: only SIF files and sandbox directories can be inspected",
            path.display()
        );
    };
    let mut sif_meta = None;
    let mut deffile = None;
    for d in image.descriptors() {
        if d.data_type == sif::DataType::GenericJson
            && d.name() == "inspect-metadata.json"
            && sif_meta.is_none()
        {
            let bytes = image.read_object(&mut f, d.id)?;
            match serde_json::from_slice::<Metadata>(&bytes) {
                Ok(m) => sif_meta = Some(m),
                Err(e) => {
                    crate::warning!("Unable to read inspect-metadata.json SIF descriptor: {e}")
                }
            }
        }
        if d.data_type == sif::DataType::Deffile && deffile.is_none() {
            let bytes = image.read_object(&mut f, d.id)?;
            deffile = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let offset = inspect::sif_squashfs_offset(path)?;
    Ok(Opened {
        files: ImageFiles::Sif {
            path: path.to_path_buf(),
            offset,
        },
        sif_meta,
        sif_deffile: Some(deffile),
    })
}

pub fn run(mut args: Args, _g: &GlobalOpts) -> Result<()> {
    if args.all {
        args.json = true;
        args.app = None;
    }
    let default_labels = !(args.helpfile
        || args.deffile
        || args.runscript
        || args.startscript
        || args.test
        || args.environment
        || args.list_apps);
    let select = Select {
        labels: args.labels || default_labels || args.all,
        deffile: args.deffile || args.all,
        runscript: args.runscript || args.all,
        startscript: (args.startscript || args.all) && args.app.is_none(),
        test: args.test || args.all,
        environment: args.environment || args.all,
        helpfile: args.helpfile || args.all,
        list_apps: args.list_apps || args.all,
    };
    let opened = open(&args.image)?;
    let app = args.app.as_deref();
    let mut m = match &opened.sif_meta {
        Some(stored) => from_stored(stored, select, app),
        None => inspect::collect(
            &opened.files,
            Select {
                deffile: false,
                ..select
            },
            app,
            args.all,
        ),
    };
    if select.deffile {
        m.data.attributes.deffile = deffile(&opened, &m)?;
    }
    let apps = &mut m.data.attributes.apps;
    apps.retain(|name, _| args.list_apps || args.all || Some(name.as_str()) == app);
    if args.json {
        println!("{}", inspect::to_pretty_json(&m));
    } else {
        print!("{}", text_output(&m, &args));
    }
    Ok(())
}

/// The definition file kept inside the image (`/.singularity.d/Singularity`).
fn deffile_in_image(opened: &Opened) -> String {
    let select = Select {
        deffile: true,
        ..Select::default()
    };
    inspect::collect(&opened.files, select, None, false)
        .data
        .attributes
        .deffile
}

/// The definition file: the SIF's object (or the stored metadata's copy), else the one in
/// the image's files.
fn deffile(opened: &Opened, m: &Metadata) -> Result<String> {
    match (&opened.sif_deffile, &opened.sif_meta) {
        (Some(Some(_)), Some(stored)) if !stored.data.attributes.deffile.is_empty() => {
            Ok(stored.data.attributes.deffile.clone())
        }
        (Some(Some(text)), _) => Ok(text.trim_end_matches('\n').to_string()),
        (Some(None), _) => {
            crate::warning!("No SIF metadata partition, searching in container...");
            Ok(deffile_in_image(opened))
        }
        (None, _) => {
            let d = deffile_in_image(opened);
            Ok(if d.is_empty() {
                m.data.attributes.deffile.clone()
            } else {
                d
            })
        }
    }
}

/// The selected attributes of the metadata stored in a SIF.
fn from_stored(stored: &Metadata, select: Select, app: Option<&str>) -> Metadata {
    let s = &stored.data.attributes;
    let mut m = Metadata::default();
    let a = &mut m.data.attributes;
    if select.list_apps {
        a.apps = s.apps.clone();
    }
    match app {
        Some(name) => {
            if let Some(stored_app) = s.apps.get(name) {
                let e = a.apps.entry(name.to_string()).or_default();
                if select.labels {
                    e.labels = stored_app.labels.clone();
                }
                if select.runscript {
                    e.runscript = stored_app.runscript.clone();
                }
                if select.test {
                    e.test = stored_app.test.clone();
                }
                if select.helpfile {
                    e.helpfile = stored_app.helpfile.clone();
                }
                if select.environment {
                    e.environment = stored_app.environment.clone();
                }
            }
        }
        None => {
            if select.labels {
                a.labels = s.labels.clone();
            }
            if select.runscript {
                a.runscript = s.runscript.clone();
            }
            if select.startscript {
                a.startscript = s.startscript.clone();
            }
            if select.test {
                a.test = s.test.clone();
            }
            if select.helpfile {
                a.helpfile = s.helpfile.clone();
            }
            if select.environment {
                a.environment = s.environment.clone();
            }
        }
    }
    m
}

/// The reference's plain-text layout: apps, deffile, runscript, startscript, test,
/// helpfile, environment blocks, then `key: value` labels.
fn text_output(m: &Metadata, args: &Args) -> String {
    let a = &m.data.attributes;
    let app = args.app.as_ref().and_then(|n| a.apps.get(n));
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    if args.list_apps {
        for name in a.apps.keys() {
            line(name);
        }
    }
    if !a.deffile.is_empty() {
        line(&a.deffile);
    }
    let pick = |own: &str, of_app: Option<&str>| -> Option<String> {
        if !own.is_empty() {
            Some(own.to_string())
        } else {
            of_app.filter(|s| !s.is_empty()).map(str::to_string)
        }
    };
    if let Some(s) = pick(&a.runscript, app.map(|x| x.runscript.as_str())) {
        line(&s);
    }
    if !a.startscript.is_empty() {
        line(&a.startscript);
    }
    if let Some(s) = pick(&a.test, app.map(|x| x.test.as_str())) {
        line(&s);
    }
    if let Some(s) = pick(&a.helpfile, app.map(|x| x.helpfile.as_str())) {
        line(&s);
    }
    let env = if !a.environment.is_empty() {
        Some(&a.environment)
    } else {
        app.map(|x| &x.environment).filter(|e| !e.is_empty())
    };
    if let Some(env) = env {
        for (k, v) in env {
            line(&format!("=== {k} ===\n{v}\n"));
        }
    }
    let labels = if !a.labels.is_empty() {
        Some(&a.labels)
    } else {
        app.map(|x| &x.labels).filter(|l| !l.is_empty())
    };
    if let Some(labels) = labels {
        for (k, v) in labels {
            line(&format!("{k}: {v}"));
        }
    }
    out
}

#[derive(clap::Args, Debug)]
pub struct RunHelpArgs {
    /// show the help for an app
    #[arg(long)]
    pub app: Option<String>,
    /// the image: a SIF file or a sandbox directory
    pub image: PathBuf,
}

pub fn run_help(args: RunHelpArgs, _g: &GlobalOpts) -> Result<()> {
    let opened = open(&args.image)?;
    let path = match &args.app {
        Some(app) => format!("scif/apps/{app}/scif/runscript.help"),
        None => ".singularity.d/runscript.help".to_string(),
    };
    match opened.files.read(&path) {
        Some(text) => print!("{text}"),
        None => match &args.app {
            Some(app) => println!("No help sections were defined for the app {app}"),
            None => println!("No help sections were defined for this image"),
        },
    }
    Ok(())
}
