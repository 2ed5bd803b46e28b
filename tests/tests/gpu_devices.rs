//! GPU device nodes under `--contain` (a minimal /dev), as the plain test user in both
//! modes. This machine has no GPU, so the test makes a stand-in: a character device named
//! like NVIDIA's (`/dev/nvidia-apptainer-test`, major/minor of /dev/null), created by the
//! root harness for the duration of the test. `--nv --contain` must bind it (usable, as
//! /dev/null is), without `--nv` it must be absent, and `--rocm` must not take NVIDIA's
//! nodes. What cannot be exercised here: real /dev/nvidia*, /dev/dri and /dev/kfd with a
//! driver behind them, and CUDA/ROCm programs using them.

use apptainer_tests::launch::{self, pull_fixture, Mode};
use apptainer_tests::{both_modes, is_root, require, serial, Out};
use std::path::Path;
use std::process::Command;

const NODE: &str = "/dev/nvidia-apptainer-test";

/// Removes the stand-in node when the test ends, even on failure.
struct StandIn;

impl StandIn {
    fn create() -> StandIn {
        let _ = std::fs::remove_file(NODE);
        let st = Command::new("mknod")
            .args(["-m", "0666", NODE, "c", "1", "3"])
            .status()
            .unwrap();
        assert!(st.success(), "mknod {NODE}");
        StandIn
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(NODE);
    }
}

fn exec(mode: Mode, flags: &[&str], sif: &Path, script: &str) -> Out {
    launch::action(mode, "exec", flags, sif, &["/bin/sh", "-c", script]).run()
}

fn gpu_nodes_are_bound_into_a_minimal_dev(mode: Mode) {
    require!(launch::ready(mode) && is_root(), launch::READY);
    let _one_at_a_time = serial();
    let img = pull_fixture(apptainer_tests::TEST_USER, "busybox", "latest");
    let _node = StandIn::create();
    let script = format!("test -c {NODE} && echo x > {NODE} && ls /dev");
    let out = exec(mode, &["--contain", "--nv"], &img.sif, &script);
    out.assert_success();
    assert!(out.stdout.contains("nvidia-apptainer-test"), "{out:?}");
    // The rest of the minimal /dev stays minimal.
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.starts_with("sd") || l == "mem"),
        "{out:?}"
    );
    let out = exec(mode, &["--contain"], &img.sif, &format!("test ! -e {NODE}"));
    out.assert_success();
    let out = exec(
        mode,
        &["--contain", "--rocm"],
        &img.sif,
        &format!("test ! -e {NODE}"),
    );
    out.assert_success();
}

both_modes!(gpu_nodes_are_bound_into_a_minimal_dev);
