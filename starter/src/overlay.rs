//! `--overlay` layers and a SIF's own overlay partition, in user-namespace mode only (the
//! setuid starter refuses them in `validate`, so no kernel driver ever parses an ext3 image
//! the caller can write). Each layer is opened as the caller and judged from its fd: a
//! directory is bound, a squashfs image served by apptainer-squashfuse, an ext3 image (or partition)
//! by fuse2fs. Image layers are flock'ed, exclusively when writable, until the supervisor has
//! reaped every daemon, so two containers never write one image. rootfs.rs stacks the layers.

use crate::error::{path, sys as syserr, Result, StarterError};
use crate::image::Image;
use crate::sys::{self, Pid, Sys, AT_FDCWD, RESOLVE_NO_MAGICLINKS};
use caps::{CapSet, Capability::CAP_SYS_ADMIN};
use nix::mount::{umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::{prctl, stat::fstat};
use starter::plan::{ImageKind, ValidatedPlan};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::{Command, Stdio};

/// One layer as a detached mount; a writable one holds `upper` and `work`. `fuse`: served by
/// fuse2fs, which the kernel's overlayfs does not take as an upper layer.
pub struct Layer {
    pub tree: OwnedFd,
    pub writable: bool,
    pub fuse: bool,
}

/// The layers, the squashfuse daemons to stop and the image locks, held until the end.
#[derive(Default)]
pub struct Layers {
    pub mounts: Vec<Layer>,
    daemons: Vec<Pid>,
    locks: Vec<File>,
}

/// Mounts the plan's overlays, then a SIF's overlay partition (writable with `--writable`,
/// else read-only beneath them), in the supervisor's mount namespace. `ids` own the mounts.
pub fn mount_all(sys: &dyn Sys, plan: &ValidatedPlan, image: &Image, ids: (u32, u32)) -> Result<Layers> {
    let mut l = Layers::default();
    for o in &plan.overlays {
        let p = o.path.to_string_lossy().into_owned();
        let fd = sys.openat2(AT_FDCWD, &p, libc::O_PATH, 0, RESOLVE_NO_MAGICLINKS).map_err(path("cannot open", &p))?;
        let st = fstat(fd.as_raw_fd()).map_err(path("cannot stat", &p))?;
        let layer = Image { fd, kind: ImageKind::Sandbox, offset: 0, size: 0, shown: p };
        let refuse = |why| Err(StarterError::Image { path: layer.shown.clone(), why });
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            l.add_image(sys, &layer, 0, o.writable, ids)?;
        } else if o.writable && st.st_uid != ids.0 {
            return refuse("a writable overlay directory must be the caller's");
        } else {
            let tree = crate::image::mount_sandbox(sys, &layer, o.writable)?;
            l.mounts.push(Layer { tree, writable: o.writable, fuse: false });
        }
    }
    let mut f = File::from(image.fd.try_clone().map_err(|_| StarterError::Refused("cannot duplicate the image fd"))?);
    let overlay = |d: &&sif::Descriptor| d.partition().is_some_and(|m| m.part_type == sif::PartType::Overlay);
    match sif::Image::load(&mut f).ok().and_then(|s| s.descriptors().find(overlay).map(|d| d.offset as u64)) {
        Some(offset) => l.add_image(sys, image, offset, plan.image.writable, ids)?,
        None if plan.image.writable && plan.image.kind == ImageKind::Sif => {
            return Err(StarterError::Image { path: image.shown.clone(), why: "has no overlay partition to write to" })
        }
        None => {}
    }
    Ok(l)
}

impl Layers {
    /// The file behind `img.fd` opened again (read-write if `writable`: the kernel checks the
    /// caller may write this very file), locked, and mounted from `offset` by its magic.
    fn add_image(&mut self, sys: &dyn Sys, img: &Image, offset: u64, writable: bool, ids: (u32, u32)) -> Result<()> {
        let refuse = |why| StarterError::Image { path: img.shown.clone(), why };
        // fuse2fs and fuse-overlayfs daemonize: as a subreaper the supervisor can wait for
        // them to write the image back (only then: an instance's orphans go to init).
        prctl::set_child_subreaper(true).map_err(syserr("PR_SET_CHILD_SUBREAPER"))?;
        let (mut open, fd) = (std::fs::OpenOptions::new(), format!("/proc/self/fd/{}", img.fd.as_raw_fd()));
        let file = open.read(true).write(writable).custom_flags(libc::O_NONBLOCK).open(fd);
        let file = file.map_err(|_| refuse("cannot be opened (read-write to be writable)"))?;
        let locked = if writable { file.try_lock() } else { file.try_lock_shared() };
        locked.map_err(|_| refuse("is in use by another container (a writable overlay cannot be shared)"))?;
        let mut magic = [0u8; 4];
        file.read_exact_at(&mut magic, offset).map_err(|_| refuse("cannot be read"))?;
        let tree = match &magic == b"hsqs" {
            true if writable => return Err(refuse("is squashfs, which can only be a read-only overlay")),
            true => {
                let fd = OwnedFd::from(file.try_clone().map_err(|_| refuse("cannot be read"))?);
                let sq = Image { fd, kind: ImageKind::Squashfs, offset, size: 0, shown: img.shown.clone() };
                let (tree, pid) = crate::userns::mount_squashfuse(sys, &sq, ids, None)?;
                self.daemons.push(pid);
                tree
            }
            false => mount_ext3(sys, &file, offset, writable).ok_or_else(|| refuse("cannot be mounted by fuse2fs"))?,
        };
        self.locks.push(file);
        self.mounts.push(Layer { tree, writable, fuse: true });
        Ok(())
    }
}

/// fuse2fs (libfuse 2) can only mount itself onto a path, with CAP_SYS_ADMIN (of our user
/// namespace) kept across exec: onto /tmp of the supervisor's private mount namespace,
/// cloned and detached at once, so the container's /tmp bind still finds the host's.
fn mount_ext3(sys: &dyn Sys, file: &File, offset: u64, writable: bool) -> Option<OwnedFd> {
    let bin = ["/usr/bin/fuse2fs", "/usr/sbin/fuse2fs"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let opts = format!("nonempty,offset={offset}{}", if writable { "" } else { ",ro" });
    let raise = |set| caps::raise(None, set, CAP_SYS_ADMIN).ok();
    raise(CapSet::Inheritable).and(raise(CapSet::Ambient))?;
    let mut cmd = Command::new(bin);
    cmd.args(["/dev/stdin", "/tmp", "-o", &opts]).stdin(file.try_clone().ok()?).stdout(Stdio::null());
    // Without -f it returns once mounted, the daemon going on in the background.
    let mounted = cmd.stderr(Stdio::null()).env_clear().status().is_ok_and(|s| s.success());
    caps::clear(None, CapSet::Ambient).ok().filter(|_| mounted)?;
    let tree = sys.open_tree(AT_FDCWD, "/tmp", false).ok();
    umount2("/tmp", MntFlags::MNT_DETACH).ok().and(tree)
}

/// fuse-overlayfs with the kernel overlay's options, for an upper layer on fuse2fs or
/// `enable overlay = driver`. The daemon runs in a copy of this mount namespace taken now,
/// reparented to the supervisor: it keeps nothing of the container's alive, so it exits
/// when the container's root goes, and then the layers it held go too.
pub fn mount_fuse_overlayfs(sys: &dyn Sys, opts: &[(&str, &str)], ids: (u32, u32)) -> Result<OwnedFd> {
    let (fuse, tree) = crate::image::mount_fuse(sys, ids, false)?;
    // No ACLs: the kernel would ask for them on every lookup, and squashfuse has none.
    let o: String = opts.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={v},")).collect();
    let argv = ["/usr/bin/fuse-overlayfs", "-f", "-o", &(o + "noacl"), &format!("/dev/fd/{}", fuse.as_raw_fd())];
    // The copy is taken in the daemon's first child, before we attach the tree, which the
    // daemon's namespace must not hold.
    let copy = || unshare(CloneFlags::CLONE_NEWNS).map_err(syserr("cannot start fuse-overlayfs"));
    crate::userns::spawn_daemon(&argv.map(String::from), &[], &[fuse.as_raw_fd()], Some(copy)).map(|_| tree)
}

/// After the container: stop the squashfuse daemons, and wait for the others, which write
/// the images back once the container's mounts are gone; the locks go last.
pub fn finish(layers: Layers) {
    layers.daemons.into_iter().for_each(crate::userns::stop_daemon);
    while !layers.locks.is_empty() && sys::waitpid(Pid::from_raw(-1)) != Err(sys::Errno::ECHILD) {}
}
