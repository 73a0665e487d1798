"""Every module, fed random and hostile option values one at a time (hypothesis): its
result is valid JSON (no NaN or infinity), a failure is one line without a traceback and
never ``changed``, and a number outside its documented range or a text with a control
character is refused by a message that names the option.

The options and their types come from each module's DOCUMENTATION, so a new option is fed
too. Libvirt is its test driver (test:///default); the modules run in this process."""

import contextlib
import io
import json
import re

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("libvirt")

from ansible_collections.presplit.kvm.plugins.modules import (  # noqa: E402
    evacuation_plan, host_info, live_migrate, migration_progress, migration_report, placement_facts, split_huge_pages)

# A valid call of each module; one option at a time is replaced by a hostile value.
BASES = {
    live_migrate: {"name": "test", "uri": "test:///default", "destination_uri": "test:///default",
                   "_ansible_check_mode": True},
    placement_facts: {"uri": "test:///default", "kernel_mode": "none", "measure_dirty_rate": False},
    migration_progress: {"uri": "test:///default", "domains": ["test"]},
    host_info: {"uri": "test:///default"},
    split_huge_pages: {"uri": "test:///default", "domains": ["test"], "_ansible_check_mode": True},
    evacuation_plan: {"hosts": [{"name": "a", "memory_free_mib": 100}, {"name": "b", "memory_free_mib": 100}],
                      "domains": [{"name": "d", "host": "a", "memory_mib": 10}], "drain": ["a"]},
    migration_report: {"results": [{"domain": "d", "status": "migrated"}]},
}
# Options the test keeps as the base has them: where the module writes, and what would make
# it wait (a real dirty-rate measurement) rather than answer.
KEPT = {"dest_dir", "measure_dirty_rate", "run_dir", "state_dir", "wait_s"}
CONTROL = st.sampled_from(["\n", "\r", "\x00", "\x1b", "\x7f", "\x85"])
WITH_CONTROL = st.builds(lambda before, control, after: before + control + after,
                         st.text(max_size=8), CONTROL, st.text(max_size=8))
TEXT = st.one_of(st.text(max_size=30), WITH_CONTROL)
NUMBERS = {
    "int": st.integers(-(1 << 70), 1 << 70),
    "float": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(1 << 40), 1 << 40)),
}
RANGE_RE = re.compile(r"(-?[0-9.]+) to (-?[0-9.]+)")


def options_of(module):
    return yaml.safe_load(module.DOCUMENTATION).get("options", {})


def value_for(spec):
    if spec.get("choices"):
        choices = st.sampled_from(spec["choices"])
        return st.lists(choices, max_size=2) if spec.get("type") == "list" else choices
    kind = spec.get("type", "str")
    if kind in NUMBERS:
        return NUMBERS[kind]
    if kind == "bool":
        return st.booleans()
    if kind == "list" and spec.get("elements") == "str":
        return st.lists(TEXT, min_size=1, max_size=3)
    if kind in ("str", "path"):
        return TEXT
    return None


def fields():
    """(module, path, spec): every option, and every suboption of evacuation_plan's lists and dicts."""
    for module in BASES:
        for name, spec in options_of(module).items():
            if name in KEPT or value_for(spec) is None and not spec.get("suboptions"):
                continue
            if spec.get("suboptions"):
                for sub, sub_spec in spec["suboptions"].items():
                    if value_for(sub_spec) is not None:
                        yield module, (name, sub), sub_spec
            else:
                yield module, (name,), spec


FIELDS = list(fields())


def run(module, args, tmp_dir):
    if module is migration_report:
        args = dict(args, dest_dir=str(tmp_dir))
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        with pytest.raises(SystemExit):
            module.main()

    result = json.loads(out.getvalue())
    # Ansible echoes the arguments (a NaN given is a NaN echoed); the module's own fields must be JSON.
    result.pop("invocation", None)
    json.dumps(result, allow_nan=False)
    return result


def with_value(base, path, value):
    args = json.loads(json.dumps(base))
    if len(path) == 1:
        args[path[0]] = value
    elif isinstance(args.get(path[0]), list):
        args[path[0]][0][path[1]] = value
    else:
        args[path[0]] = {path[1]: value}
    return args


def documented_range(spec):
    text = " ".join(spec["description"]) if isinstance(spec["description"], list) else spec["description"]
    match = RANGE_RE.search(text)
    return (float(match.group(1)), float(match.group(2))) if match else None


def is_number_out_of(value, bounds):
    return bounds is not None and isinstance(value, (int, float)) and not bounds[0] <= value <= bounds[1]


def has_control(value):
    texts = value if isinstance(value, list) else [value]
    return any(isinstance(t, str) and any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in t) for t in texts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_values_get_one_line_errors_naming_the_option(data, tmp_path):
    module, path, spec = data.draw(st.sampled_from(FIELDS), label="option")
    value = data.draw(value_for(spec), label="value")
    result = run(module, with_value(BASES[module], path, value), tmp_path)
    if not result.get("failed"):
        assert not is_number_out_of(value, documented_range(spec)) and not has_control(value), result
        return
    message = result["msg"]
    assert "\n" not in message and "Traceback" not in message, message
    assert not result.get("changed"), result
    if is_number_out_of(value, documented_range(spec)) or has_control(value):
        assert path[-1] in message, message


def test_every_module_and_its_numbers_are_covered():
    assert set(module for module, _path, _spec in FIELDS) == set(BASES)
    undocumented = [(module.__name__, path) for module, path, spec in FIELDS
                    if spec.get("type") in NUMBERS and documented_range(spec) is None]
    assert undocumented == [], 'numbers without a documented range ("A to B" in the description)'
