"""Video encoders: CPU per frame, size and quality of H.264 (PyAV, x264 presets and threads) against OpenCV's mp4v.

    python benchmarks/video.py                        # 640x360 and 1280x720, the sample clip and a noisy copy
    python benchmarks/video.py --sizes 640x360 --repeats 5 --wait-quiet 60

Each case writes the same frames through the runtime's own writers (``edge.video``), as ``--output x.mp4``
does: the sample clip's frames (scaled to the size) with the renderer's status panel drawn on, looped;
and the same with Gaussian sensor noise (a dim webcam), the hard case for an encoder. CPU is the
process's CPU time (every encoder thread) per frame, from the first write to the file being closed;
quality is the PSNR of the decoded file against the frames given; size in kbit/s at the clip's rate.
Cases run interleaved, ``--repeats`` times, and the median is reported.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/video.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fps import git_commit  # noqa: E402
from benchmarks.report import table  # noqa: E402
from edge.render import draw_status  # noqa: E402
from edge.video import H264Writer, OpenCVWriter  # noqa: E402
from edge.version import cpu_name  # noqa: E402

DEFAULT_SOURCE = REPO_ROOT / "tests" / "data" / "single_face.mp4"
NOISE_SIGMA = 8.0  # grey levels
ENCODERS = {  # name -> (kind, preset, threads)
    "opencv mp4v": ("mp4v", "", 0),
    "h264 ultrafast, 1 thread": ("h264", "ultrafast", 1),
    "h264 ultrafast, default threads": ("h264", "ultrafast", 0),
    "h264 superfast, 1 thread": ("h264", "superfast", 1),
    "h264 superfast, default threads": ("h264", "superfast", 0),
    "h264 veryfast, 1 thread": ("h264", "veryfast", 1),
    "h264 veryfast, default threads": ("h264", "veryfast", 0),
}


def clip_frames(source: Path, size: tuple[int, int], noise: float, seed: int = 0) -> tuple[list[np.ndarray], float]:
    """The clip's frames at ``size`` with a status panel drawn on (and Gaussian noise if asked), and its rate."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    rng = np.random.default_rng(seed)
    frames = []
    while (frame := capture.read()[1]) is not None:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        if noise > 0:
            frame = np.clip(frame + rng.normal(0.0, noise, frame.shape), 0, 255).astype(np.uint8)
        draw_status(frame, [f"t {len(frames) / fps:5.1f} s", "faces 1"])
        frames.append(frame)
    if not frames:
        raise SystemExit(f"error: not a decodable video: {source}")
    return frames, fps


def encode(frames: list[np.ndarray], loop: int, fps: float, encoder: tuple[str, str, int], path: Path) -> dict[str, float]:
    """Write the frames ``loop`` times; CPU and wall ms per frame, from the first write to the file closed."""
    kind, preset, threads = encoder
    size = (frames[0].shape[1], frames[0].shape[0])
    cpu, wall = time.process_time(), time.perf_counter()
    writer = (OpenCVWriter(path, fps, size, kind) if kind != "h264" else H264Writer(path, fps, size, preset, threads))
    count = 0
    for _ in range(loop):
        for frame in frames:
            writer.write(frame, count / fps)
            count += 1
    writer.close()
    return {"cpu_ms": 1000 * (time.process_time() - cpu) / count, "wall_ms": 1000 * (time.perf_counter() - wall) / count,
            "kbit_s": path.stat().st_size * 8 / 1000 / (count / fps), "frames": count}


def psnr(path: Path, frames: list[np.ndarray]) -> tuple[float, int]:
    """Mean PSNR (dB) of every decoded frame against the frame given, and the frames decoded."""
    capture = cv2.VideoCapture(str(path))
    values, i = [], 0
    while (frame := capture.read()[1]) is not None:
        mse = np.mean((frame.astype(np.float32) - frames[i % len(frames)].astype(np.float32)) ** 2)
        values.append(10 * math.log10(255 ** 2 / mse) if mse > 0 else 99.0)
        i += 1
    return (float(np.mean(values)) if values else float("nan")), i


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def wait_quiet(max_wait_s: float) -> None:
    if max_wait_s > 0:
        from benchmarks.procmon import wait_until_quiet

        busy = wait_until_quiet(max_wait_s)
        print(f"[video] machine {busy:.0f}% busy when starting", file=sys.stderr)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in map(parse_size, args.sizes):
            for noise in (0.0, NOISE_SIGMA):
                frames, fps = clip_frames(args.source, size, noise)
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in ENCODERS}
                for repeat in range(args.repeats):
                    wait_quiet(args.wait_quiet)
                    for name, encoder in ENCODERS.items():  # interleaved: a slow spell hits every encoder
                        path = Path(folder) / f"{name.replace(' ', '_').replace(',', '')}.mp4"
                        runs[name].append(encode(frames, args.loop, fps, encoder, path))
                        if repeat == 0:
                            quality, decoded = psnr(path, frames)
                            runs[name][-1].update(psnr_db=quality, decoded=decoded)
                for name, measured in runs.items():
                    cpu = sorted(m["cpu_ms"] for m in measured)
                    rows.append({"size": f"{size[0]}x{size[1]}", "input": f"noise {noise:g}" if noise else "clip",
                                 "encoder": name, "cpu_ms": float(np.median(cpu)), "cpu_all": cpu,
                                 "wall_ms": float(np.median([m["wall_ms"] for m in measured])),
                                 "kbit_s": measured[0]["kbit_s"], "psnr_db": measured[0]["psnr_db"],
                                 "decoded": measured[0]["decoded"], "frames": measured[0]["frames"]})
                    print(f"[video] {rows[-1]['size']} {rows[-1]['input']} {name}: {rows[-1]['cpu_ms']:.2f} ms",
                          file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, Any]], argv: Sequence[str]) -> str:
    import av

    lines = [f"- command: `python benchmarks/video.py {' '.join(argv)}`",
             f"- machine: {cpu_name()}, `nproc` = {os.cpu_count()}, no GPU; {platform.platform()}; "
             f"load average at the end {os.getloadavg()[0]:.2f}",
             f"- software: python {platform.python_version()}, opencv {cv2.__version__}, PyAV {av.__version__} "
             f"(FFmpeg {av.library_versions['libavcodec']} libavcodec), commit {git_commit()}", ""]
    headers = ["size, input, encoder", "CPU ms/frame", "(each run)", "wall ms/frame", "kbit/s", "PSNR dB"]
    body = [[f"{r['size']} {r['input']}, {r['encoder']}", r["cpu_ms"], " ".join(f"{c:.2f}" for c in r["cpu_all"]),
             r["wall_ms"], round(r["kbit_s"]), r["psnr_db"]] for r in rows]
    return "\n".join(lines) + table(headers, body, markdown=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/video.py", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--sizes", nargs="+", default=["640x360", "1280x720"])
    parser.add_argument("--loop", type=int, default=3, help="times the clip is written in one run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each repeat, wait up to S seconds for the machine to be quiet")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    rows = run(args)
    print(markdown(rows, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
