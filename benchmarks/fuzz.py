"""The standing fuzz benchmark: every parser of files we did not write, for a time budget each.

    python benchmarks/fuzz.py --seconds 600                 # all parsers, 10 minutes each
    python benchmarks/fuzz.py --parsers off,idx --seconds 60 --json fuzz.json

Runs the targets of test/fuzz_targets.py (Hypothesis strategies built from each format's
pieces, then mutated byte-wise) one parser after another, in batches of 200 inputs with
a new seed per batch, until the parser's budget is spent. An input fails when the parser
ends in anything but a result or the project's one-line error naming the file (a
traceback, a message of several lines), or runs past --hang seconds. Prints one row per
parser: inputs tried, distinct failures (by exception type and the line that raised),
the slowest input and the process's peak memory after it; --json writes the rows and one
example input of each failure (hex) for reproducing it.
"""
import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "test")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SPHERICAL_CNN_CACHE", tempfile.mkdtemp(prefix="fuzz-cache-"))


class Hang(Exception):
    """An input ran past the --hang limit."""


def _on_alarm(signum, frame):
    raise Hang()


def _describe(value):
    if isinstance(value, bytes):
        return {"hex": value.hex(), "bytes": len(value)}
    if isinstance(value, tuple):
        return [_describe(v) for v in value]
    return repr(value)[:2000]


def fuzz(name, seconds, seed, hang):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    import fuzz_targets
    strategy, check = fuzz_targets.TARGETS[name]
    stats = {"parser": name, "inputs": 0, "failures": {}, "slowest_s": 0.0, "slowest_bytes": 0}
    deadline = time.monotonic() + seconds
    signal.signal(signal.SIGALRM, _on_alarm)
    with tempfile.TemporaryDirectory(prefix="fuzz-{}-".format(name)) as tmp:
        batch = 0
        while time.monotonic() < deadline:
            @hseed(seed * 1_000_003 + batch)
            @settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck), derandomize=False)
            @given(strategy)
            def one(value):
                if time.monotonic() >= deadline:
                    return
                t0 = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, hang)
                try:
                    failure = check(value, tmp)
                except Hang:
                    failure = fuzz_targets.Failure("Hang", "-", "ran past {} s".format(hang))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                dt = time.perf_counter() - t0
                stats["inputs"] += 1
                if dt > stats["slowest_s"]:
                    stats["slowest_s"] = dt
                    stats["slowest_bytes"] = len(value[1] if isinstance(value, tuple) else value)
                if failure is not None and failure.key not in stats["failures"]:
                    stats["failures"][failure.key] = {"text": failure.text, "input": _describe(value)}
                    print("  {}: new failure {}: {}".format(name, failure.key, failure.text[:200]), flush=True)
            one()
            batch += 1
    stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return stats


def main(argv=None):
    import fuzz_targets
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parsers", default=",".join(fuzz_targets.TARGETS),
                   help="comma-separated: " + ", ".join(fuzz_targets.TARGETS))
    p.add_argument("--seconds", type=float, default=60.0, help="budget per parser")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang", type=float, default=30.0, help="seconds after which one input counts as a hang")
    p.add_argument("--json", default=None, help="write the rows and the failures' inputs here")
    a = p.parse_args(argv)
    rows = []
    print("| parser | inputs tried | distinct failures | slowest input | peak memory |")
    print("|---|---|---|---|---|", flush=True)
    for name in a.parsers.split(","):
        stats = fuzz(name, a.seconds, a.seed, a.hang)
        rows.append(stats)
        print("| {} | {} | {} | {:.2f} s ({} bytes) | {:.0f} MiB |".format(
            name, stats["inputs"], len(stats["failures"]), stats["slowest_s"], stats["slowest_bytes"],
            stats["peak_rss_mib"]), flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"seconds_per_parser": a.seconds, "seed": a.seed, "rows": rows}, f, indent=1)
    return 1 if any(r["failures"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
