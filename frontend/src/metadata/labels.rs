//! The build labels every image gets in `/.singularity.d/labels.json`, whether converted
//! from an OCI image or built from a definition file, and the file's JSON layout.

use std::collections::BTreeMap;

use serde::Serialize;

/// Adds the labels the reference stamps on every build made at `now`: schema version,
/// creation time (RFC 3339, whole seconds), build date and builder version.
pub fn insert_build_labels(l: &mut BTreeMap<String, String>, now: time::OffsetDateTime) {
    let rfc3339 = time::format_description::well_known::Rfc3339;
    l.insert("org.label-schema.schema-version".into(), "1.0".into());
    l.insert(
        "org.opencontainers.image.created".into(),
        now.replace_nanosecond(0)
            .unwrap_or(now)
            .format(&rfc3339)
            .unwrap_or_default(),
    );
    l.insert("org.label-schema.build-date".into(), build_date(now));
    l.insert(
        "org.label-schema.usage.apptainer.version".into(),
        crate::cli::APPTAINER_VERSION.into(),
    );
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
pub fn labels_json(labels: &BTreeMap<String, String>) -> Vec<u8> {
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
    fn build_date_has_the_reference_shape() {
        let t = time::macros::datetime!(2026-12-04 09:05:03 UTC);
        assert_eq!(build_date(t), "Friday_4_December_2026_9:5:3_UTC");
    }

    #[test]
    fn created_label_has_whole_seconds() {
        let mut l = BTreeMap::new();
        insert_build_labels(
            &mut l,
            time::macros::datetime!(2026-12-04 09:05:03.123456 UTC),
        );
        assert_eq!(
            l["org.opencontainers.image.created"],
            "2026-12-04T09:05:03Z"
        );
        assert_eq!(l["org.label-schema.schema-version"], "1.0");
    }

    #[test]
    fn labels_json_is_tab_indented_and_sorted() {
        let mut l = BTreeMap::new();
        l.insert("b".to_string(), "2".to_string());
        l.insert("a".to_string(), "1".to_string());
        assert_eq!(
            String::from_utf8(labels_json(&l)).unwrap(),
            "{\n\t\"a\": \"1\",\n\t\"b\": \"2\"\n}"
        );
    }
}
