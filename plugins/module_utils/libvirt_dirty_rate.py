# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure the memory dirty rate of running domains through libvirt.

``virDomainStartDirtyRateCalc`` (QEMU's ``calc-dirty-rate``) starts a measurement
of ``seconds`` seconds; the result shows in the ``dirtyrate`` group of the domain
stats (``virConnectGetAllDomainStats`` with ``VIR_DOMAIN_STATS_DIRTYRATE``):
``dirtyrate.calc_status`` (libvirt's virDomainDirtyRateStatus: 0 unstarted,
1 measuring, 2 measured), ``dirtyrate.calc_start_time``, ``dirtyrate.calc_period``,
``dirtyrate.calc_mode`` and, once measured, ``dirtyrate.megabytes_per_second``
(QEMU computes it in MiB/s and rounds down to an integer).

Every domain's measurement is started first and then waited for once, so N
domains cost one period, not N.

Mode: page-sampling by default, always.  QEMU hashes a sample of guest pages
(512 per GiB) at the start and the end of the period and scales the share of
pages that changed.  It reads guest memory and changes nothing in KVM.  The
dirty-bitmap mode turns KVM dirty logging on for the period and off again;
turning it off drops a pre-split HOLD (KVM_SPLIT_HUGE_PAGES) on the domain and
lets huge pages come back, so a dirty-bitmap measurement taken after a
pre-split undoes it.  Dirty-ring needs KVM's dirty ring enabled in QEMU.  Both
may be chosen explicitly; on a TCG (``type='qemu'``) domain they are refused:
calc-dirty-rate in dirty-bitmap mode killed a TCG guest of QEMU 7.2 in the lab,
and TCG has no dirty ring.
"""

import time
import xml.etree.ElementTree as ET

from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import libvirt_constant

# virDomainDirtyRateCalcFlags
MODES = {
    'page-sampling': libvirt_constant('VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING', 0),
    'dirty-bitmap': libvirt_constant('VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP', 1),
    'dirty-ring': libvirt_constant('VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING', 2),
}
DEFAULT_MODE = 'page-sampling'
# virDomainDirtyRateStatus
CALC_UNSTARTED = libvirt_constant('VIR_DOMAIN_DIRTYRATE_UNSTARTED', 0)
CALC_MEASURING = libvirt_constant('VIR_DOMAIN_DIRTYRATE_MEASURING', 1)
CALC_MEASURED = libvirt_constant('VIR_DOMAIN_DIRTYRATE_MEASURED', 2)
STATS_DIRTYRATE = libvirt_constant('VIR_DOMAIN_STATS_DIRTYRATE', 1 << 9)
# QEMU's calc-dirty-rate accepts 1..60 seconds (libvirt checks the same bounds).
MIN_SECONDS = 1
MAX_SECONDS = 60
# Beyond the period: libvirt's job, QEMU's sampling thread, a loaded host.
DEFAULT_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
# Domain states for which a measurement makes sense / is pointless.
STATE_RUNNING = libvirt_constant('VIR_DOMAIN_RUNNING', 1)
STATE_PAUSED = libvirt_constant('VIR_DOMAIN_PAUSED', 3)

# Result statuses
MEASURED = 'measured'
SKIPPED = 'skipped'
UNSUPPORTED = 'unsupported'
VANISHED = 'vanished'
FAILED = 'failed'
TIMEOUT = 'timeout'

# libvirt error codes (virErrorNumber), spelled out so this file imports without libvirt.
ERR_INTERNAL_ERROR = 1
ERR_NO_SUPPORT = 3
ERR_NO_DOMAIN = 42
ERR_OPERATION_INVALID = 55
ERR_CONFIG_UNSUPPORTED = 67
ERR_OPERATION_UNSUPPORTED = 84
UNSUPPORTED_CODES = (ERR_NO_SUPPORT, ERR_CONFIG_UNSUPPORTED, ERR_OPERATION_UNSUPPORTED)
ALREADY_MEASURING = 'already being measured'


class DirtyRateError(Exception):
    """Invalid arguments for a measurement."""


def validate(seconds, mode):
    if mode not in MODES:
        raise DirtyRateError('dirty rate mode must be one of %s, got %r' % (', '.join(sorted(MODES)), mode))
    if not isinstance(seconds, int) or not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise DirtyRateError('dirty rate period must be %d to %d seconds, got %r' % (MIN_SECONDS, MAX_SECONDS, seconds))


def _result(status, mode, seconds, error=None, rate=None):
    return {'status': status, 'mib_per_s': rate, 'mode': mode, 'period_s': seconds, 'error': error,
            'start_time': None, 'vcpu_mib_per_s': None}


def _error_code(exc):
    getter = getattr(exc, 'get_error_code', None)
    return getter() if getter else None


def classify_start_error(exc):
    """(status, message) for a failed virDomainStartDirtyRateCalc; status None means
    another measurement is in progress on the domain and its result can be used."""
    code = _error_code(exc)
    message = str(exc)
    if ALREADY_MEASURING in message:
        return None, message
    if code == ERR_NO_DOMAIN:
        return VANISHED, 'domain vanished: %s' % message
    if code in UNSUPPORTED_CODES:
        return UNSUPPORTED, message
    if code == ERR_OPERATION_INVALID:
        return SKIPPED, message     # typically "domain is not running": it stopped meanwhile
    return FAILED, message


def parse_stats(stats):
    """(calc_status or None, MiB/s or None, extra) from one domain's dirtyrate stats."""
    status = stats.get('dirtyrate.calc_status')
    rate = stats.get('dirtyrate.megabytes_per_second')
    vcpus = {}
    for key, value in stats.items():
        parts = key.split('.')
        if len(parts) == 4 and parts[:2] == ['dirtyrate', 'vcpu'] and parts[3] == 'megabytes_per_second':
            vcpus[int(parts[2])] = float(value)
    extra = {'start_time': stats.get('dirtyrate.calc_start_time'),
             'period_s': stats.get('dirtyrate.calc_period'),
             'mode': stats.get('dirtyrate.calc_mode'),
             'vcpu_mib_per_s': [vcpus[index] for index in sorted(vcpus)] if vcpus else None}
    return status, None if rate is None else float(rate), extra


def _virt_type(domain):
    try:
        return ET.fromstring(domain.XMLDesc(0)).get('type')
    except Exception:  # pylint: disable=broad-except
        return None


class _Pending:
    __slots__ = ('name', 'domain', 'adopted')

    def __init__(self, name, domain, adopted):
        self.name = name
        self.domain = domain
        self.adopted = adopted


def measure_dirty_rates(conn, domains, seconds=1, mode=DEFAULT_MODE, timeout=None,
                        sleep=time.sleep, clock=time.monotonic):
    """Dirty rate of each domain: {name: result}.

    ``domains`` are virDomain objects of ``conn``.  A result has ``status`` (measured,
    skipped, unsupported, vanished, failed, timeout), ``mib_per_s`` (float; 0.0 for
    paused domains, None unless measured), ``mode``, ``period_s``, ``start_time``,
    ``vcpu_mib_per_s`` (dirty-ring only) and ``error``.  One domain's failure never
    affects the others.  ``timeout`` (seconds from the first start) defaults to the
    period plus DEFAULT_GRACE_S.
    """
    validate(seconds, mode)
    flags = MODES[mode]
    timeout = seconds + DEFAULT_GRACE_S if timeout is None else float(timeout)
    results = {}
    pending = []
    first_start = None
    for domain in domains:
        name = domain.name()
        try:
            state = domain.state()[0]
        except Exception as exc:  # pylint: disable=broad-except
            status, message = classify_start_error(exc)
            results[name] = _result(status or FAILED, mode, seconds, message)
            continue
        if state == STATE_PAUSED:
            results[name] = _result(SKIPPED, mode, seconds, 'paused: a paused guest dirties no memory', 0.0)
            continue
        if state != STATE_RUNNING:
            results[name] = _result(SKIPPED, mode, seconds, 'not running (state %d)' % state)
            continue
        if mode != DEFAULT_MODE and _virt_type(domain) == 'qemu':
            results[name] = _result(
                UNSUPPORTED, mode, seconds,
                '%s mode refused on a TCG domain: QEMU 7.2 crashed a TCG guest measured in dirty-bitmap mode, '
                'and TCG has no dirty ring; use page-sampling' % mode)
            continue
        start = getattr(domain, 'startDirtyRateCalc', None)
        if start is None:
            results[name] = _result(UNSUPPORTED, mode, seconds,
                                    'libvirt-python older than 7.2 has no virDomainStartDirtyRateCalc')
            continue
        adopted = False
        try:
            start(seconds, flags)
        except Exception as exc:  # pylint: disable=broad-except
            status, message = classify_start_error(exc)
            if status is not None:
                results[name] = _result(status, mode, seconds, message)
                continue
            adopted = True      # someone else's measurement runs: use its result
        if first_start is None:
            first_start = clock()
        pending.append(_Pending(name, domain, adopted))
    if not pending:
        return results
    deadline = first_start + timeout
    # No result can exist before one period has passed.
    sleep(max(0.0, first_start + seconds - clock()))
    while pending:
        stats = _stats(conn, pending, results, mode, seconds)
        still = []
        for item in pending:
            if item.name in results:
                continue
            entry = stats.get(item.name)
            if entry is None:
                still.append(item)
                continue
            status, rate, extra = parse_stats(entry)
            if status is None:
                results[item.name] = _no_stats(item.domain, mode, seconds)
            elif status == CALC_MEASURED and rate is not None:
                result = _result(MEASURED, extra['mode'] or mode, extra['period_s'] or seconds, None, rate)
                result['start_time'] = extra['start_time']
                result['vcpu_mib_per_s'] = extra['vcpu_mib_per_s']
                if item.adopted:
                    result['error'] = 'another measurement was in progress; its result is reported'
                results[item.name] = result
            else:
                still.append(item)
        pending = still
        if not pending:
            break
        now = clock()
        if now >= deadline:
            for item in pending:
                results[item.name] = _result(TIMEOUT, mode, seconds,
                                             'no result %.1f s after the measurement started' % timeout)
            break
        sleep(min(POLL_INTERVAL_S, deadline - now))
    return results


def _no_stats(domain, mode, seconds):
    try:
        active = domain.isActive()
    except Exception as exc:  # pylint: disable=broad-except
        if _error_code(exc) == ERR_NO_DOMAIN:
            return _result(VANISHED, mode, seconds, 'domain vanished during the measurement')
        active = True
    if not active:
        return _result(SKIPPED, mode, seconds, 'domain stopped during the measurement')
    return _result(UNSUPPORTED, mode, seconds, 'libvirt reports no dirtyrate statistics for this domain')


def _stats(conn, pending, results, mode, seconds):
    """{name: stats dict} for the pending domains.  One call for all of them; when that
    fails (a domain vanished, say) one call each, so one bad domain sinks nobody else."""
    domains = [item.domain for item in pending]
    try:
        return dict((domain.name(), stats) for domain, stats in
                    conn.domainListGetStats(domains, STATS_DIRTYRATE))
    except Exception:  # pylint: disable=broad-except
        pass
    found = {}
    for item in pending:
        try:
            for domain, stats in conn.domainListGetStats([item.domain], STATS_DIRTYRATE):
                found[domain.name()] = stats
        except Exception as exc:  # pylint: disable=broad-except
            code = _error_code(exc)
            status = VANISHED if code == ERR_NO_DOMAIN else FAILED
            results[item.name] = _result(status, mode, seconds, 'reading dirtyrate statistics: %s' % exc)
    return found
