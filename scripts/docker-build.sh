#!/usr/bin/env bash
# Builds the btnode Docker image (btnode:latest, or $IMAGE) from a clean
# checkout: a release build, then a scratch image holding the stripped
# binary and the exact shared libraries it links (from ldd). Needs no
# registry: nothing is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-btnode:latest}
cargo build --release -q
ctx=target/docker
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/etc"
strip -o "$ctx/rootfs/btnode" target/release/btnode
# The dynamic loader and every library it resolves, at the same paths.
ldd target/release/btnode | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' |
  while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
# glibc resolves names through files then DNS (Docker supplies both).
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp Dockerfile "$ctx/"
if ! docker build -q -t "$image" "$ctx" > "$ctx/build.log" 2>&1; then
  cat "$ctx/build.log"
  exit 1
fi
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MiB", $1/1048576}'))"
