"""presplit.kvm.placement_facts run as Ansible runs it, against libvirt's test driver, and its
output fed to presplit.kvm.evacuation_plan unchanged."""
import json

import pytest

pytest.importorskip("libvirt")

NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes><sockets>1</sockets>
    <cores>4</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
  <domain type='test'><name>web1</name><uuid>44444444-2222-3333-4444-555555555555</uuid>
    <metadata><presplit:placement xmlns:presplit='https://presplit-kvm.invalid/xmlns/placement/1'>
      <presplit:anti-affinity group='web'/></presplit:placement></metadata>
    <memory unit='MiB'>512</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain>
  <domain type='test'><name>gpu1</name><uuid>55555555-2222-3333-4444-555555555555</uuid>
    <memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source>
    </hostdev></devices></domain>
</node>"""


@pytest.fixture
def uri(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    return "test://%s" % node


def test_facts_feed_the_planner(run_module, uri):
    result = run_module("placement_facts", check_mode=True, uri=uri, host_name="hv01", kernel_mode="patched",
                        memory_reserve_mib=0, vcpu_overcommit=2.0)
    assert result["changed"] is False and not result.get("failed"), result
    host = result["host"]
    assert host["name"] == "hv01" and host["kernel_mode"] == "patched"
    assert host["vcpus_free"] == 4 * 2 - 3
    domains = {entry["name"]: entry for entry in result["domains"]}
    assert domains["web1"]["anti_affinity"] == ["web"] and domains["web1"]["memory_mib"] == 512
    assert domains["gpu1"]["pinned"] is True
    assert result["dirty_rate"]["web1"]["status"] == "unsupported"
    assert "dirty rate not measured for 2 domain(s)" in json.dumps(result["warnings"])
    assert result["ansible_facts"]["presplit_placement"] == {"host": host, "domains": result["domains"]}

    other = dict(host, name="hv02", memory_free_mib=65536, vcpus_free=16)
    plan = run_module("evacuation_plan", hosts=[host, other], domains=result["domains"], drain=["hv01"],
                      non_migratable_policy="shutdown_and_restart", detail="full")
    assert not plan.get("failed"), plan
    assert plan["placement"] == {"web1": "hv02"}
    assert plan["shutdown"][0]["domain"] == "gpu1"


def test_host_name_defaults_to_libvirt_and_domains_filter(run_module, uri):
    result = run_module("placement_facts", uri=uri, kernel_mode="none", measure_dirty_rate=False,
                        domains=["web1", "nosuch"])
    assert result["host"]["name"] == result["host_details"]["libvirt_host_name"]
    assert [entry["name"] for entry in result["domains"]] == ["web1"]
    assert result["domains"][0]["host"] == result["host"]["name"]
    assert result["dirty_rate"] == {} and result["missing"] == ["nosuch"]
    assert "no active domain matches nosuch" in json.dumps(result["warnings"])


@pytest.mark.parametrize("args, message", [
    ({"dirty_rate_period_s": 0}, "dirty_rate_period_s must be from 1 to 60, got 0"),
    # The earlier name is an alias; the message names the option.
    ({"dirty_rate_seconds": 61}, "dirty_rate_period_s must be from 1 to 60, got 61"),
    ({"memory_reserve_mib": -1}, "memory_reserve_mib must be from 0 to 16777216, got -1"),
    ({"vcpu_overcommit": 0}, "vcpu_overcommit must be from 0.01 to 1000, got 0"),
    ({"vcpu_overcommit": "nan"}, "vcpu_overcommit must be from 0.01 to 1000, got nan"),
    ({"vcpu_overcommit": 1e308}, "vcpu_overcommit must be from 0.01 to 1000, got 1e+308"),
    ({"bandwidth_mib_per_s": 0}, "bandwidth_mib_per_s must be from 1 to 1048576, got 0"),
    ({"dirty_rate_period_s": 5, "dirty_rate_timeout_s": 2}, "dirty_rate_timeout_s must be from 5 to 3600, got 2"),
    ({"dirty_rate_timeout_s": "inf"}, "dirty_rate_timeout_s must be from 1 to 3600, got inf"),
    ({"domains": ["web1", "a\x00b"]}, "domains must not contain control characters, got 'a\\x00b'"),
    ({"host_name": "hv\n01"}, "host_name must not contain control characters"),
    ({"uri": "qemu+tcp://127.0.0.1:1/system"}, "cannot connect to host libvirt qemu+tcp://127.0.0.1:1/system"),
])
def test_bad_arguments_fail_clearly(run_module, uri, args, message):
    result = run_module("placement_facts", **dict({"uri": uri, "kernel_mode": "none"}, **args))
    assert result["failed"] and message in result["msg"], result


def test_dirty_bitmap_mode_warns(run_module, uri):
    result = run_module("placement_facts", uri=uri, kernel_mode="none", dirty_rate_mode="dirty-bitmap")
    assert "pre-split hold" in json.dumps(result["warnings"])
