#!/bin/bash
# Pull + convert of one image from the local registry, cold cache, side by side:
#   ours:      apptainer build --disable-cache out.sif docker://REF   (layers streamed into tar2sqfs)
#   reference: skopeo copy + umoci unpack + mksquashfs (gzip), the Apptainer-style pipeline
# Prints wall time, CPU time and peak RSS of each step and the ratio ours / reference.
# Nothing here asserts a time; run it on a quiet machine and read the numbers.
#
#   sudo bench/pull_convert.sh [REF] [RUNS]
#     REF   image in the local registry (default 127.0.0.1:5000/test/multilayer:latest)
#     RUNS  repetitions (default 3); the median is reported
# Environment: PREFIX (/opt/apptainer-test) of the installed apptainer; BENCH_USER (apptest)
# runs our pull unprivileged, as users do.
set -u -o pipefail

REF=${1:-127.0.0.1:5000/test/multilayer:latest}
RUNS=${2:-3}
PREFIX=${PREFIX:-/opt/apptainer-test}
APPTAINER=$PREFIX/bin/apptainer
BENCH_USER=${BENCH_USER:-apptest}

die() { echo "pull_convert: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (umoci unpack keeps ownership as root; our pull runs as $BENCH_USER)"
for t in skopeo umoci mksquashfs /usr/bin/time "$APPTAINER"; do
    command -v "$t" > /dev/null || die "$t is required"
done
id -u "$BENCH_USER" > /dev/null 2>&1 || die "user $BENCH_USER is missing (scripts/test-setup.sh creates it)"

WORK=$(mktemp -d /var/tmp/pull-convert.XXXXXX)
chmod 1777 "$WORK"
trap 'rm -rf "$WORK"' EXIT

# measure LABEL USER CMD...: runs CMD once, appends "label wall cpu rss_kb" to $WORK/raw.
measure() {
    local label=$1 user=$2; shift 2
    local out=$WORK/time.out
    rm -f "$out"
    if [ "$user" = root ]; then
        /usr/bin/time -o "$out" -f '%e %U %S %M' "$@" > /dev/null 2> "$WORK/err" \
            || die "$label failed: $(tail -n 1 "$WORK/err")"
    else
        runuser -u "$user" -- /usr/bin/time -o "$out" -f '%e %U %S %M' "$@" > /dev/null 2> "$WORK/err" \
            || die "$label failed: $(tail -n 1 "$WORK/err")"
    fi
    read -r wall user_s sys_s rss < "$out"
    echo "$label $wall $(echo "$user_s + $sys_s" | bc) $rss" >> "$WORK/raw"
}

for i in $(seq "$RUNS"); do
    d=$WORK/run$i
    install -d -m 0777 "$d/ours" "$d/ref"
    sync; echo 3 > /proc/sys/vm/drop_caches
    measure ours "$BENCH_USER" env -i PATH=/usr/bin:/bin HOME="$d/ours" \
        APPTAINER_CACHEDIR="$d/ours/cache" APPTAINER_TMPDIR="$d/ours" \
        "$APPTAINER" build --no-https --disable-cache "$d/ours/out.sif" "docker://$REF"
    sync; echo 3 > /proc/sys/vm/drop_caches
    measure skopeo root skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$d/ref/oci:latest"
    measure umoci root umoci unpack --image "$d/ref/oci:latest" "$d/ref/bundle"
    measure mksquashfs root mksquashfs "$d/ref/bundle/rootfs" "$d/ref/out.sqfs" -noappend -no-progress -comp gzip
    echo "run $i: SIF $(stat -c %s "$d/ours/out.sif") bytes, reference squashfs $(stat -c %s "$d/ref/out.sqfs") bytes" >> "$WORK/sizes"
    rm -rf "$d"
done

python3 - "$WORK/raw" "$RUNS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, wall, cpu, rss = line.split()
    rows.setdefault(label, []).append((float(wall), float(cpu), int(rss)))
def med(label, i):
    return statistics.median(r[i] for r in rows[label])
print(f"{'step':<34}{'wall s':>9}{'cpu s':>9}{'peak RSS MiB':>14}")
for label in ["ours", "skopeo", "umoci", "mksquashfs"]:
    print(f"{label:<34}{med(label,0):>9.2f}{med(label,1):>9.2f}{med(label,2)/1024:>14.1f}")
ref = sum(med(l, 0) for l in ["skopeo", "umoci", "mksquashfs"])
print(f"{'skopeo + umoci + mksquashfs':<34}{ref:>9.2f}")
print(f"ours / reference pipeline: {med('ours',0)/ref:.2f} (goal <= 0.40), median of {sys.argv[2]} run(s)")
EOF
cat "$WORK/sizes"
