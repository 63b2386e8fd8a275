#!/usr/bin/env bash
# Builds the Debian package of xdpgw from this workspace with dpkg-deb:
#   cargo build --release -p xdpgw-control --bin xdpgw
#   pkg/build-deb.sh                  # -> target/debian/xdpgw_VERSION_ARCH.deb
# Options: --binary PATH (default target/release/xdpgw), --out DIR (default
# target/debian), --version V (default: the workspace's version), --fast
# (gzip -1 instead of xz: for tests). The binary is
# packaged stripped. Needs dpkg-deb, dpkg-shlibdeps (Debian's dpkg-dev) and
# strip (binutils).
#
# What it holds:
#   /usr/bin/xdpgw
#   /lib/systemd/system/xdpgw.service        conf/xdpgw.service, for /usr/bin
#   /etc/xdpgw/gateway.toml, gateway.rules, gateway.rules6
#                                            conffiles (pkg/etc, conf/)
#   /usr/share/man/man8/xdpgw*.8.gz          from the CLI (`xdpgw generate`)
#   bash, zsh and fish completions           from the CLI (`xdpgw generate`)
#   /usr/share/xdpgw/grafana-dashboard.json  conf/grafana-dashboard.json
#   /usr/share/doc/xdpgw/                    README, copyright, examples/
# Depends: the shared libraries the binary links (dpkg-shlibdeps). xdpgw
# runs no other program; `xdpgw demo` uses iproute2, iputils-ping and
# tcpdump (Suggests).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
binary=$root/target/release/xdpgw
out=$root/target/debian
compress=(-Zxz -z6)
version=
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        --version) version=$2; shift 2 ;;
        *) echo "build-deb: unknown argument $1 (--binary PATH, --out DIR, --version V, --fast)" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "build-deb: $binary: no such binary; build it first (cargo build --release -p xdpgw-control --bin xdpgw) or pass --binary" >&2; exit 1; }

[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d "${TMPDIR:-/tmp}/xdpgw-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
tree=$stage/xdpgw

install -D -m 755 "$binary" "$tree/usr/bin/xdpgw"
strip --strip-unneeded "$tree/usr/bin/xdpgw"
sed 's|/usr/local/bin/xdpgw|/usr/bin/xdpgw|g' "$root/conf/xdpgw.service" > "$stage/xdpgw.service"
install -D -m 644 "$stage/xdpgw.service" "$tree/lib/systemd/system/xdpgw.service"
install -D -m 644 "$root/pkg/etc/gateway.toml" "$tree/etc/xdpgw/gateway.toml"
install -D -m 644 "$root/conf/gateway.rules" "$tree/etc/xdpgw/gateway.rules"
install -D -m 644 "$root/conf/gateway.rules6" "$tree/etc/xdpgw/gateway.rules6"

# Man pages and completions, from the binary's own CLI definitions.
"$tree/usr/bin/xdpgw" generate "$stage/gen" >/dev/null
for page in "$stage"/gen/man8/*.8; do
    install -D -m 644 "$page" "$tree/usr/share/man/man8/$(basename "$page")"
    gzip -9n "$tree/usr/share/man/man8/$(basename "$page")"
done
install -D -m 644 "$stage/gen/completions/xdpgw.bash" "$tree/usr/share/bash-completion/completions/xdpgw"
install -D -m 644 "$stage/gen/completions/_xdpgw" "$tree/usr/share/zsh/vendor-completions/_xdpgw"
install -D -m 644 "$stage/gen/completions/xdpgw.fish" "$tree/usr/share/fish/vendor_completions.d/xdpgw.fish"

install -D -m 644 "$root/conf/grafana-dashboard.json" "$tree/usr/share/xdpgw/grafana-dashboard.json"
doc=$tree/usr/share/doc/xdpgw
install -D -m 644 "$root/README.md" "$doc/README.md"
gzip -9n "$doc/README.md"
for f in gateway.toml gateway.rules gateway.rules6 xdpgw.service; do
    install -D -m 644 "$root/conf/$f" "$doc/examples/$f"
done
install -D -m 644 "$root/conf/grafana-dashboard.json" "$doc/examples/grafana-dashboard.json"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: xdpgw"
    echo
    echo "Files: *"
    echo "License: Apache-2.0"
    echo " On Debian systems, the full text of the Apache License 2.0 is in"
    echo " /usr/share/common-licenses/Apache-2.0."
} > "$doc/copyright"
chmod 644 "$doc/copyright"

# Run-time dependencies: the libraries the binary links, as dpkg-shlibdeps
# finds them (it wants a debian/control to sit beside).
mkdir -p "$stage/shlibs/debian"
printf 'Source: xdpgw\n\nPackage: xdpgw\nArchitecture: any\n' > "$stage/shlibs/debian/control"
depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O -e"$tree/usr/bin/xdpgw" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies for $binary" >&2; exit 1; }

mkdir -p "$tree/DEBIAN"
for s in postinst prerm postrm; do
    install -m 755 "$root/pkg/debian/$s" "$tree/DEBIAN/$s"
done
printf '/etc/xdpgw/gateway.toml\n/etc/xdpgw/gateway.rules\n/etc/xdpgw/gateway.rules6\n' > "$tree/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
cat > "$tree/DEBIAN/control" <<CONTROL
Package: xdpgw
Version: $version
Architecture: $arch
Maintainer: xdpgw developers <xdpgw@localhost>
Installed-Size: $size
Depends: $depends
Suggests: iproute2, iputils-ping, tcpdump
Section: net
Priority: optional
Description: userspace IPv4 router/NAT gateway over AF_XDP running iptables rules
 xdpgw forwards, tracks connections and translates addresses in user space
 over AF_XDP sockets, with rule sets written as iptables-save files or
 iptables command scripts (raw, mangle, nat and filter tables).
 .
 This package holds the xdpgw program, its systemd service, man pages,
 shell completions, example configurations and a Grafana dashboard for
 its Prometheus metrics.
CONTROL
(cd "$tree" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$tree/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/xdpgw_${version}_${arch}.deb
dpkg-deb --root-owner-group "${compress[@]}" --build "$tree" "$deb" >/dev/null
echo "$deb"
