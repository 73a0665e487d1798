# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation planner's prediction step: how one live migration goes at a given
bandwidth (``predict_migration``: pre-copy, else auto-converge or post-copy, with the
reason, duration, MiB sent and downtime).
"""

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import PlanningError

# QEMU's defaults for auto-converge (cpu-throttle-initial / -increment / max).
THROTTLE_INITIAL_PCT = 20
THROTTLE_INCREMENT_PCT = 10
THROTTLE_MAX_PCT = 99
# Above this throttle a guest is too slow to be useful for minutes; post-copy
# (bounded duration, one network round trip per missing page) is kinder.
AUTO_CONVERGE_ACCEPTABLE_PCT = 50
# More pre-copy passes than this means the dirty rate is too close to the
# bandwidth for pre-copy to finish in a sensible time.
MAX_PRECOPY_ITERATIONS = 30


def predict_migration(memory_mib, dirty_rate_mib_per_s, bandwidth_mib_per_s, max_downtime_ms, backing='none', allow_post_copy=True,
                      disk_mib=0):
    """Predict one live migration.

    A migration that copies disk_mib MiB of disks (live_migrate's copy_storage) sends them
    first: libvirt starts the memory once its disk mirrors are in sync. Their time and
    MiB add to the memory's; the disk writes during the copy are left out.

    Pre-copy: pass 0 sends all memory; pass i re-sends what was dirtied during
    pass i-1 (dirty rate x pass duration, at most all memory).  Once what is
    left can be sent within the allowed downtime, the guest is paused and the
    rest sent (stop-and-copy).  Returns a dict with the chosen ``mode``
    (``pre_copy`` | ``auto_converge`` | ``post_copy``), ``reason``,
    ``iterations`` (pre-copy passes), ``transferred_mib``, ``duration_s``,
    ``downtime_ms`` (None for post-copy: the guest runs on the destination
    while pages are pulled) and ``throttle_pct``.
    """
    prediction = _predict_memory(memory_mib, dirty_rate_mib_per_s, float(bandwidth_mib_per_s), max_downtime_ms, backing,
                                 allow_post_copy)
    if disk_mib:
        prediction['transferred_mib'] += disk_mib
        prediction['duration_s'] += disk_mib / float(bandwidth_mib_per_s)
    return prediction


def _predict_memory(memory_mib, dirty_rate_mib_per_s, bandwidth, max_downtime_ms, backing, allow_post_copy):
    budget_mib = bandwidth * max_downtime_ms / 1000.0
    plain = _precopy(memory_mib, dirty_rate_mib_per_s, bandwidth, budget_mib, throttled=False)
    if plain is not None:
        iterations, sent, downtime_mib, _throttle = plain
        return _prediction('pre_copy', 'pre-copy converges after %d pass(es)' % iterations,
                           iterations, sent, bandwidth, downtime_mib, 0)
    why = ('dirty rate %.0f MiB/s is not below the %.0f MiB/s bandwidth' % (dirty_rate_mib_per_s, bandwidth)
           if dirty_rate_mib_per_s >= bandwidth else
           'pre-copy needs more than %d passes to get under %d ms of downtime' % (MAX_PRECOPY_ITERATIONS, max_downtime_ms))
    throttled = _precopy(memory_mib, dirty_rate_mib_per_s, bandwidth, budget_mib, throttled=True)
    if throttled is not None and throttled[3] <= AUTO_CONVERGE_ACCEPTABLE_PCT:
        iterations, sent, downtime_mib, throttle = throttled
        return _prediction('auto_converge', '%s; auto-converge gets there with %d%% vCPU throttle' % (why, throttle),
                           iterations, sent, bandwidth, downtime_mib, throttle)
    auto_converge_cost = ('auto-converge would need %d%% vCPU throttle' % throttled[3] if throttled is not None
                          else 'auto-converge does not converge even at %d%% throttle' % THROTTLE_MAX_PCT)
    if allow_post_copy and backing != 'hugetlb-1G':
        # One full pass, then the pages dirtied during it are pulled on demand.
        sent = memory_mib + min(memory_mib, dirty_rate_mib_per_s * memory_mib / bandwidth)
        return _prediction('post_copy', '%s; %s; post-copy bounds the migration to about two passes' % (why, auto_converge_cost),
                           1, sent, bandwidth, None, 0)
    if throttled is None:
        raise PlanningError('migration cannot converge: %s; %s; %s' % (
            why, auto_converge_cost,
            'post-copy is not allowed' if not allow_post_copy else 'post-copy of 1 GiB pages would stall vCPUs for a whole page per fault'))
    iterations, sent, downtime_mib, throttle = throttled
    fallback_reason = ('post-copy is not allowed' if not allow_post_copy
                       else 'post-copy with 1 GiB huge pages moves a whole 1 GiB page per fault')
    return _prediction('auto_converge', '%s; %s, but %s' % (why, auto_converge_cost, fallback_reason),
                       iterations, sent, bandwidth, downtime_mib, throttle)


def predict_for(migration, bandwidth_mib_per_s, max_downtime_ms, allow_post_copy):
    """predict_migration for ``migration`` (a Migration) at ``bandwidth_mib_per_s``; its
    PlanningError names the domain."""
    try:
        return predict_migration(migration.memory_mib, migration.dirty_rate_mib_per_s, bandwidth_mib_per_s, max_downtime_ms,
                                 migration.backing, allow_post_copy, migration.disk_copy_mib)
    except PlanningError as error:
        raise PlanningError('domain %s: %s' % (migration.domain, error.message), {'domain': migration.domain})


def _precopy(memory_mib, dirty_rate, bandwidth, budget_mib, throttled):
    """(passes, MiB sent, MiB sent while paused, final throttle %) or None if it does not converge."""
    remaining = float(memory_mib)
    sent = 0.0
    throttle = 0
    max_passes = MAX_PRECOPY_ITERATIONS + (THROTTLE_MAX_PCT - THROTTLE_INITIAL_PCT) // THROTTLE_INCREMENT_PCT + 1 if throttled else MAX_PRECOPY_ITERATIONS
    for passes in range(max_passes + 1):
        if remaining <= budget_mib:
            return passes, sent + remaining, remaining, throttle
        sent += remaining
        if throttled and passes >= 1:
            # QEMU starts throttling once a pass ends with too much dirtied.
            throttle = min(THROTTLE_MAX_PCT, THROTTLE_INITIAL_PCT if throttle == 0 else throttle + THROTTLE_INCREMENT_PCT)
        effective_rate = dirty_rate * (100 - throttle) / 100.0
        remaining = min(float(memory_mib), effective_rate * remaining / bandwidth)
    return None


def _prediction(mode, reason, iterations, sent_mib, bandwidth, downtime_mib, throttle):
    return {
        'mode': mode,
        'reason': reason,
        'iterations': iterations,
        'transferred_mib': sent_mib,
        'duration_s': sent_mib / bandwidth,
        'downtime_ms': None if downtime_mib is None else downtime_mib / bandwidth * 1000.0,
        'throttle_pct': throttle,
    }
