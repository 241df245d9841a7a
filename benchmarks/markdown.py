"""BENCHMARKS.md: the method, the exact command and machine, and the figures of one benchmarks/fps.py run."""

from __future__ import annotations

from typing import Any

from benchmarks.report import fmt, summary_lines, targets_table, text_report

METHOD = """\
## How the figures are measured

- **Variants**, all on the same file, each doing what `python -m edge.run --source FILE --headless
  --output out.mp4 --events out.jsonl` does per frame (the CLI's own `Presenter`: tracking,
  smoothing, drawing, the video and JSON Lines sinks):
  - *decode only*: the capture stage's `VideoSource.read` into one reused buffer: the ceiling.
  - *sequential, seeds' Haar*: one process, like the seeds' loop: read, `detectMultiScale(gray, 1.3, 5)`
    on the full frame, every face through the same TFLite model (`edge.classify.Classifier`), draw, write.
    OpenCV keeps its default thread count, as the seeds did.
  - *sequential, pipeline's detector*: the same loop with the pipeline's own detector (`make_detector`) and
    config (tracking, sliced full scans): the fair baseline for the multi-process design.
  - *pipeline*: `edge.pipeline.Pipeline` with its detector and classifier processes.
- **frames/s** is steady state: frames finished after the warm-up frames over the time since
  the warm-up ended. **wall f/s** counts every frame over the whole run, start-up included.
  The pipeline runs `--repeats` passes (3 by default) and the median pass is reported, every
  pass's frames/s listed under the table: the shared host's own speed drifts within minutes.
- **Latency** is per frame, `FrameResult.latencies_ms()`: capture (decode, or waiting for a
  live frame), queue (captured to detector start), detect, classify, render, and total
  (captured to rendered). Warm-up frames are left out; p50/p95/p99 interpolate between ranks.
  In file mode the reader fills the whole frame ring ahead (lossless backpressure), so
  *queue* and *total* there measure the ring's depth, not responsiveness: the live replay does.
- **Recall**: frames where the variant finds at least one face, over the frames where a
  full-resolution Haar scan (scale 1.1, `min_neighbors` from the config, min size 24 px)
  does, on the same frames. **Face recall**: the reference's faces the variant boxes too (one
  box per face, IoU >= 0.4), which also counts every face of a frame with several.
- **CPU and memory**: every process of the run (main, detector, classifier, multiprocessing's
  resource tracker), CPU every 0.1 s and PSS every 0.3 s from a thread in the main process
  (psutil; RSS where PSS is not available). CPU % is of one core. *others' CPU %* is what the
  rest of the machine used meanwhile: on a shared machine a variant is re-measured (`--tries`)
  and the least disturbed run kept; anything above ~10 % skews the figures.
- **Start-up**: fresh `python -m edge.run` processes, timed from launch (before the interpreter
  starts) to the first frame drawn and written; the median of three.
- **Live**: the file replayed as a camera at its own frame rate (a paced `VideoSource` that
  sleeps until each frame is due and skips frames the reader came too late for), with
  `capture.live = yes`; drops are the pipeline's plus the source's.
- **Classifier alone**: per-face latency, one crop per call as in the pipeline, on real face
  crops cut from the clip by the pipeline's detector; float32 reference converted from the
  Keras model with `python -m convert --quant none`.
- A looped clip is a stream copy of the original (no re-encoding): decoding costs the same and
  every frame is bit-identical to the original's.
"""


def machine_lines(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    return [f"- date: {meta['date']}",
            f"- command: `{meta['command']}`",
            f"- machine: {meta['cpu_model']}, `nproc` = {meta['cores']}, no GPU; {meta['platform']}",
            f"- software: {versions}",
            f"- runtime commit: {meta['commit']}"
            + (" (`+dirty`: edge/ had uncommitted changes when measured)" if meta["commit"].endswith("+dirty") else ""),
            f"- 1-minute load average at start: {fmt(meta.get('load_1m_at_start'), 2)}"]


def benchmarks_markdown(results: dict[str, Any]) -> str:
    """The whole BENCHMARKS.md for one run's results."""
    meta = results["meta"]
    figures = text_report(results, markdown=True).split("\n")[len(summary_lines(results)):]
    return "\n".join([
        "# Benchmarks",
        "",
        "Written by `benchmarks/fps.py --markdown BENCHMARKS.md`; every figure below comes from the run",
        "described here. The runtime is being optimised: re-run the command to update them.",
        "",
        "## Run",
        "",
        *machine_lines(results),
        "",
        "```",
        meta["command"],
        "```",
        "",
        "## Targets",
        "",
        targets_table(results["targets"], markdown=True),
        "",
        "## Figures",
        "",
        "  \n".join(summary_lines(results)),
        *figures,
        "",
        METHOD,
    ])


def sections(text: str) -> dict[str, str]:
    """'## ' heading -> its section text (the part before the first heading under key '')."""
    parts: dict[str, str] = {}
    heading, lines = "", []
    for line in text.splitlines():
        if line.startswith("## "):
            parts[heading] = "\n".join(lines)
            heading, lines = line, []
        lines.append(line)
    parts[heading] = "\n".join(lines)
    return parts


def merge_markdown(new: str, old: str) -> str:
    """The new figures, followed by every section of the old file that other tools wrote."""
    kept = [text for heading, text in sections(old).items() if heading and heading not in sections(new)]
    return "\n\n".join([new.rstrip("\n"), *(text.strip("\n") for text in kept)])
