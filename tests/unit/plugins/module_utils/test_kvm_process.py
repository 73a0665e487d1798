"""Finding a domain's QEMU and taking its VM fd: real processes on this machine's /dev/kvm."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import counts as kvm_counts, errors as kvm_errors, ioctl as kvm_ioctl
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import pidfd as kvm_pidfd, process as kvm_process, split as kvm_split


def test_holder_fd_duplicates_but_vm_ioctls_get_eio(kvm_holder):
    """Unpatched kernel: pidfd_getfd works, every VM ioctl through the copy is refused with EIO."""
    pid, vm_fd_in_holder = kvm_holder
    pidfd = kvm_pidfd.pidfd_open(pid)
    try:
        dup = kvm_pidfd.pidfd_getfd(pidfd, vm_fd_in_holder)
    finally:
        os.close(pidfd)
    try:
        assert os.readlink("/proc/self/fd/%d" % dup) == "anon_inode:kvm-vm"
        with pytest.raises(OSError) as raised:
            kvm_ioctl.get_stats_fd(dup)
        assert raised.value.errno == 5    # EIO: kvm->mm != current->mm
        with pytest.raises(kvm_errors.Unsupported, match="EIO -- the kernel refuses VM ioctls from a process other"):
            kvm_split.SplitDriver(dup).split(0, 1 << 30, 4096)
    finally:
        os.close(dup)


def test_helper_reports_the_eio_as_the_reason_counts_are_missing(qemu_domains):
    dom = qemu_domains.start("eio probe")
    with kvm_process.take_vm_fd(dom["pid"], dom["uuid"]) as handle:
        result = kvm_counts.read_mapping_counts(handle, debugfs_root="/nonexistent-debugfs")
    assert result["source"] is None and result["counts"] is None
    assert result["attempts"][0] == {
        "source": "stats-fd",
        "error": "EIO: the kernel refuses VM ioctls from a process other than QEMU (unpatched kernel, or the VM is dead)"}
    assert result["attempts"][1]["source"] == "debugfs"


def test_take_vm_fd_of_real_qemu(qemu_domains):
    dom = qemu_domains.start("plain")
    with kvm_process.take_vm_fd(dom["pid"], dom["uuid"].upper()) as handle:
        assert handle.identity.pid == dom["pid"]
        assert os.path.basename(handle.identity.exe) == "qemu-system-x86_64"
        assert os.readlink("/proc/self/fd/%d" % handle.vm_fd) == "anon_inode:kvm-vm"
        assert os.readlink("/proc/%d/fd/%d" % (dom["pid"], handle.owner_fd)) == "anon_inode:kvm-vm"
        assert handle.owner_alive()
        dom["proc"].kill()
        dom["proc"].wait()
        assert not handle.owner_alive()
    assert handle.vm_fd is None and handle.pidfd is None


def test_tcg_qemu_is_not_kvm_accelerated(qemu_domains):
    dom = qemu_domains.start("tcg", accel="tcg")
    with pytest.raises(kvm_errors.NotKvmAccelerated, match="not KVM-accelerated"):
        kvm_process.take_vm_fd(dom["pid"], dom["uuid"])


def test_uuid_mismatch_is_refused(qemu_domains):
    dom = qemu_domains.start("other")
    with pytest.raises(kvm_errors.ProcessMismatch, match="is QEMU for uuid %s" % dom["uuid"]):
        kvm_process.take_vm_fd(dom["pid"], "00000000-0000-0000-0000-000000000001")


def test_non_qemu_pid_is_refused():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(kvm_errors.ProcessMismatch, match="not a qemu-system binary"):
            kvm_process.take_vm_fd(proc.pid, "00000000-0000-0000-0000-000000000001")
    finally:
        proc.kill()
        proc.wait()


def test_vanished_pid_is_refused():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(kvm_errors.ProcessMismatch, match="vanished"):
        kvm_process.take_vm_fd(proc.pid, "00000000-0000-0000-0000-000000000001")


@pytest.mark.parametrize("pid", [0, 1, -5, True, "12"])
def test_absurd_pids_are_refused(pid):
    with pytest.raises(kvm_errors.ProcessMismatch, match="invalid QEMU pid"):
        kvm_process.prove_qemu_process(pid, "00000000-0000-0000-0000-000000000001")


def test_starttime_parsing_survives_hostile_comm(tmp_path):
    """comm may hold spaces and ')' -- parse after the last ')'."""
    script = tmp_path / "a) 1 2 (3"
    script.write_text("#!/bin/sh\nread line\n")
    os.chmod(str(script), 0o755)
    proc = subprocess.Popen([str(script)], stdin=subprocess.PIPE)
    try:
        with open("/proc/%d/stat" % proc.pid) as stat:
            raw = stat.read()
        assert "(a) 1 2 (3)" in raw
        assert kvm_process.read_starttime(proc.pid) == int(raw.rsplit(")", 1)[1].split()[19])
    finally:
        proc.stdin.close()
        proc.wait()


def world_readable_module_utils(collections_path):
    """A copy of the collection's module_utils that user nobody can import: the checkout
    may sit where only root can enter (root's home is 0700 on Debian)."""
    root = tempfile.mkdtemp(prefix="presplit-nobody-")
    os.chmod(root, 0o755)
    package = os.path.join("ansible_collections", "presplit", "kvm", "plugins", "module_utils")
    shutil.copytree(os.path.join(collections_path, package), os.path.join(root, package),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)
    return root


def test_non_root_caller_is_refused_before_touching_anything(qemu_domains, run_python, collections_path):
    dom = qemu_domains.start("rootonly")
    code = ("import json, os, sys\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import errors as kvm_errors, process as kvm_process\n"
            "try:\n"
            "    kvm_process.take_vm_fd(int(sys.argv[1]), sys.argv[2])\n"
            "except kvm_errors.PresplitError as exc:\n"
            "    print(json.dumps(exc.as_dict()))\n")
    readable = world_readable_module_utils(collections_path)
    try:
        result = run_python(code, str(dom["pid"]), dom["uuid"], cwd="/", env={"PYTHONPATH": readable})
    finally:
        shutil.rmtree(readable)
    assert result.returncode == 0, result.stderr
    error = json.loads(result.stdout)
    assert error["code"] == "permission_denied"
    assert "CAP_SYS_PTRACE" in error["message"] and "nothing was touched" in error["message"]


def test_split_stops_before_any_ioctl_when_qemu_exits_mid_call(qemu_domains):
    """QEMU dies after its fd was taken: the copy keeps the VM alive, so the driver must
    notice through the pidfd and stop instead of working on an orphaned VM."""
    dom = qemu_domains.start("dies")
    issued = []
    with kvm_process.take_vm_fd(dom["pid"], dom["uuid"]) as handle:
        dom["proc"].kill()
        dom["proc"].wait()
        driver = kvm_split.SplitDriver(handle.vm_fd, keep_going=handle.owner_alive,
                                       ioctl=lambda *args: issued.append(args))
        with pytest.raises(kvm_errors.ProcessMismatch, match="QEMU exited during 1g->2m after 0 of"):
            driver.split(0, 1 << 30, 4096, hold=True)
    assert issued == []
