#!/usr/bin/env bash
# Lays out the container image's files in DIR from a built forebay binary: DIR/root,
# the root file system (the binary, stripped; the shared libraries the dynamic loader
# gives it, from ldd; the CA certificates, for TLS to destinations, brokers and
# PostgreSQL; a user and group of its own, 65532; name lookups as a host does them; the
# configuration in /etc/forebay; /tmp), and DIR/data, the empty /data, kept apart so
# that the image creates it owned by 65532 (copied into an existing directory, an
# owner would not apply). Used by the Containerfile's build stage and by scripts/image.
#
# Usage: contrib/container/rootfs.sh BINARY DIR
set -euo pipefail

bin=$1
out=$2
root=$out/root
here=$(dirname "$0")

rm -rf "$out"
mkdir -p "$root/usr/local/bin" "$root/etc/forebay" "$root/etc/ssl/certs" "$root/tmp" "$out/data"
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
# Without it glibc asks DNS first and reads /etc/hosts only when DNS is down, so names
# the runtime writes there (--add-host, host.containers.internal) would not resolve.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
cp "$here/forebay.toml" "$root/etc/forebay/forebay.toml"
chmod 1777 "$root/tmp"
chmod 0700 "$out/data"
