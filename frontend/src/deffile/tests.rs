//! Unit tests of the definition-file parser: headers and agents, sections, templating,
//! multi-stage files, every error with its line, rendering, and random input.

use super::*;

fn ok(text: &str) -> DefFile {
    parse("t.def", text, &BuildArgs::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> DefError {
    match parse("t.def", text, &BuildArgs::default()) {
        Ok(d) => panic!("parsed, expected an error: {d:?}"),
        Err(e) => e,
    }
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---- headers and agents ----

#[test]
fn every_agent_parses_with_the_keys_it_uses() {
    for agent in Agent::ALL {
        let mut text = format!("Bootstrap: {}\n", agent.name());
        for key in agent.keys() {
            let key = if *key == "otherurl" { "otherurl1" } else { key };
            text.push_str(&format!("{key}: value-of-{key}\n"));
        }
        let def = ok(&text);
        let header = &def.stages[0].header;
        assert_eq!(header.agent, agent);
        assert_eq!(Agent::from_name(agent.name()), Some(agent));
        assert!(def.warnings.is_empty(), "{agent:?}: {:?}", def.warnings);
        for key in agent.keys() {
            let key = if *key == "otherurl" { "otherurl1" } else { key };
            assert_eq!(header.get(key), Some(format!("value-of-{key}").as_str()));
        }
    }
}

#[test]
fn agent_names_are_case_insensitive() {
    assert_eq!(
        ok("Bootstrap: Docker\nFrom: alpine\n").stages[0]
            .header
            .agent,
        Agent::Docker
    );
    assert_eq!(
        ok("Bootstrap: SCRATCH\n").stages[0].header.agent,
        Agent::Scratch
    );
}

#[test]
fn every_reference_header_key_is_accepted_with_its_spelling() {
    let keys = [
        ("bootstrap", "Bootstrap"),
        ("FROM", "From"),
        ("includecmd", "IncludeCmd"),
        ("MirrorUrl", "MirrorURL"),
        ("updateurl", "UpdateURL"),
        ("osversion", "OSVersion"),
        ("include", "Include"),
        ("library", "Library"),
        ("registry", "Registry"),
        ("namespace", "Namespace"),
        ("stage", "Stage"),
        ("product", "Product"),
        ("user", "User"),
        ("regcode", "Regcode"),
        ("productpgp", "ProductPGP"),
        ("registerurl", "RegisterURL"),
        ("modules", "Modules"),
        ("otherurl12", "OtherURL12"),
        ("fingerprints", "Fingerprints"),
        ("confurl", "ConfURL"),
        ("setopt", "Setopt"),
        ("target", "Target"),
        ("frontend", "Frontend"),
        ("filename", "Filename"),
        ("buildargs", "BuildArgs"),
    ];
    for (key, spelling) in keys {
        assert_eq!(
            header::canonical_key(&key.to_lowercase()).as_deref(),
            Some(spelling)
        );
    }
    // Keys written in any case are stored lower case.
    let def = ok("BOOTSTRAP: docker\nFrOm: alpine\nREGISTRY: 127.0.0.1:5000\nNamespace: test\n");
    let h = &def.stages[0].header;
    assert_eq!(h.from(), Some("alpine"));
    assert_eq!(h.get("Registry"), Some("127.0.0.1:5000"));
    assert_eq!(h.get("namespace"), Some("test"));
    assert_eq!(h.entries[1].key, "from");
}

#[test]
fn otherurl_needs_a_number_and_others_must_not_have_one() {
    let e = err("Bootstrap: zypper\nOtherURL: http://x\n");
    assert_eq!(e.to_string(), "t.def:2: unknown header key \"otherurl\"");
    let e = err("Bootstrap: docker\nFrom2: alpine\n");
    assert_eq!(e.to_string(), "t.def:2: unknown header key \"from2\"");
    let def = ok("Bootstrap: zypper\nOtherURL2: b\nOtherURL1: a\nOtherURL10: c\n");
    assert_eq!(
        def.stages[0].header.other_urls(),
        vec![(1, "a"), (2, "b"), (10, "c")]
    );
}

#[test]
fn keys_the_agent_does_not_read_are_warned_about_not_refused() {
    let def = ok("Bootstrap: docker\nFrom: alpine\nMirrorURL: http://deb.debian.org/debian\n");
    assert_eq!(
        def.warnings,
        vec!["t.def:3: header \"MirrorURL\" is not used by bootstrap agent \"docker\"".to_string()]
    );
}

#[test]
fn header_comments_and_blank_lines_are_skipped() {
    let def = ok("# a def file\n\nBootstrap: docker # the agent\n  # indented comment\nFrom: alpine:3.20   # pinned\n\n%post\necho hi\n");
    let h = &def.stages[0].header;
    assert_eq!(h.from(), Some("alpine:3.20"));
    assert_eq!(h.entries.len(), 2);
    assert_eq!(def.stages[0].line, 3);
}

#[test]
fn repeated_header_key_last_wins() {
    let def = ok("Bootstrap: docker\nFrom: a\nFrom: b\n");
    assert_eq!(def.stages[0].header.from(), Some("b"));
    // Also for an indented second `Bootstrap:`, which does not start a stage.
    let def = ok("Bootstrap: docker\nFrom: a\n  Bootstrap: scratch\n");
    assert_eq!(def.stages.len(), 1);
    assert_eq!(def.stages[0].header.agent, Agent::Scratch);
    assert_eq!(def.to_string(), "Bootstrap: scratch\nFrom: a\n");
}

#[test]
fn backslash_continues_a_header_value() {
    let def = ok("Bootstrap: debootstrap\nOSVersion: bookworm\nInclude: vim \\\n   curl \\\n   git\nMirrorURL: http://x\n");
    let h = &def.stages[0].header;
    assert_eq!(h.get("include"), Some("vim curl git"));
    assert_eq!(h.get("mirrorurl"), Some("http://x"));
    assert_eq!(h.entries[2].line, 3);
}

#[test]
fn backslash_n_before_the_continuation_is_a_newline() {
    let def = ok("Bootstrap: yum\nSetopt: a=1\\n\\\nb=2\n");
    assert_eq!(def.stages[0].header.get("setopt"), Some("a=1\nb=2"));
}

#[test]
fn a_blank_line_ends_a_continuation() {
    let def = ok("Bootstrap: debootstrap\nInclude: vim \\\n\nOSVersion: bookworm\n");
    let h = &def.stages[0].header;
    assert_eq!(h.get("include"), Some("vim"));
    assert_eq!(h.get("osversion"), Some("bookworm"));
}

#[test]
fn header_errors_name_the_line() {
    assert_eq!(
        err("Bootstrap: docker\nFrom: alpine\nFron: x\n").to_string(),
        "t.def:3: unknown header key \"fron\""
    );
    assert_eq!(
        err("Bootstrap: docker\nFrom alpine\n").to_string(),
        "t.def:2: header line \"From alpine\" is not \"key: value\""
    );
    assert_eq!(
        err("\n# x\nBootstrap: dockr\nFrom: alpine\n").to_string(),
        "t.def:3: unknown bootstrap agent \"dockr\""
    );
    assert_eq!(
        err("Bootstrap: docker\n%post\necho\n").to_string(),
        "t.def:1: bootstrap agent \"docker\" needs a \"From:\" header"
    );
    assert_eq!(
        err("Bootstrap: localimage\nFrom:\n").kind,
        DefErrorKind::MissingFrom("localimage")
    );
    assert_eq!(
        err("# comment\nFrom: alpine\nBootstrap: docker\n").to_string(),
        "t.def:2: \"From: alpine\" comes before \"Bootstrap:\"; each stage must start with a Bootstrap line"
    );
    assert_eq!(
        err("%post\necho hi\n").to_string(),
        "t.def:1: \"%post\" comes before \"Bootstrap:\"; each stage must start with a Bootstrap line"
    );
    assert_eq!(err("").to_string(), "t.def: empty definition file");
    assert_eq!(err("# only\n\n# comments\n").kind, DefErrorKind::Empty);
    assert_eq!(
        err("Bootstrap: docker\nFrom: a\nStage:\n").to_string(),
        "t.def:3: empty stage name"
    );
}

// ---- sections ----

const ALL_SECTIONS: &str = "\
Bootstrap: docker
From: alpine

%arguments
VERSION=1

%help
Some help.

%setup
touch ${APPTAINER_ROOTFS}/setup

%files
/etc/hosts /opt/hosts

%labels
Author me

%environment
export A=1

%pre
echo pre

%post
echo post

%runscript
echo run \"$@\"

%startscript
echo start

%test
echo test

%appinstall foo
make install

%applabels foo
Kind tool

%appfiles foo
foo.txt /opt/foo.txt

%appenv foo
export FOO=1

%apptest foo
foo --check

%apphelp foo
Foo help.

%apprun foo
exec foo \"$@\"

%appstart foo
foo --daemon
";

#[test]
fn every_section_kind_parses_in_order() {
    let def = ok(ALL_SECTIONS);
    let stage = &def.stages[0];
    let kinds: Vec<SectionKind> = stage.sections.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, SectionKind::ALL.to_vec());
    for s in &stage.sections {
        assert_eq!(s.app.is_some(), s.kind.is_app(), "{:?}", s.kind);
    }
    assert_eq!(
        stage.script(SectionKind::Help).unwrap().body,
        "Some help.\n\n"
    );
    assert_eq!(
        stage.script(SectionKind::Post).unwrap().body,
        "echo post\n\n"
    );
    assert_eq!(
        stage.script(SectionKind::Runscript).unwrap().body,
        "echo run \"$@\"\n\n"
    );
    assert!(stage.script(SectionKind::Test).is_some());
    assert!(stage.script(SectionKind::AppRun).is_none());
    assert_eq!(
        stage.arguments(),
        vec![("VERSION".to_string(), "1".to_string())]
    );
    assert_eq!(
        stage.labels(),
        vec![("Author".to_string(), "me".to_string())]
    );
    let files = stage.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].from, None);
    assert_eq!(
        files[0].copies,
        vec![FileCopy {
            src: "/etc/hosts".into(),
            dst: "/opt/hosts".into(),
            line: 14
        }]
    );
    assert_eq!(stage.app_names(), vec!["foo".to_string()]);
    assert_eq!(
        stage
            .app_script("foo", SectionKind::AppInstall)
            .unwrap()
            .body,
        "make install\n\n"
    );
    assert_eq!(
        stage.app_script("foo", SectionKind::AppRun).unwrap().body,
        "exec foo \"$@\"\n\n"
    );
    assert_eq!(
        stage.app_labels("foo"),
        vec![("Kind".to_string(), "tool".to_string())]
    );
    assert_eq!(stage.app_files("foo")[0].dst, "/opt/foo.txt");
    assert!(stage.app_script("bar", SectionKind::AppRun).is_none());
    // Line numbers of sections.
    assert_eq!(stage.sections[0].line, 4);
    assert_eq!(stage.sections[7].line, 25);
}

#[test]
fn section_names_are_case_insensitive() {
    let def = ok("Bootstrap: scratch\n%POST\necho\n%RunScript\necho\n");
    let kinds: Vec<_> = def.stages[0].sections.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![SectionKind::Post, SectionKind::Runscript]);
}

#[test]
fn section_arguments_are_kept() {
    let def =
        ok("Bootstrap: scratch\n%post -c /bin/bash # use bash\nset -o pipefail\n%setup\ntrue\n");
    let stage = &def.stages[0];
    let post = stage.script(SectionKind::Post).unwrap();
    assert_eq!(post.args, "-c /bin/bash # use bash");
    assert_eq!(
        post.args_words,
        vec!["-c".to_string(), "/bin/bash".to_string()]
    );
    assert_eq!(post.body, "set -o pipefail\n");
    assert!(stage.script(SectionKind::Setup).unwrap().args.is_empty());
}

#[test]
fn repeated_sections_are_joined_and_the_last_arguments_win() {
    let def = ok("Bootstrap: scratch\n%post -c /bin/bash\none\n%labels\nA 1\nB 2\n%post\ntwo\n%labels\nA 3\n");
    let stage = &def.stages[0];
    let post = stage.script(SectionKind::Post).unwrap();
    assert_eq!(post.body, "one\ntwo\n");
    assert_eq!(post.args, "-c /bin/bash");
    assert_eq!(stage.sections.len(), 4);
    assert_eq!(
        stage.labels(),
        vec![
            ("A".to_string(), "3".to_string()),
            ("B".to_string(), "2".to_string())
        ]
    );
}

#[test]
fn labels_keep_spaces_in_values_and_skip_comments() {
    let def = ok(
        "Bootstrap: scratch\n%labels\n# who\n  Maintainer   Jane Doe <jane@example.org>\nEmpty\n\n",
    );
    assert_eq!(
        def.stages[0].labels(),
        vec![
            (
                "Maintainer".to_string(),
                "Jane Doe <jane@example.org>".to_string()
            ),
            ("Empty".to_string(), String::new())
        ]
    );
}

#[test]
fn script_bodies_keep_comments_and_indentation() {
    let def =
        ok("Bootstrap: scratch\n%post\n  # comment\n\tif true; then\n\t\techo '%s' 100%\n\tfi\n");
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "  # comment\n\tif true; then\n\t\techo '%s' 100%\n\tfi\n"
    );
}

#[test]
fn files_lines_take_quotes_comments_and_a_missing_destination() {
    let def = ok("Bootstrap: scratch\n%files\n# a comment\n\n  file1\n\"with space.txt\" '/opt/other space.txt'\nsrc dst # trailing comment\n/a/*.so /lib/\n");
    let copies = &def.stages[0].files()[0].copies;
    let pairs: Vec<(&str, &str, usize)> = copies
        .iter()
        .map(|c| (c.src.as_str(), c.dst.as_str(), c.line))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("file1", "", 5),
            ("with space.txt", "/opt/other space.txt", 6),
            ("src", "dst", 7),
            ("/a/*.so", "/lib/", 8)
        ]
    );
}

#[test]
fn files_errors_name_the_line() {
    assert_eq!(
        err("Bootstrap: scratch\n%files\na b\na b c\n").to_string(),
        "t.def:4: malformed %files line \"a b c\": expected \"SOURCE [DESTINATION]\""
    );
    assert_eq!(
        err("Bootstrap: scratch\n%files\n\"unclosed b\n").kind,
        DefErrorKind::MalformedFilesLine("\"unclosed b".to_string())
    );
    assert_eq!(
        err("Bootstrap: scratch\n%appfiles app\n'' dst\n").kind,
        DefErrorKind::MalformedFilesLine("'' dst".to_string())
    );
    assert_eq!(
        err("Bootstrap: scratch\n\n%files to build\n").to_string(),
        "t.def:3: malformed %files arguments \"to build\": expected \"%files\" or \"%files from STAGE\""
    );
    assert_eq!(
        err("Bootstrap: scratch\n%files from\n").kind,
        DefErrorKind::MalformedFilesArgs("from".to_string())
    );
}

#[test]
fn section_errors_name_the_line() {
    assert_eq!(
        err("Bootstrap: docker\nFrom: alpine\n\n%post\necho\n%psot\necho\n").to_string(),
        "t.def:6: unknown section \"%psot\""
    );
    // As in the reference, any line whose first word starts with `%` opens a section.
    assert_eq!(
        err("Bootstrap: scratch\n%post\n  %d\n").to_string(),
        "t.def:3: unknown section \"%d\""
    );
    assert_eq!(
        err("Bootstrap: scratch\n%apprun\necho\n").to_string(),
        "t.def:2: section \"%apprun\" needs an app name"
    );
    assert_eq!(
        err("Bootstrap: scratch\n%appinstall # no name\n").kind,
        DefErrorKind::MissingAppName("appinstall")
    );
}

#[test]
fn apps_keep_their_first_seen_order() {
    let def = ok("Bootstrap: scratch\n%apprun b\nb\n%appinstall a\na\n%appinstall b\nb\n%appenv a\nexport A=1\n");
    assert_eq!(
        def.stages[0].app_names(),
        vec!["b".to_string(), "a".to_string()]
    );
}

#[test]
fn crlf_line_endings_are_accepted() {
    let def = ok("Bootstrap: docker\r\nFrom: alpine\r\n%post\r\necho hi\r\n");
    assert_eq!(def.stages[0].header.from(), Some("alpine"));
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo hi\n"
    );
}

#[test]
fn invalid_utf8_is_an_error_naming_its_line() {
    let e = parse_bytes(
        "t.def",
        b"Bootstrap: scratch\n%post\necho \xff\n",
        &BuildArgs::default(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "t.def:3: definition file is not valid UTF-8");
}

// ---- multi-stage ----

const TWO_STAGES: &str = "\
Bootstrap: docker
From: golang:1.22
Stage: build

%post
go build -o /hello hello.go

Bootstrap: docker
From: alpine:3.20
Stage: final

%files from build
/hello /usr/local/bin/hello

%files
local.txt

%files from build
/etc/os-release /build-os-release
";

#[test]
fn each_bootstrap_starts_a_stage() {
    let def = ok(TWO_STAGES);
    assert_eq!(def.stages.len(), 2);
    assert_eq!(def.stages[0].name.as_deref(), Some("build"));
    assert_eq!(def.stages[1].name.as_deref(), Some("final"));
    assert_eq!(def.stages[1].line, 8);
    assert_eq!(def.last_stage().header.from(), Some("alpine:3.20"));
    assert_eq!(def.stage_named("build").unwrap().line, 1);
    let files = def.stages[1].files();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].from.as_deref(), Some("build"));
    assert_eq!(files[0].copies.len(), 2);
    assert_eq!(files[0].copies[1].src, "/etc/os-release");
    assert_eq!(files[1].from, None);
    assert_eq!(files[1].copies[0].src, "local.txt");
    // The first stage ends where the second begins.
    assert_eq!(def.stages[0].text.lines().count(), 7);
}

#[test]
fn an_indented_first_bootstrap_starts_the_first_stage() {
    let def = ok("# x\n  Bootstrap: docker\n  From: alpine\nBootstrap: scratch\n");
    assert_eq!(def.stages.len(), 2);
    assert_eq!(def.stages[0].line, 2);
    assert_eq!(def.stages[0].header.from(), Some("alpine"));
}

#[test]
fn a_stage_without_a_name_is_allowed() {
    let def = ok("Bootstrap: docker\nFrom: a\nBootstrap: docker\nFrom: b\n");
    assert_eq!(def.stages.len(), 2);
    assert!(def.stages.iter().all(|s| s.name.is_none()));
}

#[test]
fn only_bootstrap_at_the_start_of_a_line_splits_stages() {
    let def = ok("Bootstrap: scratch\n%post\n  Bootstrap: not a stage\necho bootstrap: no\n");
    assert_eq!(def.stages.len(), 1);
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "  Bootstrap: not a stage\necho bootstrap: no\n"
    );
}

#[test]
fn multi_stage_errors_name_the_line() {
    assert_eq!(
        err("Bootstrap: scratch\nStage: one\nBootstrap: scratch\n%files from two\na b\n")
            .to_string(),
        "t.def:4: %files from \"two\": no earlier stage has that name"
    );
    // A later stage does not exist yet when this one is built.
    assert_eq!(
        err("Bootstrap: scratch\nStage: one\n%files from two\na\nBootstrap: scratch\nStage: two\n")
            .kind,
        DefErrorKind::FilesFromUndefinedStage("two".to_string())
    );
    assert_eq!(
        err("Bootstrap: scratch\nStage: one\nBootstrap: scratch\n\nStage: one\n").to_string(),
        "t.def:5: stage name \"one\" is used by an earlier stage"
    );
}

// ---- templating ----

#[test]
fn arguments_defaults_fill_in_variables() {
    let text = "Bootstrap: docker\nFrom: alpine:{{ VERSION }}\n%arguments\nVERSION=3.20\nGREETING = hello world \n%post\necho {{GREETING}} {{  VERSION  }}\n";
    let def = ok(text);
    let stage = &def.stages[0];
    assert_eq!(stage.header.from(), Some("alpine:3.20"));
    assert_eq!(
        stage.script(SectionKind::Post).unwrap().body,
        "echo hello world 3.20\n"
    );
    assert_eq!(def.source, text);
    assert!(stage.text.contains("From: alpine:3.20\n"));
}

#[test]
fn build_arg_beats_file_beats_default_and_later_flags_win() {
    let text = "Bootstrap: scratch\n%arguments\nA=default-a\nB=default-b\nC=default-c\n%post\necho {{ A }} {{ B }} {{ C }}\n";
    let args = BuildArgs::new(
        &flags(&["A=flag-1", "A=flag-2"]),
        Some(("args.txt", "A=file-a\nB=file-b\n")),
    )
    .unwrap();
    let def = parse("t.def", text, &args).unwrap();
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo flag-2 file-b default-c\n"
    );
    assert!(def.unused_build_args.is_empty());
}

#[test]
fn defaults_may_use_one_level_of_nesting() {
    let text = "Bootstrap: scratch\n%arguments\nMAJOR=3\nVERSION={{ MAJOR }}.20\nDEEP={{ VERSION }}-x\n%post\necho {{ VERSION }} {{ DEEP }}\n";
    let def = ok(text);
    // One level only: DEEP's VERSION is expanded, the MAJOR inside that is not.
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo 3.20 {{ MAJOR }}.20-x\n"
    );
    let args = BuildArgs::new(&flags(&["MAJOR=4"]), None).unwrap();
    let def = parse("t.def", text, &args).unwrap();
    assert!(def.stages[0]
        .script(SectionKind::Post)
        .unwrap()
        .body
        .starts_with("echo 4.20 "));
    // MAJOR was only used inside a default, and still counts as used.
    assert!(def.unused_build_args.is_empty());
    // The %arguments text is templated too, as in the reference, so an undefined name there
    // is an error on its line.
    let e = err("Bootstrap: scratch\n%arguments\nODD={{ NOPE }}\n");
    assert_eq!(e.kind, DefErrorKind::UndefinedBuildVar("NOPE".to_string()));
    assert_eq!(e.line, Some(3));
}

#[test]
fn comment_lines_are_not_templated() {
    let text = "Bootstrap: scratch\n# uses {{ UNDEFINED }}\n%post\n  # {{ ALSO_UNDEFINED }}\necho hi # {{ NOPE }}\n#!/bin/sh {{ X }}\n";
    let args = BuildArgs::new(&flags(&["X=y"]), None).unwrap();
    let def = parse("t.def", text, &args).unwrap();
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "  # {{ ALSO_UNDEFINED }}\necho hi # {{ NOPE }}\n#!/bin/sh y\n"
    );
}

#[test]
fn an_undefined_variable_is_an_error_naming_it_and_its_line() {
    let e = err("Bootstrap: scratch\n%post\necho ok\necho {{ MISSING }}\n");
    assert_eq!(
        e.to_string(),
        "t.def:4: build var MISSING is not defined through either --build-arg (--build-arg-file) or 'arguments' section"
    );
}

#[test]
fn not_quite_variables_are_left_alone() {
    let def = ok("Bootstrap: scratch\n%post\necho {{}} {{ a b }} {{ - }} ${{x}\n");
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo {{}} {{ a b }} {{ - }} ${{x}\n"
    );
}

#[test]
fn unused_build_args_are_reported_sorted() {
    let args = BuildArgs::new(&flags(&["ZED=1", "USED=2", "ALPHA=3"]), None).unwrap();
    let def = parse(
        "t.def",
        "Bootstrap: scratch\n%post\necho {{ USED }}\n",
        &args,
    )
    .unwrap();
    assert_eq!(
        def.unused_build_args,
        vec!["ALPHA".to_string(), "ZED".to_string()]
    );
}

#[test]
fn unused_build_args_are_worded_as_the_reference_does() {
    let args = BuildArgs::new(&flags(&["B=1", "A=2"]), None).unwrap();
    let def = parse("t.def", "Bootstrap: scratch\n", &args).unwrap();
    assert_eq!(
        def.unused_build_args_message(false).as_deref(),
        Some("unused build args: A B. Use option --warn-unused-build-args to show a warning instead of a fatal message")
    );
    assert_eq!(
        def.unused_build_args_message(true).as_deref(),
        Some("Unused build args: A B")
    );
    assert_eq!(
        ok("Bootstrap: scratch\n").unused_build_args_message(false),
        None
    );
}

#[test]
fn the_templated_text_joins_the_stages() {
    let text = "# lead comment\nBootstrap: docker\nFrom: {{ A }}\n%arguments\nA=alpine\nBootstrap: scratch\n%post\necho {{ A }}\n";
    let args = BuildArgs::new(&flags(&["A=debian"]), None).unwrap();
    let def = parse("t.def", text, &args).unwrap();
    assert_eq!(
        def.templated_text(),
        "Bootstrap: docker\nFrom: debian\n%arguments\nA=alpine\nBootstrap: scratch\n%post\necho debian\n"
    );
}

#[test]
fn each_stage_uses_its_own_arguments() {
    let text = "Bootstrap: scratch\nStage: one\n%arguments\nX=first\n%post\necho {{ X }}\nBootstrap: scratch\n%arguments\nX=second\n%post\necho {{ X }}\n";
    let def = ok(text);
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo first\n"
    );
    assert_eq!(
        def.stages[1].script(SectionKind::Post).unwrap().body,
        "echo second\n"
    );
    let e = err("Bootstrap: scratch\n%arguments\nX=1\nBootstrap: scratch\n%post\necho {{ X }}\n");
    assert_eq!(e.line, Some(6));
}

#[test]
fn a_multi_line_value_keeps_later_line_numbers() {
    let args = BuildArgs::new(&flags(&["CMDS=echo a\necho b"]), None).unwrap();
    let text = "Bootstrap: scratch\n%post\n{{ CMDS }}\n%psot\n";
    let e = parse("t.def", text, &args).unwrap_err();
    assert_eq!(e.to_string(), "t.def:4: unknown section \"%psot\"");
    let def = parse("t.def", "Bootstrap: scratch\n%post\n{{ CMDS }}\n", &args).unwrap();
    assert_eq!(
        def.stages[0].script(SectionKind::Post).unwrap().body,
        "echo a\necho b\n"
    );
}

#[test]
fn the_agent_itself_may_be_templated() {
    let args = BuildArgs::new(&flags(&["AGENT=docker", "IMAGE=alpine"]), None).unwrap();
    let def = parse(
        "t.def",
        "Bootstrap: {{ AGENT }}\nFrom: {{ IMAGE }}\n",
        &args,
    )
    .unwrap();
    assert_eq!(def.stages[0].header.agent, Agent::Docker);
}

#[test]
fn bad_argument_lines_are_warned_about() {
    let args = BuildArgs::new(&[], Some(("a.txt", "GOOD=1\nnot a pair\n\n=empty\n"))).unwrap();
    assert_eq!(args.get("GOOD"), Some("1"));
    assert_eq!(
        args.warnings,
        vec![
            "skipping \"not a pair\" in build arg file \"a.txt\": not a key=value pair".to_string(),
            "skipping \"=empty\" in build arg file \"a.txt\": missing key".to_string(),
        ]
    );
    let def = parse(
        "t.def",
        "Bootstrap: scratch\n%arguments\n# doc\nbogus\nK = v = w\n",
        &args,
    )
    .unwrap();
    assert_eq!(def.warnings[0], args.warnings[0]);
    assert!(def
        .warnings
        .contains(&"t.def:4: skipping \"bogus\" in %arguments: not a key=value pair".to_string()));
    assert_eq!(
        def.stages[0].arguments(),
        vec![("K".to_string(), "v = w".to_string())]
    );
    assert_eq!(def.unused_build_args, vec!["GOOD".to_string()]);
}

#[test]
fn a_bad_build_arg_flag_is_an_error() {
    assert_eq!(
        BuildArgs::new(&flags(&["NOEQUALS"]), None)
            .unwrap_err()
            .to_string(),
        "--build-arg \"NOEQUALS\" is not a key=value pair"
    );
    assert_eq!(
        BuildArgs::new(&flags(&[" =x"]), None).unwrap_err(),
        BuildArgError::EmptyKey(" =x".to_string())
    );
    // The value may hold `=`.
    let args = BuildArgs::new(&flags(&["OPTS=a=b"]), None).unwrap();
    assert_eq!(args.get("OPTS"), Some("a=b"));
}

#[test]
fn untemplated_parsing_leaves_variables_as_written() {
    let def = parse_untemplated("t.def", "Bootstrap: docker\nFrom: {{ IMAGE }}\n").unwrap();
    assert_eq!(def.stages[0].header.from(), Some("{{ IMAGE }}"));
}

// ---- rendering ----

#[test]
fn rendering_gives_canonical_definition_text() {
    let def = ok("# comment\nbootstrap: Docker\nfrom:alpine   # c\nSTAGE: one\nInclude: a \\\n b\n\n%POST   -c /bin/bash\necho hi\n\n\n%labels\nA b\n%appRun app\nrun\n");
    assert_eq!(
        def.to_string(),
        "Bootstrap: docker\nFrom: alpine\nStage: one\nInclude: a b\n\n%post -c /bin/bash\necho hi\n\n%labels\nA b\n\n%apprun app\nrun\n"
    );
}

#[test]
fn rendering_parses_back_to_the_same_stages() {
    for text in [
        ALL_SECTIONS,
        TWO_STAGES,
        "Bootstrap: yum\nSetopt: a=1\\n\\\nb=2\nMirrorURL: x\n",
    ] {
        let first = ok(text);
        let rendered = first.to_string();
        let second = ok(&rendered);
        assert_eq!(rendered, second.to_string());
        assert_eq!(first.stages.len(), second.stages.len());
        for (a, b) in first.stages.iter().zip(&second.stages) {
            assert_eq!(a.header.agent, b.header.agent);
            let entries = |h: &Header| -> Vec<(String, String)> {
                h.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            };
            assert_eq!(entries(&a.header), entries(&b.header));
            assert_eq!(a.name, b.name);
            // Line numbers move; the copies do not.
            let copies = |st: &Stage| -> Vec<(Option<String>, String, String)> {
                st.files()
                    .into_iter()
                    .flat_map(|b| {
                        b.copies
                            .into_iter()
                            .map(move |c| (b.from.clone(), c.src, c.dst))
                    })
                    .collect()
            };
            assert_eq!(copies(a), copies(b));
            for kind in SectionKind::ALL {
                let trimmed =
                    |s: Option<Script>| s.map(|s| (s.body.trim_end().to_string(), s.args));
                assert_eq!(trimmed(a.script(kind)), trimmed(b.script(kind)), "{kind:?}");
            }
        }
    }
}

// ---- random input ----

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let args = BuildArgs::new(&["A=1".to_string()], Some(("f", "B={{ A }}\n"))).unwrap();
            let _ = parse_bytes("r.def", &bytes, &args);
            let _ = parse_untemplated("r.def", &String::from_utf8_lossy(&bytes));
        }

        /// Text made of definition-file pieces reaches far more of the parser than random bytes.
        #[test]
        fn definition_like_text_never_panics_and_renders_to_a_fixpoint(
            pieces in proptest::collection::vec(prop_oneof![
                Just("Bootstrap: docker\n"), Just("Bootstrap: scratch\n"), Just("  Bootstrap: oras\n"), Just("bootstrap:zypper\n"),
                Just("From: alpine\n"), Just("Stage: s1\n"), Just("Stage: s2\n"), Just("OtherURL3: u\n"),
                Just("Include: a \\\n"), Just("x\\n\\\n"), Just("# c\n"), Just("\n"), Just("   \n"),
                Just("%post -c bash\n"), Just("%files from s1\n"), Just("%files\n"), Just("%labels\n"),
                Just("%arguments\n"), Just("A=1\n"), Just("B={{ A }}\n"), Just("echo {{ A }}\n"),
                Just("echo {{ B }} # {{ C }}\n"), Just("a b\n"), Just("\"a b\" c\n"), Just("'x\n"),
                Just("%apprun x\n"), Just("%appfiles x\n"), Just("%bogus\n"), Just("{{\n"), Just("\r\n"),
                Just("é ü\n"), Just("%\n"), Just("#!{{ A }}\n"), Just("Key without colon\n"),
            ], 0..30)
        ) {
            // Start most texts with a stage so that many of them parse and reach the renderer.
            let lead = match pieces.len() % 4 {
                0 => "",
                1 => "Bootstrap: scratch\n",
                _ => "Bootstrap: scratch\n%post\n",
            };
            let text = format!("{lead}{}", pieces.concat());
            let args = BuildArgs::new(&["C=3".to_string()], None).unwrap();
            let _ = parse("r.def", &text, &args);
            if let Ok(def) = parse_untemplated("r.def", &text) {
                let rendered = def.to_string();
                let again = parse_untemplated("r.def", &rendered);
                prop_assert!(again.is_ok(), "{:?} rendered as {:?}: {:?}", text, rendered, again);
                prop_assert_eq!(again.unwrap().to_string(), rendered);
            }
        }
    }
}
