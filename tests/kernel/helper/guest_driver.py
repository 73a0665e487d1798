# Guest side of tests/kernel/run-helper.sh, run by helper/init in the TCG guest
# on the patched KVM.  It only observes: every step prints one line
#   KDATA <check> <json>
# on stdout (the second serial port) and the host decides pass or fail
# (helper/check_results.py), so a wrong expectation is fixed on the host
# without rebuilding anything that runs here.
#
# Part 1 drives the helper's Python layer (the module_utils installed where
# the presplit role puts them) against a VM owned by another process
# (/helper/holder).  Part 2 runs the installed kvm-presplit CLI against a real
# qemu-system-x86_64 -accel kvm whose L2 Linux guest touched THP-backed memory.
"""Guest driver of the host helper's kernel-tier checks (see the header comment)."""

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback

HELPER_LIB = "/usr/local/lib/presplit-kvm"
CLI = "/usr/local/sbin/kvm-presplit"
HOLDER = "/helper/holder"

# The domain as libvirt would register it: the CLI runs with --no-libvirt
# (no libvirtd in this guest) and reads libvirt's run directory instead.
# Spaces and quotes in the name keep the CLI's argument handling honest.
DOMAIN = "kt guest 'x'"
DOMAIN_XML_NAME = "kt guest &apos;x&apos;"
DOMAIN_UUID = "11111111-2222-3333-4444-555555555555"
HOLD_STATE_DIR = "/run/presplit-kvm/holds"      # the CLI's default
RUN_DIR = "/run/libvirt/qemu"
L2_MEMORY_MIB = 256
L2_LOG = "/tmp/l2-console.log"
L2_QEMU_ERR = "/tmp/l2-qemu.err"
L2_TIMEOUT_S = 300

sys.path.insert(0, HELPER_LIB)
# Imported by name: the package exists only inside the guest, laid out by
# run-helper.sh exactly as roles/presplit/tasks/install.yml lays it out.
kvm_counts = importlib.import_module("presplit_kvm_helper.counts")
kvm_host = importlib.import_module("presplit_kvm_helper.host")
kvm_ioctl = importlib.import_module("presplit_kvm_helper.ioctl")
kvm_pidfd = importlib.import_module("presplit_kvm_helper.pidfd")
kvm_split = importlib.import_module("presplit_kvm_helper.split")
kvm_uapi = importlib.import_module("presplit_kvm_helper.uapi")


def emit(check, **data):
    print("KDATA %s %s" % (check, json.dumps(data, sort_keys=True)), flush=True)


class Holder:
    """The VM-owning process; see holder.c for its stdin/stdout protocol."""

    def __init__(self):
        # pylint: disable-next=consider-using-with  # lives across the steps, stopped by stop()
        self.proc = subprocess.Popen([HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "HOLDER":
            raise RuntimeError("holder did not start: %r" % line)
        fields = dict(word.split("=") for word in line[1:])
        self.pid, self.vm_fd = int(fields["pid"]), int(fields["vm_fd"])

    def refault(self):
        self.proc.stdin.write("refault\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "REFAULTED":
            raise RuntimeError("holder failed to refault (exit %s)" % self.proc.poll())

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def python_layer():
    """The helper library on a VM fd duplicated out of the holder."""
    facts = kvm_host.host_facts()
    emit("helper/host-mode", mode=facts["mode"], reason=facts["mode_reason"])

    holder = Holder()
    pidfd = kvm_pidfd.pidfd_open(holder.pid)
    vm_fd = kvm_pidfd.pidfd_getfd(pidfd, holder.vm_fd)
    emit("helper/pidfd-getfd", link=os.readlink("/proc/self/fd/%d" % vm_fd))

    before = kvm_counts.counts_from_stats_fd(vm_fd)
    try:
        kvm_ioctl.check_extension(vm_fd, kvm_uapi.KVM_CAP_SPLIT_HUGE_PAGES)
        emit("helper/other-ioctls-eio", errno=0)
    except OSError as exc:
        emit("helper/other-ioctls-eio", errno=exc.errno, error=errno.errorcode.get(exc.errno))

    # 0-2 GiB covers the holder's code slot and its 256 MiB slot at 1 GiB; the holes are skipped.
    gpa, size = 0, 2 << 30
    progress = []
    passes = kvm_split.SplitDriver(vm_fd, chunk=64 << 20, progress=lambda *a: progress.append(a)).split(
        gpa, size, kvm_uapi.PAGE_SIZE, hold=True)
    emit("helper/split-hold", before=before, after=kvm_counts.counts_from_stats_fd(vm_fd), passes=passes,
         progress_calls=len(progress))

    holder.refault()
    emit("helper/held-refault", counts=kvm_counts.counts_from_stats_fd(vm_fd))

    again = kvm_split.SplitDriver(vm_fd).split(gpa, size, kvm_uapi.PAGE_SIZE, hold=True)
    emit("helper/split-again", nr_split=sum(rec["nr_split"] for rec in again))

    release = kvm_split.SplitDriver(vm_fd).release(gpa, size)
    holder.refault()
    emit("helper/release-refault", release=release, counts=kvm_counts.counts_from_stats_fd(vm_fd))

    started = time.monotonic()
    kvm_split.SplitDriver(vm_fd, chunk=256 << 20, rate_gib_s=8).split(gpa, size, kvm_uapi.HUGE_2M)
    emit("helper/rate-limit", seconds=round(time.monotonic() - started, 3), gib=2, rate_gib_s=8)

    for check, bad_gpa, bad_size in (("unaligned", 4095, 1 << 30), ("empty", 0, 0)):
        try:
            kvm_split.SplitDriver(vm_fd).split(bad_gpa, bad_size, kvm_uapi.PAGE_SIZE)
            emit("helper/bad-range-" + check, error=None)
        except Exception as exc:  # pylint: disable=broad-except  # the class is the observation
            emit("helper/bad-range-" + check, error=type(exc).__name__, message=str(exc))

    os.close(vm_fd)
    os.close(pidfd)
    holder.stop()


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read()
    except FileNotFoundError:
        return ""


def start_l2():
    """A QEMU -accel kvm registered the way libvirt registers a running domain."""
    # QEMU keeps its own copy of the stderr file, the driver reads it by name.
    with open(L2_QEMU_ERR, "w", encoding="utf-8") as qemu_err:
        # pylint: disable-next=consider-using-with  # runs until cli_on_qemu kills it
        qemu = subprocess.Popen(
            ["/usr/bin/qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none",
             "-m", str(L2_MEMORY_MIB), "-uuid", DOMAIN_UUID, "-name", "guest=" + DOMAIN.replace(",", ",,"),
             "-monitor", "none", "-serial", "file:" + L2_LOG, "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
             "-kernel", "/helper/l2-vmlinuz", "-initrd", "/helper/l2-initramfs.cpio.gz",
             "-append", "console=ttyS0 quiet panic=-1"],
            stdout=subprocess.DEVNULL, stderr=qemu_err)
    os.makedirs(RUN_DIR, exist_ok=True)
    with open(os.path.join(RUN_DIR, DOMAIN + ".pid"), "w", encoding="utf-8") as pid_file:
        pid_file.write("%d" % qemu.pid)
    with open(os.path.join(RUN_DIR, DOMAIN + ".xml"), "w", encoding="utf-8") as status:
        status.write("<domstatus state='running' pid='%d'><domain type='kvm'><name>%s</name><uuid>%s</uuid>"
                     "<memory unit='KiB'>%d</memory></domain></domstatus>\n"
                     % (qemu.pid, DOMAIN_XML_NAME, DOMAIN_UUID, L2_MEMORY_MIB << 10))
    started = time.monotonic()
    touched = False
    while not touched and qemu.poll() is None and time.monotonic() - started < L2_TIMEOUT_S:
        time.sleep(1)
        touched = "L2 TOUCHED" in read_text(L2_LOG)
    if not touched and qemu.poll() is None:
        qemu.kill()
        qemu.wait()
    emit("cli/l2-touched", touched=touched, seconds=round(time.monotonic() - started, 1),
         qemu_exit=qemu.poll(), qemu_stderr=read_text(L2_QEMU_ERR)[-1500:],
         l2_console_tail=read_text(L2_LOG)[-1500:])
    return qemu if touched else None


def cli(check, *args):
    proc = subprocess.run([CLI, "--no-libvirt", "--json"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = proc.stdout
    emit(check, exit=proc.returncode, out=out, stderr=proc.stderr[-2000:])


def cli_on_qemu():
    qemu = start_l2()
    if qemu is None:
        return
    cli("cli/status", "status")
    cli("cli/dry-run", "split", DOMAIN, "--hold", "--dry-run")
    cli("cli/split", "split", DOMAIN, "--hold", "--rate", "4")
    cli("cli/split-again", "split", DOMAIN, "--hold")
    cli("cli/status-held", "status", DOMAIN)
    cli("cli/release", "release", DOMAIN)
    cli("cli/release-again", "release", DOMAIN)
    cli("cli/status-released", "status", DOMAIN)
    # A hold whose record is lost (as after a crashed run): the kernel's count still shows it.
    cli("cli/split-unrecorded", "split", DOMAIN, "--hold")
    os.unlink(os.path.join(HOLD_STATE_DIR, DOMAIN_UUID + ".json"))
    cli("cli/status-unrecorded", "status", DOMAIN)
    cli("cli/release-force", "release", DOMAIN, "--force")
    cli("cli/bad-rate", "split", DOMAIN, "--rate", "-3")
    qemu.send_signal(signal.SIGKILL)
    qemu.wait()
    # The pid file still names the dead QEMU, as after a crash.
    cli("cli/qemu-gone", "split", DOMAIN)


def main():
    status = 0
    for part in (python_layer, cli_on_qemu):
        try:
            part()
        except Exception:  # pylint: disable=broad-except  # reported; the other part still runs
            traceback.print_exc(file=sys.stdout)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
