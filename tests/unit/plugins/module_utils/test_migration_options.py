"""Option validation, flags/params building and the downtime/timeout schedules."""

import types

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils import migration_options as mo

GIB = 1024 ** 3

# Distinct bits/keys standing in for libvirt's constants, so a test that mixes two
# flags up fails (the real values are checked against libvirt below when it imports).
FAKE_LV = types.SimpleNamespace(**{
    name: 1 << bit for bit, name in enumerate((
        "VIR_MIGRATE_LIVE", "VIR_MIGRATE_ABORT_ON_ERROR", "VIR_MIGRATE_PEER2PEER",
        "VIR_MIGRATE_TUNNELLED", "VIR_MIGRATE_PERSIST_DEST", "VIR_MIGRATE_UNDEFINE_SOURCE",
        "VIR_MIGRATE_AUTO_CONVERGE", "VIR_MIGRATE_POSTCOPY", "VIR_MIGRATE_TLS",
        "VIR_MIGRATE_COMPRESSED", "VIR_MIGRATE_PARALLEL", "VIR_MIGRATE_NON_SHARED_DISK",
        "VIR_MIGRATE_NON_SHARED_INC"))
})
for _key in ("URI", "BANDWIDTH", "AUTO_CONVERGE_INITIAL", "AUTO_CONVERGE_INCREMENT",
             "PARALLEL_CONNECTIONS", "COMPRESSION", "TLS_DESTINATION", "MIGRATE_DISKS"):
    setattr(FAKE_LV, "VIR_MIGRATE_PARAM_" + _key, _key.lower())


def module_defaults(**overrides):
    """The module's parameters as Ansible would pass them with their defaults."""
    params = dict((name, spec.get("default")) for name, spec in mo.ARGUMENT_SPEC.items())
    params.update(name="g1", destination_host="h2")
    params.update(overrides)
    return params


def test_defaults_are_valid():
    mo.validate(module_defaults())


@pytest.mark.parametrize("overrides, message", [
    (dict(bandwidth_mib_per_s=-1), "bandwidth_mib_per_s must be from 0 to 1048576, got -1"),
    (dict(max_downtime_ms=-5), "max_downtime_ms must be from 0 to 600000, got -5"),
    (dict(completion_timeout_s_per_gib=-1), "completion_timeout_s_per_gib must be from 0 to 86400"),
    (dict(parallel_connections=-2), "parallel_connections must be from 0 to 255"),
    (dict(parallel_connections=256), "parallel_connections must be from 0 to 255"),
    (dict(poll_interval_s=0), "poll_interval_s must be from 0.01 to 60, got 0"),
    (dict(poll_interval_s=float("nan")), "poll_interval_s must be from 0.01 to 60, got nan"),
    (dict(poll_interval_s=float("inf")), "poll_interval_s must be from 0.01 to 60, got inf"),
    (dict(downtime_steps=10 ** 9), "downtime_steps must be from 1 to 100"),
    (dict(name="g1\nFAILED"), "name must not contain control characters, got 'g1\\nFAILED'"),
    (dict(destination_host="h2\x00"), "destination_host must not contain control characters"),
    (dict(destination_host="h2/system?no_verify=1&keyfile=/tmp/k#"), "destination_host 'h2/system?no_verify=1&keyfile"),
    (dict(destination_host="root@h2"), "is not a host name or an IP address"),
    (dict(destination_host="h2:2222"), "is not a host name or an IP address"),
    (dict(destination_host="-h2"), "is not a host name or an IP address"),
    (dict(destination_host="a" * 64 + ".example"), "is not a host name or an IP address"),
    (dict(downtime_steps=0), "downtime_steps must be from 1 to 100"),
    (dict(destination_host=""), "destination_uri or destination_host must name the destination"),
    (dict(destination_host=None, destination_uri="h2"), "is not a libvirt URI"),
    (dict(destination_host=None, destination_uri="qemu+ssh://h2 /system"), "is not a libvirt URI"),
    (dict(destination_host="h2 h3"), "destination_host 'h2 h3' is not a host name or an IP address"),
    (dict(tunnelled=True, peer_to_peer=False), "tunnelled migration requires peer_to_peer"),
    (dict(tunnelled=True, post_copy=True), "post_copy cannot be combined with tunnelled"),
    (dict(tunnelled=True, parallel_connections=4), "parallel_connections cannot be combined"),
    (dict(tunnelled=True, tls=True), "tls (QEMU native TLS) cannot be combined"),
    (dict(persistent=False), "undefine_source without persistent"),
    (dict(migration_address="10.0.9.2:49152"),
     "migration_address '10.0.9.2:49152' is not a host name or an IP address; give migration_uri for a URI with a"
     " scheme or a port"),
    (dict(migration_address="tcp://10.0.9.2"), "migration_address 'tcp://10.0.9.2' is not a host name"),
    (dict(migration_address="h2-mig\r"), "migration_address must not contain control characters"),
    (dict(migration_address=""), None),
    (dict(tunnelled=True, migration_address="h2-mig"),
     "migration_uri and migration_address cannot be combined with tunnelled migration"),
    (dict(tunnelled=True, migration_uri="tcp://h2-mig"), "cannot be combined with tunnelled migration"),
    (dict(auto_converge_initial=20), "auto_converge_initial requires auto_converge"),
    (dict(auto_converge=True, auto_converge_increment=150), "auto_converge_increment must be from 1 to 99"),
    (dict(auto_converge=True, auto_converge_initial=0), "auto_converge_initial must be from 1 to 99"),
    (dict(completion_timeout_action="postcopy"), "completion_timeout_action=postcopy requires post_copy"),
    (dict(parallel_connections=1), "0 (off) or at least 2"),
    (dict(name=""), "name must be"),
    (dict(tunnelled=True, copy_storage="all"), "copy_storage cannot be combined with tunnelled migration"),
    (dict(copy_storage="all", copy_storage_disks=[]), "copy_storage_disks must list disk targets"),
    (dict(copy_storage="all", copy_storage_disks=["vda", "vda"]), "copy_storage_disks must list disk targets"),
    (dict(copy_storage="all", copy_storage_disks=["vda", ""]), "copy_storage_disks must list disk targets"),
    (dict(copy_storage="all", copy_storage_disks=["vda\n"]), "copy_storage_disks must not contain control characters"),
])
def test_validate_names_the_problem(overrides, message):
    if message is None:
        mo.validate(module_defaults(**overrides))
        return
    with pytest.raises(mo.MigrationOptionError) as err:
        mo.validate(module_defaults(**overrides))
    assert message in str(err.value)


def test_valid_combinations():
    mo.validate(module_defaults(post_copy=True, completion_timeout_action="postcopy"))
    mo.validate(module_defaults(tunnelled=True))
    mo.validate(module_defaults(auto_converge=True, auto_converge_initial=20, auto_converge_increment=10))
    mo.validate(module_defaults(persistent=False, undefine_source=False))
    mo.validate(module_defaults(parallel_connections=4, compression=["mt"]))


def test_canonical_options_name_each_option_once():
    assert mo.canonical_options({"max_downtime": 300, "bandwidth_mib_per_s": 5, "source_uri": "test:///default"}) == {
        "max_downtime_ms": 300, "bandwidth_mib_per_s": 5, "uri": "test:///default"}
    with pytest.raises(mo.MigrationOptionError, match="'max_downtime_s' is not an option of presplit.kvm.live_migrate"):
        mo.canonical_options({"max_downtime_s": 3})
    with pytest.raises(mo.MigrationOptionError, match="bandwidth_mib_per_s is given twice"):
        mo.canonical_options({"bandwidth": 1, "bandwidth_mib_per_s": 2})
    with pytest.raises(mo.MigrationOptionError, match="must be a mapping"):
        mo.canonical_options(["bandwidth"])


def test_argument_spec_says_what_it_can():
    assert ("destination_uri", "destination_host") in mo.MUTUALLY_EXCLUSIVE
    assert ("migration_uri", "migration_address") in mo.MUTUALLY_EXCLUSIVE
    assert ("destination_uri", "destination_host") in mo.REQUIRED_ONE_OF
    # Every quantity carries its unit in its name.
    for name in ("bandwidth_mib_per_s", "max_downtime_ms", "downtime_delay_s_per_gib", "completion_timeout_s_per_gib",
                 "poll_interval_s"):
        assert name in mo.ARGUMENT_SPEC


@pytest.mark.parametrize("host, authority", [
    ("h3", "h3"), ("h3.example.", "h3.example."), ("build_07.lab", "build_07.lab"), ("192.0.2.12", "192.0.2.12"),
    ("2001:db8::12", "[2001:db8::12]")])
def test_destination_host_is_a_host_name_or_address(host, authority):
    assert mo.destination_uri(module_defaults(destination_host=host)) == "qemu+ssh://%s/system" % authority


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
NUMBER = st.one_of(st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=300, deadline=None)
@given(name=TEXT, host=TEXT, numbers=st.dictionaries(st.sampled_from(sorted(mo.RANGES)), NUMBER))
def test_hostile_values_are_refused_by_a_message_or_accepted(name, host, numbers):
    """Whatever the values: a MigrationOptionError naming an option, or options whose
    numbers are in range and whose URI has the host alone as its authority."""
    params = module_defaults(name=name, destination_host=host, auto_converge=True, **numbers)
    try:
        mo.validate(params)
    except mo.MigrationOptionError as error:
        message = str(error)
        assert "\n" not in message and any(option in message for option in mo.ARGUMENT_SPEC)
        return
    for option, value in numbers.items():
        low, high = mo.RANGES[option]
        assert low <= value <= high
    assert mo.destination_uri(params) in ("qemu+ssh://%s/system" % host, "qemu+ssh://[%s]/system" % host)
    assert not any(char in host for char in "/?#@:") or host.count(":") >= 2


@pytest.mark.parametrize("overrides, uri", [
    (dict(), None), (dict(migration_address="h2-mig.example"), "tcp://h2-mig.example"),
    (dict(migration_address="10.0.9.2"), "tcp://10.0.9.2"), (dict(migration_address="fd00:9::2"), "tcp://[fd00:9::2]"),
    (dict(migration_uri="tcp://10.0.9.2:49152"), "tcp://10.0.9.2:49152")])
def test_migration_data_uri(overrides, uri):
    """The data stream's URI: to the migration address, as given, or libvirt's choice (None)."""
    params = module_defaults(**overrides)
    assert mo.migration_data_uri(params) == uri
    typed = mo.migration_params(params, FAKE_LV)
    assert typed.get("uri") == uri


@pytest.mark.parametrize("transport, expected", [
    ("ssh", "qemu+ssh://h3/system"), ("tcp", "qemu+tcp://h3/system"), ("tls", "qemu+tls://h3/system")])
def test_destination_uri_from_host(transport, expected):
    assert mo.destination_uri(module_defaults(destination_host="h3", transport=transport)) == expected


def test_explicit_destination_uri_wins():
    params = module_defaults(destination_host=None, destination_uri="qemu+ssh://root@h9/system")
    assert mo.destination_uri(params) == "qemu+ssh://root@h9/system"


def test_flags_default_p2p_persistent_undefine():
    flags = mo.migration_flags(module_defaults(), FAKE_LV)
    expected = (FAKE_LV.VIR_MIGRATE_LIVE | FAKE_LV.VIR_MIGRATE_ABORT_ON_ERROR | FAKE_LV.VIR_MIGRATE_PEER2PEER
                | FAKE_LV.VIR_MIGRATE_PERSIST_DEST | FAKE_LV.VIR_MIGRATE_UNDEFINE_SOURCE)
    assert flags == expected


def test_flags_every_option():
    params = module_defaults(peer_to_peer=False, persistent=False, undefine_source=False, auto_converge=True,
                             post_copy=True, tls=True, compression=["xbzrle"], parallel_connections=4)
    flags = mo.migration_flags(params, FAKE_LV)
    assert not flags & FAKE_LV.VIR_MIGRATE_PEER2PEER
    assert not flags & FAKE_LV.VIR_MIGRATE_PERSIST_DEST
    for name in ("AUTO_CONVERGE", "POSTCOPY", "TLS", "COMPRESSED", "PARALLEL", "LIVE"):
        assert flags & getattr(FAKE_LV, "VIR_MIGRATE_" + name), name
    assert not flags & FAKE_LV.VIR_MIGRATE_TUNNELLED


def test_params_only_what_was_set():
    assert mo.migration_params(module_defaults(), FAKE_LV) == {}
    params = module_defaults(migration_uri="tcp://192.0.2.12", bandwidth_mib_per_s=100, auto_converge=True,
                             auto_converge_initial=0, auto_converge_increment=5, parallel_connections=3,
                             compression=["xbzrle", "mt"], tls=True, tls_destination="h2.example")
    assert mo.migration_params(params, FAKE_LV) == {
        "uri": "tcp://192.0.2.12", "bandwidth": 100, "auto_converge_initial": 0,
        "auto_converge_increment": 5, "parallel_connections": 3, "compression": ["xbzrle", "mt"],
        "tls_destination": "h2.example"}


@pytest.mark.parametrize("copy_storage, bit", [("all", "VIR_MIGRATE_NON_SHARED_DISK"),
                                               ("top", "VIR_MIGRATE_NON_SHARED_INC")])
def test_storage_copy_flag_and_disks(copy_storage, bit):
    """The copy flag and the explicit list of disks go together, and only with disks to copy:
    without the list libvirt would copy every disk it does not know to be shared."""
    params = module_defaults(copy_storage=copy_storage)
    other = "VIR_MIGRATE_NON_SHARED_INC" if bit == "VIR_MIGRATE_NON_SHARED_DISK" else "VIR_MIGRATE_NON_SHARED_DISK"
    flags = mo.migration_flags(params, FAKE_LV, ["vda"])
    assert flags & getattr(FAKE_LV, bit) and not flags & getattr(FAKE_LV, other)
    assert mo.migration_params(params, FAKE_LV, ["vda", "vdb"]) == {"migrate_disks": ["vda", "vdb"]}
    no_disks = mo.migration_flags(params, FAKE_LV, [])
    assert not no_disks & (FAKE_LV.VIR_MIGRATE_NON_SHARED_DISK | FAKE_LV.VIR_MIGRATE_NON_SHARED_INC)
    assert mo.migration_params(params, FAKE_LV, []) == {}


def test_tls_destination_ignored_without_tls():
    assert mo.migration_params(module_defaults(tls_destination="x"), FAKE_LV) == {}


def test_real_libvirt_constants_build():
    libvirt = pytest.importorskip("libvirt")
    flags = mo.migration_flags(module_defaults(), libvirt)
    assert flags & libvirt.VIR_MIGRATE_PEER2PEER and flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    typed = mo.migration_params(module_defaults(bandwidth_mib_per_s=10), libvirt)
    assert typed == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 10}
    flags = mo.migration_flags(module_defaults(copy_storage="top"), libvirt, ["vda"])
    assert flags & libvirt.VIR_MIGRATE_NON_SHARED_INC and not flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK


def test_downtime_schedule_matches_nova():
    # Nova's defaults (500 ms, 10 steps, 75 s) on a 4 GiB guest: 300 s between steps.
    schedule = mo.downtime_schedule(500, 10, 75, 4 * GIB)
    assert len(schedule) == 11
    assert schedule[0] == (0.0, 50)
    assert schedule[1] == (300.0, 95)
    assert schedule[-1] == (3000.0, 500)
    downtimes = [step[1] for step in schedule]
    assert downtimes == sorted(downtimes)


def test_downtime_schedule_small_guest_uses_two_gib_floor():
    schedule = mo.downtime_schedule(300, 3, 10, 128 * 1024 * 1024)
    assert schedule == [(0.0, 100), (20.0, 167), (40.0, 233), (60.0, 300)]


def test_completion_deadline():
    assert mo.completion_deadline_s(0, 8 * GIB) is None
    assert mo.completion_deadline_s(800, 8 * GIB) == 6400
    assert mo.completion_deadline_s(1, 64 * 1024 * 1024) == 2.0


def test_due_downtime_steps_and_catch_up():
    schedule = [(0.0, 10), (5.0, 20), (10.0, 30)]
    assert mo.due_downtime(schedule, 0.1, -1) == (0, 10)
    assert mo.due_downtime(schedule, 4.9, 0) is None
    assert mo.due_downtime(schedule, 5.0, 0) == (1, 20)
    # A late poll jumps straight to the newest due step.
    assert mo.due_downtime(schedule, 12.0, 0) == (2, 30)
    assert mo.due_downtime(schedule, 99.0, 2) is None
    assert mo.due_downtime([], 1.0, -1) is None
