"""presplit.kvm.placement_facts on a real lab: two libvirt hosts with TCG guests, one of
them rewriting memory, measured through libvirt's dirty-rate API, and the result fed to
presplit.kvm.evacuation_plan -- both run by ansible-playbook over the lab inventory.

Brings up its own lab (lab_name "pfacts", 2 hosts) and always tears it down.  Needs root,
libvirt and QEMU; about one minute.

    cd /work/main && .venv/bin/python -m pytest tests/lab/test_placement_facts.py -v -s
"""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import lab_control

LAB = "pfacts"
HOSTS = ["h1", "h2"]
BUSY_RATE = 12
# page sampling looks at 512 pages per GiB: a 1 s measurement of a 128 MiB guest dirtying
# 12 MiB/s expects 6 dirty samples of 64; 5 s expect 30 (the buffer is larger than 60 MiB,
# so no page is counted twice), which keeps the estimate within about +-30 % (2 sigma).
SECONDS = 5
# A guest short of CPU dirties less than its rate, so the busy guest's estimate is checked
# against what the guest itself says it dirtied during the measurement (least_dirtied_mib),
# and the measurement is taken again while that is too little to tell it from an idle guest.
LEAST_USABLE_MIB = 18
ATTEMPTS = 5
GUESTS = [
    {"name": "idle", "host": "h1"},
    {"name": "busy", "host": "h1", "buffer_mib": 64, "dirty_rate_mib_s": BUSY_RATE},
    {"name": "other", "host": "h2", "memory_mib": 192, "vcpus": 2},
]
NS = "https://presplit-kvm.invalid/xmlns/placement/1"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

PLAYBOOK = [
    {
        "name": "Gather placement facts on every lab host",
        "hosts": "lab_hosts",
        "gather_facts": False,
        "tasks": [
            {"name": "Placement facts",
             # The timeout only stops a stuck run: the status must be "measured" however
             # late a loaded QEMU gets to its result.
             "presplit.kvm.placement_facts": {"host_name": "{{ inventory_hostname }}",
                                              "dirty_rate_seconds": SECONDS, "dirty_rate_timeout": 120,
                                              "memory_reserve_mib": 0},
             "register": "facts"},
        ],
    },
    {
        "name": "Plan the evacuation of h1 from them",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "Plan",
             "presplit.kvm.evacuation_plan": {
                 "hosts": "{{ groups.lab_hosts | map('extract', hostvars, ['facts', 'host']) | list }}",
                 "domains": "{{ groups.lab_hosts | map('extract', hostvars, ['facts', 'domains'])"
                            " | flatten(levels=1) }}",
                 "drain": ["h1"],
                 "limits": {"host_bandwidth_mib_per_s": 100},
                 "detail": "full"},
             "register": "plan"},
            {"name": "Plan from the presplit_placement fact",
             "presplit.kvm.evacuation_plan": {
                 "hosts": "{{ groups.lab_hosts | map('extract', hostvars, ['presplit_placement', 'host'])"
                          " | list }}",
                 "domains": "{{ groups.lab_hosts | map('extract', hostvars, ['presplit_placement', 'domains'])"
                            " | flatten(levels=1) }}",
                 "drain": ["h1"],
                 "limits": {"host_bandwidth_mib_per_s": 100},
                 "detail": "full"},
             "register": "plan_from_fact"},
            {"name": "Save what the test checks",
             "ansible.builtin.copy": {
                 "content": "{{ {'facts': dict(groups.lab_hosts | zip(groups.lab_hosts | map('extract', hostvars,"
                            " 'facts'))), 'plan': plan, 'plan_from_fact': plan_from_fact} | to_json }}",
                 "dest": "{{ result_file }}",
                 "mode": "0600"}},
        ],
    },
]


def run_playbook(tmp_path):
    playbook = tmp_path / "placement.yml"
    playbook.write_text(json.dumps(PLAYBOOK))     # JSON is YAML
    result_file = tmp_path / "result.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"),
               ANSIBLE_DEPRECATION_WARNINGS="false")
    result = subprocess.run(
        [str(os.path.join(os.path.dirname(sys.executable), "ansible-playbook")), "-i",
         str(lab_control.inventory(LAB)), str(playbook), "-e", "result_file=%s" % result_file],
        cwd=lab_control.REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return json.loads(result_file.read_text())


def set_groups(host, domain, groups):
    elements = "".join("<anti-affinity group='%s'/>" % group for group in groups)
    lab_control.virsh(LAB, host, "metadata", domain, "--uri", NS, "--key", "presplit",
                      "--set", "<placement>%s</placement>" % elements, "--live", "--config")


def domain_xml(host, domain):
    return ET.fromstring(lab_control.virsh(LAB, host, "dumpxml", domain).stdout)


def thp_enabled():
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
        return re.search(r"\[(\w+)\]", handle.read()).group(1)


def least_dirtied_mib(lines, seconds):
    """The fewest MiB the guest reports having dirtied inside any `seconds` long stretch
    between its first and last status line (dicts with up_ms and dirtied_mib): only the
    report intervals wholly inside the stretch count, so it holds however unevenly the
    guest ran.  The measurement window is such a stretch when the first line was printed
    before it started and the last after it ended."""
    least = None
    for start, line in enumerate(lines):
        if line["up_ms"] + seconds * 1000 > lines[-1]["up_ms"]:
            break
        # A stretch that begins just after this line: the next line is the first inside.
        inside = [later for later in lines[start + 1:] if later["up_ms"] <= line["up_ms"] + seconds * 1000]
        # dirtied_mib is rounded down: a difference may be 1 MiB short.
        dirtied = max(0, inside[-1]["dirtied_mib"] - inside[0]["dirtied_mib"] - 1) if len(inside) > 1 else 0
        least = dirtied if least is None else min(least, dirtied)
    return least or 0


def measure(tmp_path_factory):
    """Run the playbook once; returns its output and what the busy guest reported meanwhile."""
    # Printed before the playbook started, and (waited for) after it ended: the lines in
    # between cover the measurement window.
    before = lab_control.guest_status(LAB, "h1", "busy")
    output = run_playbook(tmp_path_factory.mktemp("placement"))
    ended = lab_control.guest_status(LAB, "h1", "busy")
    after = lab_control.wait_status(LAB, "h1", "busy", min_seq=ended["seq"] + 1)
    assert after["seq"] > ended["seq"], lab_control.console_tail(LAB, "h1", "busy")
    lines = [line for line in lab_control.status_lines(LAB, "h1", "busy")
             if before["seq"] <= line["seq"] <= after["seq"]]
    return {"output": output, "busy_before": before, "busy_after": after,
            "busy_least_mib": least_dirtied_mib(lines, SECONDS)}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    lab_control.lab_down(LAB)
    try:
        lab_control.lab_up(LAB, hosts=len(HOSTS), guests=GUESTS)
        for guest in GUESTS:
            status = lab_control.wait_status(LAB, guest["host"], guest["name"], min_seq=2, timeout=120)
            assert status, lab_control.console_tail(LAB, guest["host"], guest["name"])
        set_groups("h1", "busy", ["rack1", "db"])
        set_groups("h2", "other", ["web"])
        for _attempt in range(ATTEMPTS):
            result = measure(tmp_path_factory)
            if result["busy_least_mib"] >= LEAST_USABLE_MIB:
                break
        result["xml"] = {(guest["host"], guest["name"]): domain_xml(guest["host"], guest["name"]) for guest in GUESTS}
        yield result
    finally:
        lab_control.lab_down(LAB)


def domains_by_name(output):
    return {entry["name"]: entry for host in HOSTS for entry in output["facts"][host]["domains"]}


def test_dirty_rate_tells_idle_from_rewriting(gathered):
    output = gathered["output"]
    rates = output["facts"]["h1"]["dirty_rate"]
    before, after = gathered["busy_before"], gathered["busy_after"]
    actual = (after["dirtied_mib"] - before["dirtied_mib"]) * 1000.0 / (after["up_ms"] - before["up_ms"])
    least = gathered["busy_least_mib"]
    print("\ndirty rate measured over %d s: idle %s, busy %s MiB/s (configured %d, the guest reports %.1f,"
          " at least %d MiB in the window), other %s"
          % (SECONDS, rates["idle"]["mib_per_s"], rates["busy"]["mib_per_s"], BUSY_RATE, actual, least,
             output["facts"]["h2"]["dirty_rate"]["other"]["mib_per_s"]))
    assert least >= LEAST_USABLE_MIB, (
        "in %d measurements the busy guest never dirtied %d MiB within %d s (CPU-starved)"
        % (ATTEMPTS, LEAST_USABLE_MIB, SECONDS))
    for host in HOSTS:
        for name, result in output["facts"][host]["dirty_rate"].items():
            assert result["status"] == "measured", (name, result)
            assert result["mode"] == "page-sampling" and result["period_s"] == SECONDS
    domains = domains_by_name(output)
    assert domains["idle"]["dirty_rate_mib_per_s"] == rates["idle"]["mib_per_s"]
    assert domains["busy"]["dirty_rate_mib_per_s"] == rates["busy"]["mib_per_s"]
    assert rates["idle"]["mib_per_s"] < rates["busy"]["mib_per_s"]
    # Bounds that hold at any speed: a slower idle guest dirties even less; the busy guest
    # never dirties faster than its rate, nor less than it reports in the window (a 3x
    # margin for the sampling).
    assert rates["idle"]["mib_per_s"] <= 2
    assert least / SECONDS / 3 <= rates["busy"]["mib_per_s"] <= BUSY_RATE * 3


def test_domains_match_their_xml_and_metadata(gathered):
    domains = domains_by_name(gathered["output"])
    assert sorted(domains) == ["busy", "idle", "other"]
    expected_backing = "thp" if thp_enabled() in ("always", "madvise") else "none"
    for (host, name), root in gathered["xml"].items():
        entry = domains[name]
        assert entry["host"] == host
        assert entry["memory_mib"] * 1024 == int(root.findtext("memory"))
        assert entry["vcpus"] == int(root.findtext("vcpu"))
        assert entry["backing"] == expected_backing
        assert entry["pinned"] is False and entry["migratable"] is True
    assert (domains["other"]["memory_mib"], domains["other"]["vcpus"]) == (192, 2)
    assert domains["busy"]["anti_affinity"] == ["db", "rack1"]
    assert domains["other"]["anti_affinity"] == ["web"]
    assert domains["idle"]["anti_affinity"] == []


def test_host_capacity(gathered):
    for host in HOSTS:
        facts = gathered["output"]["facts"][host]
        details = facts["host_details"]
        vcpus = sum(entry["vcpus"] for entry in facts["domains"])
        assert facts["host"]["name"] == host == details["libvirt_host_name"]
        assert facts["host"]["vcpus_free"] == max(0, details["vcpus_capacity"] - vcpus)
        assert details["vcpus_capacity"] == int(details["cpus"] * 4.0)
        assert 0 < facts["host"]["memory_free_mib"] <= details["mem_available_mib"]
        assert facts["host"]["kernel_mode"] in ("patched", "eager-split-only", "none")
        assert facts["changed"] is False


def test_planner_accepts_the_facts_and_plans(gathered):
    output = gathered["output"]
    plan = output["plan"]
    assert plan["placement"] == {"busy": "h2", "idle": "h2"}
    migrations = {m["domain"]: m for wave in plan["waves"] for m in wave["migrations"]}
    rates = output["facts"]["h1"]["dirty_rate"]
    assert migrations["busy"]["dirty_rate_mib_per_s"] == rates["busy"]["mib_per_s"]
    assert migrations["idle"]["mode"] == "pre_copy"
    assert plan["summary"]["migrations"] == 2
    assert output["plan_from_fact"]["placement"] == plan["placement"]
