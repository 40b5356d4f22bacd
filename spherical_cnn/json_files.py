"""Reading a JSON file that may be missing or unreadable (a run's record, a manifest, results).

One function for the commands, studies and tools that treat such a file as absent.
"""
import json


def read_json(path):
    """The JSON value in ``path``, or None when the file is missing, unreadable or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
