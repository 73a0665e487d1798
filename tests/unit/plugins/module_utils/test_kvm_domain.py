"""Domain resolution through real libvirt (its built-in test driver, no daemon needed) and
through libvirt's run directory alone, with hostile names."""
import os

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import domain as kvm_domain, errors as kvm_errors

libvirt = pytest.importorskip("libvirt")

HOSTILE = "a b 'c' \"d\" $(rm -rf ~); `id` | ü ☃ &amp; <x>"
NODE_XML = """<node>
  <domain type='kvm'><name>{hostile}</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
    <memory unit='MiB'>64</memory><os><type>hvm</type></os>
    <memoryBacking><hugepages><page size='2' unit='MiB'/></hugepages></memoryBacking></domain>
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>stopped</name>
    <uuid>11111111-2222-3333-4444-666666666666</uuid><memory unit='MiB'>64</memory>
    <os><type>hvm</type></os><test:runstate>5</test:runstate></domain>
</node>
"""


@pytest.fixture
def test_uri(tmp_path):
    from xml.sax.saxutils import escape
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML.format(hostile=escape(HOSTILE)), encoding="utf-8")
    return "test://%s" % node


def test_libvirt_lookup_by_hostile_name_and_by_uuid(test_uri, qemu_domains):
    dom = qemu_domains.start(HOSTILE, domain_uuid="11111111-2222-3333-4444-555555555555")
    inventory = kvm_domain.DomainInventory(test_uri, qemu_domains.run_dir)
    try:
        assert inventory.source == "libvirt"
        for ident in (HOSTILE, "11111111-2222-3333-4444-555555555555", "11111111222233334444555555555555"):
            info = inventory.lookup(ident)
            assert (info.name, info.uuid, info.pid, info.active) == (HOSTILE, dom["uuid"], dom["pid"], True)
            assert info.kvm_accelerated and info.memory_bytes == 64 << 20
            assert info.hugepage_sizes == [2 << 20]
    finally:
        inventory.close()


def test_libvirt_tells_stopped_from_unknown(test_uri, tmp_path):
    inventory = kvm_domain.DomainInventory(test_uri, str(tmp_path))
    try:
        info = inventory.lookup("stopped")
        assert info.active is False and info.pid is None
        with pytest.raises(kvm_errors.DomainNotRunning):
            kvm_domain.require_running(info)
        with pytest.raises(kvm_errors.DomainNotFound, match="no domain 'nope; reboot'"):
            inventory.lookup("nope; reboot")
    finally:
        inventory.close()


def test_running_domain_without_pid_file_is_not_running(test_uri, tmp_path):
    inventory = kvm_domain.DomainInventory(test_uri, str(tmp_path))
    try:
        with pytest.raises(kvm_errors.DomainNotRunning, match="no QEMU pid"):
            inventory.lookup(HOSTILE)
    finally:
        inventory.close()


@pytest.mark.parametrize("ident", ["", "../../etc/passwd", "a/b", ".", "..", "x\0y", "a\nb", "\x1b[31m", "c\x85", "z" * 2000,
                                   None, 42])
def test_identifiers_that_cannot_be_domains_are_refused(ident, tmp_path):
    inventory = kvm_domain.DomainInventory(run_dir=str(tmp_path), use_libvirt=False)
    with pytest.raises(kvm_errors.InvalidArgument):
        inventory.lookup(ident)


def test_status_dir_fallback_finds_running_domains_only(qemu_domains):
    dom = qemu_domains.start(HOSTILE)
    tcg = qemu_domains.start("tcg guest", accel="tcg")
    inventory = kvm_domain.DomainInventory("qemu:///nonexistent", qemu_domains.run_dir, use_libvirt=False)
    assert inventory.source == "status-dir"
    assert inventory.lookup(HOSTILE).pid == dom["pid"]
    assert inventory.lookup(tcg["uuid"].upper()).virt_type == "qemu"
    assert sorted(info.name for info in inventory.running()) == sorted([HOSTILE, "tcg guest"])
    with pytest.raises(kvm_errors.DomainNotFound, match="cannot be told apart"):
        inventory.lookup("stopped")


def test_pid_file_and_status_xml_must_agree(qemu_domains):
    dom = qemu_domains.start("split brain")
    with open(os.path.join(qemu_domains.run_dir, "split brain.pid"), "w") as handle:
        handle.write("%d\n" % (dom["pid"] + 1))
    with pytest.raises(kvm_errors.ProcessMismatch, match="disagree"):
        kvm_domain.pid_from_run_dir("split brain", qemu_domains.run_dir)


def test_unreachable_libvirt_falls_back_and_says_why(tmp_path):
    inventory = kvm_domain.DomainInventory("qemu+unix:///system?socket=%s/none.sock" % tmp_path, str(tmp_path))
    assert inventory.source == "status-dir"
    assert "cannot connect" in inventory.libvirt_error


UUID_NAMED_XML = """<node>
  <domain type='kvm'><name>aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee</name><uuid>11111111-2222-3333-4444-777777777777</uuid>
    <memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>
</node>
"""


def test_lookup_domain_by_uuid_first_then_by_name(tmp_path):
    """The one name-or-UUID lookup (host_info, split_huge_pages, live_migrate, migration_progress):
    a UUID in any spelling, a name that merely looks like a UUID, and nothing for what is neither."""
    node = tmp_path / "node.xml"
    node.write_text(UUID_NAMED_XML, encoding="utf-8")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test://%s" % node)
    try:
        for ident in ("11111111-2222-3333-4444-777777777777", "11111111222233334444777777777777",
                      "11111111-2222-3333-4444-777777777777".upper(), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"):
            assert kvm_domain.lookup_domain(conn, ident).name() == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ident
        for ident in ("11111111-2222-3333-4444-777777777777\n", "no such", "00000000-0000-0000-0000-000000000009"):
            assert kvm_domain.lookup_domain(conn, ident) is None, ident
    finally:
        conn.close()


@pytest.mark.parametrize("text, expected", [
    ("0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1", True), ("0ed4c3a44a1e4bb09f0c6b3f3f6cd1a1", True),
    ("0ED4C3A4-4A1E-4BB0-9F0C-6B3F3F6CD1A1", True), ("0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1\n", False),
    ("g1", False), ("0ed4c3a4-4a1e-4bb0-9f0c", False), ("", False), (None, False), (12, False)])
def test_is_uuid(text, expected):
    assert kvm_domain.is_uuid(text) is expected


MALFORMED = {
    "no-uuid": ("<memory unit='KiB'>1024</memory>", "domain 'no-uuid': <uuid> None is not a UUID"),
    "bad-uuid": ("<uuid>not-a-uuid</uuid><memory unit='KiB'>1024</memory>",
                 "domain 'bad-uuid': <uuid> 'not-a-uuid' is not a UUID"),
    "bad-memory": ("<uuid>11111111-2222-3333-4444-000000000002</uuid><memory unit='KiB'>lots</memory>",
                   "domain 'bad-memory': its memory or page size: 'lots' is not a whole number"),
    "bad-page": ("<uuid>11111111-2222-3333-4444-000000000003</uuid><memory unit='KiB'>1024</memory>"
                 "<memoryBacking><hugepages><page size='2' unit='MiBish'/></hugepages></memoryBacking>",
                 "domain 'bad-page': its memory or page size: unknown unit 'MiBish'"),
}


def _write_status(run_dir, name, body, pid):
    (run_dir / (name + ".pid")).write_text("%d\n" % pid)
    (run_dir / (name + ".xml")).write_text(
        "<domstatus state='running' pid='%d'><domain type='kvm'><name>%s</name>%s</domain></domstatus>"
        % (pid, name, body))


def test_malformed_status_files_are_reported_and_the_others_listed(tmp_path):
    """libvirt's status files, as a host without libvirt reachable has them: one well formed,
    the others each malformed in one way. The listing reports each malformed one with what is
    wrong and still lists the good one; a lookup of a malformed one fails naming it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _write_status(run_dir, "good", "<uuid>11111111-2222-3333-4444-000000000001</uuid><memory unit='MiB'>64</memory>",
                  os.getpid())
    for name, (body, _message) in MALFORMED.items():
        _write_status(run_dir, name, body, os.getpid())
    inventory = kvm_domain.DomainInventory("qemu:///nonexistent", str(run_dir), use_libvirt=False)
    listed = dict((info.name, info) for info in inventory.running())
    assert sorted(listed) == sorted(["good"] + list(MALFORMED))
    assert listed["good"].listing_error is None and listed["good"].memory_bytes == 64 << 20
    for name, (_body, message) in MALFORMED.items():
        assert isinstance(listed[name].listing_error, kvm_errors.MalformedState), name
        assert str(listed[name].listing_error) == message
        with pytest.raises(kvm_errors.MalformedState) as failure:
            inventory.lookup(name)
        assert str(failure.value) == message and failure.value.exit_status == 9


@pytest.mark.parametrize("value, unit, message", [
    ("12", "KiB", None), (" 7 ", "G", None), ("-1", "KiB", "'-1' is not a whole number"),
    ("1e3", "KiB", "'1e3' is not a whole number"), ("", "KiB", "'' is not a whole number"),
    ("12", "parsecs", "unknown unit 'parsecs'")])
def test_scaled_bytes_takes_only_what_libvirt_writes(value, unit, message):
    from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.memory import scaled_bytes
    if message is None:
        assert scaled_bytes(value, unit) == int(value) * {"KiB": 1024, "G": 1 << 30}[unit]
    else:
        with pytest.raises(ValueError, match=message):
            scaled_bytes(value, unit)
