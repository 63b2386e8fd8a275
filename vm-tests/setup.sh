#!/usr/bin/env bash
# Installs what xdpgw's tests and demo need on a fresh Debian machine:
# iptables (Linux as the oracle; ip6tables too), radvd (the router
# advertisements of the IPv6 lab's Linux gateway), iproute2 (namespaces, veth), conntrack,
# conntrackd and keepalived (the HA labs: state sync against the real daemon, VRRP),
# tcpdump, ethtool, iputils-ping (the end-to-end lab's ping), procps (kill
# and sysctl, which the lab runs; a minimal Debian has neither), netbase
# (/etc/protocols and /etc/services, which iptables and xdpgw read for
# protocol and service names), gcc and libc6-dev (cargo links through the
# system's C compiler, `cc`, which rustup does not install), the package
# test's tools (dpkg-dev's dpkg-shlibdeps, binutils' strip, man-db, and
# systemd, which it boots in a container), prometheus (Debian's, which the
# dashboard test runs against the lab), and the rustfmt and clippy
# components. Then it checks that Rust 1.85 or later is on PATH.
# Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
# type -P finds programs only: `kill` is also a shell builtin, and the lab runs the program.
for pair in iptables-restore:iptables ip6tables-restore:iptables radvd:radvd ip:iproute2 conntrack:conntrack conntrackd:conntrackd keepalived:keepalived tcpdump:tcpdump ethtool:ethtool ping:iputils-ping python3:python3 kill:procps sysctl:procps \
    dpkg-shlibdeps:dpkg-dev strip:binutils man:man-db nsenter:util-linux setpriv:util-linux prometheus:prometheus; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    PATH="$PATH:/usr/sbin:/sbin" type -P "$cmd" >/dev/null 2>&1 || [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done
[ -f /etc/protocols ] && [ -f /etc/services ] || need+=(netbase)
[ -x /lib/systemd/systemd ] || need+=(systemd)
# Without a C compiler that links, every build stops at "linker `cc` not found".
echo 'int main(void) { return 0; }' | cc -x c -o /dev/null - >/dev/null 2>&1 || need+=(gcc libc6-dev)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages ${need[*]}; run this script as root to install them" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "setup: cargo is in ~/.cargo/bin but not on PATH: run '. \"\$HOME/.cargo/env\"' (or log in again)" >&2
    else
        echo "setup: cargo not found: install Rust 1.85 or later with rustup (https://rustup.rs); Debian 12's cargo (1.63) is too old" >&2
    fi
    exit 1
fi
rust=$(rustc --version | cut -d' ' -f2)
if [[ $rust =~ ^([0-9]+)\.([0-9]+) ]] && ((BASH_REMATCH[1] == 1 && BASH_REMATCH[2] < 85)); then
    echo "setup: $(command -v rustc) is Rust $rust; xdpgw needs 1.85 or later (rustup: https://rustup.rs; Debian 12's cargo, 1.63, is too old)" >&2
    exit 1
fi

if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
echo "setup: ok"
