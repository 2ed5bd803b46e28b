//! `/.singularity.d/labels.json` of a definition-file build, merged as the reference does:
//! the labels the base image had, then those `%post` wrote to `$APPTAINER_LABELS`, then the
//! build labels (schema, dates, builder version, architecture, the header keys), then
//! `%labels`, which do not replace an existing label unless `--force`.

use std::collections::BTreeMap;

use crate::deffile::Stage;

/// The labels before this build's `%labels`, plus the build labels.
pub fn build_labels(
    existing: BTreeMap<String, String>,
    from_post: &str,
    stage: &Stage,
    has_help: bool,
    now: time::OffsetDateTime,
) -> BTreeMap<String, String> {
    let mut l = existing;
    for (k, v) in crate::deffile::parse_labels(from_post) {
        l.insert(k, v);
    }
    crate::metadata::insert_build_labels(&mut l, now);
    if has_help {
        for k in [
            "org.label-schema.usage",
            "org.label-schema.usage.apptainer.runscript.help",
        ] {
            l.insert(k.into(), "/.singularity.d/runscript.help".into());
        }
    }
    for entry in &stage.header.entries {
        l.insert(
            format!("org.label-schema.usage.singularity.deffile.{}", entry.key),
            entry.value.clone(),
        );
    }
    let arch = sif::Arch::host().map(|a| a.go_name()).unwrap_or("amd64");
    l.insert("org.opencontainers.image.architecture".into(), arch.into());
    l.insert("org.label-schema.build-arch".into(), arch.into());
    l
}

/// Adds `%labels`; a label already set is kept (with a warning) unless `force`.
pub fn add_section_labels(
    l: &mut BTreeMap<String, String>,
    labels: &[(String, String)],
    force: bool,
) {
    for (k, v) in labels {
        if l.contains_key(k) && !force {
            crate::warning!("Label: {k} already exists and force option is false, not overwriting");
            continue;
        }
        l.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_labels_do_not_replace_existing_ones_without_force() {
        let mut l = BTreeMap::from([("A".to_string(), "old".to_string())]);
        let new = [
            ("A".to_string(), "new".to_string()),
            ("B".to_string(), "b".to_string()),
        ];
        add_section_labels(&mut l, &new, false);
        assert_eq!(l["A"], "old");
        assert_eq!(l["B"], "b");
        add_section_labels(&mut l, &new, true);
        assert_eq!(l["A"], "new");
    }
}
