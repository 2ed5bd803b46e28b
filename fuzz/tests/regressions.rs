//! Inputs the fuzz targets found, kept as plain tests so they are checked on every
//! `cargo test --manifest-path fuzz/Cargo.toml` (stable toolchain is enough). Each test names
//! the target that found it; the fix belongs in the code under test, never here.

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../frontend/src/deffile/mod.rs"]
mod deffile;

/// Header values, each with the name of its stage.
type Values = Vec<(String, Option<String>)>;

/// Parses `text` without templating, renders it, parses the rendering again, and returns the
/// header values and stage names of both parses.
fn render_round_trip(text: &str) -> (Values, Values) {
    let values = |d: &deffile::DefFile| -> Values {
        d.stages
            .iter()
            .flat_map(|s| {
                s.header
                    .entries
                    .iter()
                    .filter(|e| e.key != "bootstrap")
                    .map(|e| (e.value.clone(), s.name.clone()))
            })
            .collect()
    };
    let first = deffile::parse_untemplated("in.def", text).expect("the input parses");
    let rendered = first.to_string();
    let again =
        deffile::parse_untemplated("rendered.def", &rendered).expect("the rendering parses");
    (values(&first), values(&again))
}

/// deffile_parser, crash-a02dc164: a header value or stage name ending in a backslash is
/// rendered as `Key: value\`, which the parser reads as a continuation line, so the backslash
/// is lost (`Stage: x\` comes back as stage `x`). Input, minimised:
/// `42 6f 6f 74 73 74 72 61 70 3a 20 64 6f 63 6b 65 72 0a 46 72 6f 6d 3a 20 61 0a 53 74 61 67
///  65 3a 20 78 5c 5c 0a` ("Bootstrap: docker\nFrom: a\nStage: x\\\\\n").
#[test]
fn a_stage_name_ending_in_a_backslash_survives_rendering() {
    let (first, again) = render_round_trip("Bootstrap: docker\nFrom: a\nStage: x\\\\\n");
    assert_eq!(first, again);
}

/// deffile_parser, same cause: `From: a\\` parses to `a\` and renders as `From: a\`.
#[test]
fn a_header_value_ending_in_a_backslash_survives_rendering() {
    let (first, again) = render_round_trip("Bootstrap: docker\nFrom: a\\\\\n");
    assert_eq!(first, again);
}

/// deffile_parser, crash-7b9dd6a5 (minimised): a body line ending in a carriage return, in a
/// file with CRLF line ends, is rendered as `\r\n`, which the parser reads as an empty CRLF
/// line, so the `\r` is lost. Input: `42 6f 6f 74 73 74 72 61 70 3a 64 6f 63 6b 65 72 0a 46
/// 72 6f 6d 3a 66 0a 25 6c 61 62 65 6c 73 0a 0d 0d 0a 72` ("Bootstrap:docker\nFrom:f\n
/// %labels\n\r\r\nr").
#[test]
fn a_body_line_ending_in_a_carriage_return_survives_rendering() {
    let text = "Bootstrap:docker\nFrom:f\n%labels\n\r\r\nr";
    let bodies = |d: &deffile::DefFile| -> Vec<String> {
        d.stages
            .iter()
            .flat_map(|s| s.sections.iter().map(|x| x.body.trim_end().to_owned()))
            .collect()
    };
    let first = deffile::parse_untemplated("in.def", text).expect("the input parses");
    let again = deffile::parse_untemplated("rendered.def", &first.to_string())
        .expect("the rendering parses");
    assert_eq!(bodies(&first), bodies(&again));
}
