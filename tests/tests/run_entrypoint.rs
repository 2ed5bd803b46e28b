//! `apptainer run` of images converted from OCI: the runscript follows ENTRYPOINT and CMD as
//! the reference's documentation shows (apptainer-docker-oci.txt, "CMD / ENTRYPOINT"), with
//! and without arguments, and `exec` ignores both. Every case runs as the plain test user in
//! setuid mode (the default when starter-suid is installed) and with `--userns`.

use apptainer_tests::launch::{self, pull_fixture, Mode, PulledImage};
use apptainer_tests::{
    docker_ref, fixtures_built, installed, registry_up, require, tempdir_for, test_account,
    test_user_exists, UserCmd, TEST_USER,
};

/// A SIF of one `entrypoint` fixture tag, pulled by the test user into its own directory.
fn pull(tag: &str) -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", tag)
}

/// `apptainer ACTION [--userns] SIF ARGS...` as the test user.
fn action(mode: Mode, action: &str, img: &PulledImage, args: &[&str]) -> apptainer_tests::Out {
    launch::action(mode, action, &[], &img.sif, args).run()
}

fn ready() -> bool {
    installed() && test_user_exists() && fixtures_built()
}

fn lines(out: &apptainer_tests::Out) -> Vec<&str> {
    out.assert_success();
    out.stdout.lines().collect()
}

fn entrypoint_only_runs_with_arguments_appended(mode: Mode) {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull("entrypoint-only");
    assert_eq!(lines(&action(mode, "run", &img, &[])), ["[ep]"]);
    assert_eq!(
        lines(&action(mode, "run", &img, &["--utc"])),
        ["[ep]", "[--utc]"]
    );
}

fn cmd_only_runs_or_is_replaced_by_arguments(mode: Mode) {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull("cmd-only");
    assert_eq!(lines(&action(mode, "run", &img, &[])), ["[cmd]"]);
    assert_eq!(
        lines(&action(mode, "run", &img, &["echo", "hello"])),
        ["hello"]
    );
}

fn entrypoint_and_cmd_give_cmd_as_default_arguments(mode: Mode) {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull("both");
    assert_eq!(
        lines(&action(mode, "run", &img, &[])),
        ["[ep]", "[default arg]", "[two]"]
    );
    assert_eq!(lines(&action(mode, "run", &img, &["-R"])), ["[ep]", "[-R]"]);
}

fn exec_ignores_entrypoint_and_cmd(mode: Mode) {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull("both");
    let out = action(mode, "exec", &img, &["/usr/bin/showargs", "x y", "$HOME"]);
    assert_eq!(lines(&out), ["[x y]", "[$HOME]"]);
}

fn no_eval_passes_arguments_literally(mode: Mode) {
    require!(
        ready(),
        "installed apptainer, test user and fixtures (scripts/test-setup.sh)"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull("entrypoint-only");
    let mut argv = vec!["run", "--no-eval"];
    if let Mode::Userns = mode {
        argv.push("--userns");
    }
    argv.extend([img.sif.to_str().unwrap(), "$HOME"]);
    assert_eq!(lines(&UserCmd::new(&argv).run()), ["[ep]", "[$HOME]"]);
    let evaluated = action(mode, "run", &img, &["$HOME"]);
    let home = test_account().home.display().to_string();
    assert_eq!(lines(&evaluated), ["[ep]".to_string(), format!("[{home}]")]);
}

#[test]
fn docker_uri_is_converted_once_then_run_from_the_cache() {
    require!(
        ready() && registry_up(),
        "installed apptainer, test user, fixtures and the local registry"
    );
    let dir = tempdir_for(TEST_USER);
    let run = || {
        UserCmd::new(&[
            "run",
            "--no-https",
            &docker_ref("entrypoint:entrypoint-only"),
            "x",
        ])
        .env("APPTAINER_CACHEDIR", dir.path())
        .run()
    };
    let first = run();
    assert_eq!(lines(&first), ["[ep]", "[x]"]);
    assert!(
        !first.stderr.contains("Using cached SIF image"),
        "{first:?}"
    );
    let second = run();
    assert_eq!(lines(&second), ["[ep]", "[x]"]);
    assert!(
        second.stderr.contains("INFO:    Using cached SIF image"),
        "{second:?}"
    );
}

apptainer_tests::both_modes!(
    entrypoint_only_runs_with_arguments_appended,
    cmd_only_runs_or_is_replaced_by_arguments,
    entrypoint_and_cmd_give_cmd_as_default_arguments,
    exec_ignores_entrypoint_and_cmd,
    no_eval_passes_arguments_literally,
);
