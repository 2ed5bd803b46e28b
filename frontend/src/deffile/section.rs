//! Sections: a line whose first word starts with `%` opens one, and it runs to the next such
//! line. The name is case-insensitive; what follows it on the line is kept as the section's
//! arguments (`%post -c /bin/bash`, `%files from build`, `%apprun NAME`).

use super::error::{DefError, DefErrorKind};
use super::Line;

/// Every section the reference accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    Arguments,
    Help,
    Setup,
    Files,
    Labels,
    Environment,
    Pre,
    Post,
    Runscript,
    Startscript,
    Test,
    AppInstall,
    AppLabels,
    AppFiles,
    AppEnv,
    AppTest,
    AppHelp,
    AppRun,
    AppStart,
}

impl SectionKind {
    pub const ALL: [SectionKind; 19] = [
        SectionKind::Arguments,
        SectionKind::Help,
        SectionKind::Setup,
        SectionKind::Files,
        SectionKind::Labels,
        SectionKind::Environment,
        SectionKind::Pre,
        SectionKind::Post,
        SectionKind::Runscript,
        SectionKind::Startscript,
        SectionKind::Test,
        SectionKind::AppInstall,
        SectionKind::AppLabels,
        SectionKind::AppFiles,
        SectionKind::AppEnv,
        SectionKind::AppTest,
        SectionKind::AppHelp,
        SectionKind::AppRun,
        SectionKind::AppStart,
    ];

    /// The name after `%`, lower case.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Arguments => "arguments",
            SectionKind::Help => "help",
            SectionKind::Setup => "setup",
            SectionKind::Files => "files",
            SectionKind::Labels => "labels",
            SectionKind::Environment => "environment",
            SectionKind::Pre => "pre",
            SectionKind::Post => "post",
            SectionKind::Runscript => "runscript",
            SectionKind::Startscript => "startscript",
            SectionKind::Test => "test",
            SectionKind::AppInstall => "appinstall",
            SectionKind::AppLabels => "applabels",
            SectionKind::AppFiles => "appfiles",
            SectionKind::AppEnv => "appenv",
            SectionKind::AppTest => "apptest",
            SectionKind::AppHelp => "apphelp",
            SectionKind::AppRun => "apprun",
            SectionKind::AppStart => "appstart",
        }
    }

    pub fn from_name(name: &str) -> Option<SectionKind> {
        SectionKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// SCIF app sections take the app's name as their first argument.
    pub fn is_app(self) -> bool {
        matches!(
            self,
            SectionKind::AppInstall
                | SectionKind::AppLabels
                | SectionKind::AppFiles
                | SectionKind::AppEnv
                | SectionKind::AppTest
                | SectionKind::AppHelp
                | SectionKind::AppRun
                | SectionKind::AppStart
        )
    }

    fn lists_files(self) -> bool {
        matches!(self, SectionKind::Files | SectionKind::AppFiles)
    }
}

/// One `SOURCE [DESTINATION]` line of `%files`/`%appfiles`. An empty `dst` means "the same
/// path as `src`", as in the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCopy {
    pub src: String,
    pub dst: String,
    pub line: usize,
}

/// One section as written, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    /// The app of an `%app*` section.
    pub app: Option<String>,
    /// The rest of the `%name` line (after the app name for app sections), trimmed.
    pub args: String,
    /// The lines after the `%name` line, each ending in `\n`, exactly as written.
    pub body: String,
    /// Line of the `%name` line.
    pub line: usize,
    /// For `%files`/`%appfiles`: the copies listed in the body.
    pub copies: Vec<FileCopy>,
}

impl Section {
    /// The arguments as words, without a trailing `#` comment: what the builder passes to
    /// `/bin/sh -ex` (`%post -c /bin/bash` → `["-c", "/bin/bash"]`).
    pub fn script_args(&self) -> Vec<String> {
        words_before_comment(&self.args)
    }

    /// For `%files from STAGE`: the stage.
    pub fn files_from(&self) -> Option<String> {
        match self.script_args().as_slice() {
            [from, stage] if from.eq_ignore_ascii_case("from") => Some(stage.clone()),
            _ => None,
        }
    }
}

fn words_before_comment(text: &str) -> Vec<String> {
    text.split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// True when this line opens a section: its first word starts with `%`, as in the reference.
pub fn opens_section(text: &str) -> bool {
    text.trim_start().starts_with('%')
}

/// Parses a `%name args` line and its body lines.
pub fn parse_section(file: &str, head: &Line, body: &[Line]) -> Result<Section, DefError> {
    let err = |line: usize, kind| DefError {
        file: file.to_string(),
        line: Some(line),
        kind,
    };
    let text = head.text.trim();
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(w, r)| (w, r.trim()));
    let kind = SectionKind::from_name(word.trim_start_matches('%'))
        .ok_or_else(|| err(head.no, DefErrorKind::UnknownSection(word.to_string())))?;
    let (app, args) = if kind.is_app() {
        let (app, args) = rest
            .split_once(char::is_whitespace)
            .map_or((rest, ""), |(a, r)| (a, r.trim()));
        if app.is_empty() || app.starts_with('#') {
            return Err(err(head.no, DefErrorKind::MissingAppName(kind.name())));
        }
        (Some(app.to_string()), args.to_string())
    } else {
        (None, rest.to_string())
    };
    let mut section = Section {
        kind,
        app,
        args,
        body: body.iter().map(|l| format!("{}\n", l.text)).collect(),
        line: head.no,
        copies: Vec::new(),
    };
    if kind == SectionKind::Files {
        let words = section.script_args();
        if !words.is_empty() && section.files_from().is_none() {
            return Err(err(
                head.no,
                DefErrorKind::MalformedFilesArgs(section.args.clone()),
            ));
        }
    }
    if kind.lists_files() {
        section.copies = parse_copies(file, body)?;
    }
    Ok(section)
}

/// `SOURCE [DESTINATION]` lines; `#` lines and blank lines skipped; either path may be quoted
/// with `"` or `'` to hold spaces.
fn parse_copies(file: &str, body: &[Line]) -> Result<Vec<FileCopy>, DefError> {
    let mut copies = Vec::new();
    for line in body {
        let text = line.text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let malformed = || DefError {
            file: file.to_string(),
            line: Some(line.no),
            kind: DefErrorKind::MalformedFilesLine(text.to_string()),
        };
        let words = split_quoted(text).ok_or_else(malformed)?;
        let (src, dst) = match words.as_slice() {
            [src] => (src.clone(), String::new()),
            [src, dst] => (src.clone(), dst.clone()),
            _ => return Err(malformed()),
        };
        if src.is_empty() {
            return Err(malformed());
        }
        copies.push(FileCopy {
            src,
            dst,
            line: line.no,
        });
    }
    Ok(copies)
}

/// Splits on whitespace, honouring quotes; stops at a word starting with `#`. None when a quote
/// is not closed.
fn split_quoted(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Some(words),
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            if c == '"' || c == '\'' {
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                        None => return None,
                    }
                }
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// `KEY VALUE` lines of `%labels`/`%applabels`, in file order; `#` lines skipped.
pub fn parse_labels(body: &str) -> Vec<(String, String)> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}
