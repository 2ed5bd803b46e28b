//! `/.singularity.d/labels.json` of a definition-file build, merged as the reference does:
//! the labels the base image had, then those `%post` wrote to `$APPTAINER_LABELS`, then the
//! build labels (schema, dates, builder version, architecture, the header keys), then
//! `%labels`, which do not replace an existing label unless `--force`.

use std::collections::BTreeMap;

use serde::Serialize;

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
    let rfc3339 = time::format_description::well_known::Rfc3339;
    l.insert("org.label-schema.schema-version".into(), "1.0".into());
    l.insert(
        "org.opencontainers.image.created".into(),
        now.format(&rfc3339).unwrap_or_default(),
    );
    l.insert("org.label-schema.build-date".into(), build_date(now));
    l.insert(
        "org.label-schema.usage.apptainer.version".into(),
        crate::cli::APPTAINER_VERSION.into(),
    );
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

/// The reference's `Weekday_D_Month_YYYY_h:m:s_ZONE`, numbers not padded.
fn build_date(t: time::OffsetDateTime) -> String {
    let zone = if t.offset().is_utc() {
        "UTC".to_string()
    } else {
        t.offset().to_string()
    };
    format!(
        "{}_{}_{}_{}_{}:{}:{}_{}",
        t.weekday(),
        t.day(),
        t.month(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        zone
    )
}

/// Tab-indented JSON with sorted keys, as the reference writes labels.json.
pub fn to_json(labels: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    labels.serialize(&mut ser).expect("a string map serialises");
    out
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

    #[test]
    fn build_date_has_the_reference_shape() {
        let t = time::macros::datetime!(2026-12-04 09:05:03 UTC);
        assert_eq!(build_date(t), "Friday_4_December_2026_9:5:3_UTC");
    }
}
