//! Plans fed straight to an installed starter, the way a hostile caller would bypass the
//! frontend: the Plan is a file of the user's, given on fd 3. Shared by the catalogue tests
//! (starter_plans, security_*, instances, overlay_run).

use crate::{account, tempdir_for, Out, UserCmd};
use std::path::Path;

/// Runs `starter` as `user` with `plan` (JSON) on fd 3.
pub fn run_plan_as(user: &str, starter: &Path, plan: &serde_json::Value) -> Out {
    let dir = tempdir_for(user);
    let file = dir.path().join("plan.json");
    std::fs::write(&file, serde_json::to_vec(plan).unwrap()).unwrap();
    let acct = account(user).unwrap();
    std::os::unix::fs::chown(&file, Some(acct.uid), Some(acct.gid)).unwrap();
    UserCmd::program(
        "/bin/sh",
        &[
            "-c",
            "exec \"$0\" 3<\"$1\"",
            starter.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    )
    .user(user)
    .run()
}

/// Asserts the starter's refusal: exit 255, exactly one `FATAL:` line containing `needle`,
/// nothing on stdout.
#[track_caller]
pub fn assert_one_fatal(out: &Out, needle: &str) {
    assert_eq!(out.code(), 255, "want a refusal naming {needle:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line: {out:?}");
    assert!(
        lines[0].starts_with("FATAL:   ") && lines[0].contains(needle),
        "want {needle:?}: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}
