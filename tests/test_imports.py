"""Imports that match the claims: building the parser and printing any ``--help`` stay light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "cv2", "scipy", "medsr.mos.study")

_PROBE = """
import json, sys
from medsr.cli import build_parser

def commands(parser, prefix=()):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from commands(sub, (*prefix, name))

parser = build_parser()
shown = []
for command in [(), *commands(parser)]:
    try:
        parser.parse_args([*command, "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0, (command, exit_.code)
        shown.append(" ".join(command))
print(json.dumps({"shown": shown, "modules": sorted(sys.modules)}))
"""


def _probe(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_parser_and_every_help_import_no_heavy_library():
    result = _probe(_PROBE)
    assert {"", "prepare", "evaluate", "run", "mos", "mos create", "mos serve"} <= set(result["shown"])
    loaded = [name for name in HEAVY if name in result["modules"]]
    assert loaded == [], f"building the parser imported {loaded}"


def test_choices_and_layout_need_only_the_standard_library():
    before = _probe("import json, sys; print(json.dumps({'modules': sorted(sys.modules)}))")
    after = _probe(
        "import json, sys; import medsr.choices, medsr.layout; print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    added = {name.split(".")[0] for name in set(after["modules"]) - set(before["modules"])}
    assert added - set(sys.stdlib_module_names) == {"medsr"}
