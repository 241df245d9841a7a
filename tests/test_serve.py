"""Web view: address parsing, the shared frame holder, pacing, and every endpoint over real HTTP on localhost."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from edge.serve import Broadcast, ServeError, host_name, is_loopback, parse_address
from tests.conftest import DATA, ROOT, free_port, looped_video, run_cli, shm_segments

STARTUP_TIMEOUT_S = 60.0


# --- helpers shared with tests/test_serve_browser.py -------------------------------------------------

class Served:
    """`python -m edge.run --headless --serve 127.0.0.1:PORT ...` in a child process, as a user starts it."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.port = free_port()
        self.stderr_path = folder / f"stderr_{self.port}.txt"
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.run", "--headless", "--serve", f"127.0.0.1:{self.port}", *args],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            self.wait_until_up()
        except AssertionError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended before serving: {self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the web view did not come up")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, path: str) -> dict:
        status, headers, body = self.get(path)
        assert status == 200 and headers["Content-Type"] == "application/json", (status, body)
        return json.loads(body)

    def wait_for(self, condition, timeout: float = 30.0) -> dict:
        """Poll /api/status until condition(status) holds; return that status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.json("/api/status")
            if condition(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"status never got there: {status}")

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()  # whatever the test found, no run is left behind

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.process.kill()
            self.process.wait()
            assert shm_segments(self.process.pid) == [], "shared memory left behind"


def open_stream(port: int, path: str, receive_buffer: int | None = None) -> tuple[socket.socket, object]:
    """A raw GET on a streaming endpoint; returns the socket and a buffered reader past the headers.
    The connection closes when both are closed (`with sock, reader:`)."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    reader = sock.makefile("rb")
    status_line = reader.readline()
    assert b" 200 " in status_line, status_line
    while reader.readline() not in (b"\r\n", b""):
        pass
    return sock, reader


def read_mjpeg_parts(reader, count: int) -> list[bytes]:
    """Read ``count`` JPEG parts of a multipart/x-mixed-replace stream."""
    parts = []
    assert reader.readline().strip() == b"--frame"
    while len(parts) < count:
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(reader.read(int(headers["content-length"])))
        assert reader.readline() == b"\r\n"
        assert reader.readline().strip() == b"--frame"
    return parts


def read_sse_events(reader, count: int) -> list[tuple[str, dict]]:
    """Read ``count`` Server-Sent Events with data, as (event name, parsed JSON)."""
    events, name, data = [], "message", []
    while len(events) < count:
        line = reader.readline().decode()
        assert line, "the event stream ended"
        line = line.rstrip("\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
    return events


def report_numbers(stderr: str) -> tuple[int, float, float]:
    """Frames, elapsed and time to the first frame from the run's closing line."""
    match = re.search(r"(\d+) frames in ([\d.]+) s .*first frame after ([\d.]+) s", stderr)
    assert match, stderr
    return int(match[1]), float(match[2]), float(match[3])


# --- units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    (":8080", ("127.0.0.1", 8080)),
    ("8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:8080", ("::1", 8080)),
    ("abc", ServeError),
    ("127.0.0.1:99999", ServeError),
    ("127.0.0.1:", ServeError),
    ("::1:8080", ServeError),
    ("host:-1", ServeError),
    ("127.0.0.1:\u00b2", ServeError),  # a digit to str.isdigit, not to int()
])
def test_parse_address(text, expected):
    if expected is ServeError:
        with pytest.raises(ServeError, match="--serve"):
            parse_address(text)
    else:
        assert parse_address(text) == expected


@pytest.mark.parametrize("header, loopback", [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("LOCALHOST", True), ("[::1]:8080", True),
    ("127.0.0.2", True), ("evil.example:8080", False), ("192.168.1.5:8080", False), ("", False),
    ("[::1].evil.example.com", False), ("[::1]evil.example.com:80", False), ("[::1", False),
    ("127.0.0.1.evil.example.com", False), ("localhost.evil.example.com", False), ("localhost:80:80", False),
    ("127.0.0.1:8080/x", False),
])
def test_only_loopback_host_headers_count_as_local(header, loopback):
    assert is_loopback(host_name(header)) is loopback


def test_nothing_is_encoded_while_nobody_waits_and_a_slow_client_skips_frames():
    broadcast = Broadcast()
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(5)]
    for i, frame in enumerate(frames[:3]):
        broadcast.publish(frame, {"seq": i})
    assert broadcast.frame_to_encode(timeout=0.05) is None  # nobody watching: no encoding
    got: list = []
    client = threading.Thread(target=lambda: got.append(broadcast.next_jpeg(0, timeout=5)))
    client.start()
    item = None
    while item is None:
        item = broadcast.frame_to_encode(timeout=1)
    seq, frame = item
    assert seq == 3 and frame is frames[2]  # only the newest frame is encoded; the rest are skipped
    broadcast.put_jpeg(seq, b"jpeg-3")
    client.join(timeout=5)
    assert got == [(3, b"jpeg-3")]
    broadcast.publish(frames[3], {"seq": 3})  # nobody waits now: the held JPEG goes stale
    assert broadcast.frame_to_encode(timeout=0.05) is None
    broadcast.close(timeout=1)
    assert broadcast.next_jpeg(3, timeout=5) is None


# --- the CLI over real HTTP ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def served(media):
    """One run on a 34 s looped clip (paced at 30 fps) that the endpoint tests share."""
    with Served(media, "--source", str(looped_video(media, 14)), "--serve-linger") as run:
        run.wait_for(lambda s: s["frames"] > 10)
        yield run
        assert run.stop(signal.SIGINT) == 130, run.stderr()
    assert "Traceback" not in run.stderr()


def test_page_is_self_contained(served):
    status, headers, body = served.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "stream.mjpg" in page and "EventSource" in page and "<canvas" in page
    assert "http://" not in page and "https://" not in page  # no CDN: nothing outside can be reached
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_status_reports_the_pipeline(served):
    status = served.wait_for(lambda s: "total" in s["latency_ms"] and s["fps"] > 0)
    assert status["running"] is True
    assert status["source"] == {"name": str(media_path(served)), "live": False, "fps": 30.0, "paced": True}
    assert status["frames"] > 10 and status["dropped"] == 0
    assert set(status["latency_ms"]) >= {"capture", "detect", "classify", "render", "total"}
    # Paced at its own 30 fps, a file never runs ahead of its clock (started before the first frame was
    # read): what the code controls, whatever the machine's load (its measured rate is the machine's).
    assert status["frames"] <= 30 * (status["uptime_s"] + 0.01) + 1
    assert status["labels"][3] == "happy"


def media_path(served: Served) -> str:
    args = served.process.args
    return args[args.index("--source") + 1]


def test_faces_are_the_latest_frame(served):
    first = served.json("/api/faces")
    deadline = time.monotonic() + 30
    while (later := served.json("/api/faces"))["frame"] == first["frame"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert later["frame"] > first["frame"]
    assert len(later["faces"]) == 1
    face = later["faces"][0]
    assert face["label"] in set(face["probs"]) | {"uncertain"}
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=0.03)


def test_history_holds_chart_samples(served):
    history = served.json("/api/history")
    assert history["span_s"] == 60 and len(history["labels"]) == 7
    t, probs = history["samples"][-1]
    assert t > 0 and len(probs) == 7


def test_snapshot_is_the_newest_annotated_frame(served):
    status, headers, body = served.get("/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and int(headers["Content-Length"]) == len(body)
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)
    frame = served.json("/api/faces")["frame"]
    deadline = time.monotonic() + 30
    while served.json("/api/faces")["frame"] == frame and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.get("/snapshot.jpg")[2] != body  # a newer frame, a new picture
    status, _, _ = served.get("/snapshot.jpg", headers={"Host": "evil.example:8080"})
    assert status == 403


def test_snapshot_before_the_first_frame_is_503_then_the_frame(tmp_path):
    """In-process: the view before any frame, then with one (its pixels, JPEG-close, the annotated frame's)."""
    from types import SimpleNamespace

    from edge.config import ServeConfig
    from edge.results import Faces, FrameResult
    from edge.serve import WebView

    view = WebView("127.0.0.1:0", ServeConfig(), ("a", "b"), 1.0)
    try:
        port = view.server.server_address[1]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/snapshot.jpg")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
        assert response.getheader("Content-Type") == "application/json"
        assert "no frame yet" in json.loads(body)["error"]
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[10:30, 20:50] = (0, 220, 0)
        result = FrameResult(seq=0, index=0, timestamp=0.0, faces=Faces.empty(("a", "b")))
        source = SimpleNamespace(name="test", live=False, fps=30.0)
        view.open(source, False)
        view.write(frame, result)
        connection.request("GET", "/snapshot.jpg")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == frame.shape and np.abs(image.astype(int) - frame).mean() < 3
        assert view.status()["jpegs"] == 1
        connection.close()
    finally:
        view.close()


def test_snapshot_of_a_run_whose_source_has_not_opened_is_503(tmp_path):
    """A FIFO nobody writes to: the web view is up, the source never opens, no frame ever comes."""
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    with Served(tmp_path, "--source", str(fifo)) as run:
        status, headers, body = run.get("/snapshot.jpg")
        assert status == 503 and "no frame yet" in json.loads(body)["error"]
        assert run.json("/api/status")["frames"] == 0
        assert run.stop(signal.SIGINT) == 130
    assert "Traceback" not in run.stderr()


def test_video_stream_sends_new_jpeg_frames(served):
    sock, reader = open_stream(served.port, "/stream.mjpg")
    with sock, reader:
        parts = read_mjpeg_parts(reader, 4)
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(image.shape == (360, 640, 3) for image in images)
    assert len({p for p in parts}) == 4  # every part is a newer frame


def test_event_stream_sends_status_and_faces(served):
    sock, reader = open_stream(served.port, "/events")
    with sock, reader:
        events = read_sse_events(reader, 3)
    assert all(name == "message" for name, _ in events)
    frames = [data["faces"]["frame"] for _, data in events]
    assert frames == sorted(frames) and frames[-1] > frames[0]
    assert events[-1][1]["status"]["streams"]["events"] >= 1


@pytest.mark.parametrize("path", ["/nope", "/static/index.html", "/../../etc/passwd", "/api", "/api/status/x",
                                  "/favicon.ico"])
def test_other_paths_are_404(served, path):
    status, _, body = served.get(path)
    assert status == 404 and "not found" in json.loads(body)["error"]


def test_foreign_host_header_is_refused(served):
    status, _, _ = served.get("/api/status", headers={"Host": "evil.example:8080"})
    assert status == 403  # a page on another site cannot read the camera through DNS rebinding


def test_many_viewers_share_one_pipeline_and_one_may_leave_mid_stream(served):
    received: list[int] = []

    def viewer() -> None:
        sock, reader = open_stream(served.port, "/stream.mjpg")
        with sock, reader:
            received.append(len(read_mjpeg_parts(reader, 3)))

    leaver, leaver_reader = open_stream(served.port, "/stream.mjpg")
    with leaver, leaver_reader:
        leaver_reader.read(1000)  # and gone in the middle of a JPEG part
    viewers = [threading.Thread(target=viewer) for _ in range(6)]
    for thread in viewers:
        thread.start()
    for thread in viewers:
        thread.join(timeout=30)
    assert received == [3] * 6
    status = served.json("/api/status")
    assert status["running"] and status["dropped"] == 0


def test_another_run_reads_the_video_stream_live_as_a_network_source(served, media):
    """The stream path end to end: an http:// source (this run's MJPEG), read live, stopped by SIGTERM."""
    events, video = media / "stream.jsonl", media / "stream.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    viewer = subprocess.Popen(
        [sys.executable, "-m", "edge.run", "--source", f"{served.url}/stream.mjpg", "--headless",
         "--events", str(events), "--output", str(video)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and viewer.poll() is None:
            if events.exists() and len(events.read_text().splitlines()) >= 45:
                break
            time.sleep(0.1)
        viewer.send_signal(signal.SIGTERM)
        _, stderr = viewer.communicate(timeout=30)
    finally:
        viewer.kill()
    assert viewer.returncode == 143, stderr
    assert shm_segments(viewer.pid) == [] and "Traceback" not in stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(records) >= 45
    assert sum(len(r["faces"]) == 1 for r in records) >= 0.9 * len(records)
    assert [r["seq"] for r in records] == list(range(len(records)))
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)
    assert capture.read()[1].shape == (360, 640, 3)


def test_file_run_ends_at_end_of_file_paced(media):
    with Served(media, "--source", str(DATA / "single_face.mp4")) as run:
        assert run.process.wait(timeout=60) == 0, run.stderr()
    frames, elapsed, first = report_numbers(run.stderr())
    assert frames == 72
    assert elapsed >= 71 / 30  # paced: the last of 72 frames at 30 fps is read 2.37 s after the first, or later
    assert "web view on http://127.0.0.1:" in run.stderr() and "Traceback" not in run.stderr()


def test_linger_keeps_serving_the_last_frame_until_terminated(media):
    with Served(media, "--source", str(DATA / "single_face.mp4"), "--serve-linger") as run:
        status = run.wait_for(lambda s: not s["running"], timeout=60)
        assert status["frames"] == 72
        assert run.json("/api/faces")["frame"] == 71
        sock, reader = open_stream(run.port, "/stream.mjpg")
        with sock, reader:
            (part,) = read_mjpeg_parts(reader, 1)
        assert cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
        run.wait_for(lambda s: s["streams"]["video"] == 0, timeout=15)  # a viewer gone, no new frame: noticed
        assert run.stop(signal.SIGTERM) == 143
    assert "still serving" in run.stderr() and "Traceback" not in run.stderr()


def test_live_sources_are_not_paced(media):
    with Served(media, "--source", str(DATA / "single_face.mp4"), "--live", "yes", "--serve-linger") as run:
        status = run.wait_for(lambda s: not s["running"], timeout=60)
        assert status["source"]["live"] is True and status["source"]["paced"] is False
        assert run.stop(signal.SIGINT) == 130


@pytest.mark.parametrize("address, message", [
    ("nonsense", "--serve must be HOST:PORT"),
    ("127.0.0.1:70000", "--serve must be HOST:PORT"),
    ("203.0.113.7:8080", "cannot serve on 203.0.113.7:8080"),  # not an address of this machine
])
def test_bad_serve_address_is_a_one_line_error(address, message):
    result = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--serve", address, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--serve", f"127.0.0.1:{port}",
                         timeout=60)
    assert result.returncode == 2 and "cannot serve on 127.0.0.1" in result.stderr, result.stderr


def test_other_address_than_loopback_warns(media):
    with Served(media, "--source", str(DATA / "single_face.jpg")) as run:  # loopback: no warning
        run.process.wait(timeout=60)
    assert "anyone who can reach" not in run.stderr()
    result = run_cli("--source", str(DATA / "single_face.jpg"), "--headless", "--serve", "0.0.0.0:0", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "anyone who can reach this address can watch" in result.stderr


# --- a stalled client never holds up the pipeline ----------------------------------------------------

def test_a_stalled_client_never_holds_up_the_pipeline(media):
    """A client that opens the video stream and never reads: an unpaced run still goes through the whole file
    while it stays connected (a pipeline that waited for it would never get there). How much such a client
    costs in frames/s is a speed figure, for a benchmark, not a test (it depends on the machine's load)."""
    config = media / "unpaced.toml"
    config.write_text("[serve]\npace = false\nsend_timeout_s = 600.0\n")  # (by default it is dropped in 3 s)
    frames = 4 * 72
    with Served(media, "--config", str(config), "--source", str(looped_video(media, 4)), "--serve-linger") as run:
        client, reader = open_stream(run.port, "/stream.mjpg", receive_buffer=4096)
        with client, reader:
            status = run.wait_for(lambda s: not s["running"], timeout=120)
            assert status["frames"] == frames and status["dropped"] == 0
            assert status["streams"]["video"] == 1  # connected, never reading, all along
        assert run.stop(signal.SIGINT) == 130, run.stderr()
    assert "Traceback" not in run.stderr()


# --- a client that stalls, trickles or floods is cut off; it never holds the server ------------------------------

@pytest.fixture(scope="module")
def abused(media):
    """A run of its own for the abusive clients (paced at 30 fps for 72 s): the shared one stays clean."""
    with Served(media, "--source", str(looped_video(media, 30))) as run:
        run.wait_for(lambda s: s["frames"] > 10)
        yield run
    assert "Traceback" not in run.stderr() and "ERROR" not in run.stderr(), run.stderr()


def raw_connection(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (what it sent before is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_a_request_trickled_byte_by_byte_is_cut_off_at_its_deadline(abused):
    from edge.serve import REQUEST_TIMEOUT_S

    sock = raw_connection(abused.port)
    started = time.monotonic()
    sock.sendall(b"GET /api/status HTTP/1.1\r\n")
    cut = False
    with sock:
        while time.monotonic() - started < REQUEST_TIMEOUT_S + 20:
            try:
                sock.sendall(b"X: y\r\n")  # a header line every 0.2 s, never the end of the headers
            except OSError:
                cut = True
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1024) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
            except OSError:
                cut = True
                break
    assert cut and time.monotonic() - started >= REQUEST_TIMEOUT_S - 0.5


def test_stalled_video_readers_free_their_stream_slots_within_the_send_timeout(abused):
    from edge.config import ServeConfig
    from edge.serve import MAX_STREAMS

    stalled = [raw_connection(abused.port, receive_buffer=4096) for _ in range(MAX_STREAMS)]
    try:
        for sock in stalled:  # they ask for the stream and never read a byte of it
            sock.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{abused.port}\r\n\r\n".encode())
        abused.wait_for(lambda s: s["streams"]["video"] == MAX_STREAMS)
        status, _, _ = abused.get("/stream.mjpg")
        assert status == 503  # every slot is taken ...
        started = time.monotonic()
        abused.wait_for(lambda s: s["streams"]["video"] == 0, timeout=ServeConfig().send_timeout_s + 30)
        freed_after = time.monotonic() - started  # ... until the send timeout drops the readers that take nothing
        viewer, reader = open_stream(abused.port, "/stream.mjpg")
        with viewer, reader:
            assert len(read_mjpeg_parts(reader, 2)) == 2  # a new viewer gets the video
    finally:
        for sock in stalled:
            sock.close()
    print(f"\n{MAX_STREAMS} stalled readers dropped {freed_after:.1f} s after the slots were full")


def test_connections_are_bounded_and_idle_ones_are_closed(abused):
    from edge.serve import MAX_CONNECTIONS

    threads_before = psutil.Process(abused.process.pid).num_threads()
    idle = [raw_connection(abused.port) for _ in range(MAX_CONNECTIONS + 40)]  # connect, send nothing
    try:
        time.sleep(1.0)
        threads = psutil.Process(abused.process.pid).num_threads()
        assert threads <= threads_before + MAX_CONNECTIONS  # one thread per connection served, no more
        assert all(closed_by_server(sock) for sock in idle)  # each cut off at its request deadline, or at once
        assert abused.json("/api/status")["running"]  # and the server still answers
    finally:
        for sock in idle:
            sock.close()
