#!/bin/sh
# Prepares this machine for the end-to-end tests (idempotent, as root): the test users
# apptest (with a /etc/subuid and /etc/subgid range) and apptest2 (without), a usable
# /dev/fuse, a reachable install prefix, Debian's docker-registry on 127.0.0.1:5000 and the
# fixture images (built offline from busybox-static, pushed as 127.0.0.1:5000/test/...).
# Usage: scripts/test-setup.sh PREFIX   (make test passes /opt/apptainer-test)
set -eu

PREFIX=${1:?usage: scripts/test-setup.sh PREFIX}
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh"

need_root test-setup.sh
need_cmds useradd groupadd usermod gpasswd setpriv curl skopeo umoci docker-registry jq tar

ensure_user apptest
ensure_user apptest2
ensure_subid_range apptest
drop_subid_range apptest2
# apptest2 (no subid range) belongs to a "negative" group; apptest keeps only its own.
ensure_group_member apptblocked apptest2
drop_group_member apptblocked apptest
ensure_dev_fuse

# The plain users must be able to reach the installed binaries: every directory on the way
# to PREFIX needs search permission for others.
if [ -d "$PREFIX" ]; then
    d=$PREFIX
    while [ "$d" != / ]; do
        [ "$(($(stat -c %#a "$d") & 1))" -eq 1 ] || chmod o+x "$d"
        d=$(dirname "$d")
    done
    [ -x "$PREFIX/bin/apptainer" ] || say "warning: $PREFIX/bin/apptainer is not installed (make install-suid PREFIX=$PREFIX)"
else
    say "warning: $PREFIX does not exist yet (make install-suid PREFIX=$PREFIX)"
fi

install -d -m 0755 "$STATE_DIR"
registry_start
fixtures_ensure
"$SCRIPTS_DIR/auth-registry-setup.sh"
say "test setup done: users apptest/apptest2, registry $REGISTRY_ADDR, fixtures in $FIXTURES_DIR"
