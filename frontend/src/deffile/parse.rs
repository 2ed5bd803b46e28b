//! From text to `DefFile`: split the file into stages at each line starting with `Bootstrap:`
//! (as the reference does, before templating), template each stage with its own `%arguments`,
//! then parse its header and sections and check references between stages.

use std::collections::BTreeSet;

use super::error::{DefError, DefErrorKind};
use super::header::parse_header;
use super::section::{opens_section, parse_section, SectionKind};
use super::template::{argument_defaults, substitute, BuildArgs, Values};
use super::{DefFile, Line, Stage};

/// Parses `text` (from `file`, named in errors) with `{{ VAR }}` templating from `args`.
pub fn parse(file: &str, text: &str, args: &BuildArgs) -> Result<DefFile, DefError> {
    parse_with(file, text, Some(args))
}

/// Parses without templating, leaving `{{ VAR }}` as written: for a definition file stored in
/// an image, whose build arguments are gone.
pub fn parse_untemplated(file: &str, text: &str) -> Result<DefFile, DefError> {
    parse_with(file, text, None)
}

/// As `parse`, for raw file contents; invalid UTF-8 is an error naming its line.
pub fn parse_bytes(file: &str, bytes: &[u8], args: &BuildArgs) -> Result<DefFile, DefError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file, text, args),
        Err(e) => Err(DefError {
            file: file.to_string(),
            line: Some(
                bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1,
            ),
            kind: DefErrorKind::NotUtf8,
        }),
    }
}

fn parse_with(file: &str, text: &str, args: Option<&BuildArgs>) -> Result<DefFile, DefError> {
    let lines = split_lines(text);
    let chunks = split_stages(file, &lines)?;
    let mut warnings = args.map(|a| a.warnings.clone()).unwrap_or_default();
    let mut used = BTreeSet::new();
    let mut stages: Vec<Stage> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let lines = match args {
            Some(args) => {
                let (defaults, skipped) = argument_defaults(file, chunk);
                warnings.extend(skipped);
                let values = Values {
                    args,
                    defaults: &defaults,
                };
                substitute(file, chunk, &values, &mut used)?
            }
            None => chunk.to_vec(),
        };
        let (stage, unused_keys) = parse_stage(file, &lines)?;
        warnings.extend(unused_keys);
        check_references(file, &stages, &stage)?;
        stages.push(stage);
    }
    let unused_build_args = args
        .map(|a| {
            a.names()
                .filter(|n| !used.contains(*n))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(DefFile {
        file: file.to_string(),
        source: text.to_string(),
        stages,
        warnings,
        unused_build_args,
    })
}

/// Numbered lines, without their `\n` or `\r\n`.
fn split_lines(text: &str) -> Vec<Line> {
    let mut parts: Vec<&str> = text.split('\n').collect();
    if parts.last() == Some(&"") {
        parts.pop();
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, t)| Line {
            no: i + 1,
            text: t.strip_suffix('\r').unwrap_or(t).to_string(),
        })
        .collect()
}

fn starts_stage(text: &str) -> bool {
    text.as_bytes()
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"bootstrap:"))
}

fn is_blank_or_comment(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t.starts_with('#')
}

/// One slice of lines per stage, each starting with its `Bootstrap:` line. Anything but
/// comments before the first one is an error: a stage without an agent cannot be built.
fn split_stages<'a>(file: &str, lines: &'a [Line]) -> Result<Vec<&'a [Line]>, DefError> {
    let mut starts: Vec<usize> = (0..lines.len())
        .filter(|&i| starts_stage(&lines[i].text))
        .collect();
    let first = starts.first().copied().unwrap_or(lines.len());
    if let Some(at) = lines[..first]
        .iter()
        .position(|l| !is_blank_or_comment(&l.text))
    {
        // An indented first `Bootstrap:` does not split (as in the reference) but still
        // starts the first stage.
        if starts_stage(lines[at].text.trim_start()) {
            starts.insert(0, at);
        }
    }
    let first = starts.first().copied().unwrap_or(lines.len());
    if let Some(stray) = lines[..first]
        .iter()
        .find(|l| !is_blank_or_comment(&l.text))
    {
        return Err(DefError {
            file: file.to_string(),
            line: Some(stray.no),
            kind: DefErrorKind::MissingBootstrap(stray.text.trim().to_string()),
        });
    }
    if starts.is_empty() {
        return Err(DefError {
            file: file.to_string(),
            line: None,
            kind: DefErrorKind::Empty,
        });
    }
    let ends = starts.iter().skip(1).copied().chain([lines.len()]);
    Ok(starts
        .iter()
        .zip(ends)
        .map(|(&s, e)| &lines[s..e])
        .collect())
}

/// Header, then sections; returns warnings about header keys the agent does not read.
fn parse_stage(file: &str, lines: &[Line]) -> Result<(Stage, Vec<String>), DefError> {
    let first_section = lines
        .iter()
        .position(|l| opens_section(&l.text))
        .unwrap_or(lines.len());
    let (header, warnings) = parse_header(file, &lines[..first_section])?;
    let name = match header.entries.iter().rev().find(|e| e.key == "stage") {
        Some(e) if e.value.is_empty() => {
            return Err(DefError {
                file: file.to_string(),
                line: Some(e.line),
                kind: DefErrorKind::EmptyStageName,
            })
        }
        Some(e) => Some(e.value.clone()),
        None => None,
    };
    let mut sections = Vec::new();
    let mut at = first_section;
    while at < lines.len() {
        let body_len = lines[at + 1..]
            .iter()
            .position(|l| opens_section(&l.text))
            .unwrap_or(lines.len() - at - 1);
        let body = &lines[at + 1..at + 1 + body_len];
        sections.push(parse_section(file, &lines[at], body)?);
        at += 1 + body_len;
    }
    let text = lines.iter().map(|l| format!("{}\n", l.text)).collect();
    let stage = Stage {
        line: lines.first().map_or(0, |l| l.no),
        header,
        name,
        sections,
        text,
    };
    Ok((stage, warnings))
}

/// Stage names are unique, and `%files from NAME` names an earlier stage (stages are built in
/// order, so a later one does not exist yet).
fn check_references(file: &str, earlier: &[Stage], stage: &Stage) -> Result<(), DefError> {
    let err = |line, kind| DefError {
        file: file.to_string(),
        line: Some(line),
        kind,
    };
    if let Some(name) = &stage.name {
        if earlier.iter().any(|s| s.name.as_ref() == Some(name)) {
            let line = stage.header.entries.iter().rev().find(|e| e.key == "stage");
            return Err(err(
                line.map_or(stage.line, |e| e.line),
                DefErrorKind::DuplicateStageName(name.clone()),
            ));
        }
    }
    for section in stage
        .sections
        .iter()
        .filter(|s| s.kind == SectionKind::Files)
    {
        if let Some(from) = section.files_from() {
            if !earlier.iter().any(|s| s.name.as_ref() == Some(&from)) {
                return Err(err(
                    section.line,
                    DefErrorKind::FilesFromUndefinedStage(from),
                ));
            }
        }
    }
    Ok(())
}
