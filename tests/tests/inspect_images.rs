//! `apptainer inspect` and `run-help` on images built here: SCIF apps (`--list-apps`,
//! `--app`), sandboxes, and SIFs converted from the registry (which carry no help).

use apptainer_tests::{
    docker_ref, installed, registry_up, require, test_user_exists, user_tempdir, Out, UserCmd,
    REGISTRY,
};
use std::path::Path;

fn as_user(dir: &Path, args: &[&str]) -> Out {
    UserCmd::new(args)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .env("APPTAINER_NOHTTPS", "1")
        .run()
}

const WHY: &str = "installed apptainer, test user and local registry (scripts/test-setup.sh)";

#[test]
fn apps_are_listed_and_inspected_one_by_one() {
    require!(installed() && test_user_exists() && registry_up(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let def = dir.join("apps.def");
    std::fs::write(
        &def,
        format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n\
             %apprun foo\n    echo foo-runs\n\n%applabels foo\n    Maintainer alice\n\n\
             %apphelp foo\n    foo help\n\n%appinstall foo\n    echo installed > installed.txt\n\n\
             %apprun bar\n    echo bar-runs\n"
        ),
    )
    .unwrap();
    let def = def.display().to_string();
    for (out, sandbox) in [("apps.sif", false), ("apps-sb", true)] {
        let mut args = vec!["build"];
        if sandbox {
            args.push("--sandbox");
        }
        args.extend([out, def.as_str()]);
        as_user(dir, &args).assert_success();

        let list = as_user(dir, &["inspect", "--list-apps", out]);
        assert_eq!(list.stdout, "bar\nfoo\n", "{out}: {list:?}");
        let run = as_user(dir, &["inspect", "--app", "foo", "--runscript", out]);
        assert_eq!(
            run.stdout, "#!/bin/sh\n\n    echo foo-runs\n",
            "{out}: {run:?}"
        );
        let labels = as_user(dir, &["inspect", "--app", "foo", "--labels", out]);
        assert!(
            labels.stdout.lines().any(|l| l == "Maintainer: alice"),
            "{out}: {labels:?}"
        );
        let help = as_user(dir, &["run-help", "--app", "foo", out]);
        assert_eq!(help.stdout, "    foo help\n", "{out}: {help:?}");
    }
    let installed = as_user(
        dir,
        &["exec", "apps.sif", "cat", "/scif/apps/foo/installed.txt"],
    );
    assert_eq!(installed.stdout, "installed\n", "{installed:?}");
    let run = as_user(dir, &["run", "--app", "bar", "apps.sif"]);
    assert_eq!(run.stdout, "bar-runs\n", "{run:?}");
}

#[test]
fn a_pulled_image_shows_its_labels_and_has_no_help() {
    require!(installed() && test_user_exists() && registry_up(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    as_user(dir, &["pull", "bb.sif", &docker_ref("busybox:latest")]).assert_success();
    let labels = as_user(dir, &["inspect", "--json", "--labels", "bb.sif"]);
    labels.assert_success();
    let v: serde_json::Value = serde_json::from_str(&labels.stdout).expect("JSON");
    assert_eq!(
        v["data"]["attributes"]["labels"]["org.label-schema.usage.singularity.deffile.bootstrap"],
        "docker"
    );
    let help = as_user(dir, &["run-help", "bb.sif"]);
    help.assert_success();
    assert_eq!(
        help.stdout,
        "No help sections were defined for this image\n"
    );
    let missing = as_user(dir, &["inspect", "nothere.sif"]);
    missing.assert_failure();
    assert!(missing.stderr.contains("nothere.sif"), "{missing:?}");
}
