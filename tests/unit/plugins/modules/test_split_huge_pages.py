"""presplit.kvm.split_huge_pages run as Ansible runs it against real QEMU processes on this
machine's unpatched /dev/kvm, with libvirt's run directory as inventory (no libvirtd here)."""
import pytest


@pytest.fixture
def domains(qemu_domains, tmp_path):
    kvm = qemu_domains.start("app 1 \"quoted\" `x` ✓")
    tcg = qemu_domains.start("tcg guest", accel="tcg")
    common = {"use_libvirt": False, "run_dir": qemu_domains.run_dir, "state_dir": str(tmp_path / "holds")}
    return kvm, tcg, common


@pytest.mark.parametrize("policy,status", [("warn", "unsupported"), ("skip", "skipped")])
def test_on_unsupported_warn_and_skip(run_module, domains, policy, status):
    kvm, tcg, common = domains
    result = run_module("split_huge_pages", domains=[kvm["name"], tcg["uuid"]], hold=True,
                        on_unsupported=policy, **common)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert [entry["status"] for entry in result["domains"]] == [status, status]
    assert [entry["error"]["code"] for entry in result["domains"]] == ["unsupported", "not_kvm_accelerated"]
    assert bool(result.get("warnings")) == (policy == "warn")
    assert kvm["proc"].poll() is None


def test_on_unsupported_fail_is_the_default(run_module, domains):
    kvm, common = domains[0], domains[2]
    result = run_module("split_huge_pages", domains=[kvm["name"]], **common)
    assert result["failed"] is True
    assert result["error"]["code"] == "unsupported"
    assert "host mode 'none'" in result["msg"]


def test_check_mode_predicts_the_same_outcome(run_module, domains):
    kvm, common = domains[0], domains[2]
    result = run_module("split_huge_pages", check_mode=True, domains=[kvm["name"]], **common)
    assert result["failed"] is True and result["error"]["code"] == "unsupported"
    skipped = run_module("split_huge_pages", check_mode=True, domains=[kvm["name"]], on_unsupported="skip",
                         **common)
    assert skipped["domains"][0]["status"] == "skipped"


def test_release_without_a_hold_is_unchanged(run_module, domains):
    kvm, common = domains[0], domains[2]
    result = run_module("split_huge_pages", domains=[kvm["name"]], state="released", **common)
    assert result["changed"] is False
    assert result["domains"][0]["status"] == "unchanged"


def test_release_of_a_domain_gone_from_this_host_is_absent(run_module, domains):
    common = domains[2]
    result = run_module("split_huge_pages", domains=["migrated-away"], state="released", **common)
    assert result["changed"] is False
    assert result["domains"][0]["status"] == "absent"
    failed = run_module("split_huge_pages", domains=["migrated-away"], **common)
    assert failed["failed"] is True and failed["error"]["code"] == "domain_not_found"


@pytest.mark.parametrize("args,text", [
    ({"rate": -1.0}, "rate_gib_per_s must be from 0.01 to 4096, got -1.0"),
    ({"rate_gib_per_s": 1e9}, "rate_gib_per_s must be from 0.01 to 4096, got 1000000000.0"),
    ({"chunk_mib": -2}, "chunk_mib must be from 2 to 65536"),
    ({"chunk_mib": 10 ** 9}, "chunk_mib must be from 2 to 65536"),
    ({"domains": ["../../etc/passwd"]}, "cannot contain '/'"),
    ({"domains": []}, "at least one domain"),
])
def test_bad_input_fails_touching_nothing(run_module, domains, args, text):
    kvm, common = domains[0], domains[2]
    result = run_module("split_huge_pages", **dict({"domains": [kvm["name"]]}, **dict(common, **args)))
    assert result["failed"] is True
    assert text in result["msg"]
    assert kvm["proc"].poll() is None
