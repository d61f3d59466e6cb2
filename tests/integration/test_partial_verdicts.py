"""Provisional verdicts on the real stack (issue 17): while a real clip of several clips is analysed,
a PartialVerdict comes on `partial-verdicts` and at `GET .../result?partial=1` before the final
verdict and result, and says what vtest shows (people walking past: no squat) without inventing a
fault. The in-memory checks of what is withheld: tests/unit/judge/test_judge_partial.py."""
from __future__ import annotations

import subprocess
import time

import pytest

from shared.messages import AnalysisCompleted, AnalysisVerdict, PartialVerdict

pytestmark = pytest.mark.integration


def test_a_partial_verdict_comes_before_the_final_result(coach_stack, gateway, vtest_video, tmp_path, read_topic):
    clip = tmp_path / "vtest-10s.mp4"            # 100 frames at 10 fps: 5 clips (8, 24, 32, 32, 4 frames)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest_video), "-t", "10", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    with open(clip, "rb") as fh:
        r = gateway.post("/v1/analyses", files={"video": (clip.name, fh, "video/mp4")}, data={"sport": "squat"})
    assert r.status_code == 202, r.text
    aid = r.json()["id"]

    seen = []                                      # what ?partial=1 answered while the analysis ran
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = gateway.get(f"/v1/analyses/{aid}").json()["status"]
        if status in ("done", "failed"):
            break
        r = gateway.get(f"/v1/analyses/{aid}/result", params={"partial": 1})
        assert r.status_code in (200, 409), r.text
        if r.status_code == 200 and r.json().get("schema") == "coach.partial-verdict-document/1":
            seen.append(r.json())
        time.sleep(0.1)
    assert status == "done"
    assert seen, "no provisional verdict was readable while the analysis ran"
    first = seen[0]
    assert first["analysis_id"] == aid and 1 <= first["clips_posed"] < 5 and first["frames_total"] == 100
    assert first["faults"] == [] and "no squat repetitions found" in first["finding"]   # walkers, not squats

    final = gateway.get(f"/v1/analyses/{aid}/result", params={"partial": 1}).json()   # done: the result itself
    assert final["schema"] == "coach.result/2" and final["id"] == aid

    s = coach_stack.settings
    partials = read_topic(s, s.topics.partial_verdicts, PartialVerdict, 1, want=lambda m: m.analysis_id == aid)
    [verdict] = read_topic(s, s.topics.verdicts, AnalysisVerdict, 1, want=lambda m: m.analysis_id == aid)
    [done] = read_topic(s, s.topics.results, AnalysisCompleted, 1, want=lambda m: m.analysis_id == aid)
    assert partials and partials[0].sequence == 1 and partials[0].partial_key.endswith(f"{aid}/partial.json")
    assert partials[0].created_at < verdict.produced_at < done.produced_at     # ISO 8601 UTC: ordered as text
    assert verdict.finding and verdict.faults == []                            # the final verdict as before
