"""Dirty-rate measurement: the start-all-then-wait-once protocol, the stats parsing and the
per-domain error handling.  libvirt's real test driver covers the "not supported" and state
paths; a scripted connection with a fake clock covers what needs QEMU (the lab test measures
real guests)."""
import pytest

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_dirty_rate as dr


class FakeError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code

    def get_error_code(self):
        return self.code


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


class Domain:
    """ready_after: seconds after its start until QEMU reports 'measured' (None: never)."""

    def __init__(self, clock, name, rate=8, state=1, start_error=None, ready_after=1.0, virt="kvm",
                 stats_error=None, extra=None):
        self.clock, self._name, self.rate, self._state = clock, name, rate, state
        self.start_error, self.ready_after, self.virt = start_error, ready_after, virt
        self.stats_error, self.extra = stats_error, extra or {}
        self.started = None
        self.calls = []

    def name(self):
        return self._name

    def state(self):
        return [self._state, 1]

    def isActive(self):  # noqa: N802 (libvirt's name)
        return self._state != 5

    def XMLDesc(self, flags):  # noqa: N802
        return "<domain type='%s'><name>%s</name></domain>" % (self.virt, self._name)

    def startDirtyRateCalc(self, seconds, flags):  # noqa: N802
        self.calls.append((seconds, flags))
        if self.start_error:
            raise self.start_error
        self.started = self.clock()

    def stats(self, seconds):
        if self.stats_error:
            raise self.stats_error
        base = {"dirtyrate.calc_status": 1, "dirtyrate.calc_start_time": 8831,
                "dirtyrate.calc_period": seconds, "dirtyrate.calc_mode": "page-sampling"}
        start = self.started if self.started is not None else self.clock.started
        if self.ready_after is not None and self.clock() >= start + self.ready_after:
            base.update({"dirtyrate.calc_status": 2, "dirtyrate.megabytes_per_second": self.rate})
        base.update(self.extra)
        return base


class Conn:
    def __init__(self, seconds):
        self.seconds = seconds
        self.batches = []

    def domainListGetStats(self, domains, stats):  # noqa: N802
        assert stats == dr.STATS_DIRTYRATE
        self.batches.append([domain.name() for domain in domains])
        return [(domain, domain.stats(self.seconds)) for domain in domains]


def measure(domains, clock, seconds=1, **kwargs):
    clock.started = clock()
    conn = Conn(seconds)
    results = dr.measure_dirty_rates(conn, domains, seconds, sleep=clock.sleep, clock=clock, **kwargs)
    return results, conn


def test_starts_every_domain_then_waits_one_period():
    clock = Clock()
    domains = [Domain(clock, "a", rate=0), Domain(clock, "b", rate=22), Domain(clock, "c", rate=5)]
    results, conn = measure(domains, clock, seconds=2)
    assert {name: result["mib_per_s"] for name, result in results.items()} == {"a": 0.0, "b": 22.0, "c": 5.0}
    assert all(result["status"] == "measured" and result["error"] is None for result in results.values())
    assert results["b"]["mode"] == "page-sampling" and results["b"]["period_s"] == 2
    assert results["b"]["start_time"] == 8831
    assert [domain.calls for domain in domains] == [[(2, 0)]] * 3        # page-sampling flag is 0
    assert clock.sleeps == [2.0]            # one period for all three, then one stats call
    assert conn.batches == [["a", "b", "c"]]


def test_polls_until_measured_then_times_out_the_rest():
    clock = Clock()
    slow = Domain(clock, "slow", ready_after=1.5)
    stuck = Domain(clock, "stuck", ready_after=None)
    results, conn = measure([slow, stuck], clock, timeout=3)
    assert results["slow"]["status"] == "measured"
    assert results["stuck"]["status"] == "timeout" and results["stuck"]["mib_per_s"] is None
    assert "3.0 s" in results["stuck"]["error"]
    assert clock.now == pytest.approx(103.0)
    assert conn.batches[0] == ["slow", "stuck"] and conn.batches[-1] == ["stuck"]


def test_default_timeout_is_period_plus_grace():
    clock = Clock()
    results = measure([Domain(clock, "stuck", ready_after=None)], clock, seconds=2)[0]
    assert results["stuck"]["status"] == "timeout"
    assert clock.now == pytest.approx(100.0 + 2 + dr.DEFAULT_GRACE_S)


def test_start_errors_stay_with_their_domain():
    clock = Clock()
    domains = [
        Domain(clock, "gone", start_error=FakeError(dr.ERR_NO_DOMAIN, "Domain not found")),
        Domain(clock, "old", start_error=FakeError(dr.ERR_NO_SUPPORT, "this function is not supported")),
        Domain(clock, "stopped", start_error=FakeError(dr.ERR_OPERATION_INVALID, "domain is not running")),
        Domain(clock, "broken", start_error=FakeError(dr.ERR_INTERNAL_ERROR, "monitor closed")),
        Domain(clock, "busy", start_error=FakeError(
            dr.ERR_INTERNAL_ERROR, "internal error: unable to execute QEMU command 'calc-dirty-rate': "
            "the dirty rate is already being measured."), rate=16),
        Domain(clock, "fine", rate=3),
    ]
    results = measure(domains, clock)[0]
    statuses = {name: result["status"] for name, result in results.items()}
    assert statuses == {"gone": "vanished", "old": "unsupported", "stopped": "skipped", "broken": "failed",
                        "busy": "measured", "fine": "measured"}
    assert results["busy"]["mib_per_s"] == 16.0 and "another measurement" in results["busy"]["error"]
    assert results["broken"]["error"] == "monitor closed"


def test_paused_and_stopped_domains_are_not_measured():
    clock = Clock()
    paused, crashed = Domain(clock, "paused", state=3), Domain(clock, "crashed", state=6)
    results, conn = measure([paused, crashed], clock)
    assert results["paused"]["status"] == "skipped" and results["paused"]["mib_per_s"] == 0.0
    assert results["crashed"]["status"] == "skipped" and results["crashed"]["mib_per_s"] is None
    assert paused.calls == crashed.calls == [] and conn.batches == [] and clock.sleeps == []


def test_non_default_modes_refused_on_tcg_only():
    clock = Clock()
    tcg, kvm = Domain(clock, "tcg", virt="qemu"), Domain(clock, "kvm", virt="kvm")
    results = measure([tcg, kvm], clock, mode="dirty-bitmap")[0]
    assert results["tcg"]["status"] == "unsupported" and "TCG" in results["tcg"]["error"]
    assert tcg.calls == [] and kvm.calls == [(1, 1)]
    assert results["kvm"]["status"] == "measured"


def test_dirty_ring_reports_per_vcpu_rates():
    clock = Clock()
    ring = Domain(clock, "ring", rate=12, extra={"dirtyrate.calc_mode": "dirty-ring",
                                                 "dirtyrate.vcpu.1.megabytes_per_second": 8,
                                                 "dirtyrate.vcpu.0.megabytes_per_second": 4})
    results = measure([ring], clock, mode="dirty-ring")[0]
    assert ring.calls == [(1, 2)]
    assert results["ring"]["mode"] == "dirty-ring" and results["ring"]["vcpu_mib_per_s"] == [4.0, 8.0]


def test_a_vanished_domain_during_the_wait_does_not_sink_the_others():
    clock = Clock()

    class OneByOne(Conn):
        def domainListGetStats(self, domains, stats):  # noqa: N802
            if len(domains) > 1:
                raise FakeError(dr.ERR_NO_DOMAIN, "Domain not found: no domain with matching uuid")
            return Conn.domainListGetStats(self, domains, stats)

    gone = Domain(clock, "gone", stats_error=FakeError(dr.ERR_NO_DOMAIN, "Domain not found"))
    other = Domain(clock, "other", stats_error=FakeError(dr.ERR_INTERNAL_ERROR, "monitor hung"))
    fine = Domain(clock, "fine", rate=7)
    clock.started = clock()
    results = dr.measure_dirty_rates(OneByOne(1), [gone, other, fine], 1, sleep=clock.sleep, clock=clock)
    assert results["gone"]["status"] == "vanished"
    assert results["other"]["status"] == "failed" and "monitor hung" in results["other"]["error"]
    assert results["fine"]["mib_per_s"] == 7.0


def test_no_stats_means_unsupported_or_stopped():
    clock = Clock()
    silent = Domain(clock, "silent")
    silent.stats = lambda seconds: {}
    stopped = Domain(clock, "stopped")
    stopped.stats = lambda seconds: {}
    stopped._state = 5
    results = measure([silent, stopped], clock)[0]
    assert results["silent"]["status"] == "unsupported"
    assert results["stopped"]["status"] == "skipped"


@pytest.mark.parametrize("seconds, mode", [(0, "page-sampling"), (61, "page-sampling"), (1, "bitmap"), (1.5, "page-sampling")])
def test_arguments_are_checked(seconds, mode):
    with pytest.raises(dr.DirtyRateError):
        dr.measure_dirty_rates(None, [], seconds, mode)


def test_stats_parsing():
    status, rate, extra = dr.parse_stats({"dirtyrate.calc_status": 2, "dirtyrate.calc_start_time": 8847,
                                          "dirtyrate.calc_period": 3, "dirtyrate.calc_mode": "page-sampling",
                                          "dirtyrate.megabytes_per_second": 0})
    assert (status, rate) == (2, 0.0)
    assert extra == {"start_time": 8847, "period_s": 3, "mode": "page-sampling", "vcpu_mib_per_s": None}
    assert dr.parse_stats({"dirtyrate.calc_status": 0})[:2] == (0, None)


def test_libvirt_enums_match_the_binding():
    libvirt = pytest.importorskip("libvirt")
    assert dr.MODES == {"page-sampling": libvirt.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING,
                        "dirty-bitmap": libvirt.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP,
                        "dirty-ring": libvirt.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING}
    assert (dr.CALC_UNSTARTED, dr.CALC_MEASURING, dr.CALC_MEASURED) == (
        libvirt.VIR_DOMAIN_DIRTYRATE_UNSTARTED, libvirt.VIR_DOMAIN_DIRTYRATE_MEASURING,
        libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED)
    assert dr.STATS_DIRTYRATE == libvirt.VIR_DOMAIN_STATS_DIRTYRATE
    assert (dr.ERR_INTERNAL_ERROR, dr.ERR_NO_SUPPORT, dr.ERR_NO_DOMAIN, dr.ERR_OPERATION_INVALID,
            dr.ERR_CONFIG_UNSUPPORTED, dr.ERR_OPERATION_UNSUPPORTED) == (
        libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_DOMAIN,
        libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED)


def test_real_test_driver_paths():
    """libvirt's test driver has no dirty-rate support: start fails with VIR_ERR_NO_SUPPORT."""
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test:///default")
    try:
        running = conn.lookupByName("test")
        paused = conn.createXML("<domain type='test'><name>paused</name><memory>1024</memory>"
                                "<os><type>hvm</type></os></domain>", 0)
        paused.suspend()
        gone = conn.createXML("<domain type='test'><name>gone</name><memory>1024</memory>"
                              "<os><type>hvm</type></os></domain>", 0)
        gone.destroy()      # transient: the handle now names no domain
        results = dr.measure_dirty_rates(conn, [running, paused, gone], 1)
        assert results["test"]["status"] == "unsupported"
        assert "virDomainStartDirtyRateCalc" in results["test"]["error"]
        assert results["paused"]["status"] == "skipped" and results["paused"]["mib_per_s"] == 0.0
        assert results["gone"]["status"] == "vanished"
    finally:
        conn.close()
