//! Shared pieces of the tests against the credentialed registries that
//! scripts/auth-registry-setup.sh starts: their addresses, the test passwords, commands that
//! see no stored login of the test user, and a small SIF both test users can read.

use crate::{docker_ref, installed, test_user_exists, UserCmd};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The htpasswd (Basic auth) registry behind TLS.
pub const AUTH_REGISTRY: &str = "127.0.0.1:5001";
/// A private image on [`AUTH_REGISTRY`].
pub const PRIVATE_IMAGE: &str = "docker://127.0.0.1:5001/private/busybox:latest";
/// The test passwords set up by scripts/auth-registry-setup.sh (and one that is wrong).
pub const ALICE_PW: &str = "Alice-pw-7f2e9c";
pub const BOB_PW: &str = "Bob-pw-31d8aa";
pub const MALLORY_PW: &str = "Mallory-pw-0b5c11";
pub const WRONG_PW: &str = "Not-the-pw-9q8w7e";

/// Installed apptainer, test user, and the htpasswd registry set up and listening.
pub fn auth_registry_ready() -> bool {
    installed()
        && test_user_exists()
        && Path::new("/var/lib/apptainer-test/registry-auth/htpasswd").is_file()
        && TcpStream::connect(AUTH_REGISTRY).is_ok()
}

/// No stored credentials of the test user apply: an absent `--authfile` default and docker
/// config below `dir` (each test sets what it checks).
pub fn no_stored_logins(cmd: UserCmd, dir: &Path) -> UserCmd {
    cmd.env("APPTAINER_AUTH_FILE", dir.join("no-authfile.json"))
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
}

/// Registry credentials in `APPTAINER_DOCKER_USERNAME`/`_PASSWORD`, when given.
pub fn with_creds(cmd: UserCmd, creds: Option<(&str, &str)>) -> UserCmd {
    match creds {
        Some((u, p)) => cmd
            .env("APPTAINER_DOCKER_USERNAME", u)
            .env("APPTAINER_DOCKER_PASSWORD", p),
        None => cmd,
    }
}

/// `dir/busybox.sif`: the busybox fixture converted once by root, readable by every test
/// user (`dir` is made 0755). Concurrent tests wait for the first conversion.
pub fn shared_busybox_sif(dir: &Path) -> PathBuf {
    static CONVERTING: Mutex<()> = Mutex::new(());
    let _guard = CONVERTING.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    let sif = dir.join("busybox.sif");
    if !sif.is_file() {
        UserCmd::new(&[
            "pull",
            "--force",
            sif.to_str().unwrap(),
            &docker_ref("busybox:latest"),
        ])
        .root()
        .run()
        .assert_success();
        std::fs::set_permissions(&sif, PermissionsExt::from_mode(0o644)).unwrap();
    }
    sif
}
