"""Person detector: BlazePose's own SSD person detector, run through LiteRT.

The weights are `mediapipe/modules/pose_detection/pose_detection.tflite`, shipped in the
mediapipe wheel. The decoding below reproduces MediaPipe's `pose_detection_cpu.pbtxt`:
SsdAnchorsCalculator (5 layers, strides 8,16,32,32,32, 224x224, fixed anchor size),
TensorsToDetectionsCalculator (12 values per anchor, sigmoid scores) and weighted NMS.

The model is trained on selfie/fitness framing: it finds a *face-sized* box plus 4
alignment keypoints (hip centre, a point on the body circle, shoulder centre, a point on
the upper-body circle). We turn the hip centre + body-circle radius into a full-body box.
People far from the camera (vtest.avi: ~40x100 px in 768x576) are too small for a single
224x224 pass over the whole frame, so `detect` also runs the model on overlapping tiles
that are upscaled to 224 px.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# Values from mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt.
INPUT_SIZE = 224
NUM_ANCHORS = 2254
NUM_COORDS = 12          # box (xc, yc, w, h) + 4 keypoints (x, y)
NUM_KEYPOINTS = 4
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
SCORE_CLIP = 100.0         # score_clipping_thresh
GRAPH_NMS_IOU = 0.3        # min_suppression_threshold (the graph's min_score_thresh 0.2 is too low for us: see config)

# Keypoint indices (see the graph's comment).
KP_HIP, KP_BODY, KP_SHOULDER, KP_UPPER = 0, 1, 2, 3


def model_path() -> str:
    """Path of pose_detection.tflite inside the installed mediapipe wheel."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed: it ships pose_detection.tflite")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "modules", "pose_detection", "pose_detection.tflite")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


# ---------------------------------------------------------------- SSD anchors / decoding

def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = ANCHOR_STRIDES,
                offset: float = 0.5) -> np.ndarray:
    """Anchors as MediaPipe's SsdAnchorsCalculator makes them for this graph -> (N, 2) centres.

    Consecutive layers with the same stride share one feature map; each layer adds 2 anchors
    per cell (aspect ratio 1.0 plus the interpolated-scale anchor). With fixed_anchor_size the
    anchor w = h = 1 (min/max scale 0.1484375/0.75 play no part), so only centres matter.
    224: 28*28*2 + 14*14*2 + 7*7*6 = 2254.
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        n_same = 0
        while layer < len(strides) and strides[layer] == stride:
            n_same += 1
            layer += 1
        fm = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(fm) + offset) / fm, (np.arange(fm) + offset) / fm, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)             # (fm*fm, 2), row-major y then x
        centres.append(np.repeat(cell, 2 * n_same, axis=0))             # anchors of a cell are adjacent
    return np.concatenate(centres, axis=0).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           scale: float = float(INPUT_SIZE)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs -> (boxes (N,4) xmin,ymin,xmax,ymax, keypoints (N,4,2), scores (N,)).

    raw_boxes: (N, 12) in input pixels relative to the anchor centre (x first:
    reverse_output_order=true); raw_scores: (N,) logits. Outputs are normalised to [0,1]
    of the 224x224 model input.
    """
    a = anchors[:, None, :]                                          # (N,1,2)
    xc = raw_boxes[:, 0] / scale + anchors[:, 0]
    yc = raw_boxes[:, 1] / scale + anchors[:, 1]
    w = raw_boxes[:, 2] / scale
    h = raw_boxes[:, 3] / scale
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kps = raw_boxes[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / scale + a
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -SCORE_CLIP, SCORE_CLIP)))
    return boxes, kps, scores


def iou_xyxy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) against boxes (M,4), all x1,y1,x2,y2."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float,
                 extra: np.ndarray | None = None) -> list[tuple[np.ndarray, float, np.ndarray | None]]:
    """MediaPipe's WEIGHTED non-max suppression.

    Take the best remaining box, gather every remaining box overlapping it by more than
    iou_thresh, and output their score-weighted mean (box and `extra`, e.g. keypoints (M,K))
    with the best score. boxes: (M,4) x1,y1,x2,y2; scores: (M,).
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    extra = extra[order] if extra is not None else None
    alive = np.ones(len(scores), dtype=bool)
    out: list[tuple[np.ndarray, float, np.ndarray | None]] = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (iou_xyxy(boxes[i], boxes) > iou_thresh)
        group[i] = True
        wts = scores[group][:, None]
        box = (boxes[group] * wts).sum(0) / wts.sum()
        ext = (extra[group] * wts).sum(0) / wts.sum() if extra is not None else None
        out.append((box, float(scores[i]), ext))
        alive &= ~group
    return out


# ---------------------------------------------------------------- detector

@dataclass
class Detection:
    bbox_px: np.ndarray                       # (4,) x, y, w, h of the full body, frame pixels
    score: float                              # detector confidence 0..1
    keypoints_px: np.ndarray | None = None    # (4,2) hip centre, body-circle point, shoulder centre, upper-body point
    face_px: np.ndarray | None = None         # (4,) x, y, w, h of the face box the model regresses


@dataclass(frozen=True)
class Tile:
    """A square of the frame the model runs on: [x0, x0 + side) x [y0, y0 + side), frame px
    (outside the frame: zero padding); only bodies >= min_body px tall are kept (None: any)."""
    x0: float
    y0: float
    side: float
    min_body: float | None = None

    def distance(self, p: np.ndarray) -> float:
        """From point p (x, y) to the nearest point of the square (0 inside)."""
        dx = max(self.x0 - p[0], 0.0, p[0] - self.x0 - self.side)
        dy = max(self.y0 - p[1], 0.0, p[1] - self.y0 - self.side)
        return float(np.hypot(dx, dy))


@dataclass
class DetectorConfig:
    # The graph uses 0.2 for its single best pose; over many tiles 0.5 already finds people in
    # box.png, fruits.jpg and on vtest's lawn, while vtest's walkers score 0.9-0.99.
    score_thresh: float = 0.7
    nms_iou: float = GRAPH_NMS_IOU
    merge_iou: float = 0.4           # merging full-body boxes of one person found by several tiles
    # Square tiles, as fractions of the frame's short side, each resized to 224 px; () = whole
    # frame only. 1/3 of 576 = 192 px: vtest.avi's ~90 px people come out ~100 px tall in the
    # model input, where the detector is reliable (whole frame: ~30 px, missed).
    # 2/3: people of 100-250 px (they fill a 1/3 tile and are ~50 px in the whole-frame pass):
    # on the tuning part of the evaluation set, recall of unoccluded people 0.78 -> 0.84 for 6
    # more passes at 640x480.
    tile_fracs: tuple[float, ...] = (1 / 3, 2 / 3)
    # detect(person_height=h): tiles of this x h (at least the smallest of tile_fracs). On the
    # tuning part of the evaluation set 1.8-2.0 found unoccluded targets best (recall 0.86 vs 0.84
    # with all tiles; 1.4: 0.84, 2.6: 0.70).
    tile_per_height: float = 2.0
    min_body_frac: float = 0.4       # in tiles larger than the smallest: people at least this x the tile side
    tile_overlap: float = 0.5        # share of a tile overlapping its neighbour: a person cut by one is whole in the next
    whole_frame: bool = True         # also run once on the letterboxed whole frame (large people)
    # Box geometry, calibrated on the tuning part of the evaluation set (detections vs exact
    # person boxes, 538 matches): with 0.42 and 1.0 the boxes came out 1.18x too wide and 1.085x
    # too tall (centres unbiased).
    body_width_ratio: float = 0.36   # body width / length (upright: box w / h)
    body_length_ratio: float = 0.92  # body length / the enclosing circle's diameter 2r
    min_body_px: float = 24.0        # drop bodies smaller than this (height, frame px)
    num_threads: int = 1


class PersonDetector:
    """BlazePose person detector over the whole frame plus overlapping upscaled tiles."""

    def __init__(self, config: DetectorConfig | None = None):
        try:   # imported here: the decoding helpers above work without it
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ImportError("PersonDetector needs LiteRT: pip install ai-edge-litert==2.3.0 ml_dtypes==0.5.4 "
                              "(ml_dtypes 0.6 would pull numpy 2)") from exc

        self.config = config or DetectorConfig()
        self._interp = Interpreter(model_path=model_path(), num_threads=self.config.num_threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]["index"]
        outs = self._interp.get_output_details()
        # Identify outputs by shape, not by order: (1,2254,12) boxes and (1,2254,1) scores.
        self._out_boxes = next(o["index"] for o in outs if o["shape"][-1] == NUM_COORDS)
        self._out_scores = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors()
        self.passes = 0                       # model passes so far (detection budget)
        assert len(self._anchors) == NUM_ANCHORS

    # -- one model pass on a square crop --------------------------------------------------
    def _run_square(self, frame_bgr: np.ndarray, x0: float, y0: float, side: float,
                    min_body: float | None = None, min_score: float | None = None) -> list[Detection]:
        """Run the model on the square [x0, x0+side) x [y0, y0+side) of the frame (zero padded
        outside the frame, like the graph's letterbox BORDER_ZERO). Returns detections in frame px."""
        s = INPUT_SIZE / side
        # Affine warp = crop + resize + zero border in one step.
        m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float32)
        patch = cv2.warpAffine(frame_bgr, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0  # [-1,1]
        self._interp.set_tensor(self._in, x[None])                  # (1,224,224,3)
        self._interp.invoke()
        self.passes += 1
        raw_boxes = self._interp.get_tensor(self._out_boxes)[0]     # (2254,12)
        raw_scores = self._interp.get_tensor(self._out_scores)[0, :, 0]  # (2254,)
        thresh = self.config.score_thresh if min_score is None else min_score
        keep = raw_scores > np.log(thresh / (1 - thresh))  # logit test = cheap
        if not keep.any():
            return []
        boxes, kps, scores = decode(raw_boxes[keep], raw_scores[keep], self._anchors[keep])
        dets = []
        for box, score, kp in weighted_nms(boxes, scores, self.config.nms_iou,
                                           kps.reshape(len(kps), -1)):
            kp_px = kp.reshape(NUM_KEYPOINTS, 2) * side + (x0, y0)   # (4,2) frame px
            face = box * side + (x0, y0, x0, y0)
            body = self.body_box(kp_px)
            if body[3] < max(self.config.min_body_px, min_body or 0.0):
                continue
            dets.append(Detection(body, score, kp_px,
                                  np.array([face[0], face[1], face[2] - face[0], face[3] - face[1]], np.float32)))
        return dets

    def body_box(self, kp_px: np.ndarray) -> np.ndarray:
        """Full-body x,y,w,h from alignment keypoints (4,2).

        MediaPipe's ROI is a circle centred on the hip centre with radius r = |kp1 - kp0| that
        encloses the whole body, kp0 -> kp1 pointing along the body towards the head. Upright,
        the body spans 2r x body_length_ratio vertically and width_ratio x that across. The half extents below follow
        the axis (an athlete lying or mid-flip gets a wide box) without widening the box of a
        walker whose axis estimate is off by 10-15 degrees (the exact rotated-rectangle bounds would).
        """
        hip = kp_px[KP_HIP]
        axis = kp_px[KP_BODY] - hip
        r = float(np.linalg.norm(axis))
        ax, ay = np.abs(axis / max(r, 1e-6))
        r_len = r * self.config.body_length_ratio
        half_w = 0.5 * self.config.body_width_ratio * 2.0 * r_len
        ex, ey = max(ax * r_len, half_w), max(ay * r_len, half_w)
        return np.array([hip[0] - ex, hip[1] - ey, 2 * ex, 2 * ey], dtype=np.float32)

    # -- public ---------------------------------------------------------------------------
    def tiles(self, wid: int, hgt: int, person_height: float | None = None) -> list[Tile]:
        """The squares `detect` runs the model on for a wid x hgt frame (see `detect`)."""
        fracs = self.config.tile_fracs
        whole = self.config.whole_frame
        if person_height is not None:
            frac = min(max(self.config.tile_per_height * float(person_height) / min(hgt, wid), min(self.config.tile_fracs)), 1.0)
            fracs, whole = ((frac,) if frac < 0.75 else ()), frac >= 0.5
        out = []
        if whole:
            side = float(max(hgt, wid))    # letterbox: keep aspect, centred, zero padded
            out.append(Tile((wid - side) / 2, (hgt - side) / 2, side, None))
        for frac in fracs:
            tile = max(32, int(round(frac * min(hgt, wid))))
            # Tiles larger than the smallest are there for larger people: a small person in one
            # comes out ~50 px in the model input, with a badly scaled box that would not merge
            # with its good box from the small tiles (vtest.avi frame 0: a 52x143 ghost of a 32x90 man).
            min_body = self.config.min_body_frac * tile if frac > min(self.config.tile_fracs) + 1e-6 else None
            out += [Tile(x0, y0, float(tile), min_body) for x0, y0 in tile_origins(wid, hgt, tile, self.config.tile_overlap)]
        return out

    def detect(self, frame_bgr: np.ndarray, person_height: float | None = None,
               min_score: float | None = None,
               select: Callable[[list[Tile]], list[Tile]] | None = None) -> list[Detection]:
        """All people in a BGR frame (H,W,3 uint8), full-body boxes in frame pixels.

        person_height: look only for people about that tall (px): one tile size, chosen so that
        they come out ~110 px tall in the model input (re-detection of a known athlete: 16 passes
        instead of 42 at 640x480 for a 150 px athlete). min_score: instead of config.score_thresh
        (the multi-person tracker's low-score detections). select: picks the tiles to run among
        `tiles()` (a re-detection's budget: only where the athlete can be, or where something moves)."""
        hgt, wid = frame_bgr.shape[:2]
        tiles = self.tiles(wid, hgt, person_height)
        if select is not None:
            tiles = select(tiles)
        dets: list[Detection] = []
        for t in tiles:
            dets += self._run_square(frame_bgr, t.x0, t.y0, t.side, t.min_body, min_score)
        return self._merge(dets, wid, hgt)

    def detect_in_region(self, frame_bgr: np.ndarray, bbox_px: np.ndarray, context: float = 2.0,
                         min_score: float | None = None) -> list[Detection]:
        """People in a square window of `context` x the box's long side around bbox_px (x,y,w,h):
        one model pass, used to verify a tracked box cheaply."""
        x, y, w, h = (float(v) for v in bbox_px)
        side = max(w, h) * context
        side = max(side, 64.0)
        dets = self._run_square(frame_bgr, x + w / 2 - side / 2, y + h / 2 - side / 2, side, min_score=min_score)
        return self._merge(dets, frame_bgr.shape[1], frame_bgr.shape[0])

    def _merge(self, dets: list[Detection], wid: int, hgt: int) -> list[Detection]:
        """Weighted NMS over full-body boxes from all passes; clip to the frame."""
        if not dets:
            return []
        xyxy = np.array([[d.bbox_px[0], d.bbox_px[1], d.bbox_px[0] + d.bbox_px[2], d.bbox_px[1] + d.bbox_px[3]]
                         for d in dets], dtype=np.float32)
        scores = np.array([d.score for d in dets], dtype=np.float32)
        extra = np.array([np.concatenate([d.keypoints_px.ravel(), d.face_px]) for d in dets], dtype=np.float32)
        out = []
        for box, score, ext in weighted_nms(xyxy, scores, self.config.merge_iou, extra):
            x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
            x2, y2 = min(box[2], float(wid)), min(box[3], float(hgt))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            out.append(Detection(np.array([x1, y1, x2 - x1, y2 - y1], np.float32), score,
                                 ext[:8].reshape(4, 2), ext[8:]))
        return out


def tile_origins(wid: int, hgt: int, tile: int, overlap: float) -> list[tuple[float, float]]:
    """Top-left corners of square tiles covering a wid x hgt frame with the given overlap;
    the last row/column is pinned to the frame edge so no strip is missed."""
    step = max(1, int(round(tile * (1.0 - overlap))))

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, step))
        return s + [n - tile]

    return [(float(x), float(y)) for y in starts(hgt) for x in starts(wid)]
