#!/usr/bin/env bash
# Installs what xdpgw's tests and demo need on a fresh Debian machine:
# iptables (Linux as the oracle), iproute2 (namespaces, veth), conntrack,
# tcpdump, ethtool, iputils-ping (the end-to-end lab's ping), netbase
# (/etc/protocols and /etc/services, which iptables and xdpgw read for
# protocol and service names), and the rustfmt and clippy components.
# Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
for pair in iptables-restore:iptables ip:iproute2 conntrack:conntrack tcpdump:tcpdump ethtool:ethtool ping:iputils-ping python3:python3; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -f /etc/protocols ] && [ -f /etc/services ] || need+=(netbase)

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

if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
echo "setup: ok"
