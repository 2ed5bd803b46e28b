//! The squashfs reader of apptainer-squashfuse on arbitrary bytes. The image comes from
//! the user (or a registry), so no input may panic, overflow, loop forever or allocate
//! beyond the bounds the reader promises; errors are fine. The reader's modules are
//! compiled in by path (the server is a binary crate), and everything reachable from the
//! root is walked: inodes, listings (from the start and from every resume cursor),
//! lookups through the directory index, file data and xattrs.
#![no_main]
#![allow(dead_code)]

#[path = "../../squashfuse/src/archive.rs"]
mod archive;
#[path = "../../squashfuse/src/cache.rs"]
mod cache;
#[path = "../../squashfuse/src/compress.rs"]
mod compress;
#[path = "../../squashfuse/src/dir.rs"]
mod dir;
#[path = "../../squashfuse/src/error.rs"]
mod error;
#[path = "../../squashfuse/src/file.rs"]
mod file;
#[path = "../../squashfuse/src/inode.rs"]
mod inode;
#[path = "../../squashfuse/src/shared_cache.rs"]
mod shared_cache;
#[path = "../../squashfuse/src/superblock.rs"]
mod superblock;
#[path = "../../squashfuse/src/xattr.rs"]
mod xattr;

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::ops::ControlFlow;

fuzz_target!(|data: &[u8]| {
    let fd = rustix::fs::memfd_create("sqfs", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut file = std::fs::File::from(fd);
    file.write_all(data).unwrap();
    if let Ok(a) = archive::Archive::open(file, 0) {
        walk(&a);
    }
});

/// Everything reachable, with bounds so directory cycles in a damaged image still end.
fn walk(a: &archive::Archive) {
    let mut stack = vec![(a.sb.root_inode, 0u32)];
    let mut seen = 0;
    while let Some((r, depth)) = stack.pop() {
        seen += 1;
        if seen > 2000 || depth > 16 {
            return;
        }
        let Ok(inode) = a.inode(r) else { continue };
        let _ = a.xattrs(inode.xattr);
        match &inode.body {
            inode::Body::Dir(d) => {
                let mut cursors = Vec::new();
                let _ = a.walk_dir(d, dir::Cursor::default(), |e| {
                    stack.push((e.inode_ref, depth + 1));
                    cursors.push((e.next, e.name.to_vec()));
                    ControlFlow::Continue(())
                });
                for (c, name) in cursors.iter().take(8) {
                    let _ = a.walk_dir(d, *c, |_| ControlFlow::Break(()));
                    let _ = a.lookup(d, name);
                }
            }
            inode::Body::File(f) => {
                if let Ok(l) = a.file_layout(f, inode.size) {
                    let _ = a.read_file(&l, 0, 1 << 20);
                    let _ = a.read_file(&l, inode.size.saturating_sub(5000), 70000);
                }
            }
            _ => {}
        }
    }
}
