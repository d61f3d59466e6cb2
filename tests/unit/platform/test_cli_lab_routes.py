"""`coach pose run` / `bench-models` keep working though their code moved to the top-level lab/
(they need the tracker and pose together): the CLI routes them there."""
from __future__ import annotations

import importlib

from coach import cli


def test_every_lab_route_names_a_parsed_command_and_an_existing_handler():
    parser = cli.build_parser()
    for (cmd, sub), target in cli.LAB_COMMANDS.items():
        args = parser.parse_args([cmd, sub] + (["x.mp4"] if sub == "run" else []))
        assert (args.cmd, getattr(args, f"{cmd}_cmd")) == (cmd, sub)
        module, fn = target.split(":")
        assert callable(getattr(importlib.import_module(module), fn))


def test_coach_pose_run_reaches_its_handler(tmp_path, capsys):
    """A file that is no video: the lab handler's own error and exit code, not an argparse or
    attribute error."""
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    assert cli.main(["pose", "run", str(bad), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coach pose run:") and "not a readable image or video" in err
