//! Renders a parsed definition file back into definition-file text (what `inspect --deffile`
//! can show for a file built here). Header keys get their usual spelling, comments between
//! header lines are dropped, section bodies are kept as written. Parsing the output gives the
//! same stages again.

use std::fmt;

use super::header::canonical_key;
use super::{DefFile, Section, Stage};

impl fmt::Display for DefFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, stage) in self.stages.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{stage}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.header.entries.iter().enumerate() {
            let key = canonical_key(&entry.key).unwrap_or_else(|| entry.key.clone());
            let value = if entry.key == "bootstrap" {
                // Once, first: another `Bootstrap:` line would start another stage.
                if i > 0 {
                    continue;
                }
                self.header.agent.name().to_string()
            } else {
                // A newline in a value was written as `\n\` at the end of a line.
                entry.value.replace('\n', "\\n\\\n")
            };
            if value.ends_with('\\') {
                // A trailing `\` means "continued on the next line"; doubling it and ending
                // the continuation with a blank line keeps the backslash in the value.
                writeln!(f, "{key}: {value}\\\n")?;
            } else {
                writeln!(f, "{key}: {value}")?;
            }
        }
        for section in &self.sections {
            writeln!(f)?;
            write!(f, "{section}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.kind.name())?;
        if let Some(app) = &self.app {
            write!(f, " {app}")?;
        }
        if !self.args.is_empty() {
            write!(f, " {}", self.args)?;
        }
        writeln!(f)?;
        let body = self.body.trim_end();
        for line in body.split('\n').filter(|_| !body.is_empty()) {
            // The parser drops one `\r` before each newline (CRLF files), so a line that
            // really ends in `\r` gets a second one.
            let cr = if line.ends_with('\r') { "\r" } else { "" };
            writeln!(f, "{line}{cr}")?;
        }
        Ok(())
    }
}
