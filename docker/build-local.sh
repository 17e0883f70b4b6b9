#!/usr/bin/env bash
# Builds the broker and operator images without a Docker engine or a
# registry, from a release build on this (Debian bookworm) machine:
#
#   docker/build-local.sh [--smoke] [OUT_DIR]   # default: target/images
#
# IMAGES="broker" limits it to the broker image (default "broker operator").
#
# Each image is the same runtime as the Dockerfiles' final stage: the
# binary, the shared libraries it links (from this machine's Debian
# packages), CA certificates, /etc/passwd with the non-root user 10001, and
# nothing else (no shell). The images are assembled with buildah (Debian
# package `buildah`, vfs storage, chroot isolation, so it works as root in a
# container too) and written as docker-archive tarballs that
# `kind load image-archive` and `docker load` accept:
#
#   kind load image-archive target/images/rivulet-broker.tar
#   kind load image-archive target/images/rivulet-operator.tar
#
# `--smoke` also runs the broker image (host network) and checks that
# Kafka clients can use it: kcat -L, a produce and a consume.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
    SMOKE=1
    shift
fi
OUT="${1:-target/images}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot

for tool in buildah ldd; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install buildah)" >&2; exit 1; }
done

IMAGES="${IMAGES:-broker operator}"
mkdir -p "$OUT"

# A root filesystem holding `binary` at /usr/local/bin and what it links.
rootfs() {
    local binary="$1" root="$2"
    rm -rf "$root"
    mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
    cp "$binary" "$root/usr/local/bin/"
    # The release profile keeps debug info for profiling; images don't need it.
    strip --strip-debug "$root/usr/local/bin/$(basename "$binary")"
    ldd "$binary" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:10001:10001:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:10001:\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
}

# image NAME BINARY ENTRYPOINT CMD PORTS...
image() {
    local name="$1" binary="$2" entrypoint="$3" cmd="$4"
    shift 4
    local root
    root="$(mktemp -d)"
    rootfs "$binary" "$root"
    local ctr
    ctr="$(buildah from scratch)"
    buildah copy --quiet "$ctr" "$root" / >/dev/null
    # The data directory belongs to the runtime user (Kubernetes mounts a
    # volume there; a plain run uses this one).
    local data
    data="$(mktemp -d)"
    buildah copy --quiet --chown 10001:10001 "$ctr" "$data" /var/lib/rivulet >/dev/null
    rm -rf "$data"
    local ports=()
    for port in "$@"; do ports+=(--port "$port"); done
    buildah config --user 10001:10001 --entrypoint "$entrypoint" --cmd "$cmd" \
        --label "org.opencontainers.image.version=$VERSION" "${ports[@]}" "$ctr"
    buildah commit --quiet --rm "$ctr" "rivulet/$name:$VERSION" >/dev/null
    rm -f "$OUT/rivulet-$name.tar"
    buildah push --quiet "rivulet/$name:$VERSION" "docker-archive:$OUT/rivulet-$name.tar:rivulet/$name:$VERSION"
    rm -rf "$root"
    echo "$OUT/rivulet-$name.tar ($(du -h "$OUT/rivulet-$name.tar" | cut -f1)): rivulet/$name:$VERSION"
}

for name in $IMAGES; do
    case "$name" in
    broker)
        cargo build --release -j2 -p rivulet-server --bin rivulet
        image broker target/release/rivulet '["/usr/local/bin/rivulet"]' \
            '["broker", "--data-dir=/var/lib/rivulet/data"]' 9092 9093 9404
        ;;
    operator)
        cargo build --release -j2 -p rivulet-operator --bin rivulet-operator
        image operator target/release/rivulet-operator '["/usr/local/bin/rivulet-operator"]' '[]' 8080
        ;;
    *) echo "error: unknown image $name" >&2; exit 1 ;;
    esac
done

if [ "$SMOKE" = 1 ]; then
    command -v kcat >/dev/null || { echo "error: --smoke needs kcat" >&2; exit 1; }
    port=$((20000 + RANDOM % 20000))
    ctr="$(buildah from "rivulet/broker:$VERSION")"
    # Stop the broker itself (SIGTERM, a clean shutdown); buildah run then
    # returns on its own.
    stop() {
        pkill -TERM -f "^/usr/local/bin/rivulet broker .*127.0.0.1:$port" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        buildah rm "$ctr" >/dev/null 2>&1 || true
    }
    trap stop EXIT
    buildah run --network host "$ctr" -- /usr/local/bin/rivulet broker \
        --data-dir=/var/lib/rivulet/data --listeners "PLAINTEXT://127.0.0.1:$port" \
        --metrics-addr none &
    pid=$!
    for _ in $(seq 1 100); do
        kcat -L -b "127.0.0.1:$port" -m 1 >/dev/null 2>&1 && break
        sleep 0.2
    done
    kcat -L -b "127.0.0.1:$port" | head -3
    printf 'one\ntwo\nthree\n' | kcat -P -b "127.0.0.1:$port" -t smoke -X acks=all
    got="$(kcat -C -b "127.0.0.1:$port" -t smoke -o beginning -e -q | tr '\n' ' ')"
    [ "$got" = "one two three " ] || { echo "error: the image's broker returned '$got'" >&2; exit 1; }
    echo "smoke test passed: the broker image serves Kafka clients"
fi
