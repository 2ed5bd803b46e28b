//! `--nv` and `--rocm` as the plain test user, in setuid and userns modes, with stand-in
//! driver libraries: small real ELF shared objects built here with `cc` under the names of
//! NVIDIA/ROCm libraries, entered in a library cache made with `ldconfig -C`, and listed in
//! a test list file. `APPTAINER_NVLIBLIST`/`APPTAINER_ROCMLIBLIST` and `APPTAINER_LDCACHE`
//! point the frontend at them (they only select host files to bind as user binds, see
//! frontend/src/gpu/mod.rs). The container must see exactly the stand-ins that exist in
//! /.singularity.d/libs, on LD_LIBRARY_PATH; a host without any of them only warns.

use apptainer_tests::launch::{self, pull_fixture, Mode, PulledImage};
use apptainer_tests::{require, run_as_root, Out, TempDir, TEST_USER};
use std::path::{Path, PathBuf};

const NEEDS: &str = "installed apptainer, test user, fixtures, cc and the starter for this mode";

fn ready(mode: Mode) -> bool {
    launch::ready(mode) && Path::new("/usr/bin/cc").exists()
}

/// The test user's directory with a SIF of busybox, stand-in libraries and their cache.
struct Host {
    dir: TempDir,
    sif: PathBuf,
}

impl Host {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cache(&self) -> PathBuf {
        self.path("ld.so.cache")
    }
}

const STANDINS: [&str; 3] = ["libcuda.so.1", "libnvidia-ml.so.1", "libamdhip64.so.5"];

fn setup() -> Host {
    let PulledImage { dir, sif } = pull_fixture(TEST_USER, "busybox", "latest");
    let lib = dir.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let c = dir.path().join("standin.c");
    std::fs::write(&c, "int standin(void) { return 42; }\n").unwrap();
    for name in STANDINS {
        let soname = format!("-Wl,-soname,{name}");
        let out = lib.join(name);
        let args = [
            "-shared",
            "-fPIC",
            &soname,
            "-o",
            out.to_str().unwrap(),
            c.to_str().unwrap(),
        ];
        run_as_root("cc", &args).assert_success();
    }
    // -X: no symlinks made; -f /dev/null: no ld.so.conf, so the cache holds the stand-ins
    // and the system's trusted directories.
    let cache = dir.path().join("ld.so.cache");
    let args = [
        "-X",
        "-f",
        "/dev/null",
        "-C",
        cache.to_str().unwrap(),
        lib.to_str().unwrap(),
    ];
    run_as_root("ldconfig", &args).assert_success();
    let host = Host { dir, sif };
    let list =
        "# stand-ins\nlibcuda.so\nlibnvidia-ml.so\nlibnot-on-this-host.so\nnot-on-this-host-smi\n";
    std::fs::write(host.path("nv.conf"), list).unwrap();
    std::fs::write(host.path("rocm.conf"), "libamdhip64.so\n").unwrap();
    std::fs::write(host.path("none.conf"), "libnot-on-this-host.so\n").unwrap();
    for f in ["nv.conf", "rocm.conf", "none.conf", "ld.so.cache"] {
        run_as_root("chmod", &["a+r", host.path(f).to_str().unwrap()]).assert_success();
    }
    host
}

/// `apptainer exec [--userns] FLAG SIF sh -c SCRIPT` with the stand-in list and cache.
fn exec(mode: Mode, host: &Host, flag: &str, list_env: &str, list: &str, script: &str) -> Out {
    launch::action(mode, "exec", &[flag], &host.sif, &["/bin/sh", "-c", script])
        .env(list_env, host.path(list))
        .env("APPTAINER_LDCACHE", host.cache())
        .run()
}

fn nv_binds_the_listed_libraries(mode: Mode) {
    require!(ready(mode), NEEDS);
    let host = setup();
    let out = exec(
        mode,
        &host,
        "--nv",
        "APPTAINER_NVLIBLIST",
        "nv.conf",
        "ls /.singularity.d/libs; echo LD=$LD_LIBRARY_PATH; cmp /.singularity.d/libs/libcuda.so.1 /.singularity.d/libs/libcuda.so.1 && echo same",
    );
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "libcuda.so.1",
            "libnvidia-ml.so.1",
            "LD=/.singularity.d/libs",
            "same"
        ],
        "{out:?}"
    );
    // The bound file is the stand-in itself: same size and checksum as on the host.
    let host_lib = host.path("lib/libcuda.so.1");
    let sum = run_as_root("sha256sum", &[host_lib.to_str().unwrap()]);
    let want = sum.stdout.split_whitespace().next().unwrap().to_string();
    let inside = exec(
        mode,
        &host,
        "--nv",
        "APPTAINER_NVLIBLIST",
        "nv.conf",
        "sha256sum /.singularity.d/libs/libcuda.so.1",
    );
    inside.assert_success();
    assert_eq!(
        inside.stdout.split_whitespace().next(),
        Some(want.as_str()),
        "{inside:?}"
    );
}

fn rocm_binds_its_own_list(mode: Mode) {
    require!(ready(mode), NEEDS);
    let host = setup();
    let out = exec(
        mode,
        &host,
        "--rocm",
        "APPTAINER_ROCMLIBLIST",
        "rocm.conf",
        "ls /.singularity.d/libs",
    );
    out.assert_success();
    assert_eq!(out.stdout.trim_end(), "libamdhip64.so.5", "{out:?}");
}

fn a_host_without_the_driver_warns_and_runs(mode: Mode) {
    require!(ready(mode), NEEDS);
    let host = setup();
    let out = exec(
        mode,
        &host,
        "--nv",
        "APPTAINER_NVLIBLIST",
        "none.conf",
        "ls /.singularity.d/libs | wc -l",
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "0", "{out:?}");
    assert!(
        out.stderr
            .contains("WARNING: could not find any NVIDIA libraries or binaries on this host"),
        "{out:?}"
    );
}

apptainer_tests::both_modes!(
    nv_binds_the_listed_libraries,
    rocm_binds_its_own_list,
    a_host_without_the_driver_warns_and_runs,
);
