//! The definition-file parser (frontend/src/deffile) on arbitrary bytes, with and without
//! `{{ VAR }}` templating. A def file may come from anyone (a shared recipe, a file stored in
//! a downloaded image), so no input may panic. What parses must render back to text that
//! parses to the same stages, as render.rs promises (`inspect --deffile` relies on it).
//!
//! The frontend is a binary crate, so its module is compiled in here by path: it uses only
//! `std`, `thiserror` and its own submodules. If it ever needs `crate::` items, the frontend
//! needs a small library target for this target to link instead.
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../frontend/src/deffile/mod.rs"]
mod deffile;

use deffile::{BuildArgs, DefFile, SectionKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args = BuildArgs::new(
        &["NAME=value".into(), "EMPTY=".into()],
        Some(("args", "V=1\n")),
    )
    .expect("fixed build args are valid");
    if let Ok(def) = deffile::parse_bytes("fuzz.def", data, &args) {
        use_def(&def);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(def) = deffile::parse_untemplated("fuzz.def", text) {
        use_def(&def);
        check_render_round_trip(&def);
    }
});

/// Everything the build asks of a parsed file.
fn use_def(def: &DefFile) {
    assert!(
        !def.stages.is_empty(),
        "parse returned a file without stages"
    );
    let _ = def.last_stage();
    let _ = def.templated_text();
    let _ = def.unused_build_args_message(true);
    for stage in &def.stages {
        if let Some(name) = &stage.name {
            assert!(def.stage_named(name).is_some());
        }
        let _ = (stage.header.from(), stage.header.other_urls());
        for kind in SectionKind::ALL {
            let _ = stage.script(kind);
        }
        let _ = (stage.files(), stage.labels(), stage.arguments());
        for app in stage.app_names() {
            for kind in SectionKind::ALL {
                let _ = stage.app_script(&app, kind);
            }
            let _ = (stage.app_files(&app), stage.app_labels(&app));
        }
        for s in &stage.sections {
            let _ = (s.script_args(), s.files_from());
        }
    }
}

/// Rendering then parsing gives the same agent, header entries, stage names and sections.
/// Rendering spells the agent canonically (`yuM` becomes `yum`) and trims trailing
/// whitespace of bodies, so those two are compared after the same normalisation.
fn check_render_round_trip(def: &DefFile) {
    let text = def.to_string();
    let again = match deffile::parse_untemplated("rendered.def", &text) {
        Ok(d) => d,
        Err(e) => panic!("rendered file does not parse: {e}\n--- rendered:\n{text}"),
    };
    assert_eq!(again.stages.len(), def.stages.len(), "rendered:\n{text}");
    for (a, b) in def.stages.iter().zip(&again.stages) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.header.agent, b.header.agent);
        let entries = |s: &deffile::Stage| -> Vec<(String, String)> {
            s.header
                .entries
                .iter()
                .filter(|e| e.key != "bootstrap")
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(entries(a), entries(b), "rendered:\n{text}");
        let sections = |s: &deffile::Stage| -> Vec<_> {
            s.sections
                .iter()
                .map(|x| {
                    (
                        x.kind,
                        x.app.clone(),
                        x.args.clone(),
                        x.body.trim_end().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(sections(a), sections(b), "rendered:\n{text}");
    }
}
