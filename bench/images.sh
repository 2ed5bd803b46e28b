# The bench images (sourced by bench/run.sh, bash, as root).
#
# tiny:   127.0.0.1:5000/test/busybox, the test setup's fixture (static busybox, one layer).
# debian: `debootstrap --variant=minbase bookworm` from the machine's Debian mirror, split by
#         umoci into three gzip layers: the base system without /usr/share/doc, a layer adding
#         /usr/share/doc and a marker file, and a layer deleting that marker and one doc
#         directory (two whiteouts). Built once and cached in $CACHE/debian-oci, because
#         debootstrap takes minutes; pushed to the registry on every run (cheap when present).
#
# Also a second docker-registry with TLS on 127.0.0.1:5443 (self-signed), because ch-image
# 0.31 only speaks HTTPS to registries; it serves the same two images.

TLS_ADDR=127.0.0.1:5443

# debian_mirror: the first Debian mirror URL in the apt sources.
debian_mirror() {
    local url
    url=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ')
    [ -n "$url" ] || url=http://deb.debian.org/debian
    printf '%s' "$url"
}

# build_debian_rootfs: debootstrap once into $CACHE/debian-rootfs.
build_debian_rootfs() {
    local root=$CACHE/debian-rootfs
    [ -f "$CACHE/debian-rootfs.done" ] && return 0
    local mirror
    mirror=$(debian_mirror)
    say "debootstrap --variant=minbase bookworm from $mirror (once; cached in $CACHE)"
    discard_dir "$root"
    # debootstrap ends with a global sync(1), which waits for every filesystem on the host; a
    # hung FUSE mount anywhere then blocks it for good (debootstrap resets PATH, so a PATH shim
    # is not enough). In a private mount namespace, sync(1) becomes a syncfs of the target's
    # filesystem, which is all the cache needs.
    local shim=$CACHE/sync-shim
    install -d -m 0755 "$shim"
    cp /usr/bin/sync "$shim/sync.real"
    printf '#!/bin/sh\nexec %s -f %s\n' "$shim/sync.real" "$root" > "$shim/sync"
    chmod 0755 "$shim/sync"
    # shellcheck disable=SC2016
    unshare -m sh -c 'mount --bind "$1" /usr/bin/sync && shift && exec "$@"' sh "$shim/sync" \
        debootstrap --variant=minbase bookworm "$root" "$mirror" > "$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/debootstrap.log: $(first_error "$CACHE/debootstrap.log")"
    # apt's caches are not part of what a user pulls.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    touch "$CACHE/debian-rootfs.done"
}

# discard_dir DIR: remove DIR, first unmounting anything an interrupted debootstrap left in it.
discard_dir() {
    [ -e "$1" ] || return 0
    findmnt -rn -o TARGET | grep "^$1/" | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$1"
}

# build_debian_oci: the three-layer OCI layout $CACHE/debian-oci:bench from the rootfs.
build_debian_oci() {
    local layout=$CACHE/debian-oci root=$CACHE/debian-rootfs b=$CACHE/debian-bundle
    [ -f "$CACHE/debian-oci.done" ] && return 0
    say "splitting the debian rootfs into three layers with umoci"
    rm -rf "$layout" "$b"
    umoci init --layout "$layout" || die "umoci init failed"
    umoci new --image "$layout:bench" || die "umoci new failed"
    umoci unpack --image "$layout:bench" "$b" > /dev/null || die "umoci unpack (empty) failed"
    # Layer 1: the system without its documentation.
    tar -C "$root" --exclude=./usr/share/doc -cf - . | tar -C "$b/rootfs" -xpf - \
        || die "copying the rootfs failed"
    umoci repack --refresh-bundle --image "$layout:bench" "$b" || die "umoci repack (layer 1) failed"
    # Layer 2: add the documentation and a marker file.
    tar -C "$root" -cf - ./usr/share/doc | tar -C "$b/rootfs" -xpf - || die "copying docs failed"
    printf 'added by layer 2 and deleted by layer 3\n' > "$b/rootfs/etc/bench-marker"
    umoci repack --refresh-bundle --image "$layout:bench" "$b" || die "umoci repack (layer 2) failed"
    # Layer 3: delete what layer 2 added, one file and one directory: whiteouts.
    rm -f "$b/rootfs/etc/bench-marker"
    rm -rf "$b/rootfs/usr/share/doc/bash"
    umoci repack --image "$layout:bench" "$b" || die "umoci repack (layer 3) failed"
    umoci config --image "$layout:bench" --config.cmd /bin/bash > /dev/null || die "umoci config failed"
    umoci gc --layout "$layout"
    rm -rf "$b"
    touch "$CACHE/debian-oci.done"
}

# registry_ok ADDR [SCHEME]: the registry at ADDR answers the v2 API.
registry_ok() {
    curl -fsk -o /dev/null --max-time 3 "${2:-http}://$1/v2/"
}

# ensure_plain_registry: the test setup's registry on 127.0.0.1:5000, or our own on :5001.
ensure_plain_registry() {
    if registry_ok 127.0.0.1:5000; then
        REGISTRY=127.0.0.1:5000
        return 0
    fi
    say "no registry on 127.0.0.1:5000 (scripts/test-setup.sh starts it): starting our own on :5001"
    start_registry 127.0.0.1:5001 plain
    REGISTRY=127.0.0.1:5001
    skopeo copy --quiet --dest-tls-verify=false \
        "oci:$(tiny_source_layout):latest" "docker://$REGISTRY/test/busybox:latest" \
        || die "pushing busybox to $REGISTRY failed"
}

# tiny_source_layout: an OCI layout holding busybox, for a registry that lacks it.
tiny_source_layout() {
    local d=/var/lib/apptainer-test/fixtures/oci
    [ -d "$d" ] || die "no registry on 127.0.0.1:5000 and no fixture layout in $d: run scripts/test-setup.sh"
    find "$d" -maxdepth 2 -name index.json -printf '%h\n' | head -n 1
}

# start_registry ADDR plain|tls: Debian's docker-registry with our config under $CACHE.
start_registry() {
    local addr=$1 mode=$2 dir=$CACHE/registry-${1##*:}
    install -d -m 0700 "$dir"
    local tls=""
    if [ "$mode" = tls ]; then
        if [ ! -f "$dir/cert.pem" ]; then
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=127.0.0.1 \
                -addext subjectAltName=IP:127.0.0.1 \
                -keyout "$dir/key.pem" -out "$dir/cert.pem" > /dev/null 2>&1 \
                || die "openssl could not make a certificate for the TLS registry"
        fi
        tls="  tls:
    certificate: $dir/cert.pem
    key: $dir/key.pem"
    fi
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
$tls
EOF
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        sleep 1
    fi
    setsid docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    local scheme=http
    [ "$mode" = tls ] && scheme=https
    for _ in $(seq 50); do
        registry_ok "$addr" "$scheme" && return 0
        sleep 0.2
    done
    die "docker-registry on $addr did not start: $(first_error "$dir/registry.log")"
}

# stop_own_registries: stop the registries this script started (pid files under $CACHE).
stop_own_registries() {
    local f
    for f in "$CACHE"/registry-*/pid; do
        [ -f "$f" ] || continue
        kill "$(cat "$f")" 2> /dev/null || true
        rm -f "$f"
    done
}

# ensure_tls_registry: our TLS registry on :5443 (for ch-image), reused when it answers.
ensure_tls_registry() {
    registry_ok "$TLS_ADDR" https || start_registry "$TLS_ADDR" tls
}

# push_images: debian (when built) to both registries, busybox to the TLS one.
push_images() {
    local cp=(skopeo copy --quiet --dest-tls-verify=false)
    if [ -f "$CACHE/debian-oci.done" ]; then
        "${cp[@]}" "oci:$CACHE/debian-oci:bench" "docker://$REGISTRY/bench/debian:latest" \
            || die "pushing debian to $REGISTRY failed"
        "${cp[@]}" "oci:$CACHE/debian-oci:bench" "docker://$TLS_ADDR/bench/debian:latest" \
            || die "pushing debian to $TLS_ADDR failed"
    fi
    "${cp[@]}" --src-tls-verify=false "docker://$REGISTRY/test/busybox:latest" \
        "docker://$TLS_ADDR/test/busybox:latest" || die "pushing busybox to $TLS_ADDR failed"
}

# image_ref NAME: the registry path of a bench image (without the registry address).
image_ref() {
    case $1 in
        tiny) printf 'test/busybox:latest' ;;
        debian) printf 'bench/debian:latest' ;;
    esac
}

# image_facts NAME: "N layers, X MiB compressed" from the registry's manifest.
image_facts() {
    local ref path tag
    ref=$(image_ref "$1")
    path=${ref%:*}
    tag=${ref##*:}
    curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY/v2/$path/manifests/$tag" \
      | "$PYTHON" -c '
import json, sys
m = json.load(sys.stdin)
l = m.get("layers", [])
print("%d layer%s, %.1f MiB compressed" % (len(l), "" if len(l) == 1 else "s", sum(x["size"] for x in l) / 2**20))
'
}
