//! `apptainer sif` end to end: the INSTALLED binary's `header`, `list`, `info` and `dump`
//! output on every reference test image must equal the reference siftool's golden output
//! byte for byte; `new`, `add`, `del` and `setprim` must build images that list as the
//! reference's do; bad input must fail with one error line.

use std::path::{Path, PathBuf};
use std::process::Command;

use apptainer_tests::{
    apptainer_bin, installed, is_root, require, test_user_exists, user_tempdir, Out, CLEAN_PATH,
};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sif")
}

fn golden(rel: &str) -> Vec<u8> {
    let p = testdata().join("golden").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `apptainer sif ARGS` as the test user when it exists (else as root) and returns
/// stdout as raw bytes (dump output is binary).
fn sif(args: &[&str]) -> (Out, Vec<u8>) {
    let mut full = vec!["sif"];
    full.extend_from_slice(args);
    let mut cmd = match test_user_exists() {
        true => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=apptest", "--regid=apptest", "--init-groups", "--"]);
            c.arg(apptainer_bin());
            c
        }
        false => Command::new(apptainer_bin()),
    };
    let output = cmd
        .args(&full)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .env("HOME", "/")
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .output()
        .expect("start apptainer");
    let out = Out {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (out, output.stdout)
}

fn image(name: &str) -> String {
    testdata().join(name).display().to_string()
}

fn ready() -> bool {
    installed() && is_root()
}

/// Golden name (CamelCase) → image file, as listed in the testdata README.
const IMAGES: [(&str, &str); 19] = [
    ("Empty", "empty.sif"),
    ("EmptyID", "empty-id.sif"),
    ("EmptyLaunchScript", "empty-launch-script.sif"),
    ("OneObjectTime", "one-object-time.sif"),
    ("OneObjectGenericJSON", "one-object-generic-json.sif"),
    ("OneObjectCryptMessage", "one-object-crypt-message.sif"),
    ("OneObjectSBOM", "one-object-sbom.sif"),
    ("OneObjectOCIRootIndex", "one-object-oci-root-index.sif"),
    ("OneObjectOCIBlob", "one-object-oci-blob.sif"),
    ("OneGroup", "one-group.sif"),
    ("OneGroupSignedLegacy", "one-group-signed-legacy.sif"),
    ("OneGroupSignedLegacyAll", "one-group-signed-legacy-all.sif"),
    (
        "OneGroupSignedLegacyGroup",
        "one-group-signed-legacy-group.sif",
    ),
    ("OneGroupSignedPGP", "one-group-signed-pgp.sif"),
    ("TwoGroups", "two-groups.sif"),
    ("TwoGroupsSignedLegacy", "two-groups-signed-legacy.sif"),
    (
        "TwoGroupsSignedLegacyAll",
        "two-groups-signed-legacy-all.sif",
    ),
    (
        "TwoGroupsSignedLegacyGroup",
        "two-groups-signed-legacy-group.sif",
    ),
    ("TwoGroupsSignedPGP", "two-groups-signed-pgp.sif"),
];

/// Runs one command and compares stdout with a golden file; returns a mismatch message.
fn compare(args: &[&str], golden_rel: &str) -> Option<String> {
    let (out, stdout) = sif(args);
    if !out.success() {
        return Some(format!("sif {args:?} failed: {out:?}"));
    }
    let want = golden(golden_rel);
    (stdout != want).then(|| {
        format!(
            "sif {args:?} differs from {golden_rel}:\n--- got ---\n{}\n--- want ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&want)
        )
    })
}

fn assert_all(cases: Vec<(Vec<String>, String)>) {
    let total = cases.len();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(args, g)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            compare(&args, g)
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {total} golden comparisons failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn case(args: &[&str], golden: String) -> (Vec<String>, String) {
    (args.iter().map(|s| s.to_string()).collect(), golden)
}

#[test]
fn header_and_list_match_siftool() {
    require!(ready(), "installed apptainer, tests run as root");
    let mut cases = Vec::new();
    for (name, file) in IMAGES {
        let img = image(file);
        for (cmd, dir) in [("header", "Header"), ("list", "List")] {
            cases.push(case(
                &[cmd, &img],
                format!("siftool-app/TestApp_{dir}/{name}.golden"),
            ));
            let cmd_golden = format!("siftool-cmd/Test_command_get{dir}/{name}/out.golden");
            if testdata().join("golden").join(&cmd_golden).exists() {
                cases.push(case(&[cmd, &img], cmd_golden));
            }
        }
    }
    assert_eq!(cases.len(), 19 * 2 + 11 * 2);
    assert_all(cases);
}

#[test]
fn info_matches_siftool() {
    require!(ready(), "installed apptainer, tests run as root");
    let app = |name: &str| format!("siftool-app/TestApp_Info/{name}.golden");
    let pgp2 = image("two-groups-signed-pgp.sif");
    let pgp1 = image("one-group-signed-pgp.sif");
    let mut cases = vec![
        case(&["info", "1", &image("one-object-time.sif")], app("Time")),
        case(
            &["info", "1", &image("one-object-generic-json.sif")],
            app("GenericJSON"),
        ),
        case(
            &["info", "1", &image("one-object-crypt-message.sif")],
            app("CryptMessage"),
        ),
        case(&["info", "1", &image("one-object-sbom.sif")], app("SBOM")),
        case(
            &["info", "1", &image("one-object-oci-root-index.sif")],
            app("OCIRootIndex"),
        ),
        case(
            &["info", "1", &image("one-object-oci-blob.sif")],
            app("OCIBlob"),
        ),
        case(&["info", "1", &pgp2], app("DataPartitionRaw")),
        case(&["info", "2", &pgp2], app("DataPartitionSquashFS")),
        case(&["info", "3", &pgp2], app("DataPartitionEXT3")),
        case(&["info", "4", &pgp2], app("DataSignature")),
    ];
    for (id, name) in [("1", "One"), ("2", "Two"), ("3", "Three")] {
        cases.push(case(
            &["info", id, &pgp1],
            format!("siftool-cmd/Test_command_getInfo/{name}/out.golden"),
        ));
    }
    assert_all(cases);
}

#[test]
fn dump_matches_siftool() {
    require!(ready(), "installed apptainer, tests run as root");
    let img = image("one-group.sif");
    let mut cases = Vec::new();
    for golden in [
        "siftool-app/TestApp_Dump/{}.golden",
        "siftool-cmd/Test_command_getDump/{}/out.golden",
    ] {
        for (id, name) in [("1", "One"), ("2", "Two")] {
            cases.push(case(&["dump", id, &img], golden.replace("{}", name)));
        }
    }
    assert_eq!(cases.len(), 4);
    assert_all(cases);
}

/// Runs a modifying command in a directory the test user owns; must succeed silently.
fn quiet_ok(args: &[&str]) {
    let (out, _) = sif(args);
    assert!(out.success(), "sif {args:?}: {out:?}");
    assert_eq!(out.stdout, "", "sif {args:?} printed on stdout");
}

#[test]
fn new_add_del_setprim_build_the_reference_layout() {
    require!(ready(), "installed apptainer, tests run as root");
    require!(
        test_user_exists(),
        "test user apptest (scripts/test-setup.sh)"
    );
    let dir = user_tempdir();
    let img = dir.path().join("built.sif").display().to_string();
    let input = testdata().join("input");
    let raw = testdata()
        .join("golden/siftool-cmd/input/input.bin")
        .display()
        .to_string();
    let squash = input.join("root.squashfs").display().to_string();
    let ext3 = input.join("root.ext3").display().to_string();

    quiet_ok(&["new", &img]);
    quiet_ok(&[
        "add",
        &img,
        &raw,
        "--datatype",
        "4",
        "--partfs",
        "4",
        "--parttype",
        "1",
        "--partarch",
        "1",
        "--groupid",
        "1",
    ]);
    quiet_ok(&[
        "add",
        &img,
        &squash,
        "--datatype",
        "4",
        "--partfs",
        "1",
        "--parttype",
        "2",
        "--partarch",
        "1",
        "--groupid",
        "1",
    ]);
    quiet_ok(&[
        "add",
        &img,
        &ext3,
        "--datatype",
        "4",
        "--partfs",
        "2",
        "--parttype",
        "1",
        "--partarch",
        "2",
        "--groupid",
        "2",
    ]);
    // Same objects, groups, alignment and IDs as the reference's two-groups.sif.
    assert!(compare(&["list", &img], "siftool-app/TestApp_List/TwoGroups.golden").is_none());
    let (out, dumped) = sif(&["dump", "3", &img]);
    assert!(out.success(), "{out:?}");
    assert_eq!(dumped, std::fs::read(input.join("root.ext3")).unwrap());

    // A second primary partition is refused and the image is left as it was.
    let before = std::fs::read(&img).unwrap();
    let (out, _) = sif(&[
        "add",
        &img,
        &squash,
        "--datatype",
        "4",
        "--partfs",
        "1",
        "--parttype",
        "2",
        "--partarch",
        "1",
    ]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("primary partition"), "{out:?}");
    assert_eq!(std::fs::read(&img).unwrap(), before);

    // setprim moves the primary flag and the header architecture.
    quiet_ok(&["setprim", "3", &img]);
    let (out, _) = sif(&["list", &img]);
    assert!(
        out.stdout.contains("|FS (Squashfs/System/386)\n"),
        "{out:?}"
    );
    assert!(out.stdout.contains("|FS (Ext3/*System/amd64)\n"), "{out:?}");
    let (out, _) = sif(&["header", &img]);
    assert!(
        out.stdout.contains("Primary Architecture: amd64\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("\nID:"),
        "new images get a random ID: {out:?}"
    );
    assert!(out.stdout.contains("\nCreated At:"), "{out:?}");

    // del frees the slot; the next add reuses ID 3 (first free slot).
    quiet_ok(&["del", "3", &img]);
    let (out, _) = sif(&["list", &img]);
    assert!(!out.stdout.contains("\n3 "), "{out:?}");
    let (out, _) = sif(&["header", &img]);
    assert!(!out.stdout.contains("Primary Architecture"), "{out:?}");
    let sbom = input.join("sbom.cdx.json").display().to_string();
    quiet_ok(&[
        "add",
        &img,
        &sbom,
        "--datatype",
        "9",
        "--sbomformat",
        "cyclonedx-json",
        "--filename",
        "sbom.json",
    ]);
    let (out, _) = sif(&["info", "3", &img]);
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("  Format:       cyclonedx-json\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("  Name:         sbom.json\n"),
        "{out:?}"
    );
    assert!(out.stdout.contains("  Group ID:     NONE\n"), "{out:?}");
}

#[test]
fn add_oci_blob_records_its_digest() {
    require!(ready(), "installed apptainer, tests run as root");
    require!(
        test_user_exists(),
        "test user apptest (scripts/test-setup.sh)"
    );
    let dir = user_tempdir();
    let img = dir.path().join("oci.sif").display().to_string();
    let blob = testdata()
        .join("input/oci-config.json")
        .display()
        .to_string();
    quiet_ok(&["new", &img]);
    quiet_ok(&["add", &img, &blob, "--datatype", "11", "--groupid", "1"]);
    let (out, _) = sif(&["info", "1", &img]);
    assert!(out.success(), "{out:?}");
    let want = String::from_utf8(golden("siftool-app/TestApp_Info/OCIBlob.golden")).unwrap();
    // The times of a real `new` widen the label column; compare label/value pairs.
    let got = fields(&out.stdout);
    for pair in fields(&want) {
        assert!(got.contains(&pair), "{pair:?} missing: {out:?}");
    }
}

/// `info` output as (label, value) pairs.
fn fields(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn one_line_error(out: &Out, want: &str) {
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains(want), "expected {want:?}: {out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
}

#[test]
fn bad_input_fails_with_one_line() {
    require!(ready(), "installed apptainer, tests run as root");
    require!(
        test_user_exists(),
        "test user apptest (scripts/test-setup.sh)"
    );
    let dir = user_tempdir();
    let not_sif = dir.path().join("not.sif");
    let truncated = dir.path().join("truncated.sif");
    std::fs::write(&not_sif, vec![0u8; 4096]).unwrap();
    let full = std::fs::read(testdata().join("one-group.sif")).unwrap();
    std::fs::write(&truncated, &full[..20_000]).unwrap();
    let p = |p: &Path| p.display().to_string();

    one_line_error(&sif(&["list", &p(&not_sif)]).0, "invalid sif magic");
    one_line_error(&sif(&["header", &p(&truncated)]).0, "truncated");
    one_line_error(
        &sif(&["info", "9", &image("one-group.sif")]).0,
        "object not found",
    );
    one_line_error(
        &sif(&["info", "1", &image("empty.sif")]).0,
        "no objects in image",
    );
    one_line_error(
        &sif(&["dump", "x", &image("one-group.sif")]).0,
        "failed to parse id",
    );
    one_line_error(
        &sif(&["list", &p(&dir.path().join("missing.sif"))]).0,
        "failed to open",
    );
    // Nothing is written for a refused add.
    let img = p(&dir.path().join("a.sif"));
    quiet_ok(&["new", &img]);
    let before = std::fs::read(&img).unwrap();
    let (out, _) = sif(&["add", &img, &image("empty.sif"), "--datatype", "4"]);
    one_line_error(&out, "--partfs, --parttype and --partarch must be passed");
    let (out, _) = sif(&["add", &img, &image("empty.sif")]);
    one_line_error(&out, "--datatype");
    assert_eq!(std::fs::read(&img).unwrap(), before);
}
