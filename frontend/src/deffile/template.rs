//! `{{ VAR }}` templating, done on a stage's text before it is parsed, as in the reference:
//! values come from `--build-arg` (later flags win), then `--build-arg-file`, then the stage's
//! `%arguments` defaults; a default may itself use `{{ OTHER }}` one level deep; a `{{ VAR }}`
//! after a `#` comment marker (`#!` excepted) on its line is left alone.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{BuildArgError, DefError, DefErrorKind};
use super::section::{opens_section, SectionKind};
use super::Line;

/// The values given on the command line, merged: flags over the file, later flags over
/// earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildArgs {
    values: BTreeMap<String, String>,
    /// Lines of the build-arg file that were skipped, one message each.
    pub warnings: Vec<String>,
}

impl BuildArgs {
    /// `flags` are the `--build-arg K=V` values in command-line order; `file` is the name and
    /// contents of the `--build-arg-file` (read by the caller: this module does no I/O).
    pub fn new(flags: &[String], file: Option<(&str, &str)>) -> Result<BuildArgs, BuildArgError> {
        let mut args = BuildArgs::default();
        if let Some((name, text)) = file {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match key_value(line) {
                    Ok((k, v)) => {
                        args.values.insert(k, v);
                    }
                    Err(why) => args.warnings.push(format!(
                        "skipping {line:?} in build arg file {name:?}: {why}"
                    )),
                }
            }
        }
        for flag in flags {
            let (k, v) = key_value(flag).map_err(|why| match why {
                KeyValueError::NoEquals => BuildArgError::NotKeyValue(flag.clone()),
                KeyValueError::EmptyKey => BuildArgError::EmptyKey(flag.clone()),
            })?;
            args.values.insert(k, v);
        }
        Ok(args)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every name given, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyValueError {
    NoEquals,
    EmptyKey,
}

impl std::fmt::Display for KeyValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyValueError::NoEquals => "not a key=value pair",
            KeyValueError::EmptyKey => "missing key",
        })
    }
}

/// `KEY=VALUE`, both trimmed; the value may contain `=`.
fn key_value(text: &str) -> Result<(String, String), KeyValueError> {
    let (k, v) = text.split_once('=').ok_or(KeyValueError::NoEquals)?;
    let k = k.trim();
    if k.is_empty() {
        return Err(KeyValueError::EmptyKey);
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// The `%arguments` defaults of one stage, read from its text before templating, plus a
/// warning for each line that is not `KEY=VALUE`.
pub fn argument_defaults(file: &str, lines: &[Line]) -> (BTreeMap<String, String>, Vec<String>) {
    let mut defaults = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut in_arguments = false;
    for line in lines {
        if opens_section(&line.text) {
            let word = line.text.split_whitespace().next().unwrap_or_default();
            in_arguments = SectionKind::from_name(word.trim_start_matches('%'))
                == Some(SectionKind::Arguments);
            continue;
        }
        let text = line.text.trim();
        if !in_arguments || text.is_empty() || text.starts_with('#') {
            continue;
        }
        match key_value(text) {
            Ok((k, v)) => {
                defaults.insert(k, v);
            }
            Err(why) => warnings.push(format!(
                "{file}:{}: skipping {text:?} in %arguments: {why}",
                line.no
            )),
        }
    }
    (defaults, warnings)
}

/// Where a `{{ NAME }}` sits in a line: the whole match and the name.
struct VarMatch {
    start: usize,
    end: usize,
    name_start: usize,
    name_end: usize,
}

/// Go's `\s` and `\w`, which the reference's pattern `{{\s*(\w+)\s*}}` uses.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The leftmost `{{ NAME }}` at or after `from`. All bytes looked at are ASCII, so every
/// index returned is a char boundary.
fn next_var(s: &[u8], from: usize) -> Option<VarMatch> {
    (from..s.len().saturating_sub(1))
        .filter(|&i| s[i] == b'{' && s[i + 1] == b'{')
        .find_map(|i| var_at(s, i))
}

fn var_at(s: &[u8], start: usize) -> Option<VarMatch> {
    let skip_space = |mut j: usize| {
        while j < s.len() && is_space(s[j]) {
            j += 1;
        }
        j
    };
    let name_start = skip_space(start + 2);
    let mut name_end = name_start;
    while name_end < s.len() && is_word(s[name_end]) {
        name_end += 1;
    }
    if name_end == name_start {
        return None;
    }
    let close = skip_space(name_end);
    s.get(close..close + 2)
        .filter(|c| *c == b"}}")
        .map(|_| VarMatch {
            start,
            end: close + 2,
            name_start,
            name_end,
        })
}

/// The reference skips a match when the text before it (since the line start or the last
/// substitution) has a `#` followed by any character but `!`.
fn after_comment_marker(prefix: &[u8]) -> bool {
    prefix.windows(2).any(|w| w[0] == b'#' && w[1] != b'!')
}

/// What a stage's templating looks values up in.
pub struct Values<'a> {
    pub args: &'a BuildArgs,
    pub defaults: &'a BTreeMap<String, String>,
}

impl Values<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.args
            .get(name)
            .or_else(|| self.defaults.get(name).map(String::as_str))
    }

    /// One level of `{{ X }}` inside a value; names that are not defined stay as written.
    fn expand_nested(&self, value: &str, used: &mut BTreeSet<String>) -> String {
        let bytes = value.as_bytes();
        let mut out = value.to_string();
        let mut at = 0;
        while let Some(m) = next_var(bytes, at) {
            let name = &value[m.name_start..m.name_end];
            if let Some(v) = self.lookup(name) {
                out = out.replace(&value[m.start..m.end], v);
                used.insert(name.to_string());
            }
            at = m.end;
        }
        out
    }
}

/// Substitutes every `{{ NAME }}` of `lines`. A value with newlines gives several lines that
/// keep the number of the line they came from, so errors still point at the file. Names
/// looked up are added to `used` (nested ones too, so a build arg only used inside a default
/// is not reported unused).
pub fn substitute(
    file: &str,
    lines: &[Line],
    values: &Values<'_>,
    used: &mut BTreeSet<String>,
) -> Result<Vec<Line>, DefError> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let text = substitute_line(&line.text, values, used).map_err(|name| DefError {
            file: file.to_string(),
            line: Some(line.no),
            kind: DefErrorKind::UndefinedBuildVar(name),
        })?;
        out.extend(text.split('\n').map(|t| Line {
            no: line.no,
            text: t.to_string(),
        }));
    }
    Ok(out)
}

/// One line; Err(name) for a name that has no value.
fn substitute_line(
    text: &str,
    values: &Values<'_>,
    used: &mut BTreeSet<String>,
) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    while let Some(m) = next_var(bytes, copied) {
        if after_comment_marker(&bytes[copied..m.start]) {
            // Nothing is copied when a match is skipped, so every later match on this line
            // has the same marker before it: skip them all at once.
            break;
        }
        let name = &text[m.name_start..m.name_end];
        let value = values.lookup(name).ok_or_else(|| name.to_string())?;
        out.push_str(&text[copied..m.start]);
        out.push_str(&values.expand_nested(value, used));
        used.insert(name.to_string());
        copied = m.end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}
