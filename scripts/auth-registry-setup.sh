#!/bin/sh
# Test setup for the authenticated registries (run as root, idempotent):
#  - a private CA and a server certificate for 127.0.0.1/localhost, the CA installed in the
#    system trust store (as sites do with their own CA);
#  - Debian's docker-registry with htpasswd Basic auth behind TLS on 127.0.0.1:5001;
#  - a second one on 127.0.0.1:5002 (TLS, same storage) with `auth: token`, whose tokens come
#    from the token server in the test crate (tests/src/token_server.rs, 127.0.0.1:5003),
#    signed with the key made here;
#  - the busybox fixture pushed to 127.0.0.1:5001/private/busybox:latest with credentials.
# Usage: scripts/auth-registry-setup.sh
set -eu

STATE_DIR=${APPTAINER_TEST_STATE:-/var/lib/apptainer-test}
AUTH_DIR=$STATE_DIR/registry-auth
FIXTURES_DIR=$STATE_DIR/fixtures
BASIC_ADDR=127.0.0.1:5001
TOKEN_ADDR=127.0.0.1:5002
TOKEN_REALM=http://127.0.0.1:5003/token
# The test users of the registries; tests/tests/auth_*.rs use the same values.
USERS="alice:Alice-pw-7f2e9c bob:Bob-pw-31d8aa"
CA_NAME=apptainer-test-ca

say() { printf '%s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "auth-registry-setup.sh must run as root"
for c in openssl htpasswd docker-registry skopeo curl update-ca-certificates setpriv; do
    command -v "$c" >/dev/null 2>&1 || die "missing command $c: run scripts/install-deps.sh first"
done

install -d -m 0755 "$AUTH_DIR" "$AUTH_DIR/tls" "$AUTH_DIR/token"
install -d -m 0755 -o docker-registry -g docker-registry "$AUTH_DIR/data"

# --- certificates ---------------------------------------------------------------------------
tls=$AUTH_DIR/tls
if [ ! -s "$tls/server.crt" ] || ! openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Apptainer test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
    say "made the test CA and server certificate in $tls"
fi
chmod 0600 "$tls/ca.key"
chown docker-registry "$tls/server.key"
chmod 0600 "$tls/server.key"
if ! cmp -s "$tls/ca.crt" "/usr/local/share/ca-certificates/$CA_NAME.crt"; then
    install -m 0644 "$tls/ca.crt" "/usr/local/share/ca-certificates/$CA_NAME.crt"
    update-ca-certificates >/dev/null
    say "installed the test CA in the system trust store"
fi

# The token signing key (RS256); its certificate is the registry's rootcertbundle.
tok=$AUTH_DIR/token
if [ ! -s "$tok/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=apptainer-test-token" \
        -keyout "$tok/key.pem" -out "$tok/cert.pem" 2>/dev/null
    say "made the token signing key in $tok"
fi
chmod 0600 "$tok/key.pem"
chmod 0644 "$tok/cert.pem"

# --- htpasswd ---------------------------------------------------------------------------------
htp=$AUTH_DIR/htpasswd
: > "$htp.new"
for u in $USERS; do
    htpasswd -B -b -C 5 "$htp.new" "${u%%:*}" "${u#*:}" 2>/dev/null
done
chown docker-registry "$htp.new"
chmod 0600 "$htp.new"
# Keep the old file (and the running registry's view of it) when the users did not change.
if [ -f "$htp" ]; then
    same=yes
    for u in $USERS; do
        htpasswd -v -b "$htp" "${u%%:*}" "${u#*:}" >/dev/null 2>&1 || same=no
    done
    [ "$same" = yes ] && rm -f "$htp.new"
fi
[ -f "$htp.new" ] && mv "$htp.new" "$htp"

# --- registries -------------------------------------------------------------------------------
healthy() { # ADDR: any answer over trusted TLS (401 is fine)
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "https://$1/v2/" 2>/dev/null) || return 1
    [ "$code" = 401 ] || [ "$code" = 200 ]
}

start_registry() { # NAME ADDR AUTH_YAML
    name=$1 addr=$2
    conf=$AUTH_DIR/$name.yml
    cat > "$conf.new" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $AUTH_DIR/data
  delete:
    enabled: true
http:
  addr: $addr
  tls:
    certificate: $tls/server.crt
    key: $tls/server.key
$3
CONF
    pidfile=$AUTH_DIR/$name.pid
    if cmp -s "$conf.new" "$conf" && healthy "$addr"; then
        rm -f "$conf.new"
        say "registry $name already answering on $addr"
        return 0
    fi
    mv "$conf.new" "$conf"
    if [ -f "$pidfile" ]; then
        old=$(cat "$pidfile")
        [ "$(cat "/proc/$old/comm" 2>/dev/null)" = docker-registry ] && kill "$old" 2>/dev/null && sleep 0.5
        rm -f "$pidfile"
    fi
    setsid setpriv --reuid=docker-registry --regid=docker-registry --clear-groups \
        docker-registry serve "$conf" </dev/null >>"$AUTH_DIR/$name.log" 2>&1 &
    echo $! > "$pidfile"
    i=0
    while ! healthy "$addr"; do
        i=$((i + 1))
        if [ "$i" -gt 100 ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            tail -n 20 "$AUTH_DIR/$name.log" >&2
            die "registry $name did not come up on $addr"
        fi
        sleep 0.1
    done
    say "registry $name started on $addr (pid $(cat "$pidfile"))"
}

start_registry basic "$BASIC_ADDR" "auth:
  htpasswd:
    realm: apptainer-test
    path: $htp"
start_registry token "$TOKEN_ADDR" "auth:
  token:
    realm: $TOKEN_REALM
    service: apptainer-test-registry
    issuer: apptainer-test-token-server
    rootcertbundle: $tok/cert.pem"

# --- the private image ------------------------------------------------------------------------
first=${USERS%% *}
creds=${first}
if ! curl -fsS -o /dev/null --max-time 5 -u "$creds" \
    -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    "https://$BASIC_ADDR/v2/private/busybox/manifests/latest" 2>/dev/null; then
    [ -d "$FIXTURES_DIR/oci/busybox" ] || die "fixtures missing: run scripts/test-setup.sh first"
    skopeo copy -q --dest-creds "$creds" "oci:$FIXTURES_DIR/oci/busybox:latest" \
        "docker://$BASIC_ADDR/private/busybox:latest"
    say "pushed private/busybox:latest to $BASIC_ADDR"
fi
say "auth registries ready: basic https://$BASIC_ADDR, token https://$TOKEN_ADDR (realm $TOKEN_REALM)"
