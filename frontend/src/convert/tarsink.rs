//! A [`Sink`] writing a POSIX (ustar + PAX) tar stream, as `tar2sqfs` reads it.
//!
//! Names are written `./path` with the root as `./`, which tar2sqfs takes as the root
//! inode (so the image's root mode and owner survive). Anything ustar cannot hold
//! (paths over 100 bytes, long link targets, xattrs, big ids, sizes or times) goes into
//! a PAX record; tar2sqfs reads `path`, `linkpath`, `size`, `uid`, `gid`, `mtime` and
//! `SCHILY.xattr.*`.

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};

use super::emit::Sink;
use super::tree::{Kind, Meta};

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal ustar field (ids).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of a 12-byte octal ustar field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Writes a tar stream to `W`.
pub struct TarSink<W: Write> {
    out: W,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> Self {
        TarSink { out }
    }

    /// The writer, after `finish`.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn entry(
        &mut self,
        path: &[u8],
        meta: &Meta,
        kind: tar::EntryType,
        size: u64,
        link: Option<&[u8]>,
        device: (u32, u32),
    ) -> Result<()> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut name = b"./".to_vec();
        name.extend_from_slice(path);
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("ustar header");
            if name.len() <= u.name.len() {
                u.name[..name.len()].copy_from_slice(&name);
            } else {
                pax.push((b"path".to_vec(), name.clone()));
                let short = &name[..u.name.len()];
                u.name.copy_from_slice(short);
            }
            if let Some(link) = link {
                if link.len() <= u.linkname.len() {
                    u.linkname[..link.len()].copy_from_slice(link);
                } else {
                    pax.push((b"linkpath".to_vec(), link.to_vec()));
                }
            }
        }
        h.set_entry_type(kind);
        h.set_mode(meta.mode & 0o7777);
        if u64::from(meta.uid) > MAX_OCTAL_7 {
            pax.push((b"uid".to_vec(), meta.uid.to_string().into_bytes()));
        } else {
            h.set_uid(meta.uid.into());
        }
        if u64::from(meta.gid) > MAX_OCTAL_7 {
            pax.push((b"gid".to_vec(), meta.gid.to_string().into_bytes()));
        } else {
            h.set_gid(meta.gid.into());
        }
        if meta.mtime < 0 || meta.mtime as u64 > MAX_OCTAL_11 {
            pax.push((b"mtime".to_vec(), meta.mtime.to_string().into_bytes()));
            h.set_mtime(0);
        } else {
            h.set_mtime(meta.mtime as u64);
        }
        if size > MAX_OCTAL_11 {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
            h.set_size(0);
        } else {
            h.set_size(size);
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(device.0)?;
            h.set_device_minor(device.1)?;
        }
        for (k, v) in meta.xattrs.iter().flat_map(|x| x.iter()) {
            if !squashfs_keeps_xattr(k) {
                crate::debug!(
                    "dropping xattr {:?} of {:?}: squashfs cannot store it",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(path)
                );
                continue;
            }
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        h.set_cksum();
        if !pax.is_empty() {
            self.write_pax(&pax)?;
        }
        self.out.write_all(h.as_bytes())?;
        Ok(())
    }

    fn write_pax(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            body.extend_from_slice(&pax_record(k, v));
        }
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("ustar header");
            let name = b"././@PaxHeader";
            u.name[..name.len()].copy_from_slice(name);
        }
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

/// Squashfs stores only these xattr namespaces; tar2sqfs (with `--no-skip`) would abort
/// on any other, e.g. `system.posix_acl_access`, which mksquashfs also leaves out.
fn squashfs_keeps_xattr(name: &[u8]) -> bool {
    [&b"user."[..], b"trusted.", b"security."]
        .iter()
        .any(|p| name.starts_with(p))
}

/// One `"<len> <key>=<value>\n"` record; `<len>` counts the whole record, itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = len.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> Result<()> {
        self.entry(path, meta, tar::EntryType::Directory, 0, None, (0, 0))
    }

    fn file(&mut self, path: &[u8], meta: &Meta, size: u64, data: &mut dyn Read) -> Result<()> {
        self.entry(path, meta, tar::EntryType::Regular, size, None, (0, 0))?;
        let copied = io::copy(&mut data.take(size), &mut self.out)
            .with_context(|| format!("copying {:?}", String::from_utf8_lossy(path)))?;
        if copied != size {
            bail!(
                "{:?} is truncated in its layer",
                String::from_utf8_lossy(path)
            );
        }
        self.pad(size)
    }

    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> Result<()> {
        self.entry(path, meta, tar::EntryType::Symlink, 0, Some(target), (0, 0))
    }

    fn special(&mut self, path: &[u8], meta: &Meta, kind: &Kind) -> Result<()> {
        let (t, dev) = match kind {
            Kind::Char { major, minor } => (tar::EntryType::Char, (*major, *minor)),
            Kind::Block { major, minor } => (tar::EntryType::Block, (*major, *minor)),
            _ => (tar::EntryType::Fifo, (0, 0)),
        };
        self.entry(path, meta, t, 0, None, dev)
    }

    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<()> {
        let mut t = b"./".to_vec();
        t.extend_from_slice(target);
        let meta = Meta {
            mode: 0o644,
            ..Meta::default()
        };
        self.entry(path, &meta, tar::EntryType::Link, 0, Some(&t), (0, 0))
    }

    fn finish(&mut self) -> Result<()> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_squashfs_cannot_store_are_left_out() {
        assert!(squashfs_keeps_xattr(b"security.capability"));
        assert!(squashfs_keeps_xattr(b"user.x"));
        assert!(!squashfs_keeps_xattr(b"system.posix_acl_access"));
        let mut sink = TarSink::new(Vec::new());
        let meta = Meta {
            xattrs: Some(Box::new(vec![(
                b"system.posix_acl_access".to_vec(),
                vec![2, 0, 0, 0],
            )])),
            ..Meta::default()
        };
        sink.file(b"f", &meta, 0, &mut &b""[..]).unwrap();
        sink.finish().unwrap();
        let bytes = sink.into_inner();
        assert!(!bytes.windows(6).any(|w| w == b"system"));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"abc"), b"12 path=abc\n");
        let long = vec![b'x'; 95];
        let r = pax_record(b"path", &long);
        assert_eq!(r.len().to_string(), String::from_utf8_lossy(&r[..3]));
    }

    #[test]
    fn long_names_links_and_xattrs_read_back_with_the_tar_crate() {
        let mut sink = TarSink::new(Vec::new());
        let long: Vec<u8> = [b"d/".repeat(80), b"file".to_vec()].concat();
        let meta = Meta {
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            mtime: 1_700_000_000,
            xattrs: Some(Box::new(vec![(b"user.k".to_vec(), b"v\0bin".to_vec())])),
        };
        sink.dir(
            b"",
            &Meta {
                mode: 0o700,
                ..Meta::default()
            },
        )
        .unwrap();
        sink.file(&long, &meta, 3, &mut &b"abc"[..]).unwrap();
        sink.symlink(b"l", &Meta::default(), &b"t/".repeat(70))
            .unwrap();
        sink.hardlink(b"h", &long).unwrap();
        sink.finish().unwrap();
        let bytes = sink.into_inner();

        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path_bytes().into_owned();
            let uid = e.header().uid().unwrap();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let xattrs: Vec<(Vec<u8>, Vec<u8>)> = match e.pax_extensions().unwrap() {
                Some(exts) => exts
                    .map(|x| x.unwrap())
                    .filter(|x| x.key_bytes().starts_with(b"SCHILY"))
                    .map(|x| (x.key_bytes().to_vec(), x.value_bytes().to_vec()))
                    .collect(),
                None => Vec::new(),
            };
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, uid, link, xattrs, data));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].0, b"./");
        assert_eq!(seen[1].0, [b"./".to_vec(), long.clone()].concat());
        assert_eq!(seen[1].1, 5_000_000);
        assert_eq!(
            seen[1].3,
            vec![(b"SCHILY.xattr.user.k".to_vec(), b"v\0bin".to_vec())]
        );
        assert_eq!(seen[1].4, b"abc");
        assert_eq!(seen[2].2.as_deref(), Some(b"t/".repeat(70).as_slice()));
        assert_eq!(
            seen[3].2.as_deref(),
            Some([b"./".to_vec(), long].concat().as_slice())
        );
    }
}
