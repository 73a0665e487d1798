"""The live_migrate module run as Ansible runs it (a subprocess reading its arguments
file), against libvirt's test driver: bad input, unknown domain, unreachable
destination, pre-checks and idempotence.  Real migrations run in the molecule scenarios.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("libvirt")

# The checkout is importable as ansible_collections.presplit.kvm from build/collections
# (tests/unit/conftest.py makes sure that tree exists).
REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
COLLECTIONS_ROOT = os.path.join(REPO, "build", "collections")
MODULE = "ansible_collections.presplit.kvm.plugins.modules.live_migrate"

SMALL_GUEST_NODE = """<node>
  <domain type='test'>
    <name>g1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
    <memory>4096</memory><os><type arch='x86_64'>hvm</type></os>
  </domain>
</node>"""
EMPTY_NODE = "<node></node>"


def run_module(tmp_path, check_mode=False, **args):
    args["_ansible_check_mode"] = check_mode
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    proc = subprocess.run([sys.executable, "-m", MODULE, str(path)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def nodes(tmp_path):
    small = tmp_path / "small.xml"
    small.write_text(SMALL_GUEST_NODE)
    empty = tmp_path / "empty.xml"
    empty.write_text(EMPTY_NODE)
    return {"small": "test://%s" % small, "empty": "test://%s" % empty}


@pytest.mark.parametrize("args, message", [
    (dict(destination_uri="h2"), "invalid options: destination URI 'h2' is not a libvirt URI"),
    (dict(destination_host="h2", tunnelled=True, post_copy=True), "post_copy cannot be combined with tunnelled"),
    (dict(destination_host="h2", completion_timeout_action="postcopy"), "requires post_copy"),
    (dict(destination_host="h2", bandwidth_mib_per_s=-1), "bandwidth_mib_per_s must be from 0 to 1048576"),
    # The earlier name is an alias; the message names the option.
    (dict(destination_host="h2", bandwidth=-1), "bandwidth_mib_per_s must be from 0 to 1048576"),
    (dict(destination_host="h2", poll_interval_s="nan"), "poll_interval_s must be from 0.01 to 60, got nan"),
    (dict(destination_host="h2?keyfile=/tmp/key"), "destination_host 'h2?keyfile=/tmp/key' is not a host name"),
    (dict(), "one of the following is required: destination_uri, destination_host"),
    (dict(destination_host=""), "destination_uri or destination_host must name the destination"),
    (dict(destination_host="h2", destination_uri="qemu+ssh://h2/system"),
     "parameters are mutually exclusive: destination_uri|destination_host"),
    (dict(destination_host="h2", migration_address="10.0.9.2", migration_uri="tcp://10.0.9.2"),
     "parameters are mutually exclusive: migration_uri|migration_address"),
    (dict(destination_host="h2", migration_address="10.0.9.2/24"), "migration_address '10.0.9.2/24' is not a host"),
])
def test_bad_input_fails_before_connecting(tmp_path, args, message):
    result = run_module(tmp_path, name="g1", uri="qemu+tcp://127.0.0.1:1/system", **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert not result.get("changed")


def test_earlier_option_names_are_aliases(tmp_path, nodes):
    result = run_module(tmp_path, domain="nope", source_uri=nodes["small"], destination_uri=nodes["empty"],
                        max_downtime=300, completion_timeout=10, downtime_delay=5, poll_interval=1.0)
    assert result["failed"] is True
    assert "domain nope not found on the source %s" % nodes["small"] in result["msg"]


def test_unknown_domain(tmp_path, nodes):
    result = run_module(tmp_path, name="nope", uri=nodes["small"], destination_uri=nodes["empty"])
    assert result["failed"] is True
    assert "domain nope not found on the source" in result["msg"]


def test_unreachable_destination_leaves_domain(tmp_path, nodes):
    # A real migration (not check mode) checks the destination before it starts, too.
    result = run_module(tmp_path, name="g1", uri=nodes["small"], destination_uri="qemu+tcp://127.0.0.1:1/system")
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("cannot connect to destination libvirt qemu+tcp://127.0.0.1:1/system")
    assert result["msg"].endswith("domain is running on the source, nothing was migrated")


def test_a_domain_gone_from_the_source_with_the_destination_unreachable_is_not_called_unmigrated(tmp_path, nodes):
    """As the role's post-check after a migration whose destination then lost power."""
    result = run_module(tmp_path, check_mode=True, name="gone", uri=nodes["small"],
                        destination_uri="qemu+tcp://127.0.0.1:1/system")
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].endswith("domain gone is not on the source and the destination cannot be checked")
    assert "nothing was migrated" not in result["msg"]


@pytest.mark.parametrize("check_mode", [True, False])
def test_destination_without_free_memory_fails_precheck(tmp_path, nodes, check_mode):
    # The test driver has no node memory statistics and reports 0 bytes free on a node file
    # without cells. Without check mode the same check stops the migration before it starts.
    result = run_module(tmp_path, check_mode=check_mode, name="g1", uri=nodes["small"],
                        destination_uri=nodes["empty"])
    assert result["failed"] is True and not result.get("changed")
    assert "has 0 MiB of free memory, domain g1 needs 4 MiB" in result["msg"]
    assert "progress" not in result


def test_domain_running_on_both_hosts(tmp_path):
    result = run_module(tmp_path, check_mode=True, name="test", uri="test:///default",
                        destination_uri="test:///default")
    assert result["failed"] is True
    assert "running on both the source and the destination" in result["msg"]


def test_already_on_destination_is_unchanged(tmp_path, nodes):
    result = run_module(tmp_path, name="g1", uri=nodes["empty"], destination_uri=nodes["small"])
    assert result.get("failed") is not True, result
    assert result["changed"] is False and result["already_migrated"] is True
    assert result["destination"]["active"] is True
    assert result["uuid"] == "11111111-2222-3333-4444-555555555555"
    # The steps it went through, timed; nothing after the checks ran.
    assert sorted(result["timings_s"]) == ["checks", "destination_wait", "source"]
    assert all(0 <= seconds < 60 for seconds in result["timings_s"].values())


def test_name_clash_on_destination(tmp_path, nodes):
    # g1 runs on the source; the destination has another domain (another UUID) named g1.
    # Not in check mode: the module refuses it itself, whoever called it.
    clash = tmp_path / "clash.xml"
    clash.write_text(SMALL_GUEST_NODE.replace("11111111-2222", "99999999-2222"))
    other = "test://%s" % clash
    result = run_module(tmp_path, name="g1", uri=nodes["small"], destination_uri=other)
    assert result["failed"] is True
    assert "domain g1 (UUID 99999999-2222-3333-4444-555555555555, running) already exists on the destination" \
        in result["msg"]
    assert not result.get("changed")


DISK_GUEST_NODE = """<node>
  <domain type='test'>
    <name>g1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
    <memory>2048</memory><os><type arch='x86_64'>hvm</type></os>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='%(dir)s/g1.qcow2'/>
        %(backing)s
        <target dev='vda' bus='virtio'/>
      </disk>
      <disk type='file' device='cdrom'><source file='%(dir)s/boot.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    </devices>
  </domain>
</node>"""
BACKING = "<backingStore type='file'><format type='qcow2'/><source file='%s/base.qcow2'/></backingStore>"


def disk_guest(tmp_path, backing=False):
    """A test-driver source whose g1 has a qcow2 file disk in tmp_path (a filesystem of this
    machine alone, as far as the module can tell), and a read-only ISO."""
    node = tmp_path / "disk-node.xml"
    node.write_text(DISK_GUEST_NODE % {"dir": tmp_path, "backing": BACKING % tmp_path if backing else ""})
    return "test://%s" % node


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_disk_on_local_storage_is_refused_without_copy(tmp_path, check_mode):
    """What libvirt would call an unsafe migration, refused before anything moves, with the
    disk, its filesystem and the option that moves it. test:///default has room for g1 (2 of
    its 3 MiB)."""
    result = run_module(tmp_path, check_mode=check_mode, name="g1", uri=disk_guest(tmp_path),
                        destination_uri="test:///default")
    assert result["failed"] is True and not result.get("changed")
    assert "domain g1: disks on a filesystem of the source alone would be left behind: vda (%s/g1.qcow2 on " \
        % tmp_path in result["msg"]
    assert "give copy_storage=all" in result["msg"] and result["msg"].endswith("nothing was migrated")
    assert "sda" not in result["msg"]


def test_copy_all_checks_and_names_the_disks_it_copies(tmp_path):
    result = run_module(tmp_path, check_mode=True, name="g1", uri=disk_guest(tmp_path),
                        destination_uri="test:///default", copy_storage="all")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    storage = result["storage"]
    assert storage["copy_storage"] == "all" and storage["copied_disks"] == ["vda"]
    vda, sda = storage["disks"]
    assert vda["copied"] is True and vda["filesystem"] and vda["path"] == "%s/g1.qcow2" % tmp_path
    assert sda["copied"] is False and sda["readonly"] is True


def test_copy_top_needs_a_pool_for_the_top_image_on_the_destination(tmp_path):
    result = run_module(tmp_path, check_mode=True, name="g1", uri=disk_guest(tmp_path, backing=True),
                        destination_uri="test:///default", copy_storage="top")
    assert result["failed"] is True and not result.get("changed")
    assert "copy_storage=top: the destination test:///default has no active storage pool whose target is %s" \
        % tmp_path in result["msg"]


def test_copy_storage_disks_must_name_disks_of_the_domain(tmp_path):
    result = run_module(tmp_path, check_mode=True, name="g1", uri=disk_guest(tmp_path),
                        destination_uri="test:///default", copy_storage="all", copy_storage_disks=["vdb"])
    assert result["failed"] is True
    assert "copy_storage_disks: the domain has no disk vdb (it has sda, vda)" in result["msg"]


class _FailedProbe:
    """A destination probe whose connection broke (as when the migration's failure broke it)."""

    def __init__(self, uri):
        self.uri = uri

    def connection(self):
        from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import LibvirtClientError
        raise LibvirtClientError("cannot connect to destination libvirt %s: End of file while reading data" % self.uri)


def test_destination_is_checked_again_after_a_failure(nodes):
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    conn = migration_run.destination_after_failure(_FailedProbe(nodes["small"]), attempts=1, delay_s=0)
    assert conn.lookupByName("g1").name() == "g1"


class _LostProbe:
    """A destination probe whose connection keepalive closed (the destination went silent)."""

    def __init__(self, uri):
        self.uri = uri

    def connection(self):
        import types
        return types.SimpleNamespace(isAlive=lambda: 0)


def test_a_connection_closed_by_keepalive_is_replaced_after_a_failure(nodes):
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    conn = migration_run.destination_after_failure(_LostProbe(nodes["small"]), attempts=1, delay_s=0)
    assert conn.isAlive() and conn.lookupByName("g1").name() == "g1"


def test_a_lost_destination_that_stays_away_says_so_first(tmp_path):
    from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import LibvirtClientError
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    with pytest.raises(LibvirtClientError, match="nosuch.xml"):
        migration_run.destination_after_failure(_LostProbe("test://%s/nosuch.xml" % tmp_path), attempts=1, delay_s=0)
    with pytest.raises(LibvirtClientError, match="the connection to the destination libvirt test:///x was lost"):
        migration_run.destination_after_failure(_LostProbe("test:///x"), attempts=0, delay_s=0)


def test_destination_that_stays_unreachable_names_the_last_error(tmp_path):
    from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import LibvirtClientError
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    with pytest.raises(LibvirtClientError, match="nosuch.xml"):
        migration_run.destination_after_failure(_FailedProbe("test://%s/nosuch.xml" % tmp_path), attempts=2, delay_s=0)


@pytest.mark.parametrize("options, says", [
    (dict(migration_address="10.0.9.2"), "migration failed (data stream to tcp://10.0.9.2): End of file"),
    (dict(migration_uri="tcp://10.0.9.2:49152"), "migration failed (data stream to tcp://10.0.9.2:49152): End of"),
    (dict(), "migration failed: End of file"),
])
def test_a_failure_names_where_the_data_stream_went(options, says):
    """libvirt's peer-to-peer error does not name the migration address it could not reach."""
    import types
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    outcome = types.SimpleNamespace(timed_out=False, stalled=None,
                                    error="End of file while reading data: : Input/output error")
    probe = types.SimpleNamespace(error=None)
    assert migration_run.describe_failure(dict(options), outcome, None, 2 ** 30, probe).startswith(says)


def test_a_progress_timeout_abort_says_when_the_last_progress_was():
    import types
    from ansible_collections.presplit.kvm.plugins.module_utils import migration_run
    outcome = types.SimpleNamespace(timed_out=False, error="operation aborted: migration out job: canceled by client",
                                    stalled={"lowest_remaining_bytes": 48 * 2 ** 20, "progress_at_s": 12.3, "at_s": 42.4})
    message = migration_run.describe_failure(dict(progress_timeout_s=30), outcome, None, 2 ** 30,
                                             types.SimpleNamespace(error=None))
    assert message == ("migration aborted after 30 s without progress (progress_timeout_s): the data remaining last"
                       " reached a new low (48 MiB) 12 s into the migration, the abort came at 42 s: operation aborted:"
                       " migration out job: canceled by client")
