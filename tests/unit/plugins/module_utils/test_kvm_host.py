"""Host facts and the host mode: the real host, and the decision table."""
import os

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import host as kvm_host


def _param(name):
    try:
        with open("/sys/module/kvm/parameters/%s" % name) as handle:
            return handle.read().strip()
    except OSError:
        return None


def test_this_host_is_reported_with_mode_and_reason(require_kvm):  # pylint: disable=unused-argument
    facts = kvm_host.host_facts()
    assert facts["kernel_release"] == os.uname().release
    assert facts["kvm_capabilities"]["binary_stats_fd"] == 1
    assert facts["tdp_mmu"] == (_param("tdp_mmu") == "Y")
    assert facts["eager_page_split"] == (_param("eager_page_split") == "Y")
    if facts["kvm_capabilities"]["split_huge_pages"] == 0 and _param("tdp_mmu") == "N":
        # This machine: unpatched paravirtual KVM without TDP MMU.
        assert facts["mode"] == "none"
        assert facts["mode_reason"].startswith("KVM_CAP_SPLIT_HUGE_PAGES absent (0); kvm.tdp_mmu=N")
        assert facts["split_levels"] == []
    else:
        pytest.skip("not the unpatched tdp_mmu=N host this test describes (mode %s)" % facts["mode"])


def test_this_host_thp_and_hugetlb_are_read():
    facts = kvm_host.host_facts()
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
        assert "[%s]" % facts["thp_mode"] in handle.read()
    for label in facts["hugetlb_pools"]:
        assert label in ("2M", "1G")


@pytest.mark.parametrize("caps,tdp_mmu,tdp,eager,mode,reason", [
    ({"split_huge_pages": 0x201000}, True, True, True, "patched",
     "KVM_CAP_SPLIT_HUGE_PAGES = 0x201000 (levels 4k, 2m)"),
    ({"split_huge_pages": 0x200000}, True, True, True, "patched", "KVM_CAP_SPLIT_HUGE_PAGES = 0x200000 (levels 2m)"),
    # The older, level-based series: not patched as far as this helper goes.
    ({"split_huge_pages": 3}, True, True, True, "eager-split-only",
     "KVM_CAP_SPLIT_HUGE_PAGES = 0x3 is a level bitmask: an older presplit kernel series"),
    ({"split_huge_pages": 3}, True, True, False, "none", "older presplit kernel series"),
    ({"split_huge_pages": 0}, True, True, True, "eager-split-only", "upstream eager page split"),
    ({"split_huge_pages": 0}, True, True, False, "none", "kvm.eager_page_split=N"),
    ({"split_huge_pages": 0}, False, None, True, "none", "KVM_CAP_SPLIT_HUGE_PAGES absent (0); kvm.tdp_mmu=N"),
    ({"split_huge_pages": 0}, True, False, True, "none", "two-dimensional paging (EPT/NPT) is off"),
    ({"error": "/dev/kvm: No such file or directory"}, None, None, None, "none", "KVM unusable"),
])
def test_mode_decision(caps, tdp_mmu, tdp, eager, mode, reason):
    decided, why = kvm_host.decide_mode(caps, tdp_mmu, tdp, eager)
    assert decided == mode
    assert reason in why


def test_missing_device_is_mode_none(tmp_path):
    facts = kvm_host.host_facts(device=str(tmp_path / "no-kvm"))
    assert facts["mode"] == "none"
    assert "No such file or directory" in facts["mode_reason"]


@pytest.mark.parametrize("debugfs,version,model", [
    ("none voluntary (full)\n", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1", "full"),
    ("none (voluntary) full\n", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1", "voluntary"),
    (None, "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1", None),
    (None, "#1 SMP PREEMPT Fri Jan 2", "full"),
    (None, "#1 SMP PREEMPT_RT Fri Jan 2", "rt"),
    (None, "#1 SMP Debian 6.1.0", None),
])
def test_preempt_model(tmp_path, debugfs, version, model):
    if debugfs is not None:
        (tmp_path / "kernel/debug/sched").mkdir(parents=True)
        (tmp_path / "kernel/debug/sched/preempt").write_text(debugfs)
    assert kvm_host.preempt_model(str(tmp_path), kernel_version=version) == model


def test_clear_yields_only_on_a_patched_preemptible_host(tmp_path):
    facts = kvm_host.host_facts(sys_root=str(tmp_path), device=str(tmp_path / "no-kvm"))
    # Mode none: no patched CLEAR to yield, whatever the model (None when it is unknown too).
    assert facts["clear_yields_to_vcpus"] in (False, None)
    (tmp_path / "kernel/debug/sched").mkdir(parents=True)
    (tmp_path / "kernel/debug/sched/preempt").write_text("none voluntary (full)\n")
    facts = kvm_host.host_facts(sys_root=str(tmp_path), device=str(tmp_path / "no-kvm"))
    assert facts["preempt_model"] == "full"
    assert facts["clear_yields_to_vcpus"] is False
