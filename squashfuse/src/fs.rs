//! The FUSE side: read-only operations over an `Archive`. FUSE inode numbers are squashfs
//! inode references plus 2, except the root, which FUSE requires to be 1; hard links share
//! a reference, so they share an inode number. The image never changes while mounted, so
//! entries and attributes are cached by the kernel for a long time, file pages are kept
//! across opens and symlinks and directory listings are cached too.

use crate::archive::Archive;
use crate::cache::Lru;
use crate::dir::Cursor;
use crate::error::SqfsError;
use crate::file::FileLayout;
use crate::inode::{Body, Inode, Kind};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// How long the kernel may trust an entry or attribute: the image is immutable.
const TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Block lists of recently read files.
const LAYOUT_CACHE: usize = 256;

/// The mounted image.
pub struct SquashFs {
    archive: Archive,
    layouts: Mutex<Lru<FileLayout>>,
}

impl SquashFs {
    pub fn new(archive: Archive) -> SquashFs {
        SquashFs {
            archive,
            layouts: Mutex::new(Lru::new(LAYOUT_CACHE)),
        }
    }

    fn reference(&self, ino: INodeNo) -> Result<u64, Errno> {
        match ino.0 {
            1 => Ok(self.archive.sb.root_inode),
            n => n.checked_sub(2).ok_or(Errno::ENOENT),
        }
    }

    fn ino(&self, reference: u64) -> Result<INodeNo, Errno> {
        if reference == self.archive.sb.root_inode {
            return Ok(INodeNo(1));
        }
        reference.checked_add(2).map(INodeNo).ok_or(Errno::EIO)
    }

    fn inode(&self, ino: INodeNo) -> Result<Inode, Errno> {
        self.archive.inode(self.reference(ino)?).map_err(eio)
    }

    fn attr(&self, ino: INodeNo, i: &Inode) -> FileAttr {
        let time = UNIX_EPOCH + Duration::from_secs(i.mtime.into());
        let rdev = match i.body {
            Body::Device(d) => d,
            _ => 0,
        };
        FileAttr {
            ino,
            size: i.size,
            blocks: i.size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: file_type(i.kind),
            perm: i.perm,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            rdev,
            blksize: self.archive.sb.block_size,
            flags: 0,
        }
    }

    fn layout(&self, ino: INodeNo) -> Result<Arc<FileLayout>, Errno> {
        let reference = self.reference(ino)?;
        if let Some(l) = self
            .layouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reference)
        {
            return Ok(l);
        }
        let inode = self.archive.inode(reference).map_err(eio)?;
        let Body::File(f) = &inode.body else {
            return Err(Errno::EISDIR);
        };
        let mut layout = self.archive.file_layout(f, inode.size).map_err(eio)?;
        if inode.size > 0 {
            layout.shared = self.archive.shared.as_ref().and_then(|c| c.file(reference));
        }
        let layout = Arc::new(layout);
        self.layouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reference, Arc::clone(&layout));
        Ok(layout)
    }

    fn dir(&self, ino: INodeNo) -> Result<(Inode, crate::inode::DirInfo), Errno> {
        let inode = self.inode(ino)?;
        match &inode.body {
            Body::Dir(d) => {
                let d = d.clone();
                Ok((inode, d))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The inode number of the parent of `dir` for "..": through the export table when the
    /// image has one, else the directory itself (only `readdir` shows it; the kernel
    /// resolves ".." on its own).
    fn parent_ino(&self, ino: INodeNo, parent: u32) -> INodeNo {
        if ino.0 == 1 {
            return ino;
        }
        self.archive
            .inode_ref_of(parent)
            .ok()
            .and_then(|r| self.ino(r).ok())
            .unwrap_or(ino)
    }

    fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> Result<Option<(INodeNo, Inode)>, Errno> {
        let (_, dir) = self.dir(parent)?;
        let Some((reference, _)) = self.archive.lookup(&dir, name.as_bytes()).map_err(eio)? else {
            return Ok(None);
        };
        let inode = self.archive.inode(reference).map_err(eio)?;
        Ok(Some((self.ino(reference)?, inode)))
    }

    fn xattr_reply(&self, ino: INodeNo, size: u32, want: Option<&[u8]>, reply: ReplyXattr) {
        let attrs = match self
            .inode(ino)
            .and_then(|i| self.archive.xattrs(i.xattr).map_err(eio))
        {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        let data = match want {
            Some(name) => match attrs.into_iter().find(|(n, _)| n == name) {
                Some((_, v)) => v,
                None => return reply.error(Errno::ENODATA),
            },
            None => attrs
                .into_iter()
                .flat_map(|(mut n, _)| {
                    n.push(0);
                    n
                })
                .collect(),
        };
        if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&data);
        }
    }
}

fn eio(e: SqfsError) -> Errno {
    // One line per corrupt structure met; the request fails, the mount keeps serving.
    eprintln!("apptainer-squashfuse: {e}");
    Errno::EIO
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::CharDev => FileType::CharDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}

impl Filesystem for SquashFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // As much readahead as the kernel allows: whole blocks arrive in few requests.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        // Each is optional; a kernel without one simply does not get it.
        for cap in [
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent, name) {
            Ok(Some((ino, inode))) => reply.entry(&TTL, &self.attr(ino, &inode), Generation(0)),
            // A negative entry (inode 0) with a TTL: the kernel remembers the name is absent,
            // which saves the dynamic loader's many probes on later starts of the same mount.
            Ok(None) => reply.entry(&TTL, &negative_attr(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Ok(i) => reply.attr(&TTL, &self.attr(ino, &i)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino) {
            Ok(Inode {
                body: Body::Symlink(t),
                ..
            }) => reply.data(&t),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc_accmode() != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.layout(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let data = self.layout(ino).and_then(|l| {
            self.archive
                .read_file(&l, offset, size as usize)
                .map_err(eio)
        });
        match data {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.dir(ino) {
            Ok(_) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (_, dir) = match self.dir(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        if offset == 0 && reply.add(ino, 1, FileType::Directory, ".") {
            return reply.ok();
        }
        if offset <= 1
            && reply.add(
                self.parent_ino(ino, dir.parent),
                2,
                FileType::Directory,
                "..",
            )
        {
            return reply.ok();
        }
        let from = Cursor::from_offset(offset.max(3)).unwrap_or_default();
        let walked = self
            .archive
            .walk_dir(&dir, from, |e| match self.ino(e.inode_ref) {
                Ok(child)
                    if !reply.add(
                        child,
                        e.next.to_offset(),
                        file_type(e.kind),
                        OsStr::from_bytes(e.name),
                    ) =>
                {
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Break(()),
            });
        match walked {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (inode, dir) = match self.dir(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        // "." and ".." carry no attributes the kernel would use: it never creates entries for them.
        if offset == 0 && reply.add(ino, 1, ".", &TTL, &self.attr(ino, &inode), Generation(0)) {
            return reply.ok();
        }
        if offset <= 1
            && reply.add(
                self.parent_ino(ino, dir.parent),
                2,
                "..",
                &TTL,
                &self.attr(ino, &inode),
                Generation(0),
            )
        {
            return reply.ok();
        }
        let from = Cursor::from_offset(offset.max(3)).unwrap_or_default();
        let mut failed = None;
        let walked = self.archive.walk_dir(&dir, from, |e| {
            let child = match self
                .ino(e.inode_ref)
                .and_then(|c| Ok((c, self.archive.inode(e.inode_ref).map_err(eio)?)))
            {
                Ok(c) => c,
                Err(err) => {
                    failed = Some(err);
                    return ControlFlow::Break(());
                }
            };
            let attr = self.attr(child.0, &child.1);
            if reply.add(
                child.0,
                e.next.to_offset(),
                OsStr::from_bytes(e.name),
                &TTL,
                &attr,
                Generation(0),
            ) {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        match (walked, failed) {
            (Err(e), _) => reply.error(eio(e)),
            (Ok(()), Some(e)) => reply.error(e),
            (Ok(()), None) => reply.ok(),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let sb = &self.archive.sb;
        let blocks = sb.bytes_used.div_ceil(sb.block_size.into());
        reply.statfs(
            blocks,
            0,
            0,
            sb.inode_count.into(),
            0,
            sb.block_size,
            256,
            sb.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.xattr_reply(ino, size, Some(name.as_bytes()), reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.xattr_reply(ino, size, None, reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        let want = (mask.bits() & 0o7) as u16;
        // Root may read anything and execute what has any execute bit, as in the kernel.
        let granted = if req.uid() == 0 {
            if inode.kind == Kind::Dir || inode.perm & 0o111 != 0 {
                0o7
            } else {
                0o6
            }
        } else if req.uid() == inode.uid {
            inode.perm >> 6 & 0o7
        } else if req.gid() == inode.gid {
            inode.perm >> 3 & 0o7
        } else {
            inode.perm & 0o7
        };
        if want & !granted == 0 {
            reply.ok()
        } else {
            reply.error(Errno::EACCES)
        }
    }
}

/// O_ACCMODE: any write access on a read-only image is refused.
fn libc_accmode() -> i32 {
    0o3
}

/// The attributes of a negative entry: only the inode number (0) matters.
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}
