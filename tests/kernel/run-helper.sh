#!/usr/bin/env bash
# Host helper on the real patched KVM: boots the kernel tier's guest (stock
# Debian 6.12 under QEMU TCG with emulated AMD SVM + NPT, patched kvm.ko and
# kvm-amd.ko from kernel-patch/build-modules.sh) with python3 and
# qemu-system-x86_64 inside, and checks that
#   1. the helper's Python layer (plugins/module_utils, copied at test time)
#      splits and holds a VM owned by another process (helper/holder.c);
#   2. the kvm-presplit CLI, installed as the presplit role installs it,
#      splits, holds and releases a real nested QEMU -accel kvm whose L2
#      Linux guest touched THP-backed memory, with its exit statuses;
#   3. the guest's dmesg has no WARN/BUG/lockdep/RCU report.
# One PASS/FAIL line per check, last line "N passed, N failed"; exit status
# non-zero on any failure.  See helper/README.md.
#
# Needs only the Debian packages of scripts/install-deps.sh.  It does not
# need tests/kernel/run.sh to have run: the stock kernel is unpacked with the
# same lib/guest-kernel.sh function into the same cache.
#
# Cache: ${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests/helper,
# keyed by content hashes; logs of the last run in its logs/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HELPER_DIR=$(cd "$(dirname "$0")/helper" && pwd)
KTEST_DIR=$(cd "$HELPER_DIR/.." && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
HELPER_CACHE=$CACHE/helper
LOG_DIR=${KTEST_HELPER_LOG_DIR:-$HELPER_CACHE/logs}
# shellcheck source=lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"   # for GUEST_CPU: the tier's CPU model
# shellcheck source=lib/check.sh
. "$KTEST_DIR/lib/check.sh"
# shellcheck source=lib/build-programs.sh
. "$KTEST_DIR/lib/build-programs.sh"

# The holder, static like the kernel tier's programs and linked with the same
# ktest library, cached by its sources, the patched headers and the compiler.
build_holder() {
	local key out
	key=$({
		cat "$HELPER_DIR/holder.c" "$KTEST_DIR"/src/ktest.[ch] "$UAPI_INCLUDE"/linux/kvm.h "$UAPI_INCLUDE"/asm/kvm.h
		gcc --version
	} | sha256sum | cut -c1-16)
	out=$HELPER_CACHE/holder-$key
	if [ ! -x "$out" ]; then
		link_with_ktest "$UAPI_INCLUDE" "$out.tmp" "$HELPER_DIR/holder.c"
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}

# The part of the initramfs that only changes with the host's packages or the
# L2 guest: busybox (/bin/sh for the inits), python3 with its standard library,
# qemu-system-x86_64 with its firmware, the shared libraries of both, and the
# L2 guest (the same stock kernel, a busybox initramfs).  Keyed by every
# installed package version, the Debian kernel version, the L2 init and this
# function; a few seconds to build, ~50 MB.
build_base() {
	local key out root python stdlib lib
	key=$({
		dpkg-query -W -f '${Package}=${Version}\n'
		echo "$DEB_VERSION"
		cat "$HELPER_DIR/l2-init"
		declare -f build_base
	} | sha256sum | cut -c1-16)
	out=$HELPER_CACHE/base-$key.cpio.gz
	if [ ! -f "$out" ]; then
		root=$(mktemp -d)
		# Debian's python3 (the one the presplit role's launcher names), not
		# whatever python3 comes first in PATH.
		python=$(readlink -f /usr/bin/python3)
		stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
		mkdir -p "$root"/{bin,usr/bin,usr/share/qemu,usr/share/seabios,etc,helper} "$root$(dirname "$stdlib")"
		cp /bin/busybox "$root/bin/"
		ln -s busybox "$root/bin/sh"
		cp "$python" "$root/usr/bin/python3"
		cp /usr/bin/qemu-system-x86_64 "$root/usr/bin/"
		rsync -a --exclude test --exclude idlelib --exclude tkinter --exclude turtledemo --exclude ensurepip \
			--exclude lib2to3 --exclude pydoc_data --exclude dist-packages --exclude site-packages \
			--exclude __pycache__ "$stdlib" "$root$(dirname "$stdlib")/"
		for lib in $( { ldd "$python" /usr/bin/qemu-system-x86_64 "$stdlib"/lib-dynload/*.so 2>/dev/null || true; } |
			awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | sort -u); do
			cp -L --parents "$lib" "$root/"
		done
		cp /etc/ld.so.cache "$root/etc/"
		cp -L /usr/share/seabios/*.bin "$root/usr/share/seabios/"
		cp -L /usr/share/qemu/{kvmvapic,linuxboot_dma,multiboot_dma}.bin "$root/usr/share/qemu/"
		cp "$stock_dir/vmlinuz" "$root/helper/l2-vmlinuz"
		mkdir -p "$root/l2"/{bin,dev,proc,tmp}
		cp /bin/busybox "$root/l2/bin/"
		ln -s busybox "$root/l2/bin/sh"
		install -m 0755 "$HELPER_DIR/l2-init" "$root/l2/init"
		(cd "$root/l2" && find . | cpio -o -H newc --quiet) | gzip -1 >"$root/helper/l2-initramfs.cpio.gz"
		rm -rf "$root/l2"
		(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out.tmp"
		rm -rf "$root"
		rm -f "$HELPER_CACHE"/base-*.cpio.gz   # superseded ones
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}

# The part rebuilt every run (small): init, the modules, the guest driver and
# holder, and the helper package straight from plugins/module_utils laid out
# like roles/presplit/tasks/install.yml installs it, launcher included.
build_run_archive() {
	local out=$1 holder=$2 root lib
	root=$(mktemp -d)
	lib=$root/usr/local/lib/presplit-kvm/presplit_kvm_helper
	mkdir -p "$root"/{dev,proc,sys,tmp,run,helper,lib/modules/stock,lib/modules/patched,usr/local/sbin} "$lib"
	install -m 0755 "$HELPER_DIR/init" "$root/init"
	cp "$stock_dir"/modules/{irqbypass,ccp}.ko "$root/lib/modules/stock/"
	cp "$(patched_module kvm "$MODULES_DIR")" "$(patched_module kvm-amd "$MODULES_DIR")" "$root/lib/modules/patched/"
	cp "$HELPER_DIR/guest_driver.py" "$root/helper/"
	cp "$holder" "$root/helper/holder"
	cp "$REPO"/plugins/module_utils/presplit_kvm_helper/*.py "$lib/"
	cat >"$root/usr/local/sbin/kvm-presplit" <<-'LAUNCHER'
	#!/usr/bin/python3
	import sys

	sys.path.insert(0, "/usr/local/lib/presplit-kvm")
	from presplit_kvm_helper.cli import main

	sys.exit(main())
	LAUNCHER
	chmod 0755 "$root/usr/local/sbin/kvm-presplit"
	(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out"
	rm -rf "$root"
}

# Like boot.sh's boot_guest (console on the first serial port, results on
# the second), but with one vCPU: with -smp 2 under single-threaded TCG the
# nested L2 guest had not written its memory after 300 s (~15 s with
# multi-threaded TCG, which boot.sh rules out: the guest crashes when the
# kernel patches its own text while the other vCPU runs it, as it does when
# the first VM is created).  With one vCPU the text patching cannot race and
# L2 writes its memory in ~13 s.  2G: the holder and L2 need ~600 MiB.
boot_helper_guest() {
	local kernel=$1 initrd=$2 logs=$3
	rm -f "$logs/console.log" "$logs/results.log"
	timeout --kill-after=10 "${KTEST_HELPER_TIMEOUT_S:-480}" \
	qemu-system-x86_64 \
		-accel tcg,thread=single -cpu "$GUEST_CPU" -smp 1 -m 2G \
		-nographic -no-reboot -monitor none \
		-serial "file:$logs/console.log" -serial "file:$logs/results.log" \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 reboot=t transparent_hugepage=always $GUEST_WATCHDOG_ARGS" 2>"$logs/qemu.err"
}

started=$(date +%s)
eval "$("$REPO/kernel-patch/fetch-debian.sh")"
eval "$("$REPO/kernel-patch/build-modules.sh")"
echo "== helper on the patched KVM: Debian $DEB_VERSION ($KERNEL_ABI), guest cpu $GUEST_CPU"
stock_dir=$CACHE/$DEB_VERSION/stock
prepare_stock_kernel "$stock_dir"
mkdir -p "$HELPER_CACHE" "$LOG_DIR"
holder=$(build_holder)
base=$(build_base)
build_run_archive "$LOG_DIR/run.cpio.gz" "$holder"
# The kernel unpacks concatenated archives in order, the later over the earlier.
cat "$base" "$LOG_DIR/run.cpio.gz" >"$LOG_DIR/initramfs.cpio.gz"
echo "== booting (logs: $LOG_DIR/console.log, $LOG_DIR/results.log)"
boot_retrying_boot_crash "$LOG_DIR" KBOOT boot_helper_guest "$stock_dir/vmlinuz" "$LOG_DIR/initramfs.cpio.gz" "$LOG_DIR" ||
	echo "qemu exited with status $? (stderr: $LOG_DIR/qemu.err)"
echo "== guest done after $(($(date +%s) - started)) s"

results=$LOG_DIR/results.txt
tr -d '\r' <"$LOG_DIR/results.log" >"$results"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
checker=0
python3 "$HELPER_DIR/check_results.py" "$results" >"$report" || checker=$?
# 3: some checks failed (their FAIL lines are in the report); else it crashed.
[ "$checker" -eq 0 ] || [ "$checker" -eq 3 ] ||
	echo "FAIL  host/check-results  check_results.py exited with status $checker" >>"$report"
if ! grep -q '^KDMESG end' "$results"; then
	echo "FAIL  guest/finished  no dmesg dump: the guest died or hung (see $LOG_DIR/console.log)" >>"$report"
	grep -aE "$DMESG_FAILURE_PATTERNS|RIP:|panic" "$LOG_DIR/console.log" | head -20 | sed 's/^/    console: /' >>"$report" || true
elif dmesg_failures "$results" >"$report.dmesg"; then
	echo "FAIL  guest/dmesg-clean" >>"$report"
	sed 's/^/    dmesg: /' "$report.dmesg" >>"$report"
else
	echo "PASS  guest/dmesg-clean  no WARN/BUG/Oops/lockdep/RCU/hung-task report" >>"$report"
fi
rm -f "$report.dmesg"
cat "$report"
passed=$(grep -c '^PASS ' "$report" || true)
failed=$(grep -c '^FAIL ' "$report" || true)
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
