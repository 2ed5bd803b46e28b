# Shared pieces of scripts/test-setup.sh and scripts/demo.sh (sourced, POSIX sh, as root):
# test users, /dev/fuse, the local registry and the fixture images.

STATE_DIR=${APPTAINER_TEST_STATE:-/var/lib/apptainer-test}
FIXTURES_DIR=$STATE_DIR/fixtures
REGISTRY_DIR=$STATE_DIR/registry
REGISTRY_ADDR=127.0.0.1:5000
SCRIPTS_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 must run as root"
}

need_cmds() {
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "missing command $c: run scripts/install-deps.sh first"
    done
}

# ensure_user NAME: a local account with a home directory, idempotent.
ensure_user() {
    if ! id -u "$1" >/dev/null 2>&1; then
        useradd --create-home --home-dir "/home/$1" --shell /bin/sh --user-group "$1"
        say "created user $1"
    fi
    home=$(getent passwd "$1" | cut -d: -f6)
    [ -d "$home" ] || install -d -m 0755 -o "$1" -g "$1" "$home"
}

# ensure_subid_range NAME: 65536 subordinate uids and gids for NAME (for --fakeroot), unless
# the user already has a range.
ensure_subid_range() {
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        if ! grep -q "^$1:" "$f"; then
            # Start past every existing range so ranges never overlap.
            start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
            printf '%s:%s:65536\n' "$1" "$start" >> "$f"
            say "gave $1 the range $start:65536 in $f"
        fi
    done
}

# ensure_group_member GROUP NAME: a local group GROUP with NAME as a member. The security
# tests use it as a "negative" group (a file readable by others but not by GROUP, T28).
ensure_group_member() {
    getent group "$1" >/dev/null 2>&1 || groupadd "$1"
    id -nG "$2" | tr ' ' '\n' | grep -qx "$1" || usermod -a -G "$1" "$2"
}

# drop_group_member GROUP NAME: NAME is not a member of GROUP (tests compare apptest's
# groups with its primary group alone).
drop_group_member() {
    if id -nG "$2" | tr ' ' '\n' | grep -qx "$1"; then
        gpasswd -d "$2" "$1" >/dev/null
    fi
}

# drop_subid_range NAME: NAME must have no subordinate ids (the cross-user tests rely on it).
drop_subid_range() {
    for f in /etc/subuid /etc/subgid; do
        [ -f "$f" ] && sed -i "/^$1:/d" "$f"
    done
}

# No udev here: /dev/fuse may come root-only.
ensure_dev_fuse() {
    if [ ! -c /dev/fuse ]; then
        mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || say "warning: /dev/fuse missing and cannot be created (FUSE tests will skip)"
    fi
    [ -c /dev/fuse ] && chmod 0666 /dev/fuse
    return 0
}

registry_healthy() {
    curl -fsS -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/v2/" 2>/dev/null
}

# Starts Debian's docker-registry on 127.0.0.1:5000 with its own config and storage, in the
# background, unless a healthy registry already answers there.
registry_start() {
    if registry_healthy; then
        say "registry already answering on $REGISTRY_ADDR: reusing it"
        return 0
    fi
    # Debian's own service (systemd machines) listens on :5000 with htpasswd auth: ours replaces it.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        say "stopping Debian's docker-registry service (port 5000 is needed by the tests)"
        systemctl stop docker-registry
    fi
    pidfile=$REGISTRY_DIR/registry.pid
    if [ -f "$pidfile" ]; then
        old=$(cat "$pidfile")
        if [ "$(cat "/proc/$old/comm" 2>/dev/null)" = docker-registry ]; then
            say "stopping unhealthy registry (pid $old)"
            kill "$old" 2>/dev/null || true
            sleep 1
        fi
        rm -f "$pidfile"
    fi
    install -d -m 0755 "$REGISTRY_DIR"
    install -d -m 0755 -o docker-registry -g docker-registry "$REGISTRY_DIR/data"
    cat > "$REGISTRY_DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
CONF
    # setsid + every fd redirected: the registry must outlive make and not hold its pipes.
    setsid setpriv --reuid=docker-registry --regid=docker-registry --clear-groups \
        docker-registry serve "$REGISTRY_DIR/config.yml" \
        </dev/null >>"$REGISTRY_DIR/registry.log" 2>&1 &
    echo $! > "$pidfile"
    i=0
    while ! registry_healthy; do
        i=$((i + 1))
        if [ "$i" -gt 100 ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            tail -n 20 "$REGISTRY_DIR/registry.log" >&2
            die "registry did not come up on $REGISTRY_ADDR (log: $REGISTRY_DIR/registry.log)"
        fi
        sleep 0.1
    done
    say "registry started on $REGISTRY_ADDR (pid $(cat "$pidfile"))"
}

registry_stop() {
    pidfile=$REGISTRY_DIR/registry.pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ]; then
        kill "$pid"
    fi
    rm -f "$pidfile"
}

# Builds the fixture images (skipped when the stamp matches) and pushes them to the local
# registry (skipped when already there).
fixtures_ensure() {
    "$SCRIPTS_DIR/fixtures/build.sh" "$FIXTURES_DIR"
    "$SCRIPTS_DIR/fixtures/push.sh" "$FIXTURES_DIR" "$REGISTRY_ADDR" "$REGISTRY_DIR/pushed.stamp"
}
