#!/usr/bin/env bash
# The e2e tier, first step (issue 15): two emulated Debian 12 hypervisors and
# a KVM-accelerated nested guest live-migrated between them by the
# collection's own module, every page of the guest's workload verified.
#
#   1. the hypervisor image (packages/vm.sh's Debian 12 GRUB host image plus
#      libvirt, QEMU and python3-libvirt, configured as the lab configures its
#      hosts: image-setup.sh), built once and cached by content;
#   2. two hosts h1, h2 booted from qcow2 overlays of it under QEMU TCG with
#      emulated AMD SVM + NPT (the kernel tier's CPU), so KVM loads in them
#      with the TDP MMU.  Each has a controller NIC (user networking,
#      restrict=on, its sshd forwarded to a free 127.0.0.1 port) and a link
#      NIC joining the two (-netdev socket on 127.0.0.1), 192.0.2.11/.12;
#   3. on h1 a <domain type='kvm'> guest, THP-backed, booting the lab guest's
#      kernel + initramfs (roles/lab/files/build-guest-image.sh), whose
#      workload keeps rewriting memory and verifying every page;
#   4. E2E_MIGRATIONS (default 4) live migrations h1 -> h2 -> h1 ... with
#      presplit.kvm.live_migrate (ad-hoc ansible over SSH, qemu+tcp between
#      the hosts); after each: the guest runs on exactly one host, its
#      heartbeat advances there and it counted 0 verification errors;
#      presplit.kvm.host_info on both hosts (mode, the guest's mapping counts
#      as KVM reports them).
# One PASS/FAIL line per check, last line "N passed, N failed"; exit status
# non-zero on any failure.  Opt-in: make e2e.  Needs root (loop devices and
# a chroot to build the image).  See tests/e2e/README.md for timings and for
# what of issue 15 is not done yet.
#
# Cache: ${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/e2e (image, guest boot
# files); logs of the last run in its logs/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/e2e
LOG_DIR=${E2E_LOG_DIR:-$CACHE/logs}
MIGRATIONS=${E2E_MIGRATIONS:-4}
# E2E_KEEP=1: leave the hosts running at the end (their ssh commands are
# printed); kill the two QEMU pids printed to end them.
KEEP=${E2E_KEEP:-0}
# Hypervisor RAM: the nested guest plus libvirtd, QEMU and a Debian userland.
HOST_MIB=${E2E_HOST_MIB:-2560}
# The nested guest: RAM (QEMU backs it with THP), the workload's buffer and
# how fast it rewrites it.  Under TCG the guest verifies its whole buffer
# less often than once a second (passes= in its status lines); the heartbeat
# is still once a second.
GUEST=e2e1
GUEST_MIB=${E2E_GUEST_MIB:-384}
BUF_MIB=${E2E_BUF_MIB:-160}
DIRTY_MIB_S=${E2E_DIRTY_MIB_S:-4}
# A guest whose heartbeat has not advanced by SETTLE lines within HANG_S
# seconds of its arrival is hung (TCG inside TCG: seconds are slow).
SETTLE=3
HANG_S=${E2E_HANG_S:-180}

# shellcheck source=../kernel/lib/boot.sh
. "$REPO/tests/kernel/lib/boot.sh"   # GUEST_CPU: the kernel tier's CPU model
# shellcheck source=../kernel/lib/report.sh
. "$REPO/tests/kernel/lib/report.sh"
# shellcheck source=../kernel/packages/vm.sh
. "$REPO/tests/kernel/packages/vm.sh"   # build_image, start_vm, vm_ssh, wait_ssh

# The hypervisor image: vm.sh's host image plus these.  qemu-system-x86
# without recommends: no GUI, no firmware beyond SeaBIOS.
export VM_IMAGE_PACKAGES="libvirt-daemon-system qemu-system-x86 python3-libvirt"
export VM_IMAGE_SETUP=$E2E_DIR/image-setup.sh

HOSTS=(h1 h2)
declare -A H_PID H_PORT H_UUID
H_UUID=([h1]=e2e00000-0000-4000-8000-000000000001 [h2]=e2e00000-0000-4000-8000-000000000002)

mkdir -p "$CACHE"
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
report=$LOG_DIR/report.txt
: >"$report"
work=$(mktemp -d "$CACHE/run.XXXXXX")
logs_collected=false

# collect_logs: each host's kernel log and libvirt's logs into LOG_DIR,
# best effort (a host may be gone).
collect_logs() {
	local h
	$logs_collected && return 0
	logs_collected=true
	for h in "${HOSTS[@]}"; do
		[ -n "${H_PORT[$h]:-}" ] || continue
		on "$h" dmesg >"$LOG_DIR/$h-dmesg.log" 2>&1 || true
		on "$h" 'journalctl -b --no-pager -u libvirtd -u virtlogd -u presplit-e2e-host; tail -n 200 /var/log/libvirt/qemu/*.log' \
			>"$LOG_DIR/$h-libvirt.log" 2>&1 || true
	done
}

# The QEMU processes go whatever happens; their overlays with them.
cleanup() {
	local h
	collect_logs
	if [ "$KEEP" = 1 ] && [ -n "${H_PID[h2]:-}" ]; then
		for h in "${HOSTS[@]}"; do
			echo "   kept $h: QEMU pid ${H_PID[$h]}; ssh -o UserKnownHostsFile=$work/known_hosts -i $VM_DIR/id_ed25519 -p ${H_PORT[$h]} root@127.0.0.1"
		done
		echo "   (then: kill ${H_PID[h1]} ${H_PID[h2]}; rm -rf $work)"
		return
	fi
	for h in "${HOSTS[@]}"; do
		VM_PID=${H_PID[$h]:-}
		stop_vm
	done
	rm -rf "$work"
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM

# on HOST COMMAND...: COMMAND as root on HOST over its forwarded sshd, as
# vm_ssh does, but bounded (a wedged host must not hang the run: timeout
# cannot run vm_ssh, a shell function) and with both hosts' keys pinned.
on() {
	local h=$1
	shift
	timeout 300 ssh -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes \
		-o ConnectTimeout=10 -i "$VM_DIR/id_ed25519" -p "${H_PORT[$h]}" root@127.0.0.1 "$@"
}

# step NAME COMMAND...: a preparation step, timed, its output in a log.
step() {
	local name=$1 t0=$SECONDS
	shift
	echo "== $name (log $LOG_DIR/$name.log)"
	# In the background, not under "||": errexit keeps working in there,
	# and an EXIT trap it sets stays its own.
	"$@" >"$LOG_DIR/$name.log" 2>&1 &
	wait $! || { fail "$name" "see $LOG_DIR/$name.log"; report_totals || true; exit 1; }
	echo "   ($name: $((SECONDS - t0)) s)"
}

# build_image_private DIR: vm.sh's build_image, in a mount namespace of its
# own.  Its loop-mounted root must not be copied into mount namespaces that
# other work on this machine creates meanwhile (each lab host is one): such
# a copy keeps the filesystem alive after build_image's umount, and its late
# writeback then lands in the raw disk while the image's first boot writes to
# it.  Seen once (a copy is the likely holder): the kernel logged the
# unmount minutes after the umount, and the image had a corrupt block bitmap.
build_image_private() {
	export DEB_DIR KERNEL_ABI DEB_VERSION
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private -- bash -c 'set -euo pipefail
		. "$1/tests/kernel/lib/boot.sh"
		. "$1/tests/kernel/packages/vm.sh"
		build_image "$2"' _ "$REPO" "$1"
}

# fsck_image DIR: the root filesystem of DIR/base.qcow2 is consistent
# (e2fsck -fn, read only, on a raw copy).
fsck_image() {
	local raw=$work/fsck.raw loop rc=0
	qemu-img convert -O raw "$1/base.qcow2" "$raw"
	loop=$(losetup --find --show --read-only --offset $((2048 * 512)) "$raw")
	e2fsck -fn "$loop" || rc=$?
	losetup -d "$loop"
	rm -f "$raw"
	return "$rc"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# boot_host HOST LINK: HOST from a fresh overlay; LINK is its end of the
# socket link (listen=... or connect=...).  The link NIC is at a fixed PCI
# slot (enp0s16 in the host, see image-setup.sh) with a MAC of its own; the
# SMBIOS serial and UUID give the host its name and libvirt host_uuid.
boot_host() {
	local h=$1 link=$2 n=${1#h}
	qemu-img create -q -f qcow2 -b "$VM_DIR/base.qcow2" -F qcow2 "$work/$h.qcow2"
	# (QEMU takes the last -m: HOST_MIB, not start_vm's 1536.)
	start_vm "$work/$h.qcow2" qcow2 "$LOG_DIR/$h-console.log" \
		-m "$HOST_MIB" -uuid "${H_UUID[$h]}" -smbios "type=1,serial=$h" \
		-netdev "socket,id=link,$link" -device "virtio-net-pci,netdev=link,addr=0x10,mac=52:54:00:e2:0e:0$n"
	H_PID[$h]=$VM_PID
	H_PORT[$h]=$VM_PORT
}

# An ansible run against the hosts; its one-line result of HOST as JSON on
# stdout ("{}" when there is none), the whole output in LOG.
#   ansible_json HOST LOG MODULE ARGS
ansible_json() {
	local h=$1 log=$2
	"$REPO/.venv/bin/ansible" -i "$work/inventory.ini" "$h" -o -m "$3" -a "$4" >"$LOG_DIR/$log.log" 2>&1 || true
	sed -n "s/^$h | [A-Z!]* => //p" "$LOG_DIR/$log.log" | tail -n 1 | grep . || echo '{}'
}

# jq-like field access with the controller's python: json_get 'expr' <json,
# where expr is Python over "r" (the result); prints "" on any error.
json_get() {
	python3 -c 'import json, sys
try:
    r = json.load(sys.stdin)
    v = eval(sys.argv[1])
except Exception:
    v = ""
print("" if v is None else v)' "$1"
}

# guest_status HOST: the guest's latest status line in HOST's console log
# of it (virtlogd appends there, across stays), "" if none.
guest_status() {
	on "$1" "tail -c 65536 /var/log/libvirt/qemu/$GUEST-console.log 2>/dev/null | grep -a '^presplit-guest seq=' | tail -n 1 | tr -d '\r'" || true
}
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

# wait_heartbeat HOST MIN_SEQ MIN_PASSES SECONDS: until HOST's latest status
# line has seq >= MIN_SEQ and passes >= MIN_PASSES; prints that line (or the
# last seen).  A line with a seq below MIN_SEQ may be an old one: the log
# keeps the guest's earlier stays on HOST.
wait_heartbeat() {
	local h=$1 min=$2 min_passes=$3 deadline=$(($(date +%s) + $4)) line seq passes
	while :; do
		line=$(guest_status "$h")
		seq=$(field seq "$line") passes=$(field passes "$line")
		if [ -n "$seq" ] && [ "$seq" -ge "$min" ] && [ "$passes" -ge "$min_passes" ]; then break; fi
		[ "$(date +%s)" -lt "$deadline" ] || break
		sleep 5
	done
	echo "$line"
}
# fresh LINE MIN_SEQ: LINE is a status line with seq >= MIN_SEQ.
fresh() { [ -n "$(field seq "$1")" ] && [ "$(field seq "$1")" -ge "$2" ]; }

# where: the hosts the guest is running on / defined on, "h1 " style.
running_on() {
	local h out=""
	for h in "${HOSTS[@]}"; do
		if on "$h" virsh -q -c qemu:///system list --name | grep -qx "$GUEST"; then out+="$h "; fi
	done
	echo "$out"
}
defined_on() {
	local h out=""
	for h in "${HOSTS[@]}"; do
		if on "$h" virsh -q -c qemu:///system list --all --name | grep -qx "$GUEST"; then out+="$h "; fi
	done
	echo "$out"
}

# kvm_ok "RELEASE kvm_amd.npt=.. kvm.tdp_mmu=.. thp=..": Debian's stock kernel
# with NPT and the TDP MMU on.
kvm_ok() { [[ $1 == "$KERNEL_ABI kvm_amd.npt=Y kvm.tdp_mmu=Y "* ]]; }

# host_info HOST LOG: prints "mode tdp_mmu pages_4k pages_2m pages_1g source"
# for HOST and the guest if it runs there.
host_info() {
	ansible_json "$1" "$2" presplit.kvm.host_info "" | json_get '" ".join(str(x) for x in [r["host"]["mode"], r["host"]["tdp_mmu"]] + next(([d["counts"]["pages_4k"], d["counts"]["pages_2m"], d["counts"]["pages_1g"], d["counts_source"]] if d.get("counts") else ["-", "-", "-", d.get("status")] for d in r["domains"] if d["name"] == "'"$GUEST"'"), ["-", "-", "-", "no-guest"]))'
}

eval "$("$REPO/kernel-patch/fetch-debian.sh")"
echo "== e2e: Debian $DEB_VERSION ($KERNEL_ABI) hypervisors under TCG, cpu $GUEST_CPU, logs in $LOG_DIR"
VM_DIR=$CACHE/image-$(image_key)
if [ -f "$VM_DIR/.done" ]; then
	echo "== image: cached in $VM_DIR"
else
	step image build_image_private "$VM_DIR"
	if ! fsck_image "$VM_DIR" >"$LOG_DIR/image-fsck.log" 2>&1; then
		rm -rf "$VM_DIR"
		fail image/fsck "the new image's filesystem is inconsistent, image removed (see $LOG_DIR/image-fsck.log)"
		report_totals || true
		exit 1
	fi
	pass image/fsck "e2fsck -fn: clean"
fi
step guest-image bash -c "'$REPO/roles/lab/files/build-guest-image.sh' '$DEB_DIR' '$CACHE/guest' >'$work/guest.env'"
guest_kernel=$(sed -n 's/^KERNEL=//p' "$work/guest.env")
guest_initrd=$(sed -n 's/^INITRD=//p' "$work/guest.env")

# The link: h1 listens, h2 connects.  QEMU's listening end accepts exactly
# one peer, so wait for it with ss rather than probing it with a connection.
link_port=$(free_port)
started=$SECONDS
boot_host h1 "listen=127.0.0.1:$link_port"
for _ in $(seq 50); do
	ss -Hltn "sport = :$link_port" | grep -q . && break
	sleep 0.2
done
boot_host h2 "connect=127.0.0.1:$link_port"
# Both hosts boot the image, with its one host key.
for h in "${HOSTS[@]}"; do
	echo "[127.0.0.1]:${H_PORT[$h]} $(cut -d' ' -f1-2 "$VM_DIR/host_key.pub")"
done >"$work/known_hosts"
echo "== booting h1 (ssh 127.0.0.1:${H_PORT[h1]}), h2 (ssh 127.0.0.1:${H_PORT[h2]}), link 127.0.0.1:$link_port"
for h in "${HOSTS[@]}"; do
	VM_PID=${H_PID[$h]} VM_PORT=${H_PORT[$h]}
	if ! wait_ssh 900; then
		fail "$h/ssh" "no SSH after $((SECONDS - started)) s (see $LOG_DIR/$h-console.log)"
		report_totals || true
		exit 1
	fi
	pass "$h/ssh" "up after $((SECONDS - started)) s"
done

{
	echo "[hypervisors]"
	for h in "${HOSTS[@]}"; do
		echo "$h ansible_host=127.0.0.1 ansible_port=${H_PORT[$h]} ansible_user=root ansible_python_interpreter=/usr/bin/python3"
	done
} >"$work/inventory.ini"
export ANSIBLE_CONFIG=$REPO/ansible.cfg ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1
export ANSIBLE_PRIVATE_KEY_FILE=$VM_DIR/id_ed25519
export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$work/known_hosts -o ControlMaster=auto -o ControlPersist=120s"

echo "== the hosts"
for h in "${HOSTS[@]}"; do
	peer=h2
	[ "$h" = h2 ] && peer=h1
	# libvirtd is socket-activated: this starts it (and probes QEMU once).
	uuid=$(on "$h" "virsh -c qemu:///system capabilities" | sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' | head -n 1) || true
	check "$h/identity" "hostname $(on "$h" hostname), libvirt host uuid $uuid" \
		test "$(on "$h" hostname)" = "$h" -a "$uuid" = "${H_UUID[$h]}"
	# shellcheck disable=SC2016 # expanded on the host
	kvm=$(on "$h" 'echo "$(uname -r) kvm_amd.npt=$(cat /sys/module/kvm_amd/parameters/npt) kvm.tdp_mmu=$(cat /sys/module/kvm/parameters/tdp_mmu) thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled)"' || true)
	check "$h/kvm" "$kvm" kvm_ok "$kvm"
	# The link and the peer's libvirtd over it, by name (/etc/hosts).
	peer_name=$(on "$h" "virsh -c qemu+tcp://$peer/system hostname" 2>&1 | head -n 1 || true)
	check "$h/link" "qemu+tcp://$peer/system answers: $peer_name" test "$peer_name" = "$peer"
	info=$(host_info "$h" "$h-host-info-before")
	check "$h/host_info-mode" "host_info: mode tdp_mmu = ${info% * * * *} (stock $KERNEL_ABI)" test "${info%% *}" = eager-split-only
done

echo "== the nested guest on h1: KVM, $GUEST_MIB MiB on THP, rewriting $DIRTY_MIB_S MiB/s of a $BUF_MIB MiB buffer"
gdir=/var/lib/libvirt/images/presplit-e2e
for h in "${HOSTS[@]}"; do
	# The destination's QEMU opens <kernel>/<initrd> too.
	on "$h" "mkdir -p $gdir && cat >$gdir/vmlinuz" <"$guest_kernel"
	on "$h" "cat >$gdir/initrd.img" <"$guest_initrd"
done
# The lab guest's domain (roles/lab/templates/domain.xml.j2) as type='kvm':
# a CPU model both hosts run, anonymous memory (QEMU madvises it for THP),
# no disk, no network; a crash or reboot stops the domain, visibly.
cat >"$work/$GUEST.xml" <<-XML
<domain type='kvm'>
  <name>$GUEST</name>
  <memory unit='MiB'>$GUEST_MIB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$gdir/vmlinuz</kernel>
    <initrd>$gdir/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=1 presplit.buf_mib=$BUF_MIB presplit.dirty_mib_s=$DIRTY_MIB_S</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/$GUEST-console.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
XML
t0=$SECONDS
out=$(on h1 "cat >/tmp/$GUEST.xml && virsh -q -c qemu:///system define /tmp/$GUEST.xml && virsh -q -c qemu:///system start $GUEST" <"$work/$GUEST.xml" 2>&1) || true
check guest/started "on h1 after $((SECONDS - t0)) s: $(tr '\n' ' ' <<<"$out")" test "$(running_on)" = "h1 "
line=$(wait_heartbeat h1 "$SETTLE" 1 600)
check guest/heartbeat "$((SECONDS - t0)) s after start: ${line:-no status line}" test -n "$(field seq "$line")" -a "$(field errors "$line")" = 0
info=$(host_info h1 guest-host-info)
# The accelerator as the collection sees it, and KVM's own counts of the
# guest's mappings (debugfs on this stock kernel).
accel=$(ansible_json h1 guest-host-info-accel presplit.kvm.host_info "domains=$GUEST" | json_get 'r["domains"][0]["accelerator"] + "/" + r["domains"][0]["memory_backing"]')
thp=$(on h1 "grep AnonHugePages /proc/\$(cat /run/libvirt/qemu/$GUEST.pid)/smaps_rollup" | tr -s ' ' || true)
check guest/kvm "host_info: accelerator/backing $accel; mode tdp_mmu 4k 2m 1g source: $info; QEMU $thp" test "${accel%%/*}" = kvm

echo "== $MIGRATIONS live migrations with presplit.kvm.live_migrate (qemu+tcp, peer to peer)"
src=h1
last_seq=$(field seq "$line")
for i in $(seq "$MIGRATIONS"); do
	dst=h2
	[ "$src" = h2 ] && dst=h1
	name=migrate/$i
	# The guest must be alive on the source now, not just have been.
	before=$(wait_heartbeat "$src" $((${last_seq:-0} + 1)) 0 "$HANG_S")
	if ! fresh "$before" $((${last_seq:-0} + 1)); then
		fail "$name/alive-before" "no new status line on $src after seq ${last_seq:-?} in $HANG_S s: the guest hangs; no further migrations"
		break
	fi
	seq_before=$(field seq "$before") passes_before=$(field passes "$before")
	info=$(host_info "$src" "$i-host-info-$src")
	echo "   $i: $src -> $dst; before: $before; $src host_info (mode tdp_mmu 4k 2m 1g source): $info"
	t0=$SECONDS
	res=$(ansible_json "$src" "$i-migrate" presplit.kvm.live_migrate "domain=$GUEST destination_host=$dst transport=tcp")
	took=$((SECONDS - t0))
	stats=$(json_get '"total %.1f s, downtime %s ms, %s iterations, %.0f MiB sent" % (r["migration"]["total_time_ms"] / 1000, r["migration"]["downtime_ms"], r["migration"]["iterations"], r["migration"]["data_transferred_bytes"] / 2**20)' <<<"$res")
	check "$name/ok" "$src -> $dst: ${stats:-$(json_get 'r.get("msg", "")' <<<"$res" | head -c 300)} (ansible $took s, log $LOG_DIR/$i-migrate.log)" \
		test "$(json_get 'r.get("changed")' <<<"$res")" = True -a -n "$stats"
	check "$name/one-host" "running on: $(running_on)defined on: $(defined_on)" \
		test "$(running_on)" = "$dst " -a "$(defined_on)" = "$dst "
	# Alive on the destination: SETTLE more heartbeats, and two more passes
	# over the buffer, so that one whole pass ran after the arrival.
	after=$(wait_heartbeat "$dst" $((seq_before + SETTLE)) $((passes_before + 2)) "$HANG_S")
	if fresh "$after" $((seq_before + SETTLE)); then
		pass "$name/heartbeat" "on $dst: seq $seq_before -> $(field seq "$after"), passes $passes_before -> $(field passes "$after")"
		check "$name/verified" "errors=$(field errors "$after") verified_pages=$(field verified_pages "$after")" \
			test "$(field errors "$after")" = 0
	else
		fail "$name/heartbeat" "on $dst: seq $seq_before -> nothing newer in $HANG_S s (latest line there: ${after:-none})"
		fail "$name/verified" "no status line after the arrival"
		# What the guest's vCPU does, for whoever reads the logs.
		on "$dst" "virsh domstats $GUEST; virsh qemu-monitor-command $GUEST --hmp 'info registers'; virsh qemu-monitor-command $GUEST --hmp 'info lapic'" \
			>"$LOG_DIR/$i-hang-$dst.log" 2>&1 || true
	fi
	info=$(host_info "$dst" "$i-host-info-$dst")
	echo "   $i: on $dst after arrival: host_info (mode tdp_mmu 4k 2m 1g source): $info"
	last_seq=$(field seq "$after")
	src=$dst
done

echo "== after"
for h in "${HOSTS[@]}"; do
	info=$(host_info "$h" "$h-host-info-after")
	echo "   $h host_info (mode tdp_mmu 4k 2m 1g source): $info"
	# Kernel warnings, oopses, lockdep and RCU stall reports, soft lockups.
	# ("WARNING: CPU:" is WARN()'s; the boot's SRSO notice says "WARNING: See".)
	bad=$(on "$h" dmesg | grep -E 'WARNING: CPU|cut here|BUG:|Oops|lockdep|INFO: rcu|rcu_.*stall|soft lockup|hung_task' | head -n 3 || true)
	check "$h/dmesg" "${bad:-no WARN, BUG, lockdep, RCU stall or lockup report}" test -z "$bad"
done
collect_logs
echo "== done after $((SECONDS - started)) s of host time (logs $LOG_DIR)"
report_totals
