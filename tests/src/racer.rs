//! A rename-exchange racer for the race tests (catalogue T12, T13, T20): a tiny C program,
//! run as the test user, that swaps two paths with renameat2(RENAME_EXCHANGE) in a loop
//! while the starter mounts through them.

use crate::TEST_USER;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Swaps its two path arguments with renameat2(RENAME_EXCHANGE) until killed.
const RACER_C: &str = "#define _GNU_SOURCE\n#include <fcntl.h>\n#include <unistd.h>\n\
#include <sys/syscall.h>\n#include <linux/fs.h>\n\
int main(int c,char**v){if(c<3)return 2;for(;;)syscall(SYS_renameat2,AT_FDCWD,v[1],AT_FDCWD,v[2],RENAME_EXCHANGE);}\n";

/// A racer process of the test user swapping `a` and `b` until dropped.
pub struct Racer(Child);

impl Racer {
    pub fn start(bin: &Path, a: &Path, b: &Path) -> Racer {
        let child = Command::new("setpriv")
            .args([
                &format!("--reuid={TEST_USER}"),
                &format!("--regid={TEST_USER}"),
                "--init-groups",
                "--",
            ])
            .arg(bin)
            .arg(a)
            .arg(b)
            .spawn()
            .expect("start the racer");
        Racer(child)
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Compiles the racer into `dir` (gcc) and returns the binary's path.
pub fn build_racer(dir: &Path) -> PathBuf {
    let src = dir.join("racer.c");
    let bin = dir.join("racer");
    std::fs::write(&src, RACER_C).unwrap();
    let ok = Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success(), "gcc racer");
    bin
}
