//! A blob being downloaded that another thread can read while it grows, so the conversion
//! reads a layer's headers during its download instead of after it.
//!
//! The writer reports each step ([`Growing::started`], [`Growing::grew`],
//! [`Growing::finished`], [`Growing::failed`]); a [`GrowingReader`] returns only bytes
//! already written, waits for more, and ends at the verified end of the blob. Nothing
//! read this way is trusted before the download is verified: the reader fails when the
//! download fails, restarts, or is abandoned, and the caller then reads the blob again
//! from the cache the ordinary way.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Where one blob's download stands.
#[derive(Default)]
struct State {
    /// The temp file being written (known once the download starts).
    temp: Option<PathBuf>,
    written: u64,
    end: End,
}

#[derive(Default, PartialEq)]
enum End {
    #[default]
    Open,
    /// Verified and filed in the cache under this path.
    Done(PathBuf),
    Failed,
}

/// One blob's download, shared between its writer and one reader.
#[derive(Default)]
pub struct Growing {
    state: Mutex<State>,
    changed: Condvar,
}

impl Growing {
    pub fn new() -> Arc<Growing> {
        Arc::new(Growing::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        if s.end == End::Open {
            f(&mut s);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The download writes `temp` from its start. A second start (a retried transfer
    /// rewrites the file) fails the reader: bytes it returned may be gone.
    pub fn started(&self, temp: &Path) {
        self.update(|s| {
            if s.temp.is_some() {
                s.end = End::Failed;
            } else {
                s.temp = Some(temp.to_path_buf());
            }
        });
    }

    /// `count` bytes are in the temp file.
    pub fn grew(&self, count: u64) {
        self.update(|s| s.written = count);
    }

    /// The blob is complete and verified at `path` (renamed from the temp file, or
    /// already in the cache).
    pub fn finished(&self, path: &Path, size: u64) {
        self.update(|s| {
            s.written = size;
            s.end = End::Done(path.to_path_buf());
        });
    }

    /// The download failed or was abandoned; a reader gets an error. No effect after
    /// `finished`.
    pub fn failed(&self) {
        self.update(|s| s.end = End::Failed);
    }

    /// A reader from the blob's first byte.
    pub fn reader(self: &Arc<Self>) -> GrowingReader {
        GrowingReader {
            growing: Arc::clone(self),
            file: None,
            pos: 0,
        }
    }
}

/// Reads a [`Growing`] blob, waiting for bytes not yet written.
pub struct GrowingReader {
    growing: Arc<Growing>,
    file: Option<File>,
    pos: u64,
}

impl GrowingReader {
    /// Waits until bytes past `pos` exist (their count and the file to open), the end is
    /// reached (`None`), or the download failed.
    fn wait_for_data(&self) -> io::Result<Option<(u64, Option<PathBuf>)>> {
        let g = &self.growing;
        let mut s = g.lock();
        loop {
            if s.end == End::Failed {
                return Err(io::Error::other("the layer download did not complete"));
            }
            if s.written > self.pos {
                // The temp file until the rename; after it, only the final name exists.
                let path = match &s.end {
                    End::Done(p) => Some(p.clone()),
                    _ => s.temp.clone(),
                };
                return Ok(Some((s.written - self.pos, path)));
            }
            if matches!(s.end, End::Done(_)) {
                return Ok(None);
            }
            s = g.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some((available, path)) = self.wait_for_data()? else {
            return Ok(0);
        };
        if self.file.is_none() {
            let path = path.ok_or_else(|| io::Error::other("layer file unknown"))?;
            // An fd opened on the temp file stays valid across the rename.
            self.file = Some(File::open(path)?);
        }
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let file = self.file.as_ref().expect("opened above");
        let n = file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::other("layer file shorter than written"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reader_follows_the_writer_to_the_verified_end() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".tmp-blob");
        let done = dir.path().join("blob");
        let g = Growing::new();
        let mut reader = g.reader();
        let writer = {
            let g = Arc::clone(&g);
            let (temp, done) = (temp.clone(), done.clone());
            std::thread::spawn(move || {
                let mut f = File::create(&temp).unwrap();
                g.started(&temp);
                let mut count = 0;
                for chunk in [&b"hello "[..], b"growing ", b"world"] {
                    f.write_all(chunk).unwrap();
                    count += chunk.len() as u64;
                    g.grew(count);
                    std::thread::yield_now();
                }
                std::fs::rename(&temp, &done).unwrap();
                g.finished(&done, count);
            })
        };
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, "hello growing world");
    }

    #[test]
    fn a_failed_or_restarted_download_fails_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".tmp");
        std::fs::write(&temp, b"abc").unwrap();
        let g = Growing::new();
        g.started(&temp);
        g.grew(3);
        g.started(&temp);
        let mut buf = Vec::new();
        assert!(g.reader().read_to_end(&mut buf).is_err());

        let g = Growing::new();
        g.failed();
        assert!(g.reader().read_to_end(&mut buf).is_err());
    }

    #[test]
    fn a_blob_already_cached_reads_from_its_final_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"cached").unwrap();
        let g = Growing::new();
        g.finished(&path, 6);
        g.failed(); // too late: no effect
        let mut got = Vec::new();
        g.reader().read_to_end(&mut got).unwrap();
        assert_eq!(got, b"cached");
    }
}
