#!/bin/bash
# Measures our runtime side by side with the tools users would pick instead, in one run, and
# writes docs/benchmarks.md (table) and docs/benchmarks.png (plot). See bench/README.md.
#
#   sudo bench/run.sh [PREFIX]          PREFIX of the installed apptainer (/opt/apptainer-test)
#
# Environment: BENCH_USER (apptest) runs the unprivileged commands; RUNS (30) sequential starts
# per row; PAR_RUNS (5) repetitions of the 50-parallel batch; PULL_RUNS_TINY (3) and
# PULL_RUNS_DEBIAN (3) cold pulls per tool; IMAGES ("tiny debian"); BENCH_NICE (-10) the
# priority of everything measured; BENCH_OUT (docs/) where the report goes; BENCH_PARTS
# ("pull start parallel build") which parts run: a run without every part writes its report
# to $CACHE/partial/ unless BENCH_OUT says otherwise, so docs/ keeps the last full run.
# A command of ours that does not work yet becomes a row "n/a (<its error line>)": no number
# is ever made up. Nothing here asserts a time; this is not part of `make test`.
set -u -o pipefail

BENCH_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
REPO=$(dirname -- "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"
# shellcheck source=images.sh
. "$BENCH_DIR/images.sh"

PREFIX=${1:-${PREFIX:-/opt/apptainer-test}}
APPTAINER=$PREFIX/bin/apptainer
BENCH_USER=${BENCH_USER:-apptest}
RUNS=${RUNS:-30}
PAR_RUNS=${PAR_RUNS:-5}
PULL_RUNS_TINY=${PULL_RUNS_TINY:-3}
PULL_RUNS_DEBIAN=${PULL_RUNS_DEBIAN:-3}
IMAGES=${IMAGES:-tiny debian}
BENCH_NICE=${BENCH_NICE:--10}
# Setuid mode mounts SIF images with the kernel only when the admin allows it
# (`allow setuid-mount squashfs`, default iflimited: FUSE, apptainer-squashfuse, as the
# caller). The row "ours, setuid" runs the shipped conf; the row "ours, setuid, kernel
# squashfs" sets `allow setuid-mount squashfs = yes` in PREFIX's apptainer.conf for its own
# runs only; the file is restored after each such row and at exit.
BENCH_PARTS=${BENCH_PARTS:-pull start parallel build}
OUT=${BENCH_OUT:-$REPO/docs}
CACHE=/var/lib/apptainer-bench
WORK=$CACHE/run
RESULTS=$WORK/results.tsv
META=$WORK/meta.tsv
PARALLEL=50
# Debian's python3, which has python3-matplotlib (root's PATH may lead to another one).
PYTHON=/usr/bin/python3
PACKAGES="hyperfine bubblewrap squashfuse fuse3 squashfs-tools skopeo umoci charliecloud
  charliecloud-builders crun runc podman debootstrap python3-matplotlib time jq curl openssl
  docker-registry"

install_packages() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
        > "$CACHE/apt.log" 2>&1 && return 0
    # One package missing from this release must not stop the others.
    for p in "${missing[@]}"; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$p" \
            >> "$CACHE/apt.log" 2>&1 || say "package $p is not installable here: its rows will be n/a"
    done
}

prepare_machine() {
    [ "$(id -u)" -eq 0 ] || die "run.sh must run as root (it installs packages, mounts loop devices)"
    install -d -m 0755 "$CACHE"
    install_packages
    command -v hyperfine > /dev/null || die "hyperfine is required"
    if ! id -u "$BENCH_USER" > /dev/null 2>&1; then
        useradd --create-home --shell /bin/sh --user-group "$BENCH_USER" || die "cannot create $BENCH_USER"
    fi
    BENCH_HOME=$(getent passwd "$BENCH_USER" | cut -d: -f6)
    # No udev here: /dev/fuse may come root-only.
    [ -c /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 2> /dev/null || true
    [ -c /dev/fuse ] && chmod 0666 /dev/fuse
    cleanup_work
    install -d -m 0755 "$WORK" "$WORK/img" "$WORK/mnt"
    install -d -m 0755 -o "$BENCH_USER" "$WORK/user"
    : > "$RESULTS"
    : > "$META"
}

# cleanup_work: unmount whatever an earlier, interrupted run left under $WORK, then remove it.
cleanup_work() {
    [ -d "$WORK" ] || return 0
    findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | while read -r m; do
        umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true
    done
    rm -rf "$WORK"
}

meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }

# install_stamp: modification times of our installed binaries (others may reinstall mid-run).
install_stamp() {
    stat -c '%n %y' "$APPTAINER" "$PREFIX"/libexec/apptainer/bin/starter* 2> /dev/null \
        | sed "s|$PREFIX/||; s|\.[0-9]* +0000||" | paste -sd ';'
}

record_machine_facts() {
    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta kernel "$(uname -r)"
    meta cores "$(nproc)"
    meta "load at start" "$(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other jobs on the machine add noise)"
    meta cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    meta memory "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    meta os "$(. /etc/os-release && echo "$PRETTY_NAME")"
    meta filesystem "$(findmnt -n -o FSTYPE --target "$CACHE")"
    meta ours "$("$APPTAINER" version 2>&1 | head -n 1) ($APPTAINER, installed $(date -u -r "$APPTAINER" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'); repo at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    local v=""
    v+="bubblewrap $(bwrap --version 2>/dev/null | awk '{print $2}'), "
    v+="charliecloud $(USER=root ch-run --version 2>&1 | tail -n 1), "
    v+="crun $(crun --version 2>/dev/null | awk 'NR==1 {print $3}'), "
    v+="runc $(runc --version 2>/dev/null | awk 'NR==1 {print $3}'), "
    v+="podman $(podman --version 2>/dev/null | awk '{print $3}'), "
    v+="skopeo $(skopeo --version 2>/dev/null | awk '{print $3}'), "
    v+="umoci $(umoci --version 2>/dev/null | awk '{print $3}'), "
    v+="squashfs-tools $(dpkg-query -W -f '${Version}' squashfs-tools 2>/dev/null), "
    v+="squashfuse $(dpkg-query -W -f '${Version}' squashfuse 2>/dev/null), "
    v+="docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null), "
    v+="hyperfine $(hyperfine --version | awk '{print $2}')"
    meta versions "$v"
}

# ---------------------------------------------------------------------------------------------
# Pull + convert, cold cache. The peer pipeline's output doubles as the start benchmarks' image.

# pull_pipeline IMAGE RUNS: skopeo copy + umoci unpack + mksquashfs (gzip, the default), as
# root, each stage timed; the last run's bundle and squashfs are kept for the start benchmarks.
pull_pipeline() {
    local img=$1 runs=$2 ref d i
    ref=$(image_ref "$img")
    d=$WORK/img/$img
    local s1=() s2=() s3=() tot=() rss=0
    for ((i = 0; i < runs; i++)); do
        rm -rf "$d" && install -d -m 0755 "$d"
        if ! time_once root "skopeo copy --quiet --src-tls-verify=false docker://$REGISTRY/$ref oci:$d/oci:latest"; then
            record_na pull "$img" "skopeo copy" "$T_ERROR"; return 1
        fi
        s1+=("$T_ELAPSED"); [ "$T_RSS" -gt "$rss" ] && rss=$T_RSS
        if ! time_once root "umoci unpack --image $d/oci:latest $d/bundle"; then
            record_na pull "$img" "umoci unpack" "$T_ERROR"; return 1
        fi
        s2+=("$T_ELAPSED"); [ "$T_RSS" -gt "$rss" ] && rss=$T_RSS
        if ! time_once root "mksquashfs $d/bundle/rootfs $d/$img.sqfs -noappend -no-progress -quiet"; then
            record_na pull "$img" "mksquashfs (gzip)" "$T_ERROR"; return 1
        fi
        s3+=("$T_ELAPSED"); [ "$T_RSS" -gt "$rss" ] && rss=$T_RSS
        tot+=("$("$PYTHON" -c 'import sys; print(sum(map(float, sys.argv[1:])))' "${s1[i]}" "${s2[i]}" "${s3[i]}")")
    done
    record_series pull "$img" "skopeo copy" "" "${s1[@]}"
    record_series pull "$img" "umoci unpack" "" "${s2[@]}"
    record_series pull "$img" "mksquashfs (gzip)" "" "${s3[@]}"
    record_series pull "$img" "skopeo + umoci + mksquashfs" "$rss" "${tot[@]}"
}

# record_series SECTION IMAGE NAME RSS TIMES...: median, min and max of TIMES.
record_series() {
    local section=$1 image=$2 name=$3 rss=$4
    shift 4
    local med min max
    IFS=$'\t' read -r med min max < <("$PYTHON" -c '
import statistics, sys
t = [float(x) for x in sys.argv[1:]]
print("%.3f\t%.3f\t%.3f" % (statistics.median(t), min(t), max(t)))
' "$@")
    say "$name ($image): median $med s ($min-$max, $# runs)"
    record "$section" "$image" "$name" "$med" "$min" "$max" "$rss" "$#" ""
}

# ch-image keeps its build cache in git, whose commits need an identity; this host has no
# domain name to derive one from, so git would refuse.
CH_GIT_ID="GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost"

# podman_clean: unmount what podman's overlay driver keeps mounted in its storage root, then
# remove the storage.
podman_clean() {
    findmnt -rn -o TARGET | grep "^$WORK/user/podman" | sort -r | xargs -r umount -l
    rm -rf "$WORK/user/podman"
}

pull_peers() {
    local img=$1 runs=$2 ref
    ref=$(image_ref "$img")
    timed_rows pull "$img" "apptainer pull (ours, as user)" user "$runs" \
        "rm -rf $WORK/user/ours && install -d -o $BENCH_USER $WORK/user/ours" \
        "cd $WORK/user/ours && APPTAINER_CACHEDIR=$WORK/user/ours/cache APPTAINER_TMPDIR=$WORK/user/ours $APPTAINER pull --no-https out.sif docker://$REGISTRY/$ref && test -s out.sif"
    if [ -f "$WORK/user/ours/out.sif" ]; then
        cp "$WORK/user/ours/out.sif" "$WORK/img/$img/pulled.sif"
    fi
    timed_rows pull "$img" "ch-image pull (as user, TLS registry)" user "$runs" \
        "rm -rf $WORK/user/ch" \
        "CH_IMAGE_STORAGE=$WORK/user/ch $CH_GIT_ID ch-image pull --tls-no-verify $TLS_ADDR/$ref"
    timed_rows pull "$img" "podman pull (as root)" root "$runs" \
        podman_clean \
        "podman --root $WORK/user/podman/root --runroot $WORK/user/podman/run --storage-driver overlay pull --quiet --tls-verify=false $REGISTRY/$ref"
    podman_clean
    rm -rf "$WORK/user/ch" "$WORK/user/ours"
}

# pull_floors IMAGE RUNS: what no converter can beat, on the layers the pipeline fetched:
# decompressing them, and decompressing plus writing every file (in layer order, whiteouts
# not applied).
pull_floors() {
    local img=$1 runs=$2 d=$WORK/img/$1/oci layers
    layers=$(jq -r '.manifests[0].digest' "$d/index.json" | sed 's|^sha256:|'"$d"'/blobs/sha256/|' \
        | xargs jq -r '.layers[].digest' | sed 's|^sha256:|'"$d"'/blobs/sha256/|' | paste -sd ' ')
    [ -n "$layers" ] || { record_na pull "$img" "floor: gzip -dc of the layers" "no layers found in $d"; return 0; }
    timed_rows pull "$img" "floor: gzip -dc of the layers" root "$runs" ":" \
        "for l in $layers; do gzip -dc < \$l; done > /dev/null"
    timed_rows pull "$img" "floor: gzip -dc | tar -x of the layers" root "$runs" \
        "rm -rf $WORK/floor && mkdir $WORK/floor" \
        "for l in $layers; do gzip -dc < \$l | tar -C $WORK/floor -xf - || exit 1; done"
    rm -rf "$WORK/floor"
}

bench_pull() {
    local img runs
    for img in $IMAGES; do
        say "== pull + convert, cold cache, $img"
        runs=$PULL_RUNS_TINY
        [ "$img" = debian ] && runs=$PULL_RUNS_DEBIAN
        pull_pipeline "$img" "$runs" || die "the peer pipeline failed on $img: nothing to start"
        pull_peers "$img" "$runs"
        pull_floors "$img" "$runs"
    done
}

# ---------------------------------------------------------------------------------------------
# Start latency. Every tool runs /bin/true from the same squashfs or from its unpacked tree.

# make_sif IMAGE: our SIF around the pipeline's squashfs (same bytes for every tool); if our
# `sif` command cannot, the SIF our pull produced; else nothing (the rows become n/a).
make_sif() {
    local d=$WORK/img/$1 log=$WORK/sif.log
    SIF_ERROR=
    rm -f "$d/$1.sif"
    if "$APPTAINER" sif new "$d/$1.sif" > "$log" 2>&1 &&
        "$APPTAINER" sif add --datatype 4 --parttype 2 --partfs 1 --partarch 2 --groupid 1 \
            "$d/$1.sif" "$d/$1.sqfs" >> "$log" 2>&1; then
        meta "sif-$1" "apptainer sif new + sif add of the pipeline's squashfs"
    elif [ -f "$d/pulled.sif" ]; then
        SIF_ERROR="sif add: $(first_error "$log")"
        mv "$d/pulled.sif" "$d/$1.sif"
        meta "sif-$1" "the SIF of our own pull (sif add failed: $SIF_ERROR)"
    else
        SIF_ERROR="no SIF: sif add: $(first_error "$log"); our pull made none"
        rm -f "$d/$1.sif"
    fi
    [ -f "$d/$1.sif" ] && chmod 0644 "$d/$1.sif"
}

# prepare_bundle IMAGE: the umoci bundle runs /bin/true for crun and runc.
prepare_bundle() {
    local b=$WORK/img/$1/bundle
    # umoci makes the bundle 0700; the plain user's tools (bwrap, ch-run) read its rootfs.
    chmod 0755 "$b"
    jq '.process.args = ["/bin/true"] | .process.terminal = false | .root.readonly = true' \
        "$b/config.json" > "$b/config.json.new" && mv "$b/config.json.new" "$b/config.json"
}

# start_commands IMAGE: sets START_NAMES/START_AS/START_CMDS; the command text uses $i so
# that the parallel runs can tell instances apart (container ids, mount points).
start_commands() {
    local d=$WORK/img/$1
    local R=$d/bundle/rootfs Q=$d/$1.sqfs S=$d/$1.sif M=$WORK/mnt
    local BW="bwrap --unshare-user --unshare-pid --ro-bind"
    local BWT="--proc /proc --dev /dev /bin/true"
    START_NAMES=() START_AS=() START_CMDS=()
    # The harness's own cost: sh starting /bin/true on the host, no container.
    add_start "host: sh + /bin/true, no container" user "/bin/true"
    add_start "ours, setuid (apptainer exec)" user "$APPTAINER exec $S /bin/true"
    add_start "ours, setuid, kernel squashfs (allow setuid-mount squashfs = yes)" user "$APPTAINER exec $S /bin/true"
    add_start "ours, user namespace (exec --userns)" user "$APPTAINER exec --userns $S /bin/true"
    # The FUSE server keeps decompressed data in /dev/shm across starts (the warm-up runs
    # fill it); these rows empty it before every timed start or batch.
    add_start "ours, setuid, cold FUSE cache" user "$APPTAINER exec $S /bin/true"
    add_start "ours, user namespace, cold FUSE cache" user "$APPTAINER exec --userns $S /bin/true"
    add_start "bwrap on the unpacked dir" user "$BW $R / $BWT"
    add_start "squashfuse_ll + bwrap" user \
        "m=\$(mktemp -d /tmp/sqfs.XXXXXX) && squashfuse_ll $Q \$m && { $BW \$m / $BWT; r=\$?; fusermount3 -u \$m; rmdir \$m; exit \$r; }"
    add_start "ch-run on the unpacked dir" user "ch-run $R -- /bin/true"
    add_start "ch-run on the squashfs" user "ch-run $Q -- /bin/true"
    add_start "crun run (bundle, root)" root-cgv1 "crun run --bundle $d/bundle b\$\$-\$i"
    add_start "runc run (bundle, root)" root "runc run --bundle $d/bundle b\$\$-\$i"
    add_start "unshare -m + mount -o loop,ro + chroot (root)" root \
        "unshare -m sh -c 'mount -o loop,ro $Q $M && chroot $M /bin/true'"
}

# cold_cache_prepare NAME: for the cold-cache rows, hyperfine's --prepare command that
# empties the bench user's FUSE data cache before each timed run.
cold_cache_prepare() {
    [[ $1 == *"cold FUSE cache"* ]] || return 0
    printf '%s' "sh -c 'rm -rf /dev/shm/apptainer-squashfuse-\$(id -u)'"
}

add_start() {
    START_NAMES+=("$1")
    START_AS+=("$2")
    START_CMDS+=("$3")
}

# content_check IMAGE: a command that succeeds only inside IMAGE, never on this Debian host, so
# a start that exits 0 without entering the image is caught before it is timed. Double quotes
# only: it is spliced into the commands in place of /bin/true.
content_check() {
    case $1 in
        tiny) printf '/bin/sh -c "test -x /bin/busybox && ! test -e /usr/bin/apt"' ;;
        debian) printf '/bin/sh -c "test -e /etc/debian_version && ! test -e /etc/bench-marker && ! test -e /usr/share/doc/bash"' ;;
    esac
}

bench_start() {
    local img=$1 k check
    check=$(content_check "$img")
    say "== start latency of /bin/true, $img"
    make_sif "$img"
    prepare_bundle "$img"
    start_commands "$img"
    for k in "${!START_NAMES[@]}"; do
        local name=${START_NAMES[k]} cmd=${START_CMDS[k]}
        if [[ $name == ours* && -n $SIF_ERROR ]]; then
            record_na start "$img" "$name" "$SIF_ERROR"
            continue
        fi
        if [[ $name != host:* && $cmd == */bin/true* ]] && ! probe "${START_AS[k]}" "$name" "i=0; ${cmd//\/bin\/true/"$check"}"; then
            record_na start "$img" "$name" "did not run inside the image ($check): $PROBE_ERROR"
            continue
        fi
        conf_for_row "$name"
        HF_PREPARE=$(cold_cache_prepare "$name")
        hyperfine_row start "$img" "$name" "${START_AS[k]}" "$RUNS" 3 "i=0; $cmd"
        HF_PREPARE=
        restore_conf_copy
    done
}

# A batch: 50 instances started at once; the time is the wall time until the last one exits,
# and the batch fails when any instance does.
bench_parallel() {
    local img=$1 k
    say "== $PARALLEL parallel starts, $img"
    start_commands "$img"
    for k in "${!START_NAMES[@]}"; do
        local name=${START_NAMES[k]} cmd=${START_CMDS[k]}
        if [[ $name == ours* && -n $SIF_ERROR ]]; then
            record_na parallel "$img" "$name" "$SIF_ERROR"
            continue
        fi
        # The instances' stderr goes to one file, so a failed batch can show why.
        local batch="l=\$(mktemp /tmp/bench-par.XXXXXX); p=''; for i in \$(seq $PARALLEL); do ( $cmd ) > /dev/null 2>> \$l & p=\"\$p \$!\"; done; r=0; for q in \$p; do wait \$q || r=1; done; [ \$r -eq 0 ] || grep -m1 . \$l >&2; rm -f \$l; exit \$r"
        conf_for_row "$name"
        HF_PREPARE=$(cold_cache_prepare "$name")
        hyperfine_row parallel "$img" "$name" "${START_AS[k]}" "$PAR_RUNS" 1 "$batch"
        HF_PREPARE=
        restore_conf_copy
    done
}

# ---------------------------------------------------------------------------------------------
# Build of a small definition file (ours only: the peers' build tools take other inputs).

bench_build() {
    say "== build"
    local d=$WORK/user/build
    install -d -m 0755 "$d"
    cat > "$d/x.def" <<EOF
Bootstrap: docker
From: $REGISTRY/test/busybox:latest

%post
    echo built > /built-by-bench

%runscript
    cat /built-by-bench
EOF
    timed_rows build tiny "apptainer build x.sif x.def (ours, root)" root 1 \
        "rm -f $d/x.sif" "cd $d && $APPTAINER build --no-https x.sif x.def && test -s x.sif" \
        || say "build: not available yet"
}

CONF_SAVED=
set_setuid_squashfs() {
    local conf=$PREFIX/etc/apptainer/apptainer.conf
    [ -f "$conf" ] || return 0
    CONF_SAVED=$(mktemp)
    cp -p "$conf" "$CONF_SAVED"
    meta "FUSE data cache" "our FUSE server keeps decompressed file data in /dev/shm/apptainer-squashfuse-<uid> across starts; the warm-up runs fill it; the cold FUSE cache rows empty it (hyperfine --prepare) before every timed start or batch"
    meta "setuid image mounts" "shipped conf: $(grep -E '^(allow setuid-mount squashfs|shared loop devices) =' "$conf" | paste -sd ';'); the kernel squashfs row: allow setuid-mount squashfs = yes"
}

# conf_for_row NAME: the kernel squashfs row runs with `allow setuid-mount squashfs = yes`.
conf_for_row() {
    [[ $1 == *"kernel squashfs"* && -n ${CONF_SAVED:-} ]] || return 0
    sed -i "s/^allow setuid-mount squashfs = .*/allow setuid-mount squashfs = yes/" "$PREFIX/etc/apptainer/apptainer.conf"
}

# restore_conf_copy: back to the shipped conf, keeping the saved copy for later rows.
restore_conf_copy() {
    [ -n "${CONF_SAVED:-}" ] || return 0
    cp -p "$CONF_SAVED" "$PREFIX/etc/apptainer/apptainer.conf"
}
restore_conf() {
    [ -n "$CONF_SAVED" ] || return 0
    cp -p "$CONF_SAVED" "$PREFIX/etc/apptainer/apptainer.conf" && rm -f "$CONF_SAVED"
}

# part NAME: whether BENCH_PARTS asks for this part of the run.
part() {
    case " $BENCH_PARTS " in *" $1 "*) return 0 ;; esac
    return 1
}

main() {
    if [ -z "${BENCH_OUT:-}" ] && [ "$BENCH_PARTS" != "pull start parallel build" ]; then
        OUT=$CACHE/partial
    fi
    prepare_machine
    trap 'stop_own_registries; cleanup_work; restore_conf' EXIT
    # Other jobs share this machine; a higher priority keeps them from stretching the timings
    # of some rows more than others. Every tool measured inherits it.
    renice -n "$BENCH_NICE" -p $$ > /dev/null || say "renice $BENCH_NICE failed: running at the default priority"
    record_machine_facts
    set_setuid_squashfs
    INSTALLED_AT_START=$(install_stamp)
    meta installed "$INSTALLED_AT_START"
    meta priority "nice $(nice) for every command measured"
    case " $IMAGES " in
        *" debian "*) build_debian_rootfs && build_debian_oci ;;
    esac
    ensure_plain_registry
    ensure_tls_registry
    push_images
    meta registry "$REGISTRY (plain HTTP); $TLS_ADDR (TLS, self-signed) for ch-image"
    for img in $IMAGES; do
        meta "image-$img" "$REGISTRY/$(image_ref "$img"): $(image_facts "$img")"
    done
    part pull && bench_pull
    for img in $IMAGES; do
        part start && bench_start "$img"
        part parallel && bench_parallel "$img"
    done
    part build && bench_build
    meta "load at end" "$(cut -d' ' -f1-3 /proc/loadavg)"
    local installed_now
    installed_now=$(install_stamp)
    if [ "$installed_now" != "$INSTALLED_AT_START" ]; then
        meta warning "our installed binaries changed during the run ($INSTALLED_AT_START, then $installed_now): rows of ours may mix two builds"
    fi
    meta runs "$RUNS sequential starts (3 warm-up), $PAR_RUNS batches of $PARALLEL (1 warm-up), pulls: tiny $PULL_RUNS_TINY, debian $PULL_RUNS_DEBIAN"
    install -d -m 0755 "$OUT"
    cp "$RESULTS" "$META" "$CACHE/" 2> /dev/null
    "$PYTHON" "$BENCH_DIR/report.py" "$RESULTS" "$META" "$OUT/benchmarks.md" "$OUT/benchmarks.png" \
        || die "report.py failed"
    say "wrote $OUT/benchmarks.md and $OUT/benchmarks.png"
}

main "$@"
