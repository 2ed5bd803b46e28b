#!/usr/bin/env python3
"""Turns bench/run.sh's results into docs/benchmarks.md (tables, ratios) and a PNG plot.

Usage: report.py RESULTS.tsv META.tsv OUT.md OUT.png

RESULTS rows: section, image, name, median_s, min_s, max_s, peak_rss_kib, runs, note; a row
whose median is "n/a" carries the tool's error line in `note` and is printed as such.
"""

import csv
import sys
from collections import OrderedDict

IMAGES = ["tiny", "debian"]
OURS_SETUID = "ours, setuid (apptainer exec)"
OURS_SETUID_KERNEL = "ours, setuid, kernel squashfs (allow setuid-mount squashfs = yes)"
OURS_USERNS = "ours, user namespace (exec --userns)"
OURS_SETUID_COLD = "ours, setuid, cold FUSE cache"
OURS_USERNS_COLD = "ours, user namespace, cold FUSE cache"
BWRAP_DIR = "bwrap on the unpacked dir"
FUSE_BWRAP = "squashfuse_ll + bwrap"
LOOP_FLOOR = "unshare -m + mount -o loop,ro + chroot (root)"
OURS_PULL = "apptainer pull (ours, as user)"
PIPELINE = "skopeo + umoci + mksquashfs"


def load(results_path, meta_path):
    rows = OrderedDict()
    with open(results_path, newline="") as f:
        for r in csv.reader(f, delimiter="\t"):
            if len(r) < 9:
                r += [""] * (9 - len(r))
            section, image, name, med, lo, hi, rss, runs, note = r[:9]
            rows[(section, name, image)] = {
                "med": None if med == "n/a" else float(med),
                "min": None if lo == "n/a" else float(lo),
                "max": None if hi == "n/a" else float(hi),
                "rss": int(rss) if rss not in ("", "n/a") else None,
                "runs": runs,
                "note": note,
            }
    meta = OrderedDict()
    with open(meta_path, newline="") as f:
        for r in csv.reader(f, delimiter="\t"):
            if len(r) >= 2:
                meta[r[0]] = r[1]
    return rows, meta


def esc(text):
    """Table-safe text: a | would end the cell."""
    return text.replace("|", "\\|")


def names(rows, section):
    seen = []
    for (s, n, _), _v in rows.items():
        if s == section and n not in seen:
            seen.append(n)
    return seen


def cell(row, scale, digits):
    if row is None:
        return "not run"
    if row["med"] is None:
        return "n/a (%s)" % row["note"].replace("|", "\\|")
    fmt = "%%.%df" % digits
    text = (fmt + " (" + fmt + "–" + fmt + ")") % (
        row["med"] * scale,
        row["min"] * scale,
        row["max"] * scale,
    )
    if row["note"]:
        text += " (%s)" % row["note"].replace("|", "\\|")
    return text


def ratio(rows, section, num, den, image, key="med"):
    a, b = rows.get((section, num, image)), rows.get((section, den, image))
    if not a or not b or a[key] is None or b[key] is None or b[key] == 0:
        return None
    return a[key] / b[key]


def fmt_ratio(r):
    return "n/a" if r is None else "%.2f" % r


def start_table(rows, section, title, unit_note):
    out = ["## " + title, "", unit_note, ""]
    out.append("| what | tiny | × bwrap dir | debian | × bwrap dir |")
    out.append("|---|---:|---:|---:|---:|")
    for n in names(rows, section):
        cells = []
        for img in IMAGES:
            cells.append(cell(rows.get((section, n, img)), 1000, 1))
            cells.append(fmt_ratio(ratio(rows, section, n, BWRAP_DIR, img)))
        out.append("| %s | %s |" % (esc(n), " | ".join(cells)))
    return out


def verdict(vals, limit, strict):
    """'yes' when every measured ratio is within the limit, 'no' when one is not."""
    got = [v for v in vals if v is not None]
    if limit is None or not got:
        return ""
    ok = all(v < limit if strict else v <= limit for v in got)
    return "yes" if ok else "**no**"


def goals_table(rows):
    out = ["## Ratios (from the same run) and the goals of issue 9", ""]
    out.append("Ratios of medians; in brackets the ratio of the fastest runs, which other jobs on a "
               "shared machine disturb least. *met* is `yes` when the goal holds, by medians, for "
               "every image measured.")
    out.append("")
    out.append("| ratio | tiny | debian | goal | met |")
    out.append("|---|---:|---:|---|---|")
    specs = [
        ("start: setuid mode (shipped conf) / loop mount + chroot", "start", OURS_SETUID, LOOP_FLOOR, "≤ 1.0", 1.0, False),
        ("start: setuid mode, kernel squashfs / loop mount + chroot", "start", OURS_SETUID_KERNEL, LOOP_FLOOR, "≤ 1.0", 1.0, False),
        ("start: user-namespace mode / squashfuse_ll + bwrap", "start", OURS_USERNS, FUSE_BWRAP, "≤ 1.0", 1.0, False),
        ("start, cold FUSE cache: setuid mode (shipped conf) / loop mount + chroot", "start", OURS_SETUID_COLD, LOOP_FLOOR, "≤ 1.0", 1.0, False),
        ("start, cold FUSE cache: user-namespace mode / squashfuse_ll + bwrap", "start", OURS_USERNS_COLD, FUSE_BWRAP, "≤ 1.0", 1.0, False),
        ("start: setuid mode / bwrap on the dir", "start", OURS_SETUID, BWRAP_DIR, "where the time to remove lies", None, False),
        ("start: user-namespace mode / bwrap on the dir", "start", OURS_USERNS, BWRAP_DIR, "where the time to remove lies", None, False),
        ("50 parallel: setuid mode / bwrap on the dir", "parallel", OURS_SETUID, BWRAP_DIR, "", None, False),
        ("50 parallel: user-namespace mode / bwrap on the dir", "parallel", OURS_USERNS, BWRAP_DIR, "", None, False),
        ("pull: ours / skopeo + umoci + mksquashfs", "pull", OURS_PULL, PIPELINE, "≤ 0.4", 0.4, False),
        ("pull: ours / ch-image pull", "pull", OURS_PULL, "ch-image pull (as user, TLS registry)", "< 1.0", 1.0, True),
        ("pull: ours / podman pull", "pull", OURS_PULL, "podman pull (as root)", "< 1.0", 1.0, True),
    ]
    for label, section, num, den, goal, limit, strict in specs:
        rs = [ratio(rows, section, num, den, img) for img in IMAGES]
        cells = []
        for img, r in zip(IMAGES, rs):
            m = ratio(rows, section, num, den, img, "min")
            cells.append(fmt_ratio(r) + ("" if r is None or m is None else " (%.2f)" % m))
        out.append("| %s | %s | %s | %s | %s |" % (label, cells[0], cells[1], goal,
                                                   verdict(rs, limit, strict)))
    # Scaling: how much longer 50 at once take than one alone, ours next to bwrap's.
    scale = {}
    for n in [BWRAP_DIR, OURS_SETUID, OURS_SETUID_KERNEL, OURS_USERNS, OURS_SETUID_COLD, OURS_USERNS_COLD]:
        vals = []
        for img in IMAGES:
            p, s = rows.get(("parallel", n, img)), rows.get(("start", n, img))
            ok = p and s and p["med"] is not None and s["med"] is not None
            vals.append(p["med"] / s["med"] if ok else None)
        scale[n] = vals
        met = ""
        if n != BWRAP_DIR:
            pairs = [(a, b) for a, b in zip(vals, scale[BWRAP_DIR]) if a is not None and b is not None]
            if pairs:
                met = "yes" if all(a <= b for a, b in pairs) else "**no**"
        txt = ["n/a" if v is None else "%.1f" % v for v in vals]
        goal = "ours no worse than bwrap's" if n != BWRAP_DIR else "(bwrap's scaling)"
        out.append("| 50 parallel / 1 sequential: %s | %s | %s | %s | %s |" % (n, txt[0], txt[1], goal, met))
    rss = rows.get(("pull", OURS_PULL, "debian"))
    if rss and rss["rss"]:
        mib = rss["rss"] / 1024
        out.append("| peak RSS of our debian pull (MiB) | | %.0f | < 100 | %s |" % (mib, "yes" if mib < 100 else "**no**"))
    else:
        out.append("| peak RSS of our debian pull (MiB) | | n/a | < 100 | |")
    return out


def pull_table(rows):
    out = ["## Pull + convert from the local registry, cold cache", ""]
    out.append("Seconds, median (min–max); peak RSS is the largest resident set of any process of the command.")
    out.append("")
    out.append("| what | tiny (s) | debian (s) | peak RSS, debian (MiB) |")
    out.append("|---|---:|---:|---:|")
    for n in names(rows, "pull"):
        t = cell(rows.get(("pull", n, "tiny")), 1, 2)
        d = rows.get(("pull", n, "debian"))
        rss = "%.0f" % (d["rss"] / 1024) if d and d["rss"] else ""
        out.append("| %s | %s | %s | %s |" % (esc(n), t, cell(d, 1, 2), rss))
    return out


def build_table(rows):
    out = ["## Build of a small definition file", ""]
    b = [(k, v) for k, v in rows.items() if k[0] == "build"]
    if not b:
        return out + ["not available yet", ""]
    out.append("| what | seconds |")
    out.append("|---|---:|")
    for (_, n, _), v in b:
        if v["med"] is None:
            out.append("| %s | not available yet: %s |" % (n, v["note"].replace("|", "\\|")))
        else:
            out.append("| %s | %.2f |" % (n, v["med"]))
    return out


def write_markdown(rows, meta, path):
    out = ["# Benchmarks", ""]
    out.append(
        "Produced by `sudo bench/run.sh` (see bench/README.md) on %s. Every number on this page "
        "comes from that one run; a tool that failed shows `n/a` with its error line." % meta.get("date", "?")
    )
    out.append("")
    out.append("## Machine and versions")
    out.append("")
    if "warning" in meta:
        out.append("**Warning: %s.**" % meta["warning"])
        out.append("")
    for key in ["kernel", "cores", "load at start", "load at end", "priority", "cpu", "memory", "os", "filesystem", "ours", "installed", "versions", "registry",
                "image-tiny", "image-debian", "sif-tiny", "sif-debian", "runs", "setuid image mounts", "FUSE data cache"]:
        if key in meta:
            out.append("- %s: %s" % (key, meta[key]))
    out.append("")
    out += goals_table(rows)
    out.append("")
    out += start_table(rows, "start", "Start latency of `/bin/true` (sequential)",
                       "Milliseconds, median (min–max) over the runs after warm-up; × bwrap dir is the "
                       "ratio of medians to `bwrap` on the unpacked directory.")
    out.append("")
    out += start_table(rows, "parallel", "50 parallel starts (wall time until the last one exits)",
                       "Milliseconds for the whole batch of 50, median (min–max) over the batches.")
    out.append("")
    out += pull_table(rows)
    out.append("")
    out += build_table(rows)
    out.append("")
    out.append("## How each row is measured")
    out.append("")
    out += HOW
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    import os
    os.replace(path + ".tmp", path)


HOW = [
    "- Start rows run `/bin/true` in the image; `tiny` is the test fixture busybox, `debian` the "
    "three-layer debootstrap image. All tools use the same squashfs (made by the peer pipeline "
    "below, gzip) or the directory `umoci unpack` made from it; our SIF wraps that same squashfs.",
    "- ours: `apptainer exec [--userns] IMG.sif /bin/true` as a plain user (setuid starter installed). "
    "Setuid mode runs the shipped apptainer.conf (`allow setuid-mount squashfs = iflimited`: the SIF is served by "
    "apptainer-squashfuse as the caller); its kernel squashfs row sets `allow setuid-mount squashfs = yes` for "
    "its own runs (a shared read-only loop device and kernel squashfs).",
    "- ours, cold FUSE cache: the same commands, with the bench user's FUSE data cache "
    "(`/dev/shm/apptainer-squashfuse-<uid>`, decompressed file data kept across starts by "
    "apptainer-squashfuse) emptied by hyperfine's `--prepare` before every timed start or batch; "
    "the other rows of ours run with the cache their warm-up runs filled, as repeated starts of "
    "an image on a node do.",
    "- bwrap: `bwrap --unshare-user --unshare-pid --ro-bind ROOT / --proc /proc --dev /dev /bin/true` "
    "as a plain user; squashfuse_ll + bwrap mounts the squashfs on a fresh directory, runs the same "
    "bwrap on it and unmounts (`fusermount3 -u`).",
    "- ch-run: `ch-run ROOT -- /bin/true` on the directory, and on the `.sqfs` (its built-in squashfuse), "
    "as a plain user.",
    "- crun / runc: `crun|runc run --bundle B ID` as root on umoci's bundle (args set to /bin/true, "
    "read-only root).",
    "- floor: `unshare -m sh -c 'mount -o loop,ro IMG.sqfs M && chroot M /bin/true'` as root.",
    "- 50 parallel: the same command started 50 times at once from one shell, which waits for all.",
    "- Pull: cold caches every run. ours: `apptainer pull --no-https` with an empty `APPTAINER_CACHEDIR`, "
    "as a plain user. Pipeline: `skopeo copy` to an OCI dir, `umoci unpack`, `mksquashfs` with its "
    "defaults (gzip, all cores), as root, each stage timed with `/usr/bin/time`. `ch-image pull` (as "
    "a plain user, empty storage) talks to a second docker-registry with TLS on 127.0.0.1:5443 "
    "serving the same images, because ch-image 0.31 speaks only HTTPS; `podman pull` runs as root "
    "into an empty storage root (overlay driver). ch-image and podman stop at an unpacked tree; "
    "neither makes a squashfs.",
    "- Floors: `gzip -dc` of the fetched layers to /dev/null, and `gzip -dc | tar -x` of each layer "
    "in turn into one directory (no whiteouts applied), as root.",
    "- Build: `apptainer build --no-https x.sif x.def` as root, the def bootstraps from the local "
    "registry's busybox and runs one `%post` line.",
    "- hyperfine runs each start row as `sh FILE` with `--shell=none`, so every start time includes "
    "one start of `sh` (the `host:` row: sh running /bin/true with no container) and nothing is "
    "subtracted. Pulls are timed with `/usr/bin/time` (10 ms resolution). Other jobs share this "
    "2-core machine: compare rows of the same run, and prefer the ratios of the fastest runs.",
]


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.transforms as transforms

    panels = [("start", "start /bin/true (ms)", 1000), ("parallel", "50 parallel starts (ms)", 1000),
              ("pull", "pull + convert, cold cache (s)", 1)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 15))
    for ax, (section, title, scale) in zip(axes, panels):
        ns = names(rows, section)
        height = 0.38
        # n/a labels sit at the left edge of the axes, whatever the data range.
        edge = transforms.blended_transform_factory(ax.transAxes, ax.transData)
        for j, img in enumerate(IMAGES):
            if not any((section, n, img) in rows for n in ns):
                continue
            ys, meds, errs = [], [], [[], []]
            for i, n in enumerate(ns):
                r = rows.get((section, n, img))
                y = i + (j - 0.5) * height
                if r is None:
                    continue
                if r["med"] is None:
                    ax.text(0.005, y, "n/a (%s)" % img, va="center", fontsize=7, color="C%d" % j, transform=edge)
                    continue
                ys.append(y)
                meds.append(r["med"] * scale)
                errs[0].append((r["med"] - r["min"]) * scale)
                errs[1].append((r["max"] - r["med"]) * scale)
            ax.barh(ys, meds, height=height, xerr=errs, color="C%d" % j, label=img, capsize=2)
        ax.set_yticks(range(len(ns)))
        ax.set_yticklabels(ns, fontsize=8)
        ax.set_ylim(len(ns) - 0.5, -0.5)
        ax.set_xscale("log")
        ax.set_title(title + ", median with min–max, log scale")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.subplots_adjust(left=0.33, right=0.98, top=0.97, bottom=0.03, hspace=0.25)
    fig.savefig(path, dpi=80)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: report.py RESULTS.tsv META.tsv OUT.md OUT.png")
    rows, meta = load(sys.argv[1], sys.argv[2])
    write_markdown(rows, meta, sys.argv[3])
    plot(rows, sys.argv[4])


if __name__ == "__main__":
    main()
