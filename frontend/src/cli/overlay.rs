//! `apptainer overlay create`: a writable ext3 overlay image (`/upper` and `/work` at its
//! root), either as a new file or added to an existing SIF as an overlay partition. The file
//! system is made by `mkfs.ext3 -d` (e2fsprogs) from a staged directory, so no mount and no
//! privilege is needed. Output appears only when complete: a new image is renamed into place,
//! and a failed SIF append is cut back by the SIF writer.

use super::GlobalOpts;
use anyhow::{bail, Context, Result};
use sif::write::{add_object, DataSource, DescriptorInput};
use sif::{Arch, DataType, FsType, PartType};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Smallest overlay the reference accepts, in MiB.
const MIN_SIZE_MIB: u64 = 64;
const MKFS: &str = "mkfs.ext3";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: OverlayCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum OverlayCmd {
    /// Create EXT3 writable overlay image
    Create(CreateArgs),
}

/// `apptainer overlay create [create options...] <path to image>`
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// size of the EXT3 writable overlay in MiB
    #[arg(short = 's', long = "size", default_value_t = MIN_SIZE_MIB)]
    pub size: u64,
    /// create a sparse overlay image
    #[arg(short = 'S', long = "sparse")]
    pub sparse: bool,
    /// directory to create as part of the overlay layout
    #[arg(long = "create-dir", value_name = "DIR")]
    pub create_dir: Vec<String>,
    /// create overlay image owned by root in the fakeroot user namespace
    #[arg(short = 'f', long = "fakeroot")]
    pub fakeroot: bool,
    /// the overlay image to create, or the SIF image to add an overlay partition to
    pub image: PathBuf,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    match args.cmd {
        OverlayCmd::Create(a) => create(&a),
    }
}

/// What the target path is now.
#[derive(Debug, PartialEq)]
enum Target {
    New,
    /// A SIF to which the overlay is appended; `arch` is its primary partition's.
    Sif {
        arch: Arch,
    },
}

fn create(a: &CreateArgs) -> Result<()> {
    if a.size < MIN_SIZE_MIB {
        bail!("image size must be equal or greater than {MIN_SIZE_MIB} MiB");
    }
    let dirs = a
        .create_dir
        .iter()
        .map(|d| upper_relative(d))
        .collect::<Result<Vec<_>>>()?;
    let target = inspect_target(&a.image)?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let search: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    let mkfs = find_mkfs(&search)?;
    let parent = match a.image.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The ext3 file is made next to the target so the final rename stays on one file system.
    let tmp = tempfile::Builder::new()
        .prefix(".overlay-")
        .suffix(".ext3.tmp")
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a temporary file in {:?}", parent.display()))?;
    allocate(tmp.as_file(), a.size, a.sparse)
        .with_context(|| format!("cannot allocate {} MiB for the overlay", a.size))?;
    let layout = tempfile::Builder::new()
        .prefix("overlay-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    stage_layout(layout.path(), &dirs)?;
    run_mkfs(&mkfs, layout.path(), tmp.path(), a.fakeroot, a.sparse)?;
    match target {
        Target::New => {
            tmp.persist_noclobber(&a.image)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot create {:?}", a.image.display()))?;
        }
        Target::Sif { arch } => {
            let data = File::open(tmp.path()).context("cannot reopen the overlay file system")?;
            let input = DescriptorInput::new(DataType::Partition, DataSource::File(data))
                .partition(FsType::Ext3, PartType::Overlay, arch);
            add_object(&a.image, input).with_context(|| {
                format!(
                    "while adding ext3 overlay partition to {:?}",
                    a.image.display()
                )
            })?;
        }
    }
    Ok(())
}

/// A `--create-dir` value as a path relative to `/upper`; `..` could leave the layout.
fn upper_relative(dir: &str) -> Result<PathBuf> {
    let p = Path::new(dir);
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("--create-dir {dir:?}: directory would be created outside of the overlay layout")
            }
        }
    }
    if rel.as_os_str().is_empty() {
        bail!("--create-dir {dir:?}: not a directory name");
    }
    Ok(rel)
}

/// Refuses what the reference refuses: an existing ext3 image, a non-SIF file, a signed or
/// encrypted SIF, a SIF that already has a writable overlay.
fn inspect_target(path: &Path) -> Result<Target> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::New),
        Err(e) => bail!("cannot open {:?}: {e}", path.display()),
    };
    if is_ext_fs(&mut f) {
        bail!("EXT3 overlay image {:?} already exists", path.display());
    }
    f.seek(SeekFrom::Start(0))?;
    let Ok(img) = sif::Image::load(&mut f) else {
        bail!(
            "{:?} exists and is not a SIF image: the destination must be a SIF image or a new file",
            path.display()
        );
    };
    let d = img.descriptors();
    let mut arch = None;
    for desc in d {
        if desc.data_type == DataType::Signature {
            bail!(
                "SIF image {:?} is signed: could not add writable overlay",
                path.display()
            );
        }
        let Some(part) = desc.partition() else {
            continue;
        };
        if desc.is_primary_partition() {
            if matches!(part.fs_type, FsType::EncryptedSquashfs) {
                bail!(
                    "encrypted root FS partition in {:?}: could not add writable overlay",
                    path.display()
                );
            }
            arch = Some(part.arch);
        }
        if part.part_type == PartType::Overlay && part.fs_type == FsType::Ext3 {
            bail!(
                "a writable overlay partition already exists in {:?} (ID: {}), delete it first with \"apptainer sif del {} {}\"",
                path.display(),
                desc.id,
                desc.id,
                path.display()
            );
        }
    }
    let arch = arch
        .filter(|a| !matches!(a, Arch::Unknown(_)))
        .or_else(Arch::host)
        .unwrap_or(Arch::Amd64);
    // Fail before the (slow) file system is made if the SIF cannot be extended.
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write to SIF image {:?}", path.display()))?;
    Ok(Target::Sif { arch })
}

/// The ext2/3/4 superblock magic 0xEF53 at byte 1080.
fn is_ext_fs(f: &mut File) -> bool {
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(1080)).is_ok()
        && f.read_exact(&mut magic).is_ok()
        && magic == [0x53, 0xEF]
}

/// `mkfs.ext3` from PATH (plus the sbin directories a plain user's PATH may lack), and it
/// must know `-d`, which older e2fsprogs do not.
fn find_mkfs(dirs: &[PathBuf]) -> Result<PathBuf> {
    let Some(mkfs) = dirs.iter().map(|d| d.join(MKFS)).find(|p| p.is_file()) else {
        bail!("{MKFS} not found: install e2fsprogs to create overlay images");
    };
    // `mkfs.ext3 --help` exits non-zero and prints its usage on stderr.
    let usage = Command::new(&mkfs)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {:?}", mkfs.display()))?;
    if !String::from_utf8_lossy(&usage.stderr).contains("[-d ") {
        bail!("{MKFS} seems too old as it doesn't support -d, this is required to create the overlay layout");
    }
    Ok(mkfs)
}

/// Sizes the file: sparse leaves holes, otherwise every block is written so the space is
/// really reserved (as the reference's `dd if=/dev/zero`).
fn allocate(f: &File, size_mib: u64, sparse: bool) -> std::io::Result<()> {
    if sparse {
        return f.set_len(size_mib << 20);
    }
    let zeros = vec![0u8; 1 << 20];
    let mut w = std::io::BufWriter::new(f);
    for _ in 0..size_mib {
        w.write_all(&zeros)?;
    }
    w.flush()
}

/// `upper/`, `work/` and the `--create-dir` directories under `upper/`. Directories are 0755
/// unless the caller's ids do not fit ext3's 16-bit owner fields: then 0777, so the caller
/// can still write (the reference does the same).
fn stage_layout(root: &Path, dirs: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let big = nix::unistd::getuid().as_raw() > 65535 || nix::unistd::getgid().as_raw() > 65535;
    let mode = if big { 0o777 } else { 0o755 };
    let upper = root.join("upper");
    let mut all = vec![upper.clone(), root.join("work")];
    all.extend(dirs.iter().map(|d| upper.join(d)));
    for dir in &all {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("cannot create {:?}", dir.display()))?;
        // The umask must not narrow the mode: chmod after creation.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {:?}", dir.display()))?;
    }
    for d in dirs {
        // Parents created by `recursive` got the umask'd mode: fix each component.
        let mut p = upper.clone();
        for c in d.components() {
            p.push(c);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Makes the file system from `layout`. With `--fakeroot` mkfs runs in a user namespace
/// where the caller is root, so it reads the staged directories as owned by 0:0 and the
/// overlay's upper layer belongs to root inside a fakeroot container.
fn run_mkfs(mkfs: &Path, layout: &Path, image: &Path, fakeroot: bool, sparse: bool) -> Result<()> {
    let mut cmd = if fakeroot {
        let mut c = Command::new("unshare");
        c.args(["--map-root-user", "--"]).arg(mkfs);
        c
    } else {
        Command::new(mkfs)
    };
    cmd.args(["-q", "-F"]);
    if !sparse {
        // mkfs discards (punches holes in) an image file by default, which would undo the
        // allocation `allocate` just made.
        cmd.args(["-E", "nodiscard"]);
    }
    cmd.arg("-d").arg(layout).arg(image);
    let out = cmd.output().with_context(|| format!("cannot run {MKFS}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("").trim();
        bail!("{MKFS} failed to create the overlay file system: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_stays_inside_upper() {
        assert_eq!(upper_relative("/data/x").unwrap(), PathBuf::from("data/x"));
        assert_eq!(upper_relative("a/./b").unwrap(), PathBuf::from("a/b"));
        assert!(upper_relative("../etc").is_err());
        assert!(upper_relative("a/../../b").is_err());
        assert!(upper_relative("/").is_err());
    }

    #[test]
    fn a_missing_mkfs_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let e = find_mkfs(&[empty.path().to_path_buf()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mkfs.ext3 not found: install e2fsprogs to create overlay images"
        );
    }

    #[test]
    fn a_missing_target_is_new_and_a_text_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            inspect_target(&dir.path().join("o.img")).unwrap(),
            Target::New
        );
        let txt = dir.path().join("t.txt");
        std::fs::write(&txt, "hello").unwrap();
        let e = inspect_target(&txt).unwrap_err().to_string();
        assert!(e.contains("not a SIF image"), "{e}");
    }
}
