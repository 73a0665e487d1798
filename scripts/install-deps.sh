#!/bin/sh
# Install everything `make demo` and `make test` need on a Debian 12 host:
# Debian packages for the lab (libvirt, QEMU, sshd, busybox), the kernel
# tier (toolchain and kernel packaging tools) and a Python venv built from
# the pinned requirements.  Safe to rerun: apt and pip skip what is there.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${PRESPLIT_VENV:-$here/.venv}
stamp=$venv/.deps-stamp

apt_packages="
  python3 python3-venv python3-dev python3-libvirt
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils
  openssh-server openssh-client
  busybox-static cpio kmod iproute2 procps psmisc util-linux
  build-essential bc flex bison libelf-dev libssl-dev dwarves rsync
  debhelper xz-utils zstd git shellcheck python3-pip-whl
  debootstrap fdisk
  chromium
"

missing=""
for p in $apt_packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps: installing Debian packages:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# --no-install-recommends keeps libvirt from pulling in dnsmasq, polkit and
	# the systemd units the lab does not use: it starts its own daemons.
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -qq --no-install-recommends $missing
fi

# test-requirements.txt includes requirements.txt; the stamp holds both as installed.
reqs="$here/test-requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
	/usr/bin/python3 -m venv --system-site-packages "$venv"
fi
wanted=$(cat "$here/requirements.txt" "$reqs")
if [ ! -f "$stamp" ] || [ "$wanted" != "$(cat "$stamp")" ]; then
	"$venv/bin/pip" install -q --upgrade pip
	(cd "$here" && "$venv/bin/pip" install -q -r "$reqs")
	printf '%s\n' "$wanted" >"$stamp"
fi
