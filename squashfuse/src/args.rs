//! The command line the starter passes, the same one squashfuse_ll takes:
//! `-f -o offset=N /dev/fd/IMAGE /dev/fd/FUSE`. Nothing else is accepted, so a mistake
//! shows up as one clear error instead of a half-working mount.

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// Byte offset of the squashfs partition in the image.
    pub offset: u64,
    /// Inherited descriptors of the image and of the mounted /dev/fuse.
    pub image_fd: i32,
    pub fuse_fd: i32,
}

/// The one accepted form, for the error message.
pub const USAGE: &str = "usage: apptainer-squashfuse -f -o offset=N /dev/fd/IMAGE /dev/fd/FUSE";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let [f, o, offset, image, fuse] = args else {
        return Err(format!("expected 5 arguments, got {}; {USAGE}", args.len()));
    };
    if f != "-f" || o != "-o" {
        return Err(format!(
            "unexpected option {:?}; {USAGE}",
            if f != "-f" { f } else { o }
        ));
    }
    let offset = offset
        .strip_prefix("offset=")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("bad mount option {offset:?}; {USAGE}"))?;
    Ok(Args {
        offset,
        image_fd: fd_path(image)?,
        fuse_fd: fd_path(fuse)?,
    })
}

fn fd_path(p: &str) -> Result<i32, String> {
    p.strip_prefix("/dev/fd/")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
        .ok_or_else(|| format!("{p:?} is not an inherited descriptor (/dev/fd/N, N > 2); {USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_starters_command_line_is_accepted() {
        let a = parse(&v(&["-f", "-o", "offset=40960", "/dev/fd/3", "/dev/fd/4"])).unwrap();
        assert_eq!(
            a,
            Args {
                offset: 40960,
                image_fd: 3,
                fuse_fd: 4
            }
        );
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in [
            &["-o", "offset=1", "/dev/fd/3", "/dev/fd/4"][..],
            &["-f", "-o", "offset=x", "/dev/fd/3", "/dev/fd/4"],
            &["-f", "-o", "ro", "/dev/fd/3", "/dev/fd/4"],
            &["-d", "-o", "offset=0", "/dev/fd/3", "/dev/fd/4"],
            &["-f", "-o", "offset=0", "/tmp/image", "/dev/fd/4"],
            &["-f", "-o", "offset=0", "/dev/fd/3", "/dev/fd/1"],
            &["-f", "-o", "offset=0", "/dev/fd/3", "/dev/fd/+4"],
        ] {
            assert!(parse(&v(bad)).is_err(), "{bad:?}");
        }
    }
}
