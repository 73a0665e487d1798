#!/usr/bin/env bash
# presplit.kvm.kernel_stage (method modules) run for real: boots the stock
# Debian 6.12 kernel under QEMU TCG with emulated AMD SVM + NPT as a KVM host
# reachable over SSH on loopback only (user-mode network, restrict=on, one
# forwarded port on 127.0.0.1), with the stock kvm modules loaded from
# /lib/modules the way a host boots, and runs playbooks/kernel_stage.yml
# against it with the patched modules of kernel-patch/build-modules.sh
# (kernel_stage_modules_dir, the default source "directory", unless a step
# says otherwise):
#   0. no directory given, and source "apt" with the modules method: refused
#      with a message naming the option, nothing changes;
#   1. check mode reports changes and changes nothing;
#   2. staging (source "build": built by the role on a "remote" build host,
#      fetched to the controller) loads the patched modules: host_info
#      reports KVM_CAP_SPLIT_HUGE_PAGES and mode "patched";
#   3. a second run changes nothing;
#   4. modules that fail to load, and modules that load but lack the
#      capability, are rolled back: stock modules loaded, no updates directory;
#   5. a truncated kvm.ko is refused before anything changes;
#   6. a reload while a process holds a VM fd is refused, nothing changes.
# One PASS/FAIL line per check, last line "N passed, N failed"; exit status
# non-zero on any failure.  See stage/README.md.
#
# Cache: ${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests/stage; logs
# of the last run in its logs/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

STAGE_DIR=$(cd "$(dirname "$0")/stage" && pwd)
KTEST_DIR=$(cd "$STAGE_DIR/.." && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
STAGE_CACHE=$CACHE/stage
LOG_DIR=${KTEST_STAGE_LOG_DIR:-$STAGE_CACHE/logs}
# shellcheck source=lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"   # for GUEST_CPU: the tier's CPU model
# shellcheck source=lib/rootfs.sh
. "$KTEST_DIR/lib/rootfs.sh"
# shellcheck source=lib/report.sh
. "$KTEST_DIR/lib/report.sh"

# The stock modules a Debian KVM host on AMD loads, and the NIC driver.
GUEST_MODULES="arch/x86/kvm/kvm arch/x86/kvm/kvm-amd arch/x86/kvm/kvm-intel virt/lib/irqbypass
drivers/crypto/ccp/ccp drivers/net/virtio_net drivers/net/net_failover net/core/failover"

# Everything but the per-run keys and init: busybox, python3 and its standard
# library (what Ansible modules run with), sshd and sftp-server, kmod, and
# /lib/modules/<abi>/kernel with Debian's .ko.xz files, indexed by depmod.
# Keyed by every installed package version, the Debian version and this
# function; ~30 MB.
build_stage_base() {
	local key out root python stdlib deb mod modtree members=()
	key=$({
		dpkg-query -W -f '${Package}=${Version}\n'
		echo "$DEB_VERSION"
		declare -f build_stage_base
	} | sha256sum | cut -c1-16)
	out=$STAGE_CACHE/base-$key.cpio.gz
	if [ ! -f "$out" ]; then
		root=$(mktemp -d)
		python=$(readlink -f /usr/bin/python3)
		stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
		mkdir -p "$root"/{bin,sbin,dev,proc,sys,usr/bin,usr/sbin,etc/ssh,root/.ssh,run,tmp,var/empty} "$root$(dirname "$stdlib")"
		cp /bin/busybox "$root/bin/"
		ln -s busybox "$root/bin/sh"
		copy_with_libs "$root" /usr/bin/kmod /usr/sbin/sshd /usr/lib/openssh/sftp-server "$stdlib"/lib-dynload/*.so
		copy_with_libs "$root" "$python"
		[ -e "$root/usr/bin/python3" ] || ln -s "$(basename "$python")" "$root/usr/bin/python3"
		rsync -a --exclude test --exclude idlelib --exclude tkinter --exclude turtledemo --exclude ensurepip \
			--exclude lib2to3 --exclude pydoc_data --exclude dist-packages --exclude site-packages \
			--exclude __pycache__ "$stdlib" "$root$(dirname "$stdlib")/"
		cp /etc/ld.so.cache "$root/etc/"
		printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n' >"$root/etc/passwd"
		printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
		cat >"$root/etc/ssh/sshd_config" <<-'SSHD'
		# Keys only, root only, no PAM: a throw-away test host on loopback.
		Port 22
		HostKey /etc/ssh/ssh_host_ed25519_key
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		UseDNS no
		PrintMotd no
		PrintLastLog no
		Subsystem sftp /usr/lib/openssh/sftp-server
		SSHD
		deb=$(echo "$DEB_DIR"/linux-image-"$KERNEL_ABI"-unsigned_*.deb)
		modtree=./lib/modules/$KERNEL_ABI
		for mod in $GUEST_MODULES; do
			members+=("$modtree/kernel/$mod.ko.xz")
		done
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" "$modtree/modules.builtin" \
			"$modtree/modules.builtin.modinfo" "$modtree/modules.order" "${members[@]}"
		depmod -b "$root" "$KERNEL_ABI"
		(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out.tmp"
		rm -rf "$root"
		rm -f "$STAGE_CACHE"/base-*.cpio.gz   # superseded ones
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}

# The per-run part: init, this run's host key and the controller's key.
build_run_archive() {
	local out=$1 keys=$2 root
	root=$(mktemp -d)
	mkdir -p "$root"/{etc/ssh,root/.ssh}
	install -m 0755 "$STAGE_DIR/init" "$root/init"
	install -m 0600 "$keys/host_key" "$root/etc/ssh/ssh_host_ed25519_key"
	install -m 0600 "$keys/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
	(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out"
	rm -rf "$root"
}

# broken_sets DIR: modules the role must roll back or refuse, made from
# Debian's own kvm modules (signed) with another build ID in kvm.ko, so that
# the role sees a build other than the loaded one:
#   DIR/bad-signature  kvm.ko's signature no longer matches: it fails to load;
#   DIR/no-capability  kvm.ko without its signature: loads, but unpatched;
#   DIR/truncated      the patched set with kvm.ko cut short.
broken_sets() {
	local dir=$1 deb name set
	mkdir -p "$dir/bad-signature" "$dir/no-capability" "$dir/truncated"
	deb=$(echo "$DEB_DIR"/linux-image-"$KERNEL_ABI"-unsigned_*.deb)
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "./lib/modules/*/kernel/arch/x86/kvm/*.ko.xz"
	for name in kvm kvm-amd kvm-intel; do
		for set in bad-signature no-capability; do
			xz -dc "$dir/lib/modules/$KERNEL_ABI/kernel/arch/x86/kvm/$name.ko.xz" >"$dir/$set/$name.ko"
		done
		cp "$MODULES_DIR/$name.ko" "$dir/truncated/"
	done
	rm -rf "${dir:?}/lib"
	python3 - "$dir/bad-signature/kvm.ko" "$dir/no-capability/kvm.ko" <<-'PY'
	import re, struct, subprocess, sys
	MARKER = b"~Module signature appended~\n"


	def rebuild_id(path, strip_signature):
	    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
	    old = bytes.fromhex(re.search(r"Build ID: ([0-9a-f]+)", out).group(1))
	    data = open(path, "rb").read()
	    assert data.count(old) == 1 and data.endswith(MARKER)
	    if strip_signature:
	        # struct module_signature (12 bytes, sig_len big-endian last) precedes the marker.
	        sig_len, = struct.unpack(">I", data[-len(MARKER) - 4:-len(MARKER)])
	        data = data[:-len(MARKER) - 12 - sig_len]
	    open(path, "wb").write(data.replace(old, bytes(len(old))))


	rebuild_id(sys.argv[1], strip_signature=False)
	rebuild_id(sys.argv[2], strip_signature=True)
	PY
	truncate -s 1M "$dir/truncated/kvm.ko"
}

report=$(mktemp)
work=$(mktemp -d)
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid"
	fi
	rm -rf "$work" "$report"
}
trap cleanup EXIT


started=$(date +%s)
eval "$("$REPO/kernel-patch/fetch-debian.sh")"
eval "$("$REPO/kernel-patch/build-modules.sh")"
echo "== kernel_stage on a TCG host: Debian $DEB_VERSION ($KERNEL_ABI), guest cpu $GUEST_CPU"
stock_dir=$CACHE/$DEB_VERSION/stock
prepare_stock_kernel "$stock_dir"
mkdir -p "$STAGE_CACHE" "$LOG_DIR"
base=$(build_stage_base)
broken_sets "$work/broken"

ssh-keygen -q -t ed25519 -N '' -C stage-host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C stage-controller -f "$work/id_ed25519"
build_run_archive "$work/run.cpio.gz" "$work"
cat "$base" "$work/run.cpio.gz" >"$LOG_DIR/initramfs.cpio.gz"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "[127.0.0.1]:$port $(cut -d' ' -f1-2 "$work/host_key.pub")" >"$work/known_hosts"

echo "== booting (console: $LOG_DIR/console.log, ssh on 127.0.0.1:$port)"
# restrict=on: the guest reaches nothing; only the forwarded port reaches it.
# The timeout is a hang guard: the steps take ~3 min here, and 15 min under
# other work on both cores ended a run that was still progressing.
timeout --kill-after=10 "${KTEST_STAGE_TIMEOUT_S:-2700}" \
qemu-system-x86_64 \
	-accel tcg,thread=single -cpu "$GUEST_CPU" -smp 1 -m 1536 \
	-nographic -no-reboot -monitor none -serial "file:$LOG_DIR/console.log" \
	-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
	-kernel "$stock_dir/vmlinuz" -initrd "$LOG_DIR/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 reboot=t" 2>"$LOG_DIR/qemu.err" &
qemu_pid=$!

# One connection for every command: a new ssh handshake per command timed out (after 10 s)
# with both cores busy and the guest under TCG, and ended a run that was progressing. The
# master is opened by the first command that reaches the guest and ends with its QEMU.
ssh_opts=(-o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes
	-o ConnectTimeout=60 -o ServerAliveInterval=30 -o ServerAliveCountMax=10
	-o ControlMaster=auto -o ControlPath="$work/ssh-%C" -o ControlPersist=yes
	-i "$work/id_ed25519" -p "$port")
# shellcheck disable=SC2029 # the commands are meant for the guest's shell
guest() { ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"; }
deadline=$(($(date +%s) + 300))
until guest true 2>/dev/null; do
	if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
		fail guest/ssh "no SSH after $(($(date +%s) - started)) s (see $LOG_DIR/console.log)"
		exit 1
	fi
	sleep 3
done
pass guest/ssh "host up after $(($(date +%s) - started)) s"

cat >"$work/inventory.ini" <<-INV
[stage]
tcg-host ansible_host=127.0.0.1 ansible_port=$port ansible_user=root ansible_python_interpreter=/usr/bin/python3

[build]
remote-build ansible_connection=local ansible_python_interpreter=$(command -v python3)
INV
export ANSIBLE_CONFIG=$REPO/ansible.cfg ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1
# Ansible's 10 s connection timeout is not enough for a TCG guest's sshd while both cores
# are busy (an ad-hoc host_info came back unreachable and ended a run): 60 s, and retries.
export ANSIBLE_TIMEOUT=60 ANSIBLE_SSH_RETRIES=3
export ANSIBLE_PRIVATE_KEY_FILE=$work/id_ed25519
export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$work/known_hosts -o ControlMaster=auto -o ControlPersist=60s"
# run_playbook LOG ARGS...: the playbook against the guest; status in $rc.
run_playbook() {
	local log=$1 t0
	shift
	t0=$(date +%s)
	rc=0
	"$REPO/.venv/bin/ansible-playbook" -i "$work/inventory.ini" "$REPO/playbooks/kernel_stage.yml" \
		-e kernel_stage_hosts=stage -e kernel_stage_become=false -e kernel_stage_method=modules \
		-e kernel_stage_modules_dir="$MODULES_DIR" "$@" >"$LOG_DIR/$log.log" 2>&1 || rc=$?
	echo "   ($log: exit $rc after $(($(date +%s) - t0)) s, log $LOG_DIR/$log.log)"
}
# host_state: the role's own probe, as JSON.
host_state() { guest python3 - state <"$REPO/roles/kernel_stage/files/kvm_modules.py"; }
# loaded_is WHICH: the loaded kvm is the patched build (WHICH=patched) or not.
loaded_is() {
	local kvm
	kvm=$(host_state | python3 -c 'import json, sys; print(json.load(sys.stdin)["loaded"].get("kvm", {}).get("build_id"))')
	if [ "$1" = patched ]; then [ "$kvm" = "$patched_id" ]; else [ "$kvm" = "$stock_id" ]; fi
}
no_updates_dir() { guest "! test -e /lib/modules/$KERNEL_ABI/updates/presplit-kvm"; }
stock_untouched() { loaded_is stock && no_updates_dir; }
ok_and_patched() { [ "$rc" -eq 0 ] && loaded_is patched; }
stock_untouched_unchanged() { stock_untouched && [ "$(recap_changed "$1")" = 0 ]; }
refused_for_holder() {
	[ "$rc" -ne 0 ] && grep -q "Refusing to reload the kvm modules on tcg-host: KVM is in use (process python3 pid [0-9]*" \
		"$LOG_DIR/vm-running.log"
}
# host_info: the collection's module, ad hoc; prints "<split_huge_pages> <mode>", or
# "failed" (Ansible's output in host_info.log).
host_info() {
	"$REPO/.venv/bin/ansible" -i "$work/inventory.ini" tcg-host -m presplit.kvm.host_info -a use_libvirt=false -o \
		>"$LOG_DIR/host_info.log" 2>&1
	sed -n 's/^tcg-host | SUCCESS => //p' "$LOG_DIR/host_info.log" | python3 -c 'import json, sys
try:
    h = json.load(sys.stdin)["host"]
except ValueError:
    print("failed")
else:
    print(h["kvm_capabilities"].get("split_huge_pages"), h["mode"])'
}
recap_changed() { sed -n 's/^tcg-host *: .*changed=\([0-9]*\).*/\1/p' "$LOG_DIR/$1.log"; }

patched_id=$(python3 "$REPO/roles/kernel_stage/files/kvm_modules.py" inspect "$MODULES_DIR" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["modules"]["kvm"]["build_id"])')
stock_id=$(host_state | python3 -c 'import json, sys; print(json.load(sys.stdin)["loaded"]["kvm"]["build_id"])')
info=$(host_info)
check before/stock "host_info: $info" test "$info" != "${info#0 }"

echo "== 0. inputs that cannot stage anything are refused before anything changes"
# refused LOG MESSAGE_PATTERN ARGS...: the run fails naming the problem; the host is untouched.
refused() {
	local case=$1 pattern=$2
	shift 2
	run_playbook "$case" "$@"
	check "$case/refused" "exit $rc: $(grep -o '"msg": "kernel_stage_[^"]*' "$LOG_DIR/$case.log" | head -n 1 | cut -c9- | head -c 300)" \
		grep -q "$pattern" "$LOG_DIR/$case.log"
	check "$case/nothing-changed" "stock kvm still loaded, no updates dir, changed=$(recap_changed "$case")" \
		stock_untouched_unchanged "$case"
}
refused no-directory 'kernel_stage_source directory (the default) needs kernel_stage_modules_dir: a directory on localhost' \
	-e kernel_stage_modules_dir=
refused apt-modules 'kernel_stage_source apt installs a linux-image package, so it needs kernel_stage_method packages' \
	-e kernel_stage_source=apt -e kernel_stage_kernel_release="$KERNEL_ABI"

echo "== 1. check mode"
run_playbook check-mode --check --diff
check check-mode/ok "exit $rc, changed=$(recap_changed check-mode)" test "$rc" -eq 0 -a "$(recap_changed check-mode)" -gt 0
check check-mode/nothing-changed "stock kvm still loaded, no updates dir" stock_untouched

echo "== 2. stage the patched modules, built by the role on a build host that is not localhost (cached)"
run_playbook apply -e kernel_stage_source=build -e kernel_stage_build_host=remote-build -e kernel_stage_fetch_dir="$work/fetched"
info=$(host_info)
check apply/ok "exit $rc, changed=$(recap_changed apply)" test "$rc" -eq 0
check apply/patched-loaded "kvm build id $patched_id" loaded_is patched
# 0x201000: the target page sizes 4K and 2M.
check apply/capability "host_info: $info" test "$info" = "2101248 patched"

check apply/fetched "into $work/fetched/modules/$patched_id" test -s "$work/fetched/modules/$patched_id/kvm.ko"

echo "== 3. again: nothing to do"
run_playbook rerun
check rerun/idempotent "exit $rc, changed=$(recap_changed rerun)" test "$rc" -eq 0 -a "$(recap_changed rerun)" = 0

# rolled_back CASE MESSAGE_PATTERN: stage the broken set $work/broken/CASE; the run
# must fail with a message matching the pattern and leave the stock modules loaded.
rolled_back() {
	local case=$1 pattern=$2
	run_playbook "$case" -e kernel_stage_modules_dir="$work/broken/$case"
	check "$case/failed" "exit $rc" test "$rc" -ne 0
	check "$case/message" "$(grep -o 'Staging the patched kvm modules failed.*' "$LOG_DIR/$case.log" | head -n 1 | head -c 400)" \
		grep -q "$pattern" "$LOG_DIR/$case.log"
	check "$case/stock-loaded" "kvm build id $stock_id, no updates dir" stock_untouched
}

echo "== 4a. modules that fail to load are rolled back"
rolled_back bad-signature \
	'Reload kvm and kvm_amd: .*Key was rejected.*Rolled back: .* the stock modules are loaded again'

echo "== 4b. modules that load without the capability are rolled back"
run_playbook apply-again
check apply-again/patched-loaded "exit $rc" ok_and_patched
rolled_back no-capability \
	'Check that the staged modules .*KVM_CAP_SPLIT_HUGE_PAGES absent.*Rolled back: .* the stock modules are loaded again'
info=$(host_info)
check no-capability/stock-works "host_info: $info" test "$info" != "${info#0 }"

echo "== 5. a truncated kvm.ko is refused before anything changes"
run_playbook truncated -e kernel_stage_modules_dir="$work/broken/truncated"
check truncated/failed "exit $rc" test "$rc" -ne 0
check truncated/message "$(grep -o 'The kvm modules in .*' "$LOG_DIR/truncated.log" | head -n 1 | head -c 300)" \
	grep -q 'kvm.ko is truncated.*Nothing was changed' "$LOG_DIR/truncated.log"
check truncated/nothing-changed "stock kvm still loaded, no updates dir" stock_untouched

echo "== 6. refused while a process holds a VM"
# KVM_CREATE_VM = _IO(0xae, 0x01); the holder keeps the VM fd until killed.
guest "setsid python3 -c 'import fcntl, os, time
vm = fcntl.ioctl(os.open(\"/dev/kvm\", os.O_RDWR), 0xae01, 0)
print(\"vm fd\", vm, flush=True)
time.sleep(900)' >/tmp/holder.log 2>&1 </dev/null & echo \$! >/tmp/holder.pid"
for _ in $(seq 60); do guest "grep -q 'vm fd' /tmp/holder.log" && break; sleep 2; done
run_playbook vm-running
check vm-running/refused "exit $rc: $(grep -o 'Refusing to reload[^.]*' "$LOG_DIR/vm-running.log" | head -1)" \
	refused_for_holder
check vm-running/nothing-changed "stock kvm still loaded, no updates dir, changed=$(recap_changed vm-running)" \
	stock_untouched_unchanged vm-running
guest "kill \$(cat /tmp/holder.pid)" || true

guest 'poweroff -f' >/dev/null 2>&1 || true
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
echo "== done after $(($(date +%s) - started)) s"
report_totals
