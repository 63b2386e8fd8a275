#!/usr/bin/env bash
# A throw-away Debian machine with systemd as its PID 1, for the package
# test (vm-tests/tests/package.rs), made from this machine's own root file
# system without changing it:
#
#   systemd-container.sh NETNS WORKDIR CGROUP
#
# NETNS: the network namespace the container is to have (`ip netns`: the
# lab's gateway namespace); CGROUP: a new, empty cgroup v2 directory for it
# (the caller removes it afterwards).
#
# - root: an overlay of / (read-only lower layer) with a tmpfs upper layer
#   (WORKDIR/layers, seen only in the container's mount namespace): apt,
#   dpkg and systemd write there, never to this machine's files, and the
#   upper layer shows exactly what the container changed;
# - its own PID, mount and cgroup namespaces (systemd is PID 1; its cgroup
#   tree is CGROUP); the network namespace it was started in;
# - /proc/sys read-only but for /proc/sys/net (the namespace's own), so no
#   kernel-wide tunable can change; /sys read-only; a /dev of its own with
#   the usual nodes and /dev/net/tun mode 0666 as Debian makes it; /run and
#   /tmp on tmpfs;
# - no CAP_SYS_MODULE, CAP_SYS_TIME or CAP_SYS_BOOT, no unit wanted by
#   another (the *.wants and *.requires directories are removed in the
#   overlay), no generators, and the units that touch the kernel or the
#   clock masked: systemd starts only what `systemctl start` asks for and
#   its dependencies;
# - no /usr/sbin/policy-rc.d (a container image's: it stops maintainer
#   scripts from starting and stopping services, which a booted machine
#   lets them do).
#
# It execs systemd with `container=xdpgw-test`; `systemctl exit` (or
# SIGKILL to it) ends the container, and with it everything in it.
set -euo pipefail

if [ "${1:-}" != --inner ]; then
    netns=$1
    work=$2
    cgroup=$3
    echo $$ > "$cgroup/cgroup.procs"
    exec ip netns exec "$netns" unshare --pid --fork --mount --cgroup --propagation private \
        setpriv --bounding-set=-sys_module,-sys_time,-sys_boot \
        "$0" --inner "$work"
fi

work=$2
mkdir -p "$work/layers" "$work/root"
mount -t tmpfs -o mode=0755,size=1g xdpgw-layers "$work/layers"
mkdir -p "$work/layers/upper" "$work/layers/work"
mount -t overlay xdpgw-root -o "lowerdir=/,upperdir=$work/layers/upper,workdir=$work/layers/work" "$work/root"
R=$work/root

mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
mount -o remount,bind,ro "$R/proc/sys"
[ ! -e "$R/proc/sysrq-trigger" ] || mount --bind -o ro "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,size=16m xdpgw-dev "$R/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<<"$node"
    mknod -m 666 "$R/dev/$name" c "$major" "$minor"
done
mkdir -p "$R/dev/net" "$R/dev/pts" "$R/dev/shm"
mknod -m 666 "$R/dev/net/tun" c 10 200
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o mode=0755 xdpgw-run "$R/run"
mount -t tmpfs -o mode=1777 xdpgw-tmp "$R/tmp"

# Nothing starts unless asked for.
for dir in "$R"/etc/systemd/system "$R"/lib/systemd/system "$R"/usr/lib/systemd/system; do
    [ -d "$dir" ] || continue
    find "$dir" -maxdepth 1 \( -name '*.wants' -o -name '*.requires' \) -type d -exec rm -rf {} +
done
mkdir -p "$R/etc/systemd/system-generators"
for g in "$R"/lib/systemd/system-generators/*; do
    ln -sf /dev/null "$R/etc/systemd/system-generators/$(basename "$g")"
done
for unit in systemd-modules-load.service systemd-sysctl.service systemd-binfmt.service \
    proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-timesyncd.service \
    systemd-udevd.service systemd-udev-trigger.service systemd-tmpfiles-setup-dev.service \
    kmod-static-nodes.service systemd-hwdb-update.service systemd-remount-fs.service \
    systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer systemd-random-seed.service \
    systemd-update-utmp.service systemd-sysusers.service systemd-journal-flush.service \
    systemd-firstboot.service systemd-machine-id-commit.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
# A booted Debian machine has no policy-rc.d: container images add one
# that forbids maintainer scripts to start, restart or stop services.
rm -f "$R/usr/sbin/policy-rc.d"
cat > "$R/etc/systemd/system/xdpgw-test.target" <<'TARGET'
[Unit]
Description=The package test's container
DefaultDependencies=no
TARGET

export container=xdpgw-test
exec chroot "$R" /lib/systemd/systemd --system --unit=xdpgw-test.target --log-target=console
