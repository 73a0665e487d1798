"""Idempotence of split/hold/release on a real QEMU, with real mapping counts.

The counts are real: debugfs, mounted only inside a private mount namespace, gives the QEMU's
pages_4k/2m/1g. The kernel entry points are the one fake, because this machine's kernel has no
KVM_SPLIT_HUGE_PAGES: ``FakePatchedHost`` reports the capability (page sizes 4k and 2m) and answers
each split or release by completing the range, recording what it was asked, and each QUERY from
the holds it was given, as the uAPI says (the real one is tested in tests/kernel).
"""
import json
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import ops as kvm_presplit_ops, uapi as kvm_uapi

calls = []
held = []      # (page_size, gpa, size) of every HOLD call since the last RELEASE


def answer_query(state):
    start, end = state["gpa"], state["gpa"] + state["size"]
    found = sorted((max(gpa, start), min(gpa + size, end)) for page_size, gpa, size in held
                   if page_size == state["page_size"] and gpa < end and gpa + size > start)
    return found[0] if found else (end, end)


def fake_ioctl(fd, request, buf, mutate):
    state = kvm_uapi.unpack_split(buf)
    if state["flags"] == kvm_uapi.KVM_SPLIT_HUGE_PAGES_QUERY:
        low, high = answer_query(state)
        buf[:] = kvm_uapi.pack_split(low, high - low, state["page_size"], state["flags"])
        return 0
    calls.append([state["page_size"], state["flags"], state["gpa"], state["size"]])
    if state["flags"] & kvm_uapi.KVM_SPLIT_HUGE_PAGES_HOLD:
        held.append((state["page_size"], state["gpa"], state["size"]))
    if state["flags"] & kvm_uapi.KVM_SPLIT_HUGE_PAGES_RELEASE:
        del held[:]
    buf[:] = kvm_uapi.pack_split(state["gpa"] + state["size"], 0, state["page_size"], state["flags"])
    return 0


class FakePatchedHost(kvm_presplit_ops.PresplitHost):
    split_ioctl = staticmethod(fake_ioctl)

    @staticmethod
    def split_capability():
        return kvm_uapi.PAGE_SIZE | kvm_uapi.HUGE_2M


run_dir, state_dir, name = sys.argv[1:4]
host = FakePatchedHost(run_dir=run_dir, state_dir=state_dir, use_libvirt=False)
steps = [("split_no_hold", lambda: host.split(name)),
         ("split_hold", lambda: host.split(name, hold=True, chunk=2 << 30)),
         ("split_hold_again", lambda: host.split(name, hold=True)),
         ("status_held", lambda: host.inspect(name)),
         ("release_dry", lambda: host.release(name, dry_run=True)),
         ("release", lambda: host.release(name)),
         ("release_again", lambda: host.release(name)),
         ("status_released", lambda: host.inspect(name))]
out = {}
for label, step in steps:
    del calls[:]
    out[label] = step()
    out[label]["calls"] = list(calls)
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_split_hold_is_idempotent_and_release_drops_it(qemu_domains, tmp_path, collections_path):
    dom = qemu_domains.start("idem 'potent' ü", memory_mib=64)
    shell = 'mount -t debugfs none /sys/kernel/debug && PYTHONPATH="%s" "%s" -c "$0" "$@"' % (
        collections_path, sys.executable)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, SCRIPT,
                           qemu_domains.run_dir, str(tmp_path / "holds"), dom["name"]],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    gib = 1 << 30
    # counts are real and show nothing huge: without hold there is nothing to do
    assert out["split_no_hold"]["counts_source"] == "debugfs"
    assert out["split_no_hold"]["before"] == {"pages_4k": 0, "pages_2m": 0, "pages_1g": 0}
    assert out["split_no_hold"]["changed"] is False and out["split_no_hold"]["calls"] == []
    # with hold: both passes over [0, 5 GiB) (64 MiB guest: RAM below 4 GiB + 4 GiB, rounded),
    # 2 GiB chunks, HOLD only on the 2m->4k pass
    held = out["split_hold"]
    assert held["changed"] is True and held["range"] == {"gpa": 0, "size": 5 * gib}
    k4, m2 = 4096, 2 << 20
    assert held["calls"] == [[m2, 0, 0, 2 * gib], [m2, 0, 2 * gib, 2 * gib], [m2, 0, 4 * gib, gib],
                             [k4, 1, 0, 2 * gib], [k4, 1, 2 * gib, 2 * gib], [k4, 1, 4 * gib, gib]]
    assert held["after"] == {"pages_4k": 0, "pages_2m": 0, "pages_1g": 0} and held["huge_mappings_left"] == 0
    assert held["hold_record"]["pid"] == dom["pid"] and held["hold_record"]["page_size"] == k4
    # what the kernel reported held right after the split, merged from the three chunks
    assert held["hold_record"]["kernel_ranges"] == [[0, 5 * gib]]
    # already split and held: unchanged, no ioctl
    assert out["split_hold_again"]["changed"] is False and out["split_hold_again"]["calls"] == []
    # status reads the holds back from the kernel
    check = out["status_held"]["hold_check"]
    assert check["status"] == "held" and check["unrecorded"] == []
    assert check["kernel_ranges"] == [{"page_size": k4, "gpa": 0, "size": 5 * gib}]
    # release: dry run predicts, the real one issues RELEASE (page size 0) once over the held range
    assert out["release_dry"]["changed"] is True and out["release_dry"]["calls"] == []
    assert out["release"]["changed"] is True
    assert out["release"]["calls"] == [[0, 2, 0, gib], [0, 2, gib, gib], [0, 2, 2 * gib, gib],
                                       [0, 2, 3 * gib, gib], [0, 2, 4 * gib, gib]]
    assert out["release_again"]["changed"] is False and out["release_again"]["calls"] == []
    assert out["status_released"]["hold_check"]["status"] == "none"
    assert out["status_released"]["hold_check"]["kernel_ranges"] == []
    assert dom["proc"].poll() is None
