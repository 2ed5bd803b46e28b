#!/bin/sh
# The main job end to end, run by `make demo` after `make install-suid` (as root): makes sure
# the plain user apptest, the local registry on 127.0.0.1:5000 and the busybox fixture image
# exist, then AS THAT PLAIN USER pulls docker://127.0.0.1:5000/test/busybox:latest into a
# temporary directory and runs it. Every step prints its command; the first step that fails
# stops the demo with its name and a non-zero exit.
# Usage: scripts/demo.sh PREFIX
set -eu

PREFIX=${1:?usage: scripts/demo.sh PREFIX}
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh"

DEMO_USER=apptest
APPTAINER=$PREFIX/bin/apptainer
IMAGE=docker://$REGISTRY_ADDR/test/busybox:latest

need_root demo.sh
need_cmds setpriv curl skopeo umoci docker-registry jq tar
[ -x "$APPTAINER" ] || die "$APPTAINER is not installed (make install-suid PREFIX=$PREFIX)"

say "==> preparing: user $DEMO_USER, registry $REGISTRY_ADDR, image $IMAGE"
ensure_user "$DEMO_USER"
ensure_subid_range "$DEMO_USER"
ensure_dev_fuse
install -d -m 0755 "$STATE_DIR"
registry_start
fixtures_ensure >/dev/null

WORK=$(mktemp -d /var/tmp/apptainer-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chown "$DEMO_USER:" "$WORK"
HOME_DIR=$(getent passwd "$DEMO_USER" | cut -d: -f6)

# step NAME EXPECT COMMAND...: runs COMMAND as the plain user in $WORK with a clean
# environment, shows it and its output; fails the demo unless it exits 0 and (when EXPECT is
# not empty) its standard output contains EXPECT.
step() {
    name=$1 expect=$2
    shift 2
    say ""
    say "==> [$name] $DEMO_USER\$ $*"
    set +e
    out=$(cd "$WORK" && setpriv --reuid="$DEMO_USER" --regid="$DEMO_USER" --init-groups \
        env -i HOME="$HOME_DIR" USER="$DEMO_USER" LOGNAME="$DEMO_USER" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" </dev/null)
    rc=$?
    set -e
    [ -z "$out" ] || printf '%s\n' "$out"
    if [ "$rc" -ne 0 ]; then
        die "demo stopped: step '$name' failed (exit $rc)"
    fi
    case $out in
    *"$expect"*) ;;
    *) die "demo stopped: step '$name' did not print '$expect'" ;;
    esac
}

step version "apptainer version" "$APPTAINER" --version
step pull "" "$APPTAINER" pull --no-https "$IMAGE"
[ -s "$WORK/busybox_latest.sif" ] || die "demo stopped: step 'pull' did not write busybox_latest.sif"
step "sif list" "FS" "$APPTAINER" sif list busybox_latest.sif
step run "hello from the container" "$APPTAINER" run busybox_latest.sif echo hello from the container
step exec "apptainer test busybox" "$APPTAINER" exec busybox_latest.sif cat /etc/os-release
step "exec id" "uid=$(id -u "$DEMO_USER")" "$APPTAINER" exec busybox_latest.sif id

say ""
say "==> demo done: $DEMO_USER pulled $IMAGE and ran it"
