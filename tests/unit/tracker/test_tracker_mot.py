"""The multi-person tracker (services/tracker/mot): what a user would notice.

Synthetic parts (fast): the Kalman filter follows constant motion, the athlete policies and their
reasons, ids through two people crossing, stitching a person who left and came back, merging two
tracks on one person. Real video (vtest.avi): every frame once and in order, the detection budget
on a static scene, nobody -> NoPersonFound; the evaluation set: the athlete is reported absent
while away and found again after coming back (exit_reentry case).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from services.tracker.geometry import iou_xywh
from services.tracker.mot import choice as ch
from services.tracker.mot.association import assign, iou_matrix
from services.tracker.mot.kalman import BoxKalman
from services.tracker.mot.multi import MotConfig, MultiTracker, Obs, Track
from services.tracker.results import NoPersonFound
from shared.video import read_frames

DATA = "/usr/share/doc/opencv-doc/examples/data"
VTEST, BOX_PNG = f"{DATA}/vtest.avi", f"{DATA}/box.png"
needs_media = pytest.mark.skipif(not (os.path.exists(VTEST) and os.path.exists(BOX_PNG)), reason="apt-get install opencv-doc")


# ------------------------------------------------------------------ synthetic

def test_kalman_follows_constant_motion_and_keeps_predicting():
    kf = BoxKalman(np.array([100, 100, 40, 100], float))
    for t in range(1, 15):
        kf.predict()
        kf.update(np.array([100 + 5 * t, 100, 40, 100], float))
    for _ in range(5):                                   # no measurement: it goes on at the same speed
        kf.predict()
    assert abs(kf.box[0] - (100 + 5 * 19)) < 6 and abs(kf.box[1] - 100) < 3
    assert 0.04 < kf.speed < 0.06                        # 5 px / 100 px box


def test_colour_search_with_a_collapsed_box_finds_nothing_instead_of_failing():
    # a track whose Kalman box has shrunk to a negative width: the analysis used to fail with an
    # OpenCV error (camera_pan, test seed 104, started without a box: `coach tracker eval --choice`)
    from services.tracker.mot import appearance as app

    frame = np.full((100, 100, 3), 128, np.uint8)
    desc = np.ones((3, 136), np.float32)
    weights = np.ones(136)
    assert app.search(frame, desc, weights, np.array([50.0, 50.0]), -3.0, 80.0, 0.0) is None
    assert app.search(frame, desc, weights, np.array([50.0, 50.0]), 10.0, -5.0, 0.0) is None
    assert app.search(frame, desc, weights, np.array([50.0, 50.0]), 10.0, 30.0, 10.0) is not None


def test_assignment_respects_the_minimum_score():
    score = np.array([[0.9, 0.1], [0.8, 0.2]])
    pairs, rows, cols = assign(score, 0.5)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [20, 20, 5, 5]])).round(3).tolist() == [[0.333, 0.0]]


def _history(boxes, angles=None) -> dict:
    return {k: Obs(np.asarray(b, np.float32), 0.9, "detected", None if angles is None else angles[k])
            for k, b in enumerate(boxes) if b is not None}


def test_most_active_prefers_the_exercising_person_to_a_walker_and_a_bystander():
    n, fps = 90, 30.0
    # athlete: in every frame, squats (the box height changes) and jumps
    athlete = [(300, 200 + 40 * abs(np.sin(k / 8)), 80, 200 - 40 * abs(np.sin(k / 8))) for k in range(n)]
    # walker: crosses at 10 px/frame for a third of the clip
    walker = [(20 + 10 * k, 220, 70, 190) if k < 30 else None for k in range(n)]
    # bystander: stands still the whole clip
    bystander = [(600, 220, 70, 190)] * n
    cands = [ch.describe_track(i, _history(b), n, 480, fps) for i, b in enumerate((athlete, walker, bystander))]
    best, reason, alts = ch.choose(cands, "most_active")
    assert best.track_id == 0
    assert reason.startswith("most active") and "100% of frames" in reason and "body heights/s" in reason
    # the other policies, with their reasons
    big = [(100, 50, 150, 400)] * 40 + [None] * 50
    cands = [ch.describe_track(i, _history(b), n, 480, fps) for i, b in enumerate((athlete, big))]
    assert ch.choose(cands, "largest")[0].track_id == 1
    late = [None] * 10 + athlete[10:]
    cands = [ch.describe_track(i, _history(b), n, 480, fps) for i, b in enumerate((late, big))]
    best, reason, _ = ch.choose(cands, "first_seen")
    assert best.track_id == 1 and "first seen (frame 0" in reason
    with pytest.raises(ValueError):
        ch.choose(cands, "tallest")


def test_close_candidates_are_listed_as_alternatives():
    n = 60
    a = [(100 + k, 100, 50, 150) for k in range(n)]
    b = [(300 + k, 100, 50, 150) for k in range(n)]
    cands = [ch.describe_track(i, _history(x), n, 480, 30.0) for i, x in enumerate((a, b))]
    _, reason, alts = ch.choose(cands, "most_active")
    assert len(alts) == 1 and "close: track" in reason


def _track(tid: int, frames: range, x0: float, colour, fps_step: float = 4.0) -> Track:
    """A synthetic track walking right; its appearance one flat colour."""
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:] = colour
    from services.tracker.detector import Detection
    from services.tracker.mot import appearance as app
    desc = app.describe(frame, np.array([50, 20, 40, 120], float), np.ones(136))
    first = frames[0]
    tr = Track(tid, first, Detection(np.array([x0, 100, 40, 120], np.float32), 0.95), desc)
    tr.hits = 5
    for k in frames:
        tr.history[k] = Obs(np.array([x0 + fps_step * (k - first), 100, 40, 120], np.float32), 0.9, "detected")
    return tr


def test_a_person_who_left_and_came_back_is_one_track_after_stitching():
    mt = MultiTracker(detector=None, fps=10.0)
    red, blue = (30, 30, 200), (200, 60, 20)
    out = mt._stitch([_track(0, range(0, 30), 100, red), _track(1, range(0, 80), 400, blue),
                      _track(2, range(60, 80), 150, red)])       # red back after 3 s, blue never left
    ids = {tr.id: sorted(tr.history) for tr in out}
    assert set(ids) == {0, 1}
    assert ids[0] == list(range(0, 30)) + list(range(60, 80))
    # someone else (blue) coming in later is not joined to red
    out = MultiTracker(detector=None, fps=10.0)._stitch([_track(0, range(0, 30), 100, red), _track(2, range(60, 80), 150, blue)])
    assert len(out) == 2


def test_two_tracks_on_one_person_are_merged():
    mt = MultiTracker(detector=None, fps=30.0)
    red = (30, 30, 200)
    a = _track(0, range(0, 40), 100, red)
    for k in range(30, 40):                                        # a lags on its local tracker...
        a.history[k].state = "tracked"
    b = _track(1, range(30, 70), 100 + 4 * 30 + 5, red)          # ...a detection starts b beside it, b follows on
    out = mt._merge_duplicates([a, b])
    assert len(out) == 1 and sorted(out[0].history) == list(range(70))
    assert all(out[0].history[k].state == "detected" for k in range(30, 40))   # the detections win
    # two people walking side by side, both detected in every frame, stay two
    c, d = _track(2, range(0, 40), 100, red), _track(3, range(0, 40), 130, red)
    assert len(mt._merge_duplicates([c, d])) == 2


class FakeDetector:
    """Detections of the people painted by `crossing_frames`: exact boxes, the one behind missing
    while the one in front covers it (a detector sees the person in front)."""

    def __init__(self):
        self.passes, self.boxes = 0, []

    def _dets(self, win=None):
        from services.tracker.detector import Detection
        self.passes += 1
        out = []
        for i, b in enumerate(self.boxes):
            hidden = any(j > i and iou_xywh(b, o) > 0.05 for j, o in enumerate(self.boxes))
            inside = win is None or (b[0] >= win[0] and b[0] + b[2] <= win[0] + win[2])
            if not hidden and inside:
                out.append(Detection(np.array(b, np.float32), 0.95))
        return out

    def detect(self, frame, person_height=None, min_score=None):
        return self._dets()

    def detect_in_region(self, frame, box, context=2.0, min_score=None):
        return self._dets(box)

    def _merge(self, dets, wid, hgt):
        return [d for k, d in enumerate(dets) if all(iou_xywh(d.bbox_px, e.bbox_px) < 0.9 for e in dets[:k])]


def crossing_frames(n: int = 60):
    """Two people walk towards each other on one line and cross (the blue one in front); then
    walk on. -> frames and each frame's boxes [red, blue]."""
    out = []
    for t in range(n):
        frame = np.full((240, 360, 3), 128, np.uint8)
        boxes = [(40 + 4 * t, 90, 24, 70), (296 - 4 * t, 92, 24, 70)]
        for (x, y, w, h), (top, bottom) in zip(boxes, (((40, 40, 220), (60, 60, 60)), ((220, 80, 20), (20, 160, 220)))):
            frame[y:y + h // 2, x:x + w] = top
            frame[y + h // 2:y + h, x:x + w] = bottom
        out.append((frame, boxes))
    return out


def test_ids_survive_two_people_crossing():
    """ByteTrack-style association + Kalman + appearance: after the crossing (the red one hidden
    behind the blue one for a few frames), each id is still on the person it started on."""
    det = FakeDetector()
    mt = MultiTracker(det, fps=10.0, config=MotConfig(foreground=False))
    seq = crossing_frames()
    for frame, boxes in seq:
        det.boxes = boxes
        mt.step(frame)
    tracks = mt.finish()
    for person in (0, 1):
        ids = set()
        for tr in tracks:
            for k, o in tr.history.items():
                apart = iou_xywh(np.array(seq[k][1][0], float), np.array(seq[k][1][1], float)) == 0
                if apart and iou_xywh(o.box, np.array(seq[k][1][person], float)) > 0.5:
                    ids.add(tr.id)
        assert len(ids) == 1, f"person {person} went by ids {ids}"
    assert len({tr.id for tr in tracks}) == 2


# ------------------------------------------------------------------ real video

@pytest.fixture(scope="module")
def detector():
    from services.tracker.detector import PersonDetector
    return PersonDetector()


@pytest.fixture(scope="module")
def vtest_frames() -> list[np.ndarray]:
    if not os.path.exists(VTEST):
        pytest.fail(f"{VTEST} missing: scripts/setup.sh installs Debian's opencv-doc")
    out = read_frames(cv2.VideoCapture(VTEST), 60)
    assert len(out) == 60
    return out


def run(tracker, frames):
    out = []
    for f in frames:
        out += tracker.push(f)
    return out + tracker.finish()


@needs_media
def test_every_frame_once_in_order_and_everyone_kept(vtest_frames, detector):
    from services.tracker.mot import MotAthleteTracker
    tracker = MotAthleteTracker(detector=detector, fps=10.0)
    out = run(tracker, vtest_frames)
    assert [ft.index for ft in out] == list(range(len(vtest_frames)))
    assert all((ft.bbox_px is None) == (ft.state == "lost") for ft in out)
    choice = tracker.choice
    assert choice.reason.startswith("most active (score") and "% of frames" in choice.reason
    # the three people of the first frame are followed for >= 1 s (10 frames) and kept
    kept = {a["track_id"]: a for a in tracker.athletes}
    assert len(kept) >= 3 and choice.track_id in kept
    for a in kept.values():
        assert len(a["frames"]) == len(a["boxes_px"]) >= 10 and a["seconds"] >= 1.0
    assert sum(ft.bbox_px is not None for ft in out) >= 0.8 * len(out)
    # the athlete's box is on a person detected in a frame where faces are visible
    box = out[5].bbox_px
    assert box is not None and max(iou_xywh(box, d.bbox_px) for d in detector.detect(vtest_frames[5])) > 0.4


@needs_media
def test_detection_budget_on_a_static_scene(vtest_frames, detector):
    """Nothing moves: one whole-image detection, then a window pass per person now and then,
    not a whole-image detection per frame (41 passes at 768x576)."""
    mt = MultiTracker(detector, fps=10.0)
    start = detector.passes
    still = [vtest_frames[0]] * 40
    for f in still:
        mt.step(f)
    passes = detector.passes - start
    people = len([tr for tr in mt.tracks if tr.state == "active"])
    assert people >= 3 and mt.stats["full"] <= 1 + 40 // 20        # the schedule: every 2 s at most
    assert passes <= mt.stats["full"] * 41 + people * 40 / MotConfig().still_max + 10, (passes, mt.stats)


@needs_media
def test_nobody_raises_no_person_found(detector):
    from services.tracker.mot import MotAthleteTracker
    empty = cv2.imread(BOX_PNG)
    tracker = MotAthleteTracker(detector=detector, fps=10.0)
    for _ in range(6):
        assert tracker.push(empty) == []
    with pytest.raises(NoPersonFound):
        tracker.finish()
    tracker = MotAthleteTracker(detector=detector, fps=10.0, max_search_frames=4)
    with pytest.raises(NoPersonFound):
        for _ in range(4):
            tracker.push(empty)


@pytest.fixture(scope="module")
def sprites():
    from services.tracker.lab import evalset
    if not os.path.exists(evalset.VTEST):
        pytest.skip("apt-get install opencv-doc")
    return evalset.load_sprites()


def _run_seq(case: str, seed: int, sprites, detector):
    from services.tracker.lab import evalset
    from services.tracker.lab.evaluation import identity_switches, run_tracker
    seq = evalset.make_sequence(case, seed, sprites)
    rendered = [seq.render(t)[:2] for t in range(seq.n_frames)]
    r = run_tracker(seq, None, detector, [(f, b[0]) for f, b in rendered], kind="mot")
    return seq, r, [b for _, b in rendered], identity_switches(r.boxes, [b for _, b in rendered])


@needs_media
def test_athlete_found_again_after_leaving_and_coming_back(sprites, detector):
    """exit_reentry (tuning seed 1): the athlete leaves the view for 20-40 frames and comes back;
    the tracker reports them absent meanwhile and follows them again, under the same id."""
    seq, r, gts, switches = _run_seq("exit_reentry", 1, sprites, detector)
    absent = [t for t, g in enumerate(gts) if g[0] is None]
    assert absent
    back = [t for t in range(absent[-1] + 15, len(gts)) if gts[t][0] is not None]
    assert np.mean([r.boxes[t] is None or max((iou_xywh(r.boxes[t], g) for g in gts[t][1:] if g is not None),
                                              default=0.0) < 0.3 for t in absent]) >= 0.8
    assert np.mean([r.boxes[t] is not None and iou_xywh(r.boxes[t], gts[t][0]) > 0.3 for t in back]) >= 0.7


def _history_ext(boxes, extents) -> dict:
    return {k: Obs(np.array(b, np.float32), 0.9, "detected", None, None if e is None else np.array(e, np.float32))
            for k, (b, e) in enumerate(zip(boxes, extents))}


def test_limb_motion_sees_an_exerciser_whose_box_stays_still():
    """The exerciser's detector box (trunk and hips) does not move; the moving pixels' bounds widen
    and narrow with his arms and legs (jumping jacks). A walker crossing the view beside him,
    present in 60% of the clip, scored higher on the still box (issue #15's exerciser case)."""
    fps, n = 10.0, 100
    still = [(300, 100, 36, 100)] * n
    jacks = [(300 - 32 * (k % 4 >= 2), 100, 36 + 64 * (k % 4 >= 2), 100) for k in range(n)]   # arms out 2 of every 4 frames
    walker = [(20 + 8 * k, 110, 40, 110) if k < 60 else None for k in range(n)]
    walker_ext = [None if b is None else (b[0] - 4 * (k % 6 >= 3), b[1], b[2] + 8 * (k % 6 >= 3), b[3])
                  for k, b in enumerate(walker)]                            # legs apart, together: a stride
    wk = {k: v for k, v in _history_ext([b or (0, 0, 1, 1) for b in walker], walker_ext).items() if walker[k]}
    ex_box_only = ch.describe_track(0, _history(still), n, 480, fps)
    ex = ch.describe_track(0, _history_ext(still, jacks), n, 480, fps)
    wa = ch.describe_track(1, wk, n, 480, fps)
    assert ex_box_only.activity < 0.05 and ex_box_only.limbs is None     # the box alone: no motion at all
    assert ex.limbs > 2 * wa.limbs and ex.activity > wa.activity
    best, reason, _ = ch.choose([ex, wa], "most_active")
    assert best.track_id == 0 and "limbs" in reason
    assert ch.choose([ex_box_only, wa], "most_active")[0].track_id == 1   # what the still box gave (the bug)


def test_limb_motion_needs_extents_in_enough_frames():
    boxes = [(300, 100, 36, 100)] * 50
    few = [(290, 100, 56, 100) if k < 5 else None for k in range(50)]
    assert ch.limb_motion(list(range(50)), few, 2, 10.0) is None
    # the box's aspect is used instead (the camera moved: no background model)
    assert ch.describe_track(0, _history_ext(boxes, few), 50, 480, 10.0).limbs is None


def _still_track(tid: int, frames: range, x: float, colour, jitter: float = 1.0) -> Track:
    tr = _track(tid, frames, x, colour, fps_step=0.0)
    for k in frames:
        tr.history[k].box[0] = x + jitter * (k % 2)
    return tr


def test_a_person_exercising_in_place_cut_in_pieces_is_stitched_into_one_track():
    """Detector gaps cut someone exercising in place into pieces whose colours differ more than the
    usual stitching asks (turned sideways, arms out); pieces that end and start at the same place,
    both still there, are one person. A walker whose track ends there is not joined to them."""
    mt = MultiTracker(detector=None, fps=10.0)
    mt.cfg.stitch_sim = 1.01                                 # colour alone never joins them here
    grey, blue = (120, 120, 120), (200, 60, 20)
    out = mt._stitch([_still_track(0, range(0, 25), 300, grey), _still_track(1, range(40, 70), 305, grey),
                      _still_track(2, range(85, 100), 298, grey)])
    assert [sorted(tr.history) for tr in out] == [list(range(0, 25)) + list(range(40, 70)) + list(range(85, 100))]
    assert len(mt._stitch([_still_track(0, range(0, 25), 300, grey), _still_track(1, range(40, 70), 305, blue)])) == 2
    walker = _track(3, range(0, 25), 300 - 24 * 8, grey, fps_step=8.0)        # walks up to where he stands
    out = mt._stitch([walker, _still_track(4, range(40, 70), 300, grey)])
    assert len(out) == 2
    far = mt._stitch([_still_track(5, range(0, 25), 100, grey), _still_track(6, range(40, 70), 300, grey)])
    assert len(far) == 2


class _Fg:
    """A background model stand-in: moving blobs given, reliable, no scaling."""

    def __init__(self, blobs, share=0.0):
        self._b = [np.array(b, np.float32) for b in blobs]
        self._share = share

    def blobs(self, min_area_px):
        return self._b

    def share(self, box):
        return self._share


def test_a_missed_person_is_carried_on_their_moving_blob_but_not_on_a_merged_one():
    """ByteTrack's low-score stage from the background model: a confirmed track the detector missed
    continues on a blob of its size where it is expected; a blob merged with a passer-by (their box
    inside it) does not carry it, and nothing starts a track."""
    mt = MultiTracker(detector=None, fps=10.0)
    mt._size = (640, 480)
    tr = _still_track(0, range(0, 10), 300, (120, 120, 120))
    tr.state, tr.last_det, tr.last_seen = "active", 9, 9
    mt.t = 10
    mt._fg = _Fg([(290, 95, 60, 125), (50, 50, 30, 80)])          # arms out: wider than his box
    assert mt._blob_carry(tr, [])
    o = tr.history[10]
    assert o.state == "tracked" and o.score < 0.3 and abs(o.box[0] + o.box[2] / 2 - 320) < 1
    assert o.box[2] == pytest.approx(40)                          # the track's size, not the blob's
    mt.t = 11
    mt._fg = _Fg([(250, 95, 140, 125)])                           # merged with a walker beside him
    assert not mt._blob_carry(tr, [np.array([315, 100, 45, 120], np.float32)])
    mt.t = 12                                                     # standing since the start: only his limbs move
    mt._fg = _Fg([(305, 100, 15, 30), (320, 170, 15, 40)])
    assert mt._blob_carry(tr, []) and tr.history[12].state == "tracked"
    assert not mt._blob_carry(tr, [np.array([305, 100, 40, 120], np.float32)])   # someone detected there instead
    mt.t = 13 + 30                                                # too long without any detection
    mt._fg = _Fg([(290, 95, 60, 125)])
    assert not mt._blob_carry(tr, [])
