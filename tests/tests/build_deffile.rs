//! `apptainer build OUT DEF` end to end: definition files bootstrapped from the local
//! registry, built as the plain test user (fakeroot implied) and as root, then checked from
//! the inside (`exec`, `run`) and through `inspect`.

use apptainer_tests::{
    installed, registry_up, require, test_user_exists, user_tempdir, Out, UserCmd, REGISTRY,
};
use std::path::Path;

/// Writes `name` in `dir` readable by the test user.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn as_user(dir: &Path, args: &[&str]) -> Out {
    UserCmd::new(args)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .env("APPTAINER_NOHTTPS", "1")
        .run()
}

fn as_root(dir: &Path, args: &[&str]) -> Out {
    UserCmd::new(args)
        .root()
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("rootcache"))
        .env("APPTAINER_NOHTTPS", "1")
        .run()
}

fn ready() -> bool {
    installed() && test_user_exists() && registry_up()
}

const WHY: &str = "installed apptainer, test user and local registry (scripts/test-setup.sh)";

/// A definition with every section; `{{ GREETING }}` defaults to `hello`.
fn full_def(host_file: &str) -> String {
    format!(
        r#"Bootstrap: docker
From: test/busybox:latest
Registry: {REGISTRY}

%arguments
    GREETING=hello

%setup
    echo setup > "$APPTAINER_ROOTFS/setup-ran"

%files
    {host_file} /opt/from-host.txt

%environment
    export MYVAR={{{{ GREETING }}}}

%post
    id -u > /post-uid
    echo 'export FROM_POST=yes' >> "$APPTAINER_ENVIRONMENT"
    echo 'PostLabel set-in-post' >> "$APPTAINER_LABELS"

%runscript
    echo "runscript $MYVAR $*"

%startscript
    echo started

%test
    test -f /post-uid

%labels
    Author tester
    Version 1.0

%help
    Usage: just run it.
"#
    )
}

#[test]
fn a_docker_bootstrapped_build_runs_every_section_as_the_plain_user() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let host_file = write(dir, "host.txt", "from the host\n");
    let def = write(dir, "full.def", &full_def(&host_file));
    let out = as_user(
        dir,
        &["build", "--build-arg", "GREETING=bonjour", "full.sif", &def],
    );
    out.assert_success();
    assert!(out.stderr.contains("Running post scriptlet"), "{out:?}");
    assert!(out.stderr.contains("Running testscript"), "{out:?}");

    let sif = dir.join("full.sif").display().to_string();
    let inside = as_user(
        dir,
        &[
            "exec",
            &sif,
            "sh",
            "-c",
            "cat /setup-ran /opt/from-host.txt /post-uid; echo $MYVAR $FROM_POST",
        ],
    );
    inside.assert_success();
    // %post runs as root of the fakeroot namespace.
    assert_eq!(
        inside.stdout, "setup\nfrom the host\n0\nbonjour yes\n",
        "{inside:?}"
    );
    let run = as_user(dir, &["run", &sif, "a", "b"]);
    run.assert_success();
    assert_eq!(run.stdout, "runscript bonjour a b\n", "{run:?}");
}

#[test]
fn inspect_reports_each_section_of_a_built_image() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let host_file = write(dir, "host.txt", "x\n");
    let def = write(dir, "full.def", &full_def(&host_file));
    as_user(dir, &["build", "full.sif", &def]).assert_success();
    let sif = dir.join("full.sif").display().to_string();

    let labels = as_user(dir, &["inspect", &sif]);
    labels.assert_success();
    let lines: Vec<&str> = labels.stdout.lines().collect();
    for want in [
        "Author: tester",
        "Version: 1.0",
        "PostLabel: set-in-post",
        "org.label-schema.schema-version: 1.0",
        "org.label-schema.usage: /.singularity.d/runscript.help",
        "org.label-schema.usage.singularity.deffile.bootstrap: docker",
        "org.label-schema.usage.singularity.deffile.from: test/busybox:latest",
    ] {
        assert!(lines.contains(&want), "no {want:?} in {labels:?}");
    }
    let version = format!(
        "org.label-schema.usage.apptainer.version: {}",
        as_user(dir, &["version"]).stdout.trim()
    );
    assert!(
        lines.contains(&version.as_str()),
        "no {version:?} in {labels:?}"
    );
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "labels are printed sorted by key");

    let runscript = as_user(dir, &["inspect", "--runscript", &sif]);
    assert_eq!(
        runscript.stdout, "#!/bin/sh\n\n    echo \"runscript $MYVAR $*\"\n",
        "{runscript:?}"
    );
    let test = as_user(dir, &["inspect", "--test", &sif]);
    assert_eq!(
        test.stdout, "#!/bin/sh\n\n    test -f /post-uid\n",
        "{test:?}"
    );
    let start = as_user(dir, &["inspect", "--startscript", &sif]);
    assert_eq!(start.stdout, "#!/bin/sh\n\n    echo started\n", "{start:?}");
    let help = as_user(dir, &["inspect", "--helpfile", &sif]);
    assert_eq!(help.stdout, "    Usage: just run it.\n", "{help:?}");
    let run_help = as_user(dir, &["run-help", &sif]);
    assert_eq!(run_help.stdout, "    Usage: just run it.\n", "{run_help:?}");

    let env = as_user(dir, &["inspect", "--environment", &sif]);
    assert!(
        env.stdout.contains(
            "=== /.singularity.d/env/90-environment.sh ===\n#!/bin/sh\n# Custom environment shell code should follow\n\n    export MYVAR=hello\n\n"
        ),
        "{env:?}"
    );
    assert!(
        env.stdout
            .contains("=== /.singularity.d/env/91-environment.sh ===\nexport FROM_POST=yes\n\n"),
        "{env:?}"
    );

    let deffile = as_user(dir, &["inspect", "--deffile", &sif]);
    assert!(
        deffile
            .stdout
            .starts_with("Bootstrap: docker\nFrom: test/busybox:latest\n"),
        "{deffile:?}"
    );
    // The stored definition is the templated one.
    assert!(deffile.stdout.contains("export MYVAR=hello"), "{deffile:?}");

    let json = as_user(dir, &["inspect", "--all", &sif]);
    json.assert_success();
    let v: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("inspect --all prints JSON");
    assert_eq!(v["type"], "container");
    let a = &v["data"]["attributes"];
    assert_eq!(a["labels"]["Author"], "tester");
    assert_eq!(
        a["runscript"],
        "#!/bin/sh\n\n    echo \"runscript $MYVAR $*\""
    );
    assert_eq!(a["helpfile"], "    Usage: just run it.");
    assert_eq!(a["startscript"], "#!/bin/sh\n\n    echo started");
    assert!(a["deffile"].as_str().unwrap().contains("%post"), "{json:?}");
    assert_eq!(
        a["environment"]["/.singularity.d/env/91-environment.sh"],
        "export FROM_POST=yes"
    );

    let list = as_user(dir, &["sif", "list", &sif]);
    assert!(list.stdout.contains("Def.FILE"), "{list:?}");
    assert!(list.stdout.contains("JSON.Generic"), "{list:?}");
}

#[test]
fn a_root_build_of_a_sandbox_runs_setup_and_post_as_root() {
    require!(
        ready() && apptainer_tests::is_root(),
        "root, and the test environment"
    );
    let tmp = user_tempdir();
    let dir = tmp.path();
    let host_file = write(dir, "host.txt", "from the host\n");
    let def = write(dir, "full.def", &full_def(&host_file));
    as_root(dir, &["build", "--sandbox", "sb", &def]).assert_success();
    let sb = dir.join("sb");
    assert_eq!(std::fs::read_to_string(sb.join("post-uid")).unwrap(), "0\n");
    assert_eq!(
        std::fs::read_to_string(sb.join("setup-ran")).unwrap(),
        "setup\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.join("opt/from-host.txt")).unwrap(),
        "from the host\n"
    );
    let labels = as_root(dir, &["inspect", "--labels", "sb"]);
    assert!(
        labels.stdout.lines().any(|l| l == "Author: tester"),
        "{labels:?}"
    );
}

#[test]
fn a_two_stage_build_copies_a_file_between_stages() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let def = write(
        dir,
        "two.def",
        &format!(
            r#"Bootstrap: docker
From: {REGISTRY}/test/busybox:latest
Stage: builder

%post
    echo built-in-stage-one > /artifact.txt
    touch /only-in-builder

Bootstrap: docker
From: {REGISTRY}/test/busybox:latest
Stage: final

%files from builder
    /artifact.txt /opt/artifact.txt
"#
        ),
    );
    as_user(dir, &["build", "two.sif", &def]).assert_success();
    let out = as_user(
        dir,
        &[
            "exec",
            "two.sif",
            "sh",
            "-c",
            "cat /opt/artifact.txt; test -e /only-in-builder && echo leaked || echo clean",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "built-in-stage-one\nclean\n", "{out:?}");
}

#[test]
fn build_args_override_arguments_and_unused_ones_are_refused() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let def = write(
        dir,
        "args.def",
        &format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%arguments\n    WHO=world\n    WHAT=default\n\n%post\n    echo '{{{{ WHO }}}} {{{{ WHAT }}}}' > /args.txt\n"
        ),
    );
    let argfile = write(dir, "args.txt", "WHAT=from-file\n");
    as_user(
        dir,
        &[
            "build",
            "--build-arg",
            "WHO=override",
            "--build-arg-file",
            &argfile,
            "a.sif",
            &def,
        ],
    )
    .assert_success();
    let out = as_user(dir, &["exec", "a.sif", "cat", "/args.txt"]);
    assert_eq!(out.stdout, "override from-file\n", "{out:?}");

    let unused = as_user(dir, &["build", "--build-arg", "NOPE=1", "b.sif", &def]);
    unused.assert_failure();
    assert!(
        unused.stderr.contains("unused build args: NOPE"),
        "{unused:?}"
    );
    assert!(!dir.join("b.sif").exists());
    let warned = as_user(
        dir,
        &[
            "build",
            "--warn-unused-build-args",
            "--build-arg",
            "NOPE=1",
            "c.sif",
            &def,
        ],
    );
    warned.assert_success();
    assert!(
        warned.stderr.contains("WARNING: Unused build args: NOPE"),
        "{warned:?}"
    );
}

#[test]
fn a_sandbox_build_then_a_localimage_sif_build_on_top_of_it() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let first = write(
        dir,
        "first.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%post\n    echo one > /one.txt\n"),
    );
    as_user(dir, &["build", "--sandbox", "base", &first]).assert_success();
    assert_eq!(
        std::fs::read_to_string(dir.join("base/one.txt")).unwrap(),
        "one\n"
    );
    let base = dir.join("base").display().to_string();
    let second = write(
        dir,
        "second.def",
        &format!("Bootstrap: localimage\nFrom: {base}\n\n%post\n    cat /one.txt > /two.txt\n"),
    );
    as_user(dir, &["build", "final.sif", &second]).assert_success();
    let out = as_user(
        dir,
        &[
            "exec",
            "final.sif",
            "cat",
            "/two.txt",
            "/.singularity.d/bootstrap_history/Apptainer0",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with("one\nBootstrap: docker\n"),
        "{out:?}"
    );
    let def = as_user(dir, &["inspect", "--deffile", "final.sif"]);
    assert!(def.stdout.starts_with("Bootstrap: localimage\n"), "{def:?}");
}

#[test]
fn a_failing_test_or_post_fails_the_build_with_its_status_and_leaves_no_output() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let bad_test = write(
        dir,
        "test.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%test\n    exit 7\n"),
    );
    let out = as_user(dir, &["build", "t.sif", &bad_test]);
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(
        out.stderr.contains("%test failed with exit status 7"),
        "{out:?}"
    );
    assert!(!dir.join("t.sif").exists());
    // --notest skips it.
    as_user(dir, &["build", "--notest", "t.sif", &bad_test]).assert_success();

    let bad_post = write(
        dir,
        "post.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%post\n    exit 3\n"),
    );
    let out = as_user(dir, &["build", "--sandbox", "p", &bad_post]);
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stderr.contains("%post failed with exit status 3"),
        "{out:?}"
    );
    assert!(!dir.join("p").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn syntax_errors_and_missing_files_name_the_file_and_line() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let bad = write(
        dir,
        "bad.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%psot\n    true\n"),
    );
    let out = as_user(dir, &["build", "x.sif", &bad]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(&format!("{bad}:4: unknown section \"%psot\"")),
        "{out:?}"
    );
    let missing = write(
        dir,
        "missing.def",
        &format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%files\n    /nonexistent/input.dat /opt/\n"
        ),
    );
    let out = as_user(dir, &["build", "y.sif", &missing]);
    out.assert_failure();
    assert!(
        out.stderr.contains(&format!(
            "{missing}:5: %files: no such file or directory: \"/nonexistent/input.dat\""
        )),
        "{out:?}"
    );
    assert!(!dir.join("x.sif").exists() && !dir.join("y.sif").exists());
}

#[test]
fn a_user_without_a_subuid_range_builds_with_root_mapped_fakeroot() {
    use apptainer_tests::{account, tempdir_for, TEST_USER2};
    require!(
        ready() && account(TEST_USER2).is_some(),
        "second test user apptest2 (scripts/test-setup.sh)"
    );
    let tmp = tempdir_for(TEST_USER2);
    let dir = tmp.path();
    let def = write(
        dir,
        "nosub.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%post\n    id -u > /uid-in-post\n"),
    );
    let build = UserCmd::new(&["build", "nosub.sif", &def])
        .user(TEST_USER2)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .env("APPTAINER_NOHTTPS", "1")
        .run();
    build.assert_success();
    let out = UserCmd::new(&["exec", "nosub.sif", "cat", "/uid-in-post"])
        .user(TEST_USER2)
        .cwd(dir)
        .run();
    assert_eq!(out.stdout, "0\n", "{out:?}");
}

#[test]
fn files_post_chowns_to_subordinate_ids_keep_their_owner_in_the_image() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    // What apt-get does: files and a private directory owned by a system user.
    let def = write(
        dir,
        "owners.def",
        &format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/multilayer:latest\n\n%post\n    mkdir /d\n    echo secret > /d/f\n    chmod 600 /d/f\n    chown -R 100:101 /d\n    chmod 700 /d\n"
        ),
    );
    // Needs the starter to map the caller's /etc/subuid range under --fakeroot: without
    // it %post cannot give files to other ids at all.
    let probe = write(
        dir,
        "probe.def",
        &format!("Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n"),
    );
    as_user(dir, &["build", "--sandbox", "probe", &probe]).assert_success();
    let map = as_user(
        dir,
        &["exec", "--fakeroot", "probe", "cat", "/proc/self/uid_map"],
    );
    // apptest has a /etc/subuid range (scripts/test-setup.sh), so CI must map it.
    require!(
        map.stdout.lines().count() >= 2,
        "--fakeroot maps the caller's subordinate ids"
    );
    let tmpdir = dir.join("buildtmp");
    std::fs::create_dir(&tmpdir).unwrap();
    let acct = apptainer_tests::test_account();
    std::os::unix::fs::chown(&tmpdir, Some(acct.uid), Some(acct.gid)).unwrap();
    UserCmd::new(&["build", "owners.sif", &def])
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .env("APPTAINER_NOHTTPS", "1")
        .env("APPTAINER_TMPDIR", &tmpdir)
        .run()
        .assert_success();
    let sif = dir.join("owners.sif");
    let mut f = std::fs::File::open(&sif).unwrap();
    let offset = sif::primary_partition(&mut f).unwrap().offset;
    let out = std::process::Command::new("unsquashfs")
        .args(["-lln", "-o", &offset.to_string(), "-d", ""])
        .arg(&sif)
        .args(["d", "data"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let owner_of = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(owner_of(" /d").as_deref(), Some("100/101"), "{listing}");
    assert_eq!(owner_of(" /d/f").as_deref(), Some("100/101"), "{listing}");
    // The base image's own non-root files keep their owner too.
    assert_eq!(
        owner_of(" /data/owned-by-1000").as_deref(),
        Some("1000/1000"),
        "{listing}"
    );
    // The temporary build tree, subordinate-owned files included, is gone.
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_oras_bootstrap_builds_on_a_sif_pushed_to_the_registry() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let busybox = format!("docker://{REGISTRY}/test/busybox:latest");
    as_user(dir, &["pull", "base.sif", &busybox]).assert_success();
    // A repository of its own, so parallel runs never read each other's artifact.
    let name = dir.file_name().unwrap().to_string_lossy().to_lowercase();
    let artifact = format!("{REGISTRY}/test/build-oras-{name}:1");
    as_user(dir, &["push", "base.sif", &format!("oras://{artifact}")]).assert_success();
    let def = write(
        dir,
        "oras.def",
        &format!("Bootstrap: oras\nFrom: {artifact}\n\n%post\n    echo via-oras > /oras.txt\n"),
    );
    as_user(dir, &["build", "o.sif", &def]).assert_success();
    let out = as_user(dir, &["exec", "o.sif", "cat", "/oras.txt"]);
    assert_eq!(out.stdout, "via-oras\n", "{out:?}");
}

#[test]
fn update_builds_on_an_existing_sandbox_and_section_limits_what_runs() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let def = write(
        dir,
        "upd.def",
        &format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%post\n    echo run >> /runs.txt\n\n%labels\n    Stamp one\n"
        ),
    );
    as_user(dir, &["build", "--sandbox", "sb", &def]).assert_success();
    as_user(dir, &["build", "--update", "--sandbox", "sb", &def]).assert_success();
    // The second build ran %post over the first one's tree.
    assert_eq!(
        std::fs::read_to_string(dir.join("sb/runs.txt")).unwrap(),
        "run\nrun\n"
    );
    let refused = as_user(dir, &["build", "--update", "x.sif", &def]);
    refused.assert_failure();
    assert!(
        refused
            .stderr
            .contains("--update is only supported with --sandbox"),
        "{refused:?}"
    );

    as_user(
        dir,
        &[
            "build",
            "--section",
            "labels",
            "--sandbox",
            "only-labels",
            &def,
        ],
    )
    .assert_success();
    assert!(
        !dir.join("only-labels/runs.txt").exists(),
        "%post ran with --section labels"
    );
    let labels = as_user(dir, &["inspect", "--labels", "only-labels"]);
    assert!(
        labels.stdout.lines().any(|l| l == "Stamp: one"),
        "{labels:?}"
    );
}

/// The SIF's JSON.Generic objects as `(name, data)`, in descriptor order.
fn json_objects(sif: &Path) -> Vec<(String, Vec<u8>)> {
    let mut f = std::fs::File::open(sif).unwrap();
    let image = sif::Image::load(&mut f).unwrap();
    let found: Vec<(String, u32)> = image
        .descriptors()
        .filter(|d| d.data_type == sif::DataType::GenericJson)
        .map(|d| (d.name(), d.id))
        .collect();
    found
        .into_iter()
        .map(|(name, id)| (name, image.read_object(&mut f, id).unwrap()))
        .collect()
}

#[test]
fn a_build_from_an_oci_source_keeps_the_base_image_config_as_a_pull_does() {
    require!(ready(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    let busybox = format!("docker://{REGISTRY}/test/busybox:latest");
    as_user(dir, &["pull", "pulled.sif", &busybox]).assert_success();
    let pulled = json_objects(&dir.join("pulled.sif"));
    let (_, config) = pulled
        .iter()
        .find(|(n, _)| n == "oci-config.json")
        .expect("a pulled SIF holds oci-config.json");

    let def = write(
        dir,
        "oci.def",
        &format!("Bootstrap: docker\nFrom: test/busybox:latest\nRegistry: {REGISTRY}\n\n%post\n    echo built > /built\n"),
    );
    as_user(dir, &["build", "built.sif", &def]).assert_success();
    let built = json_objects(&dir.join("built.sif"));
    let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["inspect-metadata.json", "oci-config.json"]);
    assert_eq!(&built[1].1, config, "the base image's config, unchanged");
    let list = as_user(dir, &["sif", "list", "built.sif"]);
    list.assert_success();
    assert_eq!(list.stdout.matches("|JSON.Generic").count(), 2, "{list:?}");

    // A SIF used as localimage passes its config on; a scratch build has none.
    let local = write(
        dir,
        "local.def",
        &format!(
            "Bootstrap: localimage\nFrom: {}\n",
            dir.join("built.sif").display()
        ),
    );
    as_user(dir, &["build", "local.sif", &local]).assert_success();
    let carried = json_objects(&dir.join("local.sif"));
    assert_eq!(carried.get(1).map(|(_, d)| d), Some(config));
    let scratch = write(dir, "scratch.def", "Bootstrap: scratch\n");
    as_user(dir, &["build", "scratch.sif", &scratch]).assert_success();
    let names: Vec<String> = json_objects(&dir.join("scratch.sif"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["inspect-metadata.json"]);
}
