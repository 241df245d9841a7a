"""Benchmark arithmetic against hand-computed values, the measuring helpers, and a smoke run of benchmarks/fps.py."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.fps import json_safe
from benchmarks.media import bench_video
from benchmarks.paced import PacedVideoSource
from benchmarks.procmon import ProcessMonitor
from benchmarks.stats import box_recall, face_recall, percentile, ratio, stage_summaries, steady_fps, summarize, wall_fps
from benchmarks.targets import TARGETS, evaluate, lookup
from edge.classify import DEFAULT_MODEL
from edge.config import CaptureConfig
from edge.video import decodable_frames

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TIMEOUT_S = 120


@pytest.mark.parametrize("values, q, expected", [
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5.5),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95, 9.55),  # rank 0.95 * 9 = 8.55: 9 + 0.55 * (10 - 9)
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99, 9.91),
    ([10, 1, 4], 50, 4.0),  # order does not matter
    ([7], 99, 7.0),
])
def test_percentile_interpolates_between_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan():
    assert math.isnan(percentile([], 50))


def test_summarize_hand_computed():
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s["n"] == 8
    assert s["mean"] == pytest.approx(5.0)
    assert s["min"] == 2 and s["max"] == 9
    assert s["p50"] == pytest.approx(4.5)
    assert s["p95"] == pytest.approx(7 + 0.65 * 2)  # rank 6.65 between 7 and 9
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"]


def test_stage_summaries_skip_absent_stages():
    records = [{"detect": 10.0, "total": 20.0}, {"detect": 30.0, "total": 40.0}, {"total": 60.0}]
    out = stage_summaries(records, ("capture", "detect", "total"))
    assert set(out) == {"detect", "total"}
    assert out["detect"]["n"] == 2 and out["detect"]["p50"] == pytest.approx(20.0)
    assert out["total"]["p50"] == pytest.approx(40.0)


@pytest.mark.parametrize("done, warmup, expected", [
    ([0.0, 1.0, 2.0, 3.0, 4.0], 0, 1.0),
    ([0.0, 1.0, 2.0, 3.0, 4.0], 2, 1.0),
    ([0.0, 0.5, 0.6, 0.7, 0.8, 0.9], 1, 10.0),  # slow first frame left out: 4 frames in 0.4 s
    ([0.0, 0.5, 0.6, 0.7, 0.8, 0.9], 0, 5 / 0.9),
    ([2.0, 2.25], 10, 4.0),  # too short to spare the warm-up
])
def test_steady_fps(done, warmup, expected):
    assert steady_fps(done, warmup) == pytest.approx(expected)


def test_steady_fps_needs_two_frames():
    assert math.isnan(steady_fps([1.0], 0))


def test_wall_fps_and_ratio():
    assert wall_fps(100, 4.0) == pytest.approx(25.0)
    assert math.isnan(wall_fps(10, 0.0))
    assert ratio(300.0, 100.0) == pytest.approx(3.0)
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(None, 1.0))
    assert math.isnan(ratio(float("nan"), 1.0))


def test_face_recall_hand_computed():
    found = [True, True, False, True, False]
    reference = [True, True, True, False, False]
    r = face_recall(found, reference)
    assert r == {"frames": 5, "reference_frames": 3, "variant_frames": 3, "hits": 2, "extra": 1,
                 "recall": pytest.approx(2 / 3)}


def test_box_recall_pairs_faces_one_to_one():
    face_a, face_b = [0, 0, 100, 100], [200, 0, 300, 100]
    reference = [np.array([face_a, face_b]), np.array([face_a]), np.empty((0, 4))]
    found = [
        np.array([[5, 5, 105, 105], [10, 0, 100, 90]]),  # both near face_a: only one may count, face_b missed
        np.array([[0, 0, 100, 100]]),
        np.array([[400, 0, 450, 50]]),  # nothing to match
    ]
    r = box_recall(found, reference)
    assert r == {"reference_faces": 3, "hits": 2, "extra": 2, "recall": pytest.approx(2 / 3)}
    loose = [np.array([[0, 0, 100, 100], [260, 0, 360, 100]])]  # IoU with face_b = 40/160 = 0.25
    assert box_recall(loose, [np.array([face_a, face_b])])["hits"] == 1
    assert box_recall(loose, [np.array([face_a, face_b])], min_iou=0.25)["hits"] == 2
    with pytest.raises(ValueError):
        box_recall([np.empty((0, 4))], [])


def test_face_recall_edge_cases():
    assert face_recall([True, True], [True, True])["recall"] == 1.0
    assert math.isnan(face_recall([True], [False])["recall"])  # the reference found nothing
    with pytest.raises(ValueError, match="same frames"):
        face_recall([True], [True, False])


def test_targets_evaluated_from_results():
    results = {"variants": {"pipeline": {"fps": 200.0, "recall": {"recall": 1.0},
                                         "resources": {"total": {"mem_peak_mb": 250.0}}}},
               "ratios": {"pipeline_over_seeds": 3.0}, "startup": {"median_s": 0.8}}
    rows = {r["name"]: r for r in evaluate(results)}
    assert len(rows) == len(TARGETS)
    verdicts = [rows[t.name]["met"] for t in TARGETS]
    # >= 150 met, >= 300 not, 3.0x met exactly, no live run, 250 MB too much, 0.8 s fine, recall 1.0 met
    assert verdicts == [True, False, True, None, None, False, True, True]
    assert rows[TARGETS[0].name]["measured"] == 200.0


def test_lookup_missing_is_nan():
    assert lookup({"a": {"b": 2}}, "a.b") == 2.0
    assert math.isnan(lookup({"a": {"b": 2}}, "a.c"))
    assert math.isnan(lookup({"a": None}, "a.b"))


def test_json_safe_turns_nan_into_null():
    assert json_safe({"a": [1.0, float("nan")], "b": {"c": float("inf")}}) == {"a": [1.0, None], "b": {"c": None}}


def test_looped_copy_is_bit_exact(data, tmp_path):
    video = bench_video(data / "single_face.mp4", 2, tmp_path)
    assert video.frames == 144 and video.clip_frames == 72
    assert video.bit_exact, "the compressed stream should be copied, not re-encoded"
    assert video.path != video.original and video.path.is_file()


def test_paced_source_delivers_at_its_rate_and_skips_what_it_missed(data):
    source = PacedVideoSource(str(data / "single_face.mp4"), CaptureConfig(), fps=20.0)  # slow: robust under load
    try:
        start = time.perf_counter()
        for _ in range(6):
            assert source.read() is not None
        assert time.perf_counter() - start >= 5 * 0.05 * 0.95  # 6 frames span 5 periods
        assert source.skipped == 0
        time.sleep(0.3)  # a camera would have replaced the next frames meanwhile
        assert source.read() is not None
        assert source.skipped >= 4
        assert source.live and not source.reopen()
    finally:
        source.close()


def test_process_monitor_sees_children_with_names():
    child = mp.get_context("spawn").Process(target=time.sleep, args=(60.0,), name="sleeper")
    monitor = ProcessMonitor(interval_s=0.05)
    with monitor:
        child.start()
        monitor.names[child.pid] = child.name
        deadline = time.monotonic() + 30  # a loaded machine samples (and looks for children) late
        while time.monotonic() < deadline and (child.pid not in monitor.traces or monitor._samples_taken < 5):
            time.sleep(0.05)
        child.terminate()
    child.join()
    report = monitor.report()
    names = {p["name"] for p in report["processes"]}
    assert {"main", "sleeper"} <= names
    assert report["memory_kind"] in ("pss", "rss")
    assert report["total"]["mem_peak_mb"] >= max(p["mem_peak_mb"] for p in report["processes"]) > 0
    assert report["samples"] >= 5


def sane_latency(latency: dict) -> None:
    for stage, s in latency.items():
        assert 0 <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"], stage
    assert latency["total"]["p50"] >= latency["detect"]["p50"]


def test_fps_smoke_run_writes_every_section(data, tmp_path):
    model = DEFAULT_MODEL  # shipped with its sidecar (tests/test_model.py checks every shipped model is there)
    float_copy = tmp_path / "float_stand_in.tflite"  # the plumbing of --float-model, without TensorFlow
    shutil.copy(model, float_copy)
    shutil.copy(model.with_suffix(".json"), float_copy.with_suffix(".json"))
    out = tmp_path / "bench.json"
    command = [sys.executable, "benchmarks/fps.py", "--source", str(data / "single_face.mp4"), "--loop", "1",
               "--model", str(model), "--live", "--classifier", "--float-model", str(float_copy), "--threads", "1",
               "--startup-repeats", "1", "--repeats", "2", "--json", str(out), "--markdown", str(tmp_path / "BENCH.md"),
               "--workdir", str(tmp_path / "work")]
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Targets" in done.stdout and "pipeline (multi-process)" in done.stdout
    results = json.loads(out.read_text())
    assert {"meta", "settings", "video", "model", "startup", "variants", "ratios", "live", "classifier",
            "targets"} <= set(results)
    assert results["meta"]["cores"] >= 1 and results["video"]["frames"] == 72
    variants = results["variants"]
    assert set(variants) == {"decode", "seeds", "sequential", "pipeline"}
    for name, v in variants.items():
        assert v["frames"] == 72, name
        assert v["fps"] > 0 and v["wall_fps"] > 0, name
    for name in ("seeds", "sequential", "pipeline"):
        v = variants[name]
        sane_latency(v["latency_ms"])
        assert v["recall"]["recall"] >= 0.9 and v["recall"]["reference_frames"] > 0  # the clip's face, found
        assert v["face_recall"]["reference_faces"] >= v["recall"]["reference_frames"]  # one face a frame, or more
        assert v["resources"]["total"]["mem_peak_mb"] > 0
    pipeline = variants["pipeline"]
    assert pipeline["dropped"] == 0 and pipeline["frames_read"] == 72
    assert pipeline["face_recall"]["recall"] >= 0.9  # the sample clip's one face, boxed in nearly every frame
    assert len(pipeline["runs_fps"]) == 2 and pipeline["fps"] == min(pipeline["runs_fps"])  # lower median of 2
    names = {p["name"] for p in pipeline["resources"]["processes"]}
    assert {"main", "edge.detector", "edge.classifier"} <= names
    ratios = results["ratios"]
    assert ratios["pipeline_over_seeds"] == pytest.approx(pipeline["fps"] / variants["seeds"]["fps"])
    assert ratios["pipeline_over_decode"] == pytest.approx(pipeline["fps"] / variants["decode"]["fps"])
    startup = results["startup"]
    assert len(startup["runs_s"]) == 1 and startup["median_s"] == startup["runs_s"][0] > 0  # (no bound on speed)
    live = results["live"]
    assert live["frames_read"] + live["source_skipped"] == 72
    assert live["frames_done"] + live["dropped"] == live["frames_read"]
    assert live["drop_rate"] == pytest.approx((live["dropped"] + live["source_skipped"]) / 72)
    assert live["fps_target"] == pytest.approx(30.0)
    sane_latency(live["latency_ms"])
    bench = results["classifier"]
    assert bench["crops"] > 0 and len(bench["rows"]) == 2  # two models x one thread count
    assert all(0 < r["median_ms"] <= r["p99_ms"] for r in bench["rows"])
    assert bench["top1_agreement"]["quantized"] == 1.0  # the stand-in is the same model
    assert [t["name"] for t in results["targets"]] == [t.name for t in TARGETS]
    markdown = (tmp_path / "BENCH.md").read_text()
    assert "## Targets" in markdown and "| pipeline (multi-process) | 72 |" in markdown


def test_regenerated_benchmarks_keep_sections_other_tools_wrote():
    from benchmarks.markdown import merge_markdown

    old = "# Benchmarks\nold intro\n\n## Targets\nold figures\n\n## Label stability (issue 6)\nflicker table\n"
    new = "# Benchmarks\nnew intro\n\n## Targets\nnew figures\n"
    merged = merge_markdown(new, old)
    assert "new figures" in merged and "old figures" not in merged and "old intro" not in merged
    assert merged.endswith("## Label stability (issue 6)\nflicker table")


def test_a_clip_whose_stream_cannot_be_copied_is_looped_by_reencoding(tmp_path):
    from benchmarks.group_clip import write_group_clip

    clip = write_group_clip(tmp_path / "group.mp4", frames=12)  # mp4v: its packets do not survive a copy
    video = bench_video(clip, 2, tmp_path)
    assert video.frames == 24 and video.path.is_file()
    assert decodable_frames(video.path) == 24


def test_checkouts_compares_two_checkouts_run_for_run(data, tmp_path, capsys):
    from benchmarks.checkouts import main as checkouts

    assert checkouts([str(ROOT), str(ROOT), "--source", str(data / "single_face.mp4"), "--loop", "2",
                      "--rounds", "1", "--json", str(tmp_path / "runs.json")]) == 0
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"][str(ROOT)]
    assert len(runs) == 2  # the same folder twice: one entry, both runs in it
    for run in runs:  # the clip twice: every frame has its face; start-up is left out of the CPU a frame
        assert run["frames"] == 144 and run["frames_with_boxes"] == 144
        assert run["cpu_ms_per_frame"] < 1000.0 * run["cpu_s"] / run["frames"]
    assert f"{ROOT}" in capsys.readouterr().out


def test_checkouts_refuses_a_missing_checkout(data, tmp_path, capsys):
    from benchmarks.checkouts import main as checkouts

    assert checkouts([str(tmp_path / "nowhere"), "--source", str(data / "single_face.mp4")]) == 2
    assert capsys.readouterr().err.startswith("error: not found:")


def test_batch_benchmark_tells_ray_workers_from_its_services():
    """The raylet's command line names the workers' script; it is a service, and a starting worker is a worker."""
    from benchmarks.batch import identify

    titles = {"/x/ray/core/src/ray/raylet/raylet --python_worker_command=/x/ray/_private/workers/default_worker.py":
              ("Ray services", "raylet"),
              "/x/python /x/ray/_private/workers/default_worker.py --node-ip-address=127.0.0.1": ("Ray workers", "worker"),
              "/x/python -u /x/ray/_private/log_monitor.py --session-dir=/tmp/s": ("Ray services", "log monitor"),
              "/x/python -c pass": ("children", "children")}
    sleeper = "import sys, time; time.sleep(30)"
    children = {title: subprocess.Popen([sys.executable, "-c", sleeper, *title.split()]) for title in titles}
    try:
        import psutil

        for title, child in children.items():
            assert identify(psutil.Process(child.pid), os.getpid()) == titles[title], title
        assert identify(psutil.Process(os.getpid()), os.getpid()) == ("command", "command")
    finally:
        for child in children.values():
            child.kill()
            child.wait()


def test_batch_benchmark_counts_a_commands_cpu_and_its_own_sampling_apart():
    """A command that burns ~1.5 CPU s is credited with it; the benchmark's own sampling is reported apart."""
    from benchmarks.batch import monitored

    burn = "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\ntime.sleep(0.6)"
    done, report, wall = monitored([sys.executable, "-c", burn], interval_s=0.25)
    assert done.returncode == 0
    assert 1.2 <= report["cpu_s_by_role"]["command"] <= 1.5 + 0.3, report["cpu_s_by_role"]
    assert 0.0 <= report["monitor_cpu_s"] < report["cpu_s_by_role"]["command"], report["monitor_cpu_s"]
    assert wall >= 1.5
