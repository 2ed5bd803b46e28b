//! Definition files (`*.def`): parsed into stages, each with a header and sections, after
//! `{{ VAR }}` templating. The parser runs nothing and reads no file; the build runs what it
//! describes.
// Wired into `build` by the build issue.
#![allow(dead_code, unused_imports)]

mod error;
mod header;
mod parse;
mod render;
mod section;
mod template;
#[cfg(test)]
mod tests;

pub use error::{BuildArgError, DefError, DefErrorKind};
pub use header::{Agent, Header, HeaderEntry};
pub use parse::{parse, parse_bytes, parse_untemplated};
pub use section::{parse_labels, FileCopy, Section, SectionKind};
pub use template::BuildArgs;

/// One line of the file, numbered from 1. After templating a line may be split in several that
/// keep the number of the line they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub no: usize,
    pub text: String,
}

/// A parsed definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefFile {
    /// The file name as given, for messages.
    pub file: String,
    /// The text as given, before templating: what the reference stores in the SIF.
    pub source: String,
    pub stages: Vec<Stage>,
    /// Things accepted but worth telling the user (unused header keys, skipped `%arguments`
    /// lines, skipped build-arg-file lines), one message each, without a prefix.
    pub warnings: Vec<String>,
    /// `--build-arg`/`--build-arg-file` names no stage used, sorted. The build reports them.
    pub unused_build_args: Vec<String>,
}

impl DefFile {
    /// The stage the build assembles into the image.
    pub fn last_stage(&self) -> &Stage {
        // `parse` never returns a DefFile without stages.
        &self.stages[self.stages.len() - 1]
    }

    pub fn stage_named(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// Every stage's text after templating, joined: what the reference stores in the SIF as
    /// the definition file of a build.
    pub fn templated_text(&self) -> String {
        self.stages.iter().map(|s| s.text.as_str()).collect()
    }

    /// The reference's report of unused build args, if any: a fatal error by default, a
    /// warning with `--warn-unused-build-args` (`warn_only`).
    pub fn unused_build_args_message(&self, warn_only: bool) -> Option<String> {
        if self.unused_build_args.is_empty() {
            return None;
        }
        let names = self.unused_build_args.join(" ");
        Some(if warn_only {
            format!("Unused build args: {names}")
        } else {
            format!(
                "unused build args: {names}. Use option --warn-unused-build-args to show a \
                 warning instead of a fatal message"
            )
        })
    }
}

/// One `Bootstrap:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub header: Header,
    /// From `Stage: NAME`.
    pub name: Option<String>,
    /// In file order, repeated sections kept apart.
    pub sections: Vec<Section>,
    /// Line of the `Bootstrap:` line.
    pub line: usize,
    /// This stage's text after templating.
    pub text: String,
}

/// A script section as the build uses it: all sections of one kind joined in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub body: String,
    /// The last non-empty arguments given to a section of this kind, as in the reference.
    pub args: String,
    /// `args` as words without a trailing comment (`-c /bin/bash`).
    pub args_words: Vec<String>,
}

/// The copies of the `%files` sections with the same source (the host, or one stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesBlock {
    pub from: Option<String>,
    pub copies: Vec<FileCopy>,
}

impl Stage {
    fn matching<'a>(
        &'a self,
        kind: SectionKind,
        app: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections
            .iter()
            .filter(move |s| s.kind == kind && s.app.as_deref() == app)
    }

    fn joined(&self, kind: SectionKind, app: Option<&str>) -> Option<Script> {
        let mut found = self.matching(kind, app).peekable();
        found.peek()?;
        let mut script = Script {
            body: String::new(),
            args: String::new(),
            args_words: Vec::new(),
        };
        for s in found {
            script.body.push_str(&s.body);
            if !s.args.is_empty() {
                script.args = s.args.clone();
                script.args_words = s.script_args();
            }
        }
        Some(script)
    }

    /// A stage-level section (`%post`, `%runscript`, …), repeated ones joined; None when absent.
    pub fn script(&self, kind: SectionKind) -> Option<Script> {
        if kind.is_app() {
            return None;
        }
        self.joined(kind, None)
    }

    /// `%files` sections grouped by source in first-seen order, as the reference merges them.
    pub fn files(&self) -> Vec<FilesBlock> {
        let mut blocks: Vec<FilesBlock> = Vec::new();
        for s in self.matching(SectionKind::Files, None) {
            let from = s.files_from();
            match blocks.iter_mut().find(|b| b.from == from) {
                Some(b) => b.copies.extend(s.copies.iter().cloned()),
                None => blocks.push(FilesBlock {
                    from,
                    copies: s.copies.clone(),
                }),
            }
        }
        blocks
    }

    /// `%labels`, in first-seen order; a repeated key takes its last value.
    pub fn labels(&self) -> Vec<(String, String)> {
        merge_labels(self.matching(SectionKind::Labels, None))
    }

    /// `%arguments` defaults as written (before templating of the values), last one wins.
    pub fn arguments(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in self.matching(SectionKind::Arguments, None) {
            for line in s.body.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    let (k, v) = (k.trim(), v.trim());
                    if k.is_empty() {
                        continue;
                    }
                    match out.iter_mut().find(|(ok, _)| ok == k) {
                        Some(e) => e.1 = v.to_string(),
                        None => out.push((k.to_string(), v.to_string())),
                    }
                }
            }
        }
        out
    }

    /// SCIF app names in the order they first appear (the order `%appinstall`s run in).
    pub fn app_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for app in self.sections.iter().filter_map(|s| s.app.as_ref()) {
            if !names.contains(app) {
                names.push(app.clone());
            }
        }
        names
    }

    /// An app's script section (`%appinstall`, `%apprun`, `%appenv`, …).
    pub fn app_script(&self, app: &str, kind: SectionKind) -> Option<Script> {
        if !kind.is_app() {
            return None;
        }
        self.joined(kind, Some(app))
    }

    pub fn app_files(&self, app: &str) -> Vec<FileCopy> {
        self.matching(SectionKind::AppFiles, Some(app))
            .flat_map(|s| s.copies.iter().cloned())
            .collect()
    }

    pub fn app_labels(&self, app: &str) -> Vec<(String, String)> {
        merge_labels(self.matching(SectionKind::AppLabels, Some(app)))
    }
}

fn merge_labels<'a>(sections: impl Iterator<Item = &'a Section>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in sections.flat_map(|s| section::parse_labels(&s.body)) {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}
