"""libvirt helpers against libvirt's real test driver (test:///default)."""

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client as lc  # noqa: E402
from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_dirty_rate, libvirt_placement  # noqa: E402

TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture
def conn():
    lc.quiet_libvirt()
    return lc.open_connection("test:///default", "source")


def test_find_domain_by_name_and_uuid(conn):
    by_name = lc.find_domain(conn, "test")
    by_uuid = lc.find_domain(conn, TEST_DOMAIN_UUID)
    assert by_name.UUIDString() == TEST_DOMAIN_UUID
    assert by_uuid.name() == "test"


def test_unknown_domain_is_none(conn):
    assert lc.find_domain(conn, "no-such-domain") is None
    assert lc.find_domain(conn, "00000000-0000-0000-0000-000000000001") is None


def test_presence_and_memory(conn):
    domain = lc.find_domain(conn, "test")
    assert lc.domain_presence(domain) == {
        "name": "test", "uuid": TEST_DOMAIN_UUID, "active": True, "persistent": True, "state": "running"}
    assert lc.domain_presence(None) is None
    assert lc.domain_memory_bytes(domain) == 8 * 1024 ** 3


def test_domain_state_follows_libvirt(conn):
    domain = lc.find_domain(conn, "test")
    domain.suspend()
    try:
        assert lc.domain_state(domain) == "paused"
    finally:
        domain.resume()
    assert lc.domain_state(domain) == "running"


def test_cpu_check_skips_domain_without_cpu_model(conn):
    result = lc.cpu_compatibility(lc.find_domain(conn, "test"), conn)
    assert result["result"] == "skipped"
    assert "no CPU model" in result["detail"]


def test_cpu_check_reports_driver_error_for_a_cpu_model():
    """The test driver cannot compare CPUs: the error must name what was compared."""
    conn = lc.open_connection("test:///default", "destination")
    domain = conn.defineXML(
        "<domain type='test'><name>cpu-model</name><memory>1024</memory>"
        "<cpu><model>qemu64</model></cpu><os><type arch='x86_64'>hvm</type></os></domain>")
    try:
        with pytest.raises(lc.LibvirtClientError) as err:
            lc.cpu_compatibility(domain, conn)
        assert "domain CPU model qemu64" in str(err.value)
    finally:
        domain.undefine()


def test_unreachable_uri_names_role_and_uri():
    with pytest.raises(lc.LibvirtClientError) as err:
        lc.open_connection("qemu+tcp://127.0.0.1:1/system", "destination")
    assert "cannot connect to destination libvirt qemu+tcp://127.0.0.1:1/system" in str(err.value)


def test_a_peer_that_accepts_and_never_answers_fails_the_open_in_time(tmp_path):
    """libvirt's real remote client against a socket that accepts and stays silent, as a
    frozen libvirtd's does: without a bound, libvirt.open waits in its handshake forever."""
    import socket
    import time
    path = str(tmp_path / "libvirt-sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(1)
    uri = "qemu+unix:///system?socket=%s" % path
    started = time.monotonic()
    try:
        with pytest.raises(lc.LibvirtClientError) as err:
            lc.open_connection(uri, "destination", timeout_s=1)
    finally:
        silent.close()
    assert str(err.value) == "cannot connect to destination libvirt %s: no answer in 1 s" % uri
    assert time.monotonic() - started < 30


def test_connections_run_with_libvirts_event_loop(conn):
    """Keepalive needs the event loop: it runs once per process, however many connections open."""
    import threading
    lc.open_connection("test:///default", "destination")
    assert [thread.name for thread in threading.enumerate()].count("libvirt-events") == 1


def test_active_domains_host_cpus_and_name(conn):
    stopped = conn.defineXML("<domain type='test'><name>a-stopped</name><memory>1024</memory>"
                             "<os><type>hvm</type></os></domain>")
    started = conn.createXML("<domain type='test'><name>a-running</name><memory>1024</memory>"
                             "<os><type>hvm</type></os></domain>", 0)
    try:
        assert [dom.name() for dom in lc.active_domains(conn)] == ["a-running", "test"]
    finally:
        started.destroy()
        stopped.undefine()
    assert lc.host_cpus(conn) == 16         # the test driver's default node
    assert lc.host_name(conn) == conn.getHostname()


def test_listing_a_closed_connection_names_the_call():
    closed = lc.open_connection("test:///default", "source")
    closed.close()
    with pytest.raises(Exception):
        lc.active_domains(closed)


def test_constant_fallbacks_are_the_bindings_numbers():
    """Every constant named through libvirt_constant (placement, dirty rate, states) falls back to
    the number this binding has for it, so a binding that lacks one still gets the right value."""
    assert libvirt_placement.MIGRATABLE_STATES == (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED,
                                                   libvirt.VIR_DOMAIN_PAUSED)
    assert libvirt_dirty_rate.MODES["dirty-ring"] == libvirt.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING
    assert len(lc.CONSTANT_FALLBACKS) >= 15
    for name, fallback in sorted(lc.CONSTANT_FALLBACKS.items()):
        assert getattr(libvirt, name) == fallback, name


class _Domain:
    """Only the XML of a domain (destination_memory reads nothing else)."""

    def __init__(self, memory_backing=""):
        self._xml = "<domain type='kvm'><name>g</name><memoryBacking>%s</memoryBacking></domain>" % memory_backing

    def XMLDesc(self, _flags):
        return self._xml


class _Destination:
    """A destination connection's node statistics, as a fake: libvirt's test driver has no
    node memory statistics and reports no free huge pages, a real daemon does (the lab and
    the e2e tier migrate against real ones)."""

    def __init__(self, stats=None, free_pages=None):
        self.stats = stats
        self.free_pages = free_pages
        self.page_queries = []

    def getURI(self):
        return "qemu+ssh://h2/system"

    def getMemoryStats(self, cell):
        assert cell == lc.NODE_MEMORY_STATS_ALL_CELLS
        return self.stats

    def getFreePages(self, sizes, start_cell, cell_count):
        self.page_queries.append((sizes, start_cell, cell_count))
        return self.free_pages


def test_destination_memory_counts_page_cache_for_thp_or_small_pages():
    dest = _Destination(stats={"total": 8 << 20, "free": 100 << 10, "buffers": 50 << 10, "cached": 1 << 20})
    room = lc.destination_memory(_Domain(), dest)
    assert room == {"available_bytes": ((100 << 10) + (50 << 10) + (1 << 20)) * 1024,
                    "what": "free, buffer and page-cache memory"}
    assert dest.page_queries == []


@pytest.mark.parametrize("backing, page_kib", [
    ("<hugepages><page size='2' unit='M'/></hugepages>", 2048),
    ("<hugepages><page size='1' unit='G'/></hugepages>", 1048576),
])
def test_destination_memory_of_hugetlb_domain_is_free_pages_of_its_size(backing, page_kib):
    # Plenty of ordinary memory, few huge pages: the huge pages decide.
    dest = _Destination(stats={"free": 64 << 20}, free_pages={-1: {page_kib: 3}})
    room = lc.destination_memory(_Domain(backing), dest)
    assert room == {"available_bytes": 3 * page_kib * 1024, "what": "free %d KiB huge pages" % page_kib}
    # The whole host's count: cell -1, one "cell".
    assert dest.page_queries == [([page_kib], -1, 1)]


def test_destination_memory_unknown_when_free_pages_not_reported():
    room = lc.destination_memory(_Domain("<hugepages><page size='2048' unit='KiB'/></hugepages>"),
                                 _Destination(free_pages={}))
    assert room["available_bytes"] is None


def test_destination_memory_from_the_test_driver_is_its_free_memory(conn):
    room = lc.destination_memory(_Domain(), conn)
    assert room == {"available_bytes": conn.getFreeMemory(), "what": "free memory"}
