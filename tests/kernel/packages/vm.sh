# shellcheck shell=bash
# The Debian 12 test host of run-packages.sh: a partitioned disk image with a
# bookworm root (debootstrap from this machine's own Debian mirror), GRUB in
# the MBR, Debian's stock 6.12 kernel (the kernel tier's linux-image package)
# as the only kernel, openssh-server, python3 (+ python3-apt for
# ansible.builtin.apt), systemd-networkd on DHCP, and "panic=10" on the
# kernel command line so that a panicking kernel reboots into GRUB's saved
# default.  Built once (~5 min, as root: loop devices and a chroot), cached
# as a qcow2 base image keyed by its inputs; runs boot copy-on-write
# overlays of it.  Sourced by run-packages.sh; needs DEB_DIR, KERNEL_ABI,
# DEB_VERSION (fetch-debian.sh) and GUEST_CPU (../lib/boot.sh).
#
# Other tiers build on the same image (tests/e2e/run.sh: libvirt hosts):
# VM_IMAGE_PACKAGES adds Debian packages (apt-get, no recommends) and
# VM_IMAGE_SETUP names a shell script run in the image's chroot after them.
# Both unset (run-packages.sh): the image above.

# The URI of this machine's apt source for Debian bookworm (the suite itself,
# not -updates or -security): the image is installed from the same mirror.
debian_mirror() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' 'Created-By: Packages' |
		awk '$2 == "bookworm" && $3 == "Debian" { print $1; exit }'
}

# image_key: identifies the image's inputs (this file, the stock kernel).
image_key() {
	{
		cat "${BASH_SOURCE[0]}"
		echo "$DEB_VERSION"
		# Nothing more when unset: then the inputs are this file and the kernel.
		if [ -n "${VM_IMAGE_PACKAGES:-}" ]; then echo "$VM_IMAGE_PACKAGES"; fi
		if [ -n "${VM_IMAGE_SETUP:-}" ]; then cat "$VM_IMAGE_SETUP"; fi
	} | sha256sum | cut -c1-16
}

# build_image DIR: DIR/base.qcow2, DIR/id_ed25519 (root's key in the image)
# and DIR/host_key.pub (the image's SSH host key), unless already there.
# This machine's kernel scans no partition tables on loop devices, so the
# root filesystem is made through a loop device at the partition's offset,
# and GRUB is installed from the image's own first boot (QEMU loads the
# kernel directly), where /dev/vda is a normal disk.  Sets an EXIT trap:
# call it in a subshell.
build_image() {
	local dir=$1 mirror tmp raw loop mnt tool fs
	[ -f "$dir/.done" ] && return 0
	mirror=$(debian_mirror)
	[ -n "$mirror" ] || { echo "no Debian bookworm source in this machine's apt configuration" >&2; return 1; }
	for tool in debootstrap sfdisk mkfs.ext4 qemu-img losetup; do
		command -v "$tool" >/dev/null || { echo "building the test image needs $tool" >&2; return 1; }
	done
	rm -rf "$dir"
	mkdir -p "$dir"
	tmp=$(mktemp -d)
	raw=$tmp/disk.raw
	mnt=$tmp/root
	truncate -s 6G "$raw"
	echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
	loop=$(losetup --find --show --offset $((2048 * 512)) "$raw")
	# Undo the mounts and the loop device however this ends (set -e too).
	# shellcheck disable=SC2064 # expand now: these locals are gone then
	trap "umount -R '$mnt' 2>/dev/null; losetup -d '$loop' 2>/dev/null; rm -rf '$tmp'" EXIT
	mkfs.ext4 -q -L presplit-root "$loop"
	mkdir -p "$mnt"
	mount "$loop" "$mnt"
	echo "   debootstrap bookworm from $mirror" >&2
	debootstrap --variant=minbase \
		--include=systemd-sysv,udev,dbus,kmod,openssh-server,python3,python3-apt,initramfs-tools,linux-base,zstd,procps,iproute2 \
		bookworm "$mnt" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
		echo "debootstrap failed: $dir/debootstrap.log" >&2
		return 1
	}
	for fs in dev proc sys; do
		mount --rbind "/$fs" "$mnt/$fs"
		mount --make-rslave "$mnt/$fs"   # so that unmounting stays in the chroot
	done
	cp "$DEB_DIR"/linux-image-"$KERNEL_ABI"-unsigned_*.deb "$mnt/tmp/"
	if [ -n "${VM_IMAGE_SETUP:-}" ]; then cp "$VM_IMAGE_SETUP" "$mnt/tmp/image-setup.sh"; fi
	echo "presplit-pkg-host" >"$mnt/etc/hostname"
	echo "LABEL=presplit-root / ext4 errors=remount-ro 0 1" >"$mnt/etc/fstab"
	cat >"$mnt/etc/systemd/network/50-dhcp.network" <<-'NET'
	[Match]
	Name=en*
	[Network]
	DHCP=ipv4
	NET
	# A throw-away host on loopback: keys only, root only.
	ssh-keygen -q -t ed25519 -N '' -C packages-controller -f "$dir/id_ed25519"
	install -d -m 0700 "$mnt/root/.ssh"
	install -m 0600 "$dir/id_ed25519.pub" "$mnt/root/.ssh/authorized_keys"
	rm -f "$mnt"/etc/ssh/ssh_host_*
	ssh-keygen -q -t ed25519 -N '' -C packages-host -f "$mnt/etc/ssh/ssh_host_ed25519_key"
	cp "$mnt/etc/ssh/ssh_host_ed25519_key.pub" "$dir/host_key.pub"
	printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n' \
		>"$mnt/etc/ssh/sshd_config.d/presplit.conf"
	# GRUB on the serial console (logged by QEMU), a short menu timeout,
	# and panic=10: a kernel that panics reboots, into GRUB's saved default
	# once a grub-reboot entry has been used.
	cat >"$mnt/tmp/grub.defaults" <<-'GRUB'
	GRUB_TIMEOUT=1
	GRUB_CMDLINE_LINUX="console=ttyS0,115200 panic=10"
	GRUB_TERMINAL=serial
	GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
	GRUB
	# grub-pc is installed without a target here and grub-install'ed at the
	# first boot (below), which also records /dev/vda for later upgrades.
	chroot "$mnt" /usr/bin/env IMAGE_PACKAGES="${VM_IMAGE_PACKAGES:-}" /bin/sh -es <<-'CHROOT' >"$dir/chroot.log" 2>&1 || {
	export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
	systemctl enable systemd-networkd
	dpkg -i /tmp/linux-image-*.deb
	printf '%s\n' 'grub-pc grub-pc/install_devices multiselect' \
		'grub-pc grub-pc/install_devices_empty boolean true' | debconf-set-selections
	apt-get install -y -q grub-pc
	sed -i '/^GRUB_TIMEOUT=/d; /^GRUB_CMDLINE_LINUX=/d' /etc/default/grub
	cat /tmp/grub.defaults >>/etc/default/grub
	# (unquoted: a list of package names)
	if [ -n "$IMAGE_PACKAGES" ]; then apt-get install -y -q --no-install-recommends $IMAGE_PACKAGES; fi
	if [ -f /tmp/image-setup.sh ]; then sh -e /tmp/image-setup.sh; fi
	apt-get clean
	rm -f /tmp/*.deb /tmp/grub.defaults /tmp/image-setup.sh
	CHROOT
		echo "setting up the image failed: $dir/chroot.log" >&2
		return 1
	}
	cp "$mnt/boot/vmlinuz-$KERNEL_ABI" "$mnt/boot/initrd.img-$KERNEL_ABI" "$tmp/"
	umount -R "$mnt"
	losetup -d "$loop"
	echo "   first boot: grub-install, update-grub" >&2
	start_vm "$raw" raw "$dir/first-boot.log" -kernel "$tmp/vmlinuz-$KERNEL_ABI" \
		-initrd "$tmp/initrd.img-$KERNEL_ABI" -append "root=LABEL=presplit-root ro console=ttyS0,115200 panic=10"
	VM_DIR=$dir
	if wait_ssh 600 && vm_ssh 'set -e
		echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | debconf-set-selections
		grub-install --target=i386-pc /dev/vda
		update-grub' >"$dir/first-boot-setup.log" 2>&1; then
		vm_ssh 'systemctl poweroff' || true
		wait "$VM_PID" || true
	else
		stop_vm
		echo "first boot of the test image failed: $dir/first-boot*.log" >&2
		return 1
	fi
	qemu-img convert -O qcow2 "$raw" "$dir/base.qcow2"
	trap - EXIT
	rm -rf "$tmp"
	touch "$dir/.done"
}

# start_vm DISK FORMAT CONSOLE [QEMU ARGS...]: boots DISK in the background
# as the kernel tier's TCG KVM host (AMD SVM + NPT), console in CONSOLE;
# sets VM_PID and VM_PORT (127.0.0.1 port forwarded to its sshd).  Reboots
# stay in the same QEMU: no -no-reboot, the role reboots the host.
start_vm() {
	local disk=$1 format=$2 console=$3
	shift 3
	VM_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	# restrict=on: the guest reaches nothing; only the forwarded port reaches it.
	qemu-system-x86_64 \
		-accel tcg,thread=single -cpu "$GUEST_CPU" -smp 1 -m 1536 \
		-display none -monitor none -serial "file:$console" \
		-drive "file=$disk,format=$format,if=virtio" \
		-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$VM_PORT-:22" -device virtio-net-pci,netdev=n0 \
		"$@" 2>"$console.qemu-err" &
	VM_PID=$!
}

stop_vm() {
	if [ -n "${VM_PID:-}" ] && kill -0 "$VM_PID" 2>/dev/null; then
		kill "$VM_PID"
		wait "$VM_PID" 2>/dev/null || true
	fi
	VM_PID=
}

# vm_ssh COMMAND...: runs COMMAND as root on the VM started last (keys of
# the image in VM_DIR, its host key pinned).
vm_ssh() {
	echo "[127.0.0.1]:$VM_PORT $(cut -d' ' -f1-2 "$VM_DIR/host_key.pub")" >"$VM_DIR/known_hosts.$VM_PORT"
	ssh -o UserKnownHostsFile="$VM_DIR/known_hosts.$VM_PORT" -o StrictHostKeyChecking=yes -o BatchMode=yes \
		-o ConnectTimeout=10 -i "$VM_DIR/id_ed25519" -p "$VM_PORT" root@127.0.0.1 "$@"
}

# wait_ssh SECONDS: until the VM answers over SSH; fails if QEMU exits or
# time runs out.
wait_ssh() {
	local deadline=$(($(date +%s) + $1))
	until vm_ssh true 2>/dev/null; do
		if ! kill -0 "$VM_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
			return 1
		fi
		sleep 5
	done
}
