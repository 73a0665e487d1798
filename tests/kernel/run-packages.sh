#!/usr/bin/env bash
# presplit.kvm.kernel_stage (method packages) run for real, end to end: a
# Debian 12 host with GRUB and Debian's stock 6.12 kernel (packages/vm.sh),
# booted from its disk under QEMU TCG with emulated AMD SVM + NPT, reachable
# over SSH on loopback only, and playbooks/kernel_stage.yml against it with
# the small test build of kernel-patch/build-packages.sh
# (PRESPLIT_PACKAGE_CONFIG=test):
#   1. before: the stock kernel runs, KVM_CAP_SPLIT_HUGE_PAGES is absent;
#      runs that cannot install anything are refused, the host unchanged: a
#      directory without a kernel, a release the apt repository lacks; check
#      mode from the repository reports changes and makes none;
#   2. install from an apt repository (kernel_stage_source=apt: the test
#      build's package in a flat repository served over HTTP on this
#      machine's loopback, reached by the host through an SSH tunnel, since
#      its own network reaches nothing), one-shot boot, verify: the patched
#      kernel runs, host_info reports the capability and mode "patched", and
#      it became GRUB's saved default only after the check passed;
#   3. a second run, from the build's directory (the default source), changes
#      nothing; nor does a third with the role building (source "build", cached);
#   4. a package whose kernel boots without the capability (no TDP MMU) and one
#      whose kernel panics at boot (packages/variants.sh), each from its
#      directory (the first with its release read from the package's name):
#      the role fails the host saying so, the host runs the previous kernel
#      again, GRUB's saved default is unchanged, and a plain reboot boots it.
# One PASS/FAIL line per check, last line "N passed, N failed"; exit status
# non-zero on any failure.  Opt-in (make kernel-packages): the first run
# builds the test kernel (41 min on 2 busy cores), the image (4 min) and
# the two variants (8 min, while steps 1-3 run); with all of it cached a
# run is ~13 min, nearly all of it TCG boots.
#
# Cache: ${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests/packages;
# logs of the last run in its logs/.  Needs root (loop devices, chroot).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

KTEST_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests/packages
LOG_DIR=${KTEST_PACKAGES_LOG_DIR:-$CACHE/logs}
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"   # for GUEST_CPU: the tier's CPU model
# shellcheck source=lib/report.sh
. "$KTEST_DIR/lib/report.sh"
# shellcheck source=packages/vm.sh
. "$KTEST_DIR/packages/vm.sh"
# shellcheck source=packages/variants.sh
. "$KTEST_DIR/packages/variants.sh"

report=$(mktemp)
work=$(mktemp -d)
variants_pid='' http_pid='' tunnel_pid=''
cleanup() {
	for pid in $tunnel_pid $http_pid; do kill "$pid" 2>/dev/null || true; done
	stop_vm
	if [ -n "$variants_pid" ] && kill -0 "$variants_pid" 2>/dev/null; then
		kill "$variants_pid"
	fi
	rm -rf "$work" "$report"
}
trap cleanup EXIT

# step NAME COMMAND...: runs a preparation step, timed, its output in a log.
step() {
	local name=$1 t0=$SECONDS
	shift
	echo "== $name (log $LOG_DIR/$name.log)"
	# In the background, not under "||": errexit keeps working in there,
	# and an EXIT trap it sets stays its own.
	"$@" >"$LOG_DIR/$name.log" 2>&1 &
	wait $! || { fail "$name" "see $LOG_DIR/$name.log"; exit 1; }
	echo "   ($name: $((SECONDS - t0)) s)"
}

config=${PRESPLIT_PACKAGE_CONFIG:-test}
case "$config" in
test | debian) ;;
*) echo "PRESPLIT_PACKAGE_CONFIG must be test or debian, not '$config'" >&2; exit 2 ;;
esac
build_env="{\"kernel_stage_build_environment\": {\"PRESPLIT_PACKAGE_CONFIG\": \"$config\"}}"

mkdir -p "$CACHE" "$LOG_DIR"
eval "$("$REPO/kernel-patch/fetch-debian.sh")"
echo "== kernel_stage packages on a TCG Debian 12 host: Debian $DEB_VERSION ($KERNEL_ABI), guest cpu $GUEST_CPU"
build_log=$LOG_DIR/build-packages.log
echo "== $config kernel packages (log $build_log)"
t0=$SECONDS
eval "$(env PRESPLIT_PACKAGE_CONFIG="$config" nice -n 19 "$REPO/kernel-patch/build-packages.sh" 2>"$build_log")"
echo "   ($KERNEL_RELEASE in $PACKAGES_DIR: $((SECONDS - t0)) s)"
release=$KERNEL_RELEASE
# The broken variants derive from the test build.  Built while steps 1-3
# run: the VM is one TCG thread, the build gets the other core; step 4 waits
# for them.
if [ "$config" = test ]; then
	notdp_dir=$(variant_dir "$CACHE" notdp)
	panic_dir=$(variant_dir "$CACHE" panic)
	echo "== broken variants, in the background (log $LOG_DIR/variants.log)"
	variants_started=$SECONDS
	{
		build_variant "$notdp_dir" notdp --enable CMDLINE_BOOL --set-str CMDLINE "kvm.tdp_mmu=N"
		build_variant "$panic_dir" panic --enable CMDLINE_BOOL --set-str CMDLINE "rdinit=/presplit-test-panic"
	} >"$LOG_DIR/variants.log" 2>&1 &
	variants_pid=$!
fi
VM_DIR=$CACHE/image-$(image_key)
step image build_image "$VM_DIR"

# Every run starts from the clean image: writes go to a throw-away overlay.
qemu-img create -q -f qcow2 -b "$VM_DIR/base.qcow2" -F qcow2 "$work/disk.qcow2"
started=$SECONDS
start_vm "$work/disk.qcow2" qcow2 "$LOG_DIR/console.log"
echo "== booting from GRUB (console: $LOG_DIR/console.log, ssh on 127.0.0.1:$VM_PORT)"
if ! wait_ssh 600; then
	fail host/ssh "no SSH after $((SECONDS - started)) s (see $LOG_DIR/console.log)"
	exit 1
fi
pass host/ssh "host up after $((SECONDS - started)) s"

cat >"$work/inventory.ini" <<-INV
[stage]
pkg-host ansible_host=127.0.0.1 ansible_port=$VM_PORT ansible_user=root ansible_python_interpreter=/usr/bin/python3
INV
export ANSIBLE_CONFIG=$REPO/ansible.cfg ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1
export ANSIBLE_PRIVATE_KEY_FILE=$VM_DIR/id_ed25519
export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$VM_DIR/known_hosts.$VM_PORT -o ControlMaster=auto -o ControlPersist=60s"
# run_playbook LOG ARGS...: the playbook against the host; status in $rc.
run_playbook() {
	local log=$1 t0=$SECONDS
	shift
	rc=0
	"$REPO/.venv/bin/ansible-playbook" -i "$work/inventory.ini" "$REPO/playbooks/kernel_stage.yml" \
		-e kernel_stage_hosts=stage -e kernel_stage_become=false -e kernel_stage_method=packages \
		"$@" >"$LOG_DIR/$log.log" 2>&1 || rc=$?
	echo "   ($log: exit $rc after $((SECONDS - t0)) s, log $LOG_DIR/$log.log)"
}
# host_info: the collection's module, ad hoc; prints "<split_huge_pages> <mode>".
host_info() {
	"$REPO/.venv/bin/ansible" -i "$work/inventory.ini" pkg-host -m presplit.kvm.host_info -a use_libvirt=false -o 2>&1 |
		sed -n 's/^pkg-host | SUCCESS => //p' |
		python3 -c 'import json, sys; h = json.load(sys.stdin)["host"]; print(h["kvm_capabilities"].get("split_huge_pages"), h["mode"])'
}
recap_changed() { sed -n 's/^pkg-host *: .*changed=\([0-9]*\).*/\1/p' "$LOG_DIR/$1.log"; }
running() { vm_ssh uname -r; }
# saved_entry: GRUB's saved default ("" if none), from grubenv.
saved_entry() { vm_ssh grub-editenv list | sed -n 's/^saved_entry=//p'; }
no_next_entry() { ! vm_ssh grub-editenv list | grep -q '^next_entry=.'; }
# entry_of RELEASE: the GRUB menu path of RELEASE, by the role's own lookup.
entry_of() { vm_ssh awk -f /dev/stdin "release=$1" /boot/grub/grub.cfg <"$REPO/roles/kernel_stage/files/grub_entry.awk"; }
# default_after_check LOG: the new entry became the default only after the
# release and the capability were checked on the new kernel.
default_after_check() {
	grep -o '^TASK \[[^]]*\]' "$LOG_DIR/$1.log" | tr '\n' '|' |
		grep -q 'Reboot into [^|]*|.*Check the release and KVM_SPLIT_HUGE_PAGES[^|]*|[^|]*Make GRUB.s default'
}
# rolled_back LOG RELEASE: the role failed the host with its rollback
# message, the previous kernel runs and stays GRUB's saved default.
rolled_back() {
	[ "$rc" -ne 0 ] &&
		grep -q "Kernel $2 failed on pkg-host (.*Rolled back: the host runs $release, which stays the default" "$LOG_DIR/$1.log" &&
		[ "$(running)" = "$release" ] && [ "$(saved_entry)" = "$good_entry" ] && no_next_entry
}

# The apt repository: the test build's linux-image package, a flat repository (Packages and
# a Release with its hash; unsigned, so the source line says trusted=yes) served on this
# machine's loopback. The host's own network reaches nothing (restrict=on), so it reaches
# the repository through an SSH tunnel to its loopback, port 8080.
repo=$work/apt-repo
mkdir -p "$repo"
cp "$PACKAGES_DIR/linux-image-${release}_"*.deb "$repo/"
(
	cd "$repo"
	dpkg-scanpackages --multiversion . /dev/null >Packages 2>"$LOG_DIR/apt-repo.log"
	printf 'Date: %s\nSHA256:\n %s %s Packages\n' "$(date -Ru)" "$(sha256sum Packages | cut -d' ' -f1)" \
		"$(stat -c %s Packages)" >Release
)
repo_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$repo" "$repo_port" >"$LOG_DIR/apt-http.log" 2>&1 &
http_pid=$!
apt_source="deb [trusted=yes] http://127.0.0.1:8080/ ./"
# open_tunnel: the host's 127.0.0.1:8080 forwarded to the repository (until its next reboot).
open_tunnel() {
	if [ -n "$tunnel_pid" ]; then kill "$tunnel_pid" 2>/dev/null || true; fi
	ssh -o UserKnownHostsFile="$VM_DIR/known_hosts.$VM_PORT" -o StrictHostKeyChecking=yes -o BatchMode=yes \
		-o ExitOnForwardFailure=yes -i "$VM_DIR/id_ed25519" -p "$VM_PORT" \
		-N -R "127.0.0.1:8080:127.0.0.1:$repo_port" root@127.0.0.1 2>"$LOG_DIR/apt-tunnel.log" &
	tunnel_pid=$!
	sleep 3
}
apt_options=(-e kernel_stage_source=apt -e "{\"kernel_stage_apt_repository\": \"$apt_source\"}")
# unchanged: the stock kernel runs and GRUB's saved default is as before the run.
unchanged() { [ "$(running)" = "$KERNEL_ABI" ] && [ "$(saved_entry)" = "$entry_before" ]; }

echo "== 1. before"
check before/stock-kernel "uname -r: $(running)" test "$(running)" = "$KERNEL_ABI"
info=$(host_info)
check before/no-capability "host_info: $info" test "$info" != "${info#0 }"
entry_before=$(saved_entry)
echo "   (GRUB saved_entry before: '${entry_before}')"

echo "== 1a. refused, nothing changed: a directory without a kernel"
mkdir -p "$work/empty"
run_playbook no-kernel -e kernel_stage_packages_dir="$work/empty"
check no-kernel/refused "$(grep -o 'No linux-image package[^"]*' "$LOG_DIR/no-kernel.log" | head -n 1)" \
	grep -qF "No linux-image package in $work/empty on localhost. Nothing was changed" \
	"$LOG_DIR/no-kernel.log"
check no-kernel/unchanged "uname -r $(running), saved_entry '$(saved_entry)'" unchanged

echo "== 1b. refused, only the source line added: a release the apt repository lacks"
open_tunnel
run_playbook apt-missing "${apt_options[@]}" -e kernel_stage_kernel_release="$release-missing"
check apt-missing/refused "$(grep -o 'apt on pkg-host has no candidate[^"]*' "$LOG_DIR/apt-missing.log" | head -n 1)" \
	grep -qF "apt on pkg-host has no candidate for linux-image-$release-missing in $apt_source. Only the apt source was added; nothing else was changed" \
	"$LOG_DIR/apt-missing.log"
check apt-missing/unchanged "uname -r $(running), saved_entry '$(saved_entry)'" unchanged

echo "== 1c. check mode from the apt repository: says what would change, changes nothing"
run_playbook check-apt --check "${apt_options[@]}" -e kernel_stage_kernel_release="$release"
check check-apt/changes "exit $rc, changed=$(recap_changed check-apt)" test "$rc" -eq 0 -a "$(recap_changed check-apt)" -gt 0
check check-apt/unchanged "uname -r $(running), saved_entry '$(saved_entry)', linux-image-$release not installed" \
	eval "unchanged && ! vm_ssh dpkg-query -W linux-image-$release >/dev/null 2>&1"

echo "== 2. install $release from the apt repository, boot it once, verify, make it the default"
run_playbook apply "${apt_options[@]}" -e kernel_stage_kernel_release="$release"
info=$(host_info)
good_entry=$(entry_of "$release" || true)
check apply/ok "exit $rc, changed=$(recap_changed apply)" test "$rc" -eq 0
check apply/new-kernel "uname -r: $(running)" test "$(running)" = "$release"
check apply/capability "host_info: $info" test "$info" = "2101248 patched"
check apply/default "saved_entry=$(saved_entry)" test -n "$good_entry" -a "$(saved_entry)" = "$good_entry"
check apply/one-shot-used "no next_entry left" no_next_entry
check apply/default-after-check "grub-set-default only after the check on the new kernel" default_after_check apply
from_repo=$(vm_ssh "dpkg-query -W -f '\${Status}' linux-image-$release; grep -c 127.0.0.1:8080 /etc/apt/sources.list.d/presplit-kvm.list" | tr '\n' ' ')
check apply/from-apt "linux-image-$release: $from_repo(source lines)" test "$from_repo" = "install ok installed1 "

echo "== 3. again, from the build's directory: nothing to do"
run_playbook rerun -e kernel_stage_packages_dir="$PACKAGES_DIR"
check rerun/idempotent "exit $rc, changed=$(recap_changed rerun)" test "$rc" -eq 0 -a "$(recap_changed rerun)" = 0
echo "== 3b. again, the role building (its cache: nothing to build): nothing to do"
run_playbook rerun-build -e kernel_stage_source=build -e "$build_env"
check rerun-build/idempotent "exit $rc, changed=$(recap_changed rerun-build)" \
	test "$rc" -eq 0 -a "$(recap_changed rerun-build)" = 0

if [ "$config" = test ]; then
	echo "== 4. broken packages (waiting for their build)"
	if wait "$variants_pid"; then
		echo "   (variants ready $((SECONDS - variants_started)) s after their start)"
	else
		fail variants/build "see $LOG_DIR/variants.log"
	fi
	variants_pid=

	echo "== 4a. a kernel without the capability (no TDP MMU) is rolled back"
	run_playbook notdp -e kernel_stage_packages_dir="$notdp_dir"
	check notdp/rolled-back "$(grep -o 'Kernel [^ ]* failed on pkg-host.*' "$LOG_DIR/notdp.log" | head -n 1 | head -c 400)" \
		rolled_back notdp "$release-notdp"
	check notdp/reason "the capability check failed on $release-notdp" \
		grep -q "Check the release and KVM_SPLIT_HUGE_PAGES.*after the reboot: kernel $release-notdp runs" "$LOG_DIR/notdp.log"
	info=$(host_info)
	check notdp/capability-back "host_info: $info" test "$info" = "2101248 patched"

	echo "== 4b. a kernel that panics at boot is rolled back"
	console_lines=$(wc -l <"$LOG_DIR/console.log")
	run_playbook panic -e kernel_stage_packages_dir="$panic_dir" -e kernel_stage_kernel_release="$release-panic"
	check panic/rolled-back "$(grep -o 'Kernel [^ ]* failed on pkg-host.*' "$LOG_DIR/panic.log" | head -n 1 | head -c 400)" \
		rolled_back panic "$release-panic"
	check panic/panicked "console: $(tail -n +"$console_lines" "$LOG_DIR/console.log" | grep -a -m1 -o 'Kernel panic - not syncing: .*' | tr -d '\r')" \
		grep -aq 'Kernel panic - not syncing' <(tail -n +"$console_lines" "$LOG_DIR/console.log")
	check panic/reason "the host came back by itself (panic=10, GRUB's saved default)" \
		grep -q "the host came back on $release, so $release-panic did not stay up" "$LOG_DIR/panic.log"
else
	echo "== 4. left out: the broken variants derive from the test build"
fi

echo "== 5. a plain reboot boots GRUB's saved default"
boot_id=$(vm_ssh cat /proc/sys/kernel/random/boot_id)
vm_ssh 'systemctl reboot' || true
sleep 20
wait_ssh 600 || true
check reboot/default-kernel "uname -r: $(running || true)" \
	test "$(running)" = "$release" -a "$(vm_ssh cat /proc/sys/kernel/random/boot_id)" != "$boot_id"

vm_ssh 'systemctl poweroff' >/dev/null 2>&1 || true
wait "$VM_PID" 2>/dev/null || true
VM_PID=
echo "== done after $((SECONDS - started)) s of VM time"
report_totals
