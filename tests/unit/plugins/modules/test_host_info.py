"""presplit.kvm.host_info run as Ansible runs it, with real libvirt (its test driver) for the
inventory and real QEMU processes on this machine's unpatched /dev/kvm."""
import os
import uuid
from xml.sax.saxutils import escape

import pytest

pytest.importorskip("libvirt")

KVM_NAME = "db 'primary' $(id) ü"
NODE = """<node>
  <domain type='kvm'><name>{kvm}</name><uuid>{kvm_uuid}</uuid><memory unit='MiB'>64</memory>
    <os><type>hvm</type></os></domain>
  <domain type='qemu'><name>tcg-guest</name><uuid>{tcg_uuid}</uuid><memory unit='MiB'>64</memory>
    <os><type>hvm</type></os></domain>
</node>"""


@pytest.fixture
def lab(tmp_path, qemu_domains):
    kvm = qemu_domains.start(KVM_NAME)
    tcg = qemu_domains.start("tcg-guest", accel="tcg")
    node = tmp_path / "node.xml"
    node.write_text(NODE.format(kvm=escape(KVM_NAME), kvm_uuid=kvm["uuid"], tcg_uuid=tcg["uuid"]),
                    encoding="utf-8")
    return {"uri": "test://%s" % node, "run_dir": qemu_domains.run_dir, "kvm": kvm, "tcg": tcg,
            "state_dir": str(tmp_path / "holds")}


def test_reports_mode_none_and_each_domain(run_module, lab):
    result = run_module("host_info", uri=lab["uri"], run_dir=lab["run_dir"], state_dir=lab["state_dir"])
    assert result["changed"] is False, result
    host = result["host"]
    assert host["mode"] == "none"
    assert host["mode_reason"].startswith("KVM_CAP_SPLIT_HUGE_PAGES absent (0)")
    assert host["inventory_source"] == "libvirt" and host["libvirt_version"] == "9.0.0"
    domains = {dom["name"]: dom for dom in result["domains"]}
    assert set(domains) == {KVM_NAME, "tcg-guest"}
    assert domains["tcg-guest"]["status"] == "not KVM-accelerated"
    assert domains["tcg-guest"]["accelerator"] == "tcg"
    kvm = domains[KVM_NAME]
    assert (kvm["status"], kvm["accelerator"], kvm["pid"]) == ("ok", "kvm", lab["kvm"]["pid"])
    assert kvm["memory_backing"] in ("thp", "none") and kvm["memory_bytes"] == 64 << 20
    assert kvm["counts_attempts"][0]["source"] == "stats-fd"
    assert kvm["counts_attempts"][0]["error"].startswith("EIO")


def test_named_domains_and_check_mode(run_module, lab):
    result = run_module("host_info", check_mode=True, domains=[lab["tcg"]["uuid"]], uri=lab["uri"],
                        run_dir=lab["run_dir"], state_dir=lab["state_dir"])
    assert [dom["name"] for dom in result["domains"]] == ["tcg-guest"]
    assert result["domains"][0]["status"] == "not KVM-accelerated"


def test_unknown_domain_fails_with_code(run_module, lab):
    result = run_module("host_info", domains=["nope'; rm -rf ~"], uri=lab["uri"], run_dir=lab["run_dir"])
    assert result["failed"] is True
    assert result["error"]["code"] == "domain_not_found"


def test_a_malformed_status_file_is_reported_and_the_other_domains_too(run_module, tmp_path):
    """Without libvirt, the status files describe the running domains: one of them is not
    what libvirt writes (its memory is not a number). The module reports it as an error that
    names the domain and what is wrong, and reports the others; asked for it by name, it
    fails with that message."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, memory in (("fine", "64"), ("broken", "64 MiB")):
        (run_dir / (name + ".pid")).write_text("%d\n" % os.getpid())
        (run_dir / (name + ".xml")).write_text(
            "<domstatus state='running' pid='%d'><domain type='kvm'><name>%s</name><uuid>%s</uuid>"
            "<memory unit='MiB'>%s</memory></domain></domstatus>" % (os.getpid(), name, uuid.uuid4(), memory))
    result = run_module("host_info", use_libvirt=False, run_dir=str(run_dir), state_dir=str(tmp_path / "state"))
    assert result.get("failed") is not True, result
    by_name = dict((entry["name"], entry) for entry in result["domains"])
    assert by_name["fine"]["memory_bytes"] == 64 << 20
    assert by_name["broken"]["status"] == "error"
    assert by_name["broken"]["error"] == {
        "code": "malformed_state", "message": "domain 'broken': its memory or page size: '64 MiB' is not a whole number"}
    named = run_module("host_info", use_libvirt=False, domains=["broken"], run_dir=str(run_dir),
                       state_dir=str(tmp_path / "state"))
    assert named["failed"] is True and named["error"]["code"] == "malformed_state"
    assert named["msg"] == "domain 'broken': its memory or page size: '64 MiB' is not a whole number"
