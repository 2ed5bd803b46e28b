//! Environment variables that set flags. Apptainer reads `APPTAINER_<KEY>` for a flag and
//! falls back to the legacy `SINGULARITY_<KEY>`; clap reads the `APPTAINER_` name, so the
//! legacy names are copied across once at start-up, before any thread exists.

use std::ffi::OsString;

/// Copies every `SINGULARITY_X` to `APPTAINER_X` where the latter is unset, and likewise
/// `SINGULARITYENV_X` to `APPTAINERENV_X`. Returns the legacy names that were used.
pub fn adopt_legacy_names() -> Vec<String> {
    let mut adopted = Vec::new();
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        let new_key = if let Some(rest) = key.strip_prefix("SINGULARITYENV_") {
            format!("APPTAINERENV_{rest}")
        } else if let Some(rest) = key.strip_prefix("SINGULARITY_") {
            format!("APPTAINER_{rest}")
        } else {
            continue;
        };
        if std::env::var_os(&new_key).is_none() {
            // Single-threaded here: main() calls this before anything else runs.
            std::env::set_var(&new_key, value);
            adopted.push(key.to_string());
        }
    }
    adopted
}

/// Reads a boolean environment variable the way Apptainer does: `1`, `true`, `yes`, `on`
/// (any case) are true; anything else, or unset, is false.
pub fn flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// A string-list environment variable, split on `,` and trimmed (empty items dropped).
pub fn list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_splits_on_commas_and_trims() {
        std::env::set_var("APPTAINER_TEST_LIST_X", " /a:/b , /c,,");
        assert_eq!(list("APPTAINER_TEST_LIST_X"), ["/a:/b", "/c"]);
    }
}
