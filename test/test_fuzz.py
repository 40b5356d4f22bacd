"""Fuzzing every parser of files we did not write, in CI: a fixed seed and a fixed budget.

Property: any input ends in a result or in the project's one-line error naming the file,
never a traceback, a hang or unbounded memory (test/fuzz_targets.py says how inputs are
made and what counts as a failure). Derandomized Hypothesis runs (the same inputs on
every machine), about a minute in all; the standing benchmark benchmarks/fuzz.py runs
the same targets for minutes per parser (docs/faults.md has its table).
"""
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fuzz_targets import TARGETS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PIL on damaged images

# inputs per parser: about a minute in all on a loaded 2-core machine (TFRecords are slow:
# each verification runs a tf.data pipeline)
BUDGET = {"off": 250, "obj": 250, "furniture_obj": 400, "idx": 400, "image": 300, "catalog": 250,
          "params": 300, "flags_yaml": 300, "tfrecord": 40, "deb": 300}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_never_fails_with_a_traceback(name):
    strategy, check = TARGETS[name]
    tmp = tempfile.mkdtemp(prefix="fuzz-{}-".format(name))

    @settings(max_examples=BUDGET[name], derandomize=True, database=None, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(value):
        failure = check(value, tmp)
        assert failure is None, "{}: {}".format(failure.key, failure.text)
    prop()


def test_budget_names_every_target():
    assert sorted(BUDGET) == sorted(TARGETS)


def _found():
    import json
    import os
    with open(os.path.join(os.path.dirname(__file__), "fuzz_found.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("parser,kind,data", _found(), ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "")
def test_inputs_the_benchmark_found_stay_fixed(parser, kind, data):
    """Every input on which benchmarks/fuzz.py found a failure (the first of each kind, kept
    in fuzz_found.json as hex): each ended in a traceback or a message of several lines."""
    value = (data[0], bytes.fromhex(data[1])) if isinstance(data, list) else bytes.fromhex(data)
    failure = TARGETS[parser][1](value, tempfile.mkdtemp(prefix="found-"))
    assert failure is None, "{} ({} before): {}".format(failure.key, kind, failure.text)
