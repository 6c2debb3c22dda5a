#!/usr/bin/env bash
# Lays out the container image's root file system in DIR from a built forebay binary:
# the binary (stripped), the shared libraries the dynamic loader gives it (from ldd),
# the CA certificates (for TLS to destinations, brokers and PostgreSQL), a user and
# group of its own (65532), the configuration in /etc/forebay, and /data and /tmp.
# Used by the Containerfile's build stage and by scripts/image.
#
# Usage: contrib/container/rootfs.sh BINARY DIR
set -euo pipefail

bin=$1
root=$2
here=$(dirname "$0")

rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/forebay" "$root/etc/ssl/certs" "$root/data" "$root/tmp"
strip -o "$root/usr/local/bin/forebay" "$bin"
# Each library at the path the loader found it at (the loader itself included).
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nforebay:x:65532:65532:forebay:/data:/sbin/nologin\n' \
  > "$root/etc/passwd"
printf 'root:x:0:\nforebay:x:65532:\n' > "$root/etc/group"
cp "$here/forebay.toml" "$root/etc/forebay/forebay.toml"
chmod 1777 "$root/tmp"
chmod 0755 "$root/data"
