//! A cache of decompressed file data shared by every server of the same user and image.
//!
//! Why: each container start runs its own server, and the kernel's page cache of a FUSE
//! mount dies with the mount, so every start decompressed the same blocks again (libc,
//! ld.so, the program): with 50 parallel starts, inflate was a fifth of all CPU. Here a
//! block decompressed by one server is written to node-local tmpfs, and later servers read
//! it back with a pread (a page-cache copy) instead of decompressing it.
//!
//! Layout: `/dev/shm/apptainer-squashfuse-<uid>/` (0700, ours, else no cache at all) holds
//! one directory per image, named by everything that identifies the image's bytes (the
//! image file's device, inode, size, mtime and ctime, the partition offset, the superblock's
//! size and creation time), so a rewritten or replaced image never meets old data. In it,
//! per regular file (named by its squashfs inode reference, unique per inode), `<ref>.data`
//! holds the decompressed content at its natural offsets (sparse) and `<ref>.map` one byte
//! per block, `MARK` once that block's data is completely written. The tail of a file (a
//! fragment) is its last block.
//!
//! Safety: the directory is the user's own, so what is in it only changes what that user's
//! containers see, as their own image would. What matters is that nothing in it can make
//! the server touch anything else or misbehave: every open is relative to the directory's
//! descriptor with O_NOFOLLOW (and O_NONBLOCK, so a planted FIFO cannot hang us), only
//! regular files are used, and any short, missing or odd file is a miss. Every cache I/O
//! error just means "not cached": the server then works exactly as without the cache.
//!
//! Memory: tmpfs is RAM. A server writes nothing new when /dev/shm was less than half free
//! at its start, and the user directory is kept under `LIMIT` by a ledger: the file `usage`
//! grows by one byte per 4 KiB page a server writes (O_APPEND, so concurrent servers add up
//! without locking), and a server writes only while the ledger's size says the directory
//! holds less than `LIMIT`. It over-counts (blocks two servers write at once count twice,
//! rewrites count again), which errs on the safe side. Eviction is as simple: a server that
//! starts with the ledger at `RECYCLE` or more empties the directory (every image's cache
//! and the ledger) first, so caches of images no longer used (rewritten, deleted) do not
//! keep the space forever; servers still using removed files keep working on them, and the
//! next starts refill the cache with what is used now.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the per-user directories live: node-local tmpfs.
const SHM: &str = "/dev/shm";
/// The most a user's directory may hold, in bytes (by the ledger's count).
const LIMIT: u64 = 512 << 20;
/// A server starting with this much in the ledger empties the directory first.
const RECYCLE: u64 = LIMIT / 4 * 3;
/// Granularity of the ledger: one ledger byte per page written.
const PAGE: u64 = 4096;
/// A block's marker once its data is completely written; anything else is "not cached".
const MARK: u8 = 1;
/// Bumped whenever the layout of the files changes, so old caches are never read.
const FORMAT: &str = "v1";

/// The cache directory of one image, opened by one server.
pub struct SharedCache {
    dir: OwnedFd,
    /// The user directory's ledger; `None` when this server must not write.
    ledger: Option<File>,
    /// Set once the ledger refused a write: no more ledger checks for this server.
    full: AtomicBool,
    block_size: u64,
}

/// The two cache files of one regular file of the image.
pub struct CachedFile {
    data: File,
    marks: File,
}

/// What names an image's bytes; any change to the image file changes one of these.
pub struct ImageKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub offset: u64,
    pub bytes_used: u64,
    pub mkfs_time: u32,
}

impl ImageKey {
    /// The key of the image open as `image`, with the squashfs partition at `offset`.
    pub fn of(image: &File, offset: u64, bytes_used: u64, mkfs_time: u32) -> Option<ImageKey> {
        let m = image.metadata().ok()?;
        Some(ImageKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            offset,
            bytes_used,
            mkfs_time,
        })
    }

    /// The directory name: the fields themselves rather than a hash of them, so two
    /// different images can never share a directory (about 150 characters, under NAME_MAX).
    fn name(&self) -> String {
        format!(
            "{FORMAT}-{:x}-{:x}-{:x}-{:x}.{:x}-{:x}.{:x}-{:x}-{:x}-{:x}",
            self.dev,
            self.ino,
            self.size,
            self.mtime.0,
            self.mtime.1,
            self.ctime.0,
            self.ctime.1,
            self.offset,
            self.bytes_used,
            self.mkfs_time
        )
    }
}

impl SharedCache {
    /// The cache of image `key` in the calling user's directory under /dev/shm, or `None`
    /// when there is no usable one.
    pub fn open(key: &ImageKey, block_size: u32) -> Option<SharedCache> {
        let name = format!("apptainer-squashfuse-{}", host_uid());
        SharedCache::open_in(Path::new(SHM), &name, key, block_size)
    }

    /// The cache of image `key` in directory `name` of `parent` (tests use a tempdir).
    pub fn open_in(
        parent: &Path,
        name: &str,
        key: &ImageKey,
        block_size: u32,
    ) -> Option<SharedCache> {
        let user = user_dir(parent, name)?;
        let ledger = if room_on(&user) {
            open_regular(&user, "usage", OFlags::WRONLY | OFlags::APPEND)
        } else {
            None
        };
        if let Some(l) = &ledger {
            if l.metadata()
                .is_ok_and(|m| m.len().saturating_mul(PAGE) >= RECYCLE)
            {
                recycle(&user, l);
            }
        }
        let image = key.name();
        // EEXIST is the common case; any other failure shows up in the open below.
        let _ = rustix::fs::mkdirat(&user, image.as_str(), Mode::RWXU);
        let dir = rustix::fs::openat(&user, image.as_str(), dir_flags(), Mode::empty()).ok()?;
        Some(SharedCache {
            dir,
            ledger,
            full: AtomicBool::new(false),
            block_size: u64::from(block_size),
        })
    }

    /// The cache files of the regular file at inode reference `inode`, created when
    /// missing; `None` when they cannot be used.
    pub fn file(&self, inode: u64) -> Option<CachedFile> {
        Some(CachedFile {
            data: open_regular(&self.dir, &format!("{inode:x}.data"), OFlags::RDWR)?,
            marks: open_regular(&self.dir, &format!("{inode:x}.map"), OFlags::RDWR)?,
        })
    }

    /// Fills `buf` with the file's bytes from `within` in block `index`, if that block is
    /// cached; false (and `buf` unspecified) otherwise.
    pub fn read(&self, f: &CachedFile, index: u64, within: usize, buf: &mut [u8]) -> bool {
        let mut mark = [0u8];
        let Some(at) = self.position(index, within) else {
            return false;
        };
        // The marker is only ever written after the whole block's data was, so a set
        // marker means the data is there; a data file shorter than it claims (truncated)
        // is a short read, hence a miss.
        f.marks.read_exact_at(&mut mark, index).is_ok()
            && mark[0] == MARK
            && f.data.read_exact_at(buf, at).is_ok()
    }

    /// Stores `block`, the file's complete content of block `index` (shorter than a block
    /// only for the last one), best effort.
    pub fn store(&self, f: &CachedFile, index: u64, block: &[u8]) {
        let (Some(ledger), Some(at)) = (&self.ledger, self.position(index, 0)) else {
            return;
        };
        if self.full.load(Ordering::Relaxed) || !reserve(ledger, block.len() as u64) {
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        // write_all_at retries short writes; the marker is written only when every byte
        // of the data is, so a reader never sees a marker before its data. A failure
        // (ENOSPC, a file made read-only by the user) leaves the marker unset.
        if f.data.write_all_at(block, at).is_ok() {
            let _ = f.marks.write_all_at(&[MARK], index);
        }
    }

    /// The data file offset of byte `within` of block `index`.
    fn position(&self, index: u64, within: usize) -> Option<u64> {
        index
            .checked_mul(self.block_size)?
            .checked_add(within as u64)
            .filter(|&at| at <= i64::MAX as u64)
    }
}

/// The user directory `name` in `parent`, created if missing, when it is a directory of
/// ours that nobody else may enter: a directory someone else created (to read our data or
/// feed us theirs), a symlink or a group/other-accessible one disables the cache.
fn user_dir(parent: &Path, name: &str) -> Option<OwnedFd> {
    let parent = rustix::fs::open(parent, dir_flags(), Mode::empty()).ok()?;
    let _ = rustix::fs::mkdirat(&parent, name, Mode::RWXU);
    let dir = rustix::fs::openat(&parent, name, dir_flags(), Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&dir).ok()?;
    let ours = st.st_uid == rustix::process::geteuid().as_raw();
    let private = st.st_mode & 0o077 == 0;
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    (ours && private && is_dir).then_some(dir)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens (creating, 0600) the regular file `name` in `dir`; `None` for anything else.
fn open_regular(dir: &OwnedFd, name: &str, access: OFlags) -> Option<File> {
    // NONBLOCK: opening a FIFO planted in the directory must not wait for a writer.
    let flags = access | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::RUSR | Mode::WUSR).ok()?;
    let file = File::from(fd);
    file.metadata().ok()?.is_file().then_some(file)
}

/// Whether the filesystem of `dir` is at least half free: tmpfs is memory, and a cache
/// must not be what pushes the node into swapping.
fn room_on(dir: &OwnedFd) -> bool {
    rustix::fs::fstatvfs(dir).is_ok_and(|s| {
        let (free, total) = (u128::from(s.f_bavail), u128::from(s.f_blocks));
        free * 2 >= total
    })
}

/// Counts `bytes` about to be written in the ledger, if the user directory stays under
/// `LIMIT`; false when it would not (or the ledger fails).
fn reserve(ledger: &File, bytes: u64) -> bool {
    let pages = bytes.div_ceil(PAGE).max(1);
    let Ok(m) = ledger.metadata() else {
        return false;
    };
    if m.len().saturating_add(pages).saturating_mul(PAGE) > LIMIT {
        return false;
    }
    // A marker page may be new as well: count one more page than the data needs.
    let mut w = ledger;
    std::io::Write::write_all(&mut w, &vec![0u8; pages as usize + 1]).is_ok()
}

/// Empties the user directory: removes every image directory (names start with 'v', the
/// format version) with the files in it, then zeroes the ledger. Best effort: concurrent
/// servers may remove the same entries, and anything unexpected is left alone. unlinkat
/// never follows a symlink, so nothing outside the directory is touched.
fn recycle(user: &OwnedFd, ledger: &File) {
    let Ok(entries) = rustix::fs::Dir::read_from(user) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if e.file_type() != FileType::Directory || !name.to_bytes().starts_with(b"v") {
            continue;
        }
        if let Ok(image) = rustix::fs::openat(user, name, dir_flags(), Mode::empty()) {
            let files = rustix::fs::Dir::read_from(&image).into_iter().flatten();
            for f in files
                .flatten()
                .filter(|f| f.file_type() != FileType::Directory)
            {
                let _ = rustix::fs::unlinkat(&image, f.file_name(), AtFlags::empty());
            }
        }
        let _ = rustix::fs::unlinkat(user, name, AtFlags::REMOVEDIR);
    }
    let _ = ledger.set_len(0);
}

/// Our uid as the host sees it: in a user namespace (the starter's unprivileged mode) the
/// server may be root inside, and the directory name must still be the caller's, not
/// real root's.
fn host_uid() -> u32 {
    let inner = rustix::process::geteuid().as_raw();
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    outer_uid(&map, inner).unwrap_or(inner)
}

/// Maps `inner` through a uid_map ("inside outside count" per line).
fn outer_uid(map: &str, inner: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        let offset = u64::from(inner)
            .checked_sub(inside)
            .filter(|&o| o < count)?;
        u32::try_from(outside + offset).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Tests use tmpfs too: the free-space rule must see the kind of filesystem it is for.
    const BS: u32 = 4096;

    fn key(ino: u64) -> ImageKey {
        ImageKey {
            dev: 1,
            ino,
            size: 2,
            mtime: (3, 4),
            ctime: (5, 6),
            offset: 7,
            bytes_used: 8,
            mkfs_time: 9,
        }
    }

    fn cache(parent: &Path) -> SharedCache {
        SharedCache::open_in(parent, "user", &key(1), BS).expect("a usable cache")
    }

    fn image_dir(parent: &Path) -> std::path::PathBuf {
        parent.join("user").join(key(1).name())
    }

    fn read(c: &SharedCache, inode: u64, index: u64, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        c.read(&c.file(inode)?, index, 0, &mut buf).then_some(buf)
    }

    #[test]
    fn a_block_stored_by_one_server_is_read_by_another() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        let block: Vec<u8> = (0..BS).map(|i| (i % 251) as u8).collect();
        let tail = b"the tail of the file".to_vec();
        {
            let first = cache(tmp.path());
            let f = first.file(0x2a).unwrap();
            assert_eq!(read(&first, 0x2a, 1, BS as usize), None);
            first.store(&f, 1, &block);
            first.store(&f, 3, &tail);
        }
        let second = cache(tmp.path());
        assert_eq!(read(&second, 0x2a, 1, BS as usize), Some(block.clone()));
        let f = second.file(0x2a).unwrap();
        let mut part = vec![0u8; 10];
        assert!(second.read(&f, 1, 100, &mut part));
        assert_eq!(part, block[100..110]);
        assert_eq!(read(&second, 0x2a, 3, tail.len()), Some(tail));
        // Blocks never stored (0, 2) and other files are misses.
        assert_eq!(read(&second, 0x2a, 0, 16), None);
        assert_eq!(read(&second, 0x2a, 2, 16), None);
        assert_eq!(read(&second, 0x2b, 1, 16), None);
        // Another image's directory never sees this one's data.
        let other = SharedCache::open_in(tmp.path(), "user", &key(2), BS).unwrap();
        assert_eq!(read(&other, 0x2a, 1, 16), None);
        let mode = std::fs::metadata(tmp.path().join("user")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_marker_without_its_data_or_a_garbage_marker_is_a_miss() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        let c = cache(tmp.path());
        let f = c.file(7).unwrap();
        c.store(&f, 0, &[5u8; BS as usize]);
        c.store(&f, 1, &[6u8; BS as usize]);
        c.store(&f, 2, &[7u8; 100]);
        let dir = image_dir(tmp.path());
        // The data file cut inside block 1: block 0 is still whole, blocks 1 and 2 are not.
        let data = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("7.data"))
            .unwrap();
        data.set_len(u64::from(BS) + 10).unwrap();
        assert_eq!(read(&c, 7, 0, BS as usize), Some(vec![5u8; BS as usize]));
        assert_eq!(read(&c, 7, 1, BS as usize), None);
        assert_eq!(read(&c, 7, 2, 100), None);
        // Markers of blocks the data file never had, and bytes other than the marker.
        std::fs::write(dir.join("7.map"), [1u8, 1, 1, 1, 1, 1]).unwrap();
        assert_eq!(read(&c, 7, 4, 16), None);
        std::fs::write(dir.join("7.map"), [0xffu8, 2, 0x80]).unwrap();
        assert_eq!(read(&c, 7, 0, 16), None);
        // An empty marker file and an empty data file.
        std::fs::write(dir.join("7.map"), []).unwrap();
        assert_eq!(read(&c, 7, 0, 16), None);
        std::fs::write(dir.join("7.map"), [1u8]).unwrap();
        std::fs::write(dir.join("7.data"), []).unwrap();
        assert_eq!(read(&c, 7, 0, 16), None);
        // Stored again after the damage, it reads back.
        c.store(&f, 0, &[9u8; BS as usize]);
        assert_eq!(read(&c, 7, 0, BS as usize), Some(vec![9u8; BS as usize]));
    }

    #[test]
    fn symlinks_fifos_and_directories_in_the_cache_are_not_used() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        let c = cache(tmp.path());
        let dir = image_dir(tmp.path());
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("1.data")).unwrap();
        assert!(c.file(1).is_none());
        nix::unistd::mkfifo(&dir.join("2.map"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(c.file(2).is_none());
        std::fs::create_dir(dir.join("3.data")).unwrap();
        assert!(c.file(3).is_none());
        assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    }

    #[test]
    fn an_unsafe_user_directory_disables_the_cache() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        // Group-writable, or readable by others.
        for mode in [0o770, 0o705] {
            let d = tmp.path().join(format!("open{mode:o}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                SharedCache::open_in(tmp.path(), &format!("open{mode:o}"), &key(1), BS).is_none()
            );
        }
        // A symlink to a perfectly good directory of ours.
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::fs::set_permissions(
            tmp.path().join("real"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        assert!(SharedCache::open_in(tmp.path(), "link", &key(1), BS).is_none());
        assert!(SharedCache::open_in(tmp.path(), "real", &key(1), BS).is_some());
        // A regular file where the directory should be.
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        assert!(SharedCache::open_in(tmp.path(), "file", &key(1), BS).is_none());
        // Someone else's directory (only root can make one here).
        if rustix::process::geteuid().is_root() {
            let d = tmp.path().join("theirs");
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
            assert!(SharedCache::open_in(tmp.path(), "theirs", &key(1), BS).is_none());
        }
    }

    #[test]
    fn nothing_is_written_past_the_ledger_limit() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        let c = cache(tmp.path());
        let f = c.file(1).unwrap();
        c.store(&f, 0, &[1u8; BS as usize]);
        assert!(read(&c, 1, 0, 16).is_some());
        // A ledger that says the directory is full: block 1 is not stored.
        let ledger = tmp.path().join("user/usage");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&ledger)
            .unwrap()
            .set_len(LIMIT / PAGE)
            .unwrap();
        c.store(&f, 1, &[2u8; BS as usize]);
        assert_eq!(read(&c, 1, 1, 16), None);
        assert_eq!(std::fs::metadata(&ledger).unwrap().len(), LIMIT / PAGE);
    }

    #[test]
    fn a_server_starting_with_a_full_ledger_empties_the_directory() {
        let tmp = tempfile::tempdir_in(SHM).unwrap();
        let c = cache(tmp.path());
        let old = c.file(1).unwrap();
        c.store(&old, 0, &[1u8; BS as usize]);
        let user = tmp.path().join("user");
        std::fs::write(user.join("mine"), b"not the cache's").unwrap();
        std::fs::File::options()
            .write(true)
            .open(user.join("usage"))
            .unwrap()
            .set_len(RECYCLE / PAGE)
            .unwrap();
        let next = cache(tmp.path());
        assert_eq!(read(&next, 1, 0, 16), None);
        assert_eq!(std::fs::metadata(user.join("usage")).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(user.join("mine")).unwrap(),
            b"not the cache's"
        );
        // The new server caches again, and the old one keeps working on its files.
        next.store(&next.file(1).unwrap(), 0, &[2u8; BS as usize]);
        assert_eq!(read(&next, 1, 0, 4), Some(vec![2u8; 4]));
        assert!(std::fs::metadata(user.join("usage")).unwrap().len() > 0);
        let mut buf = [0u8; 4];
        assert!(c.read(&old, 0, 0, &mut buf));
        assert_eq!(buf, [1u8; 4]);
    }

    #[test]
    fn uids_map_through_the_user_namespace() {
        assert_eq!(outer_uid("0 1001 1\n", 0), Some(1001));
        assert_eq!(outer_uid("0 0 4294967295\n", 1001), Some(1001));
        assert_eq!(outer_uid("0 1001 1\n1 100000 65536\n", 5), Some(100004));
        assert_eq!(outer_uid("0 1001 1\n", 5), None);
        assert_eq!(outer_uid("garbage\n", 0), None);
    }
}
