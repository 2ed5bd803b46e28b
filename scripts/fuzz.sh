#!/bin/sh
# Builds the cargo-fuzz targets in fuzz/ and runs each for a fixed time, one after the
# other; exits non-zero if any target crashes, hangs (an input over 10 s) or runs out of
# memory. The corpus of each target (fuzz/corpus/TARGET, not committed) is seeded first
# from the test fixtures: the SIF test images, the shipped apptainer.conf, the text samples
# in fuzz/seeds/, tar layers written by fuzz/seeds/make_layers.py (python3) and the small
# layers of the escape and multilayer fixture images (scripts/test-setup.sh). A crashing
# input is kept in fuzz/artifacts/TARGET/; the log of each run is fuzz/logs/TARGET.log.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default 600 seconds, every target)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Reproduce a crash: cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...
# Findings are kept as tests: cargo test --manifest-path fuzz/Cargo.toml --test regressions
set -eu

SECONDS_PER_TARGET=${1:-600}
[ $# -gt 0 ] && shift
case $SECONDS_PER_TARGET in
    '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
FUZZ=$ROOT/fuzz
TESTDATA=${APPTAINER_TESTDATA:-$ROOT/../shared/testdata}
FIXTURES=${APPTAINER_TEST_STATE:-/var/lib/apptainer-test}/fixtures
# The conf crate bakes the prefix in; keep the value every other build here uses.
export APPTAINER_PREFIX="${APPTAINER_PREFIX:-/opt/apptainer-test}"

cargo +nightly fuzz --help >/dev/null 2>&1 || {
    echo "ERROR: cargo-fuzz or the nightly toolchain is missing (cargo install cargo-fuzz)" >&2
    exit 2
}

cd "$FUZZ"
if [ $# -gt 0 ]; then
    TARGETS=$*
else
    TARGETS=$(cargo +nightly fuzz list | tr '\n' ' ')
fi

mkdir -p logs
echo "building fuzz targets: $TARGETS"
for t in $TARGETS; do
    cargo +nightly fuzz build --release "$t" >logs/build.log 2>&1 || {
        cat logs/build.log >&2
        exit 1
    }
done

# seed TARGET FILE...: copies the existing files into the target's corpus.
seed() {
    dir=corpus/$1
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        [ -f "$f" ] && cp "$f" "$dir/seed-$(basename "$f")"
    done
    return 0
}

# Longest input the fuzzer makes: a SIF needs room for its 48-slot descriptor table.
max_len() {
    case $1 in
        sif_reader) echo 65536 ;;
        conf_parser) echo 16384 ;;
        layer_unpack) echo 65536 ;;
        squashfs_reader) echo 65536 ;;
        *) echo 8192 ;;
    esac
}

# seed_layers: hostile tar layers, and the fixture images' small gzip layers uncompressed.
seed_layers() {
    dir=corpus/layer_unpack
    mkdir -p "$dir"
    if command -v python3 >/dev/null 2>&1; then
        python3 seeds/make_layers.py "$dir"
    else
        echo "WARNING: python3 missing: layer_unpack starts without its hostile seeds" >&2
    fi
    for blob in "$FIXTURES"/oci/escape/blobs/sha256/* "$FIXTURES"/oci/multilayer/blobs/sha256/*; do
        if [ ! -f "$blob" ] || [ "$(wc -c <"$blob")" -ge 65536 ]; then
            continue
        fi
        gzip -dc <"$blob" >"$dir/tmp.tar" 2>/dev/null &&
            [ "$(wc -c <"$dir/tmp.tar")" -le 65536 ] &&
            mv "$dir/tmp.tar" "$dir/seed-fixture-$(basename "$blob" | cut -c1-16)"
        rm -f "$dir/tmp.tar"
    done
}

# seed_squashfs: small images of a tree with most entry kinds, in the layouts the reader
# must handle (gzip and zstd, compressed and plain tables, with and without fragments).
seed_squashfs() {
    dir=corpus/squashfs_reader
    mkdir -p "$dir"
    if ! command -v mksquashfs >/dev/null 2>&1; then
        echo "WARNING: mksquashfs missing: squashfs_reader starts without seeds" >&2
        return 0
    fi
    src=$(mktemp -d)
    mkdir -p "$src/d/e"
    echo hi >"$src/a"
    ln -s a "$src/l"
    ln "$src/a" "$src/d/e/h"
    head -c 9000 /dev/urandom >"$src/r"
    yes abc | head -c 20000 >"$src/t"
    for i in $(seq 1 40); do echo "$i" >"$src/d/file-$i"; done
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.x", b"v" * 40)' "$src/a" || true
    fi
    n=0
    for flags in "" "-noI -noD -noF -noX" "-no-fragments" "-comp zstd"; do
        n=$((n + 1))
        # shellcheck disable=SC2086 # the flags are meant to split
        mksquashfs "$src" "$dir/seed-$n" -b 4096 -quiet -noappend $flags \
            -p "dev c 600 0 0 1 3" >/dev/null 2>&1 || true
    done
    rm -rf "$src"
}

seed_all() {
    seed sif_reader "$TESTDATA"/sif/*.sif
    seed conf_parser "$ROOT/etc/apptainer.conf" seeds/conf_parser/*
    seed plan_validate seeds/plan_validate/*
    seed deffile_parser seeds/deffile_parser/*
    seed_layers
    seed_squashfs
}

seed_all
[ -n "$(ls corpus/sif_reader 2>/dev/null)" ] ||
    echo "WARNING: no SIF fixtures found under $TESTDATA/sif (set APPTAINER_TESTDATA)" >&2

failed=""
for t in $TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t"
    set -- -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1
    [ -f "dicts/$t.dict" ] && set -- "$@" -dict="dicts/$t.dict"
    echo "fuzzing $t for ${SECONDS_PER_TARGET}s"
    if cargo +nightly fuzz run --release "$t" "corpus/$t" -- "$@" >"logs/$t.log" 2>&1; then
        grep -a -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "logs/$t.log" |
            sed "s/^/  $t: /"
    else
        echo "FAILED: $t (log: fuzz/logs/$t.log)" >&2
        grep -a -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY|Test unit written' \
            "logs/$t.log" | head -n 8 | sed 's/^/  /' >&2
        failed="$failed $t"
    fi
    # layer_unpack extracts into target/unpack-scratch-PID; libFuzzer exits without cleanup.
    # A directory whose process still runs belongs to another fuzz.sh running in parallel.
    for d in target/unpack-scratch-*; do
        [ -d "$d" ] || continue
        ! kill -0 "${d##*-}" 2>/dev/null || continue
        find "$d" -type d -exec chmod u+rwx {} + && rm -rf "$d"
    done
done

if [ -n "$failed" ]; then
    echo "fuzzing found crashes in:$failed (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crash in: $TARGETS"
