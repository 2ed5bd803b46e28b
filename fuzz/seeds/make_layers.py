"""Writes the seed inputs of the layer_unpack fuzz target into the directory given as the
only argument: uncompressed tar layers, bottom first, joined by the target's separator.
Each seed is one escape attempt of attack class T36 (plus plain layers to merge with).
Run by scripts/fuzz.sh; needs only the Python standard library."""

import io
import os
import sys
import tarfile

SEP = b"\n==LAYER==\n"


def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None, dev=(0, 0)):
    return dict(name=name, kind=kind, data=data, link=link, mode=mode, pax=pax or {}, dev=dev)


def layer(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = e["kind"]
            info.mode = e["mode"]
            info.mtime = 1_700_000_000
            info.linkname = e["link"]
            info.devmajor, info.devminor = e["dev"]
            info.pax_headers = e["pax"]
            info.size = len(e["data"]) if e["kind"] == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e["data"]) if info.size else None)
    # Drop tarfile's padding to 10 KiB: keep the blocks, then the two end-of-archive blocks.
    body = buf.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    return body + b"\0" * 1024


D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
BASE = [
    entry("bin", D, mode=0o755),
    entry("bin/sh", F, b"#!/bin/sh\n", mode=0o755),
    entry("etc", D, mode=0o755),
    entry("etc/passwd", F, b"root:x:0:0::/root:/bin/sh\n"),
    entry("dir", D, mode=0o755),
    entry("dir/keep", F, b"keep\n"),
]

SEEDS = {
    "plain": [BASE],
    "dotdot": [BASE, [entry("../../../../etc/x", F, b"escaped\n"), entry("a/../../b", F, b"b")]],
    "absolute": [[entry("/etc/x", F, b"escaped\n"), entry("/", D, mode=0o700)]],
    "symlink-root-dot": [[entry(".", S, link="/")], [entry("etc/x", F, b"through /.\n")]],
    "symlink-dir-then-file": [
        BASE,
        [entry("link", S, link="/tmp"), entry("link/escaped", F, b"x\n")],
    ],
    "symlink-up-then-file": [
        [entry("up", S, link="../../../../../.."), entry("up/tmp/escaped", F, b"x\n")],
    ],
    "hardlink-out": [BASE, [entry("h", H, link="../../../../etc/hostname")]],
    "hardlink-via-symlink": [
        BASE,
        [entry("l", S, link="/etc"), entry("h", H, link="l/passwd"), entry("h2", H, link="dir")],
    ],
    "devices-fifo-setuid": [
        [
            entry("dev", D, mode=0o755),
            entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            entry("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0)),
            entry("fifo", tarfile.FIFOTYPE),
            entry("suid", F, b"\x7fELF", mode=0o4755),
            entry("sgid-dir", D, mode=0o2777),
        ]
    ],
    "whiteouts": [
        BASE,
        [
            entry("dir/.wh..wh..opq", F),
            entry("etc/.wh.passwd", F),
            entry(".wh...", F),
            entry("dir/.wh.../../etc", F),
            entry("../.wh.outside", F),
        ],
    ],
    "whiteout-through-symlink": [
        BASE + [entry("s", S, link="/etc")],
        [entry("s/.wh.passwd", F), entry("s/.wh..wh..opq", F)],
    ],
    "xattrs": [
        [
            entry(
                "cap",
                F,
                b"x",
                pax={
                    "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\xff\xff\xff\xff",
                    "SCHILY.xattr.trusted.overlay.opaque": "y",
                    "SCHILY.xattr.user.note": "fine",
                },
            )
        ]
    ],
    "long-and-duplicate-names": [
        [
            entry("d" * 200 + "/" + "n" * 255, F, b"long"),
            entry("dup", F, b"1"),
            entry("dup", F, b"2"),
            entry("dup", D),
        ]
    ],
    "dir-replaced-by-symlink": [
        BASE,
        [entry("dir", S, link="/etc")],
        [entry("dir/after", F, b"x")],
    ],
    "symlink-loop": [[entry("a", S, link="b"), entry("b", S, link="a"), entry("a/x", F, b"x")]],
    "gnu-format": [[entry("g" * 150, F, b"gnu long name")]],
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, layers in SEEDS.items():
        fmt = tarfile.GNU_FORMAT if name == "gnu-format" else tarfile.PAX_FORMAT
        blob = SEP.join(layer(entries, fmt) for entries in layers)
        with open(os.path.join(out, f"seed-{name}"), "wb") as f:
            f.write(blob)


main()
