"""Web view: the running pipeline in a browser (MJPEG video, Server-Sent Events, JSON) on the standard library."""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import re
import socket
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge.capture import Source
from edge.config import ServeConfig
from edge.outputs import Context, Option, Outputs
from edge.render import FpsMeter
from edge.results import STAGES, FrameResult

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
PAGE = Path(__file__).with_name("static") / "index.html"
REQUEST_TIMEOUT_S = 5.0  # a client gets this long from connecting to the end of its request's headers (slowloris)
MAX_CONNECTIONS = 64  # connections served at once (one thread each); more are closed at once
REAPER_INTERVAL_S = 0.25  # how often connections past their request deadline are looked for
KEEPALIVE_S = 2.0  # an idle stream sends something this often, so a closed tab is noticed
EVENT_INTERVAL_S = 0.1  # each event stream sends at most one event per this many seconds
HISTORY_S = 60.0  # the emotion chart's span
HISTORY_INTERVAL_S = 0.25  # one chart sample per this many seconds
LATENCY_FRAMES = 30  # stage latencies shown are medians over this many recent frames
CLOSE_WAIT_S = 1.0  # at the end, streams get this long to send their closing event
MAX_STREAMS = 32  # open video and event streams at once; more get 503
VIDEO_SEND_BUFFER = 128 * 1024  # bytes the kernel may hold for one viewer: a stalled one blocks within a few frames
EVENT_SEND_BUFFER = 16 * 1024  # ... and for one event stream (an event is about 1 KB)
HOST_HEADER = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]*))(?::\d{1,5})?")  # host[:port], [v6][:port]
BOUNDARY = b"frame"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'")


class ServeError(ValueError):
    """The --serve address is malformed or cannot be bound."""


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' (host 127.0.0.1); an IPv6 host goes in brackets, '[::1]:8080'."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ServeError(f"--serve: write an IPv6 host in brackets, e.g. [::1]:8080, got {text!r}")
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ServeError(f"--serve must be HOST:PORT with a port from 0 to 65535, got {text!r}")
    return host or DEFAULT_HOST, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header, without its port or IPv6 brackets; "" when the header is not host[:port].

    Strict, because the DNS-rebinding check trusts it: "[::1].evil.example.com" is no host.
    """
    match = HOST_HEADER.fullmatch(header.strip().lower())
    if match is None:
        return ""
    return match["ipv6"] or match["name"] or ""


class Broadcast:
    """The newest annotated frame, its JPEG and its faces, shared by the pipeline and every client.

    The pipeline only replaces the newest frame and notifies. Each client thread remembers the
    number of the last item it sent and waits for a newer one, so a slow client skips what it
    missed and nothing ever waits for a client. A frame is JPEG-encoded only while some
    client is waiting for one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._frame_seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._faces: dict | None = None
        self._faces_seq = 0
        self._wanting = 0  # clients waiting for a newer JPEG
        self.streams = {"video": 0, "events": 0}  # open streams of each kind
        self.closed = False

    def publish(self, frame: np.ndarray, faces: dict) -> None:
        with self._cond:
            self._frame, self._faces = frame, faces
            self._frame_seq += 1
            self._faces_seq += 1
            if not self._wanting:  # an unwatched JPEG goes stale; the next viewer gets a fresh one
                self._jpeg = None
            self._cond.notify_all()

    def touch(self) -> None:
        """The faces did not change but the status did (the run ended): event streams send again."""
        with self._cond:
            self._faces_seq += 1
            self._cond.notify_all()

    @property
    def faces(self) -> dict | None:
        return self._faces

    def frame_to_encode(self, timeout: float) -> tuple[int, np.ndarray] | None:
        """For the encoder: the newest frame, once a client waits for one newer than the last JPEG."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._wanting > 0 and self._frame_seq > self._jpeg_seq),
                                timeout)
            if self.closed or not self._wanting or self._frame_seq <= self._jpeg_seq:
                return None
            return self._frame_seq, self._frame

    def newest(self) -> tuple[np.ndarray | None, bytes | None]:
        """The newest frame, and its JPEG if one is encoded already (None, None before the first frame)."""
        with self._cond:
            current = self._jpeg if self._jpeg is not None and self._jpeg_seq == self._frame_seq else None
            return self._frame, current

    def put_jpeg(self, seq: int, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg, self._jpeg_seq = jpeg, seq
            self._cond.notify_all()

    def next_jpeg(self, seen: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest JPEG once there is one newer than ``seen``; None on timeout or close."""
        with self._cond:
            self._wanting += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self.closed or (self._jpeg is not None and self._jpeg_seq > seen), timeout)
            finally:
                self._wanting -= 1
            if self.closed or self._jpeg is None or self._jpeg_seq <= seen:
                return None
            return self._jpeg_seq, self._jpeg

    def next_faces(self, seen: int, timeout: float) -> int | None:
        """The number of the newest faces once newer than ``seen``; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._faces_seq > seen, timeout)
            if self.closed or self._faces_seq <= seen:
                return None
            return self._faces_seq

    @contextmanager
    def stream(self, kind: str) -> Iterator[bool]:
        """Counts an open stream of a kind; yields False when MAX_STREAMS are already open."""
        with self._cond:
            admitted = sum(self.streams.values()) < MAX_STREAMS
            self.streams[kind] += admitted
        try:
            yield admitted
        finally:
            with self._cond:
                self.streams[kind] -= admitted
                self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """End every stream; wait up to ``timeout`` s for their last words (a stalled client gets none)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not any(self.streams.values()), timeout)


def mean_probs(faces: dict) -> list[float] | None:
    """One chart sample: the (smoothed, where smoothed) probabilities averaged over the faces; None without one."""
    if not faces["faces"]:
        return None
    rows = [list(face.get("smoothed", face["probs"]).values()) for face in faces["faces"]]
    return [round(sum(column) / len(rows), 3) for column in zip(*rows)]


class WebView:
    """Serves the pipeline's newest frame and results to any number of browsers and scripts."""

    options = (Option("--serve", "serve", "watch in a browser at http://HOST:PORT/ (127.0.0.1 unless another host "
                      "is given)", type=str, metavar="HOST:PORT"),
               Option("--serve-linger", "linger",
                      "with --serve: after the source ends, keep serving its last frame until Ctrl-C"))

    @classmethod
    def build(cls, outputs: Outputs, context: Context) -> WebView | None:
        if not outputs.serve:
            return None
        view = cls(outputs.serve, context.config.serve, context.labels, context.config.render.fps_window_s)
        context.say(f"web view on {view.url}")
        return view

    def __init__(self, address: str, config: ServeConfig, labels: tuple[str, ...], fps_window_s: float) -> None:
        host, port = parse_address(address)
        self.config = config
        self.labels = labels
        self.broadcast = Broadcast()
        self.page = PAGE.read_bytes()
        self.fps = FpsMeter(fps_window_s)
        self.latencies: collections.deque[dict[str, float]] = collections.deque(maxlen=LATENCY_FRAMES)
        self.history: collections.deque[tuple[float, list[float] | None]] = collections.deque(
            maxlen=int(HISTORY_S / HISTORY_INTERVAL_S))
        self.lock = threading.Lock()  # the statistics above, between the pipeline and client threads
        self.started = time.perf_counter()
        self.frames = 0
        self.jpegs = 0  # frames encoded for viewers
        self.dropped = 0
        self.running = True
        self.source: dict[str, Any] = {}
        self.previous: FrameResult | None = None
        self.server = make_server(host, port, self)
        self.loopback = is_loopback(self.server.server_address[0])
        if not self.loopback:
            log.warning("web view on %s: anyone who can reach this address can watch the video", self.url)
        self.threads = [threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                         name="serve", daemon=True),
                        threading.Thread(target=self._encode_loop, name="serve-encoder", daemon=True)]
        for thread in self.threads:
            thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def uptime(self) -> float:
        return time.perf_counter() - self.started

    def open(self, source: Source, paced: bool) -> None:
        self.source = {"name": source.name, "live": source.live, "fps": round(source.fps, 2), "paced": paced}

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """After rendering: the annotated frame and its faces (the frame's event) become the newest for every client."""
        faces = result.record()
        now = self.uptime()
        with self.lock:
            self.fps.tick()
            self.frames += 1
            self.dropped = result.dropped
            if self.previous is not None:  # a frame's render and total spans end after this call returns
                self.latencies.append(self.previous.latencies_ms())
            self.previous = result
            if not self.history or now - self.history[-1][0] >= HISTORY_INTERVAL_S:
                self.history.append((round(now, 2), mean_probs(faces)))
        self.broadcast.publish(frame.copy(), faces)  # the frame's slot is reused once we return

    def finish(self) -> None:
        """The run ended: the status says so; the last frame and faces stay until close."""
        with self.lock:
            self.running = False
            if self.previous is not None:
                self.latencies.append(self.previous.latencies_ms())
                self.previous = None
        self.broadcast.touch()

    def status(self) -> dict[str, Any]:
        """What /api/status and every event carry: source, fps, frames, drops, median stage latencies (ms)."""
        with self.lock:
            recent = list(self.latencies)
            status = {"running": self.running, "source": self.source, "fps": round(self.fps.fps, 2),
                      "frames": self.frames, "jpegs": self.jpegs, "dropped": self.dropped}
        status["latency_ms"] = {stage: round(statistics.median(values), 2) for stage in STAGES
                                if (values := [r[stage] for r in recent if stage in r])}
        status.update(streams=dict(self.broadcast.streams), uptime_s=round(self.uptime(), 2), labels=list(self.labels))
        return status

    def faces(self) -> dict[str, Any]:
        return self.broadcast.faces or {"frame": None, "seq": None, "t": None, "faces": []}

    def chart(self) -> dict[str, Any]:
        """The emotion chart of the last minute: [uptime s, mean probabilities or None] samples."""
        with self.lock:
            samples = [[t, probs] for t, probs in self.history]
        return {"labels": list(self.labels), "span_s": HISTORY_S, "samples": samples}

    def event(self) -> dict[str, Any]:
        return {"status": self.status(), "faces": self.faces()}

    def snapshot(self) -> bytes | None:
        """The newest annotated frame as one JPEG (the viewers' own if it is encoded already); None before the first."""
        frame, jpeg = self.broadcast.newest()
        if jpeg is not None or frame is None:
            return jpeg
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        with self.lock:
            self.jpegs += 1
        return encoded.tobytes() if ok else None

    def _encode_loop(self) -> None:
        """Encode the newest frame when a viewer waits for one, at most stream_fps times a second."""
        interval = 1.0 / self.config.stream_fps if self.config.stream_fps > 0 else 0.0
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        while not self.broadcast.closed:
            item = self.broadcast.frame_to_encode(timeout=0.5)
            if item is None:
                continue
            started = time.perf_counter()
            ok, jpeg = cv2.imencode(".jpg", item[1], params)
            with self.lock:
                self.jpegs += 1
            if ok:
                self.broadcast.put_jpeg(item[0], jpeg.tobytes())
            else:
                log.warning("could not encode frame %d as JPEG", item[0])
            rest = interval - (time.perf_counter() - started)
            if rest > 0:
                time.sleep(rest)

    def linger(self, stop: threading.Event) -> None:
        """Keep serving the last frame and status until ``stop`` is set (by a stop signal)."""
        while not stop.wait(0.5):
            pass

    def close(self) -> None:
        """End every stream and stop serving."""
        self.broadcast.close(timeout=CLOSE_WAIT_S)
        self.server.shutdown()
        self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=2.0)


class ViewServer(ThreadingHTTPServer):
    """One thread per client, at most MAX_CONNECTIONS; each has REQUEST_TIMEOUT_S to send its request.

    Handler threads never keep the process alive. A client that trickles its request (slowloris)
    or sends none is cut off by the reaper thread at its deadline, whatever it sends meanwhile.
    """

    daemon_threads = True
    request_queue_size = 2 * MAX_CONNECTIONS  # socketserver's 5 drops the SYNs of viewers that connect at once
    view: WebView

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.deadlines: dict[socket.socket, float] = {}  # connections still sending their request
        self.closing = threading.Event()
        super().__init__(address, handler)  # binds: OSError when it cannot (server_close is called then)

    def server_activate(self) -> None:
        super().server_activate()
        threading.Thread(target=self._reap, name="serve-reaper", daemon=True).start()

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            if self.connections >= MAX_CONNECTIONS:
                log.debug("refused %s: %d connections open", client_address[0], self.connections)
                self.shutdown_request(request)
                return
            self.connections += 1
            self.deadlines[request] = time.monotonic() + REQUEST_TIMEOUT_S
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections -= 1
                self.deadlines.pop(request, None)

    def request_read(self, request: socket.socket) -> bool:
        """The request's headers are in: its connection is off the reaper's list. False if it was cut off."""
        with self.lock:
            return self.deadlines.pop(request, None) is not None

    def _reap(self) -> None:
        while not self.closing.wait(REAPER_INTERVAL_S):
            now = time.monotonic()
            with self.lock:
                late = [sock for sock, deadline in self.deadlines.items() if now > deadline]
                for sock in late:
                    del self.deadlines[sock]
            for sock in late:  # the handler's blocked read returns; it then ends the connection
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # the client's connection failed: not the run's problem
            log.debug("request from %s failed", client_address[0], exc_info=True)
        else:
            log.exception("request from %s failed", client_address[0])


class ViewServer6(ViewServer):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, view: WebView) -> ViewServer:
    server_class = ViewServer6 if ":" in host else ViewServer
    try:
        server = server_class((host, port), Handler)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ServeError(f"cannot serve on {host}:{port}: {reason}") from None
    server.view = view
    return server


class Handler(BaseHTTPRequestHandler):
    """The page, its two streams and the JSON endpoints; 404 for anything else."""

    server: ViewServer
    timeout = REQUEST_TIMEOUT_S  # each read; the reaper bounds the whole request
    server_version = "fer-edge"
    sys_version = ""

    @property
    def view(self) -> WebView:
        return self.server.view

    def routes(self) -> dict[str, Callable[[], None]]:
        return {
            "/": lambda: self.send_body(200, "text/html; charset=utf-8", self.view.page,
                                        {"Content-Security-Policy": PAGE_POLICY}),
            "/stream.mjpg": self.send_video,
            "/events": self.send_events,
            "/api/status": lambda: self.send_json(self.view.status()),
            "/api/faces": lambda: self.send_json(self.view.faces()),
            "/api/history": lambda: self.send_json(self.view.chart()),
            "/snapshot.jpg": self.send_snapshot,
        }

    def do_GET(self) -> None:
        if not self.server.request_read(self.connection):
            self.close_connection = True  # cut off at its deadline: what came is no request
            return
        self.connection.settimeout(self.view.config.send_timeout_s)  # from now on only writes wait on the client
        try:
            self.answer()
        except (ConnectionError, TimeoutError) as exc:
            log.debug("client %s left: %s", self.client_address[0], exc)
            self.close_connection = True

    def answer(self) -> None:
        if self.view.loopback and not is_loopback(host_name(self.headers.get("Host", ""))):
            self.send_json({"error": "this server answers only to localhost"}, 403)  # no DNS rebinding
            return
        route = self.routes().get(urlsplit(self.path).path)
        if route is None:
            self.send_json({"error": f"not found: {urlsplit(self.path).path}"}, 404)
            return
        route()

    def start(self, code: int, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)

    def send_body(self, code: int, content_type: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.start(code, content_type, extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, data: Any, code: int = 200) -> None:
        self.send_body(code, "application/json", json.dumps(data).encode())

    def send_snapshot(self) -> None:
        """The newest annotated frame as one JPEG, for scripts, home automation and NVRs; 503 before the first."""
        jpeg = self.view.snapshot()
        if jpeg is None:
            self.send_body(503, "application/json", json.dumps({"error": "no frame yet: the run has not shown its "
                                                                "first frame (try again shortly)"}).encode(),
                           {"Retry-After": "1"})
            return
        self.send_body(200, "image/jpeg", jpeg)

    @contextmanager
    def streaming(self, kind: str, send_buffer: int, content_type: str, first: bytes) -> Iterator[bool]:
        """One more stream of ``kind`` while the block runs: its response started with ``first`` and the
        socket's send buffer set; False (after a 503) when the streams of that kind are all taken."""
        with self.view.broadcast.stream(kind) as admitted:
            if not admitted:
                self.send_json({"error": "too many streams"}, 503)
                yield False
                return
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            self.start(200, content_type)
            self.end_headers()
            self.wfile.write(first)
            yield True

    def send_video(self) -> None:
        """MJPEG: one JPEG part per new frame; a slow client skips the frames it missed."""
        # Frames queued in the kernel would only reach a slow viewer late: keep that queue short. A viewer
        # that then takes none of a frame for serve.send_timeout_s is dropped, and its stream slot freed.
        with self.streaming("video", VIDEO_SEND_BUFFER, f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}",
                            b"--" + BOUNDARY + b"\r\n") as admitted:
            if not admitted:
                return
            seen, jpeg = 0, b""
            while not self.view.broadcast.closed:
                item = self.view.broadcast.next_jpeg(seen, timeout=KEEPALIVE_S)
                if item is not None:
                    seen, jpeg = item
                elif self.view.broadcast.closed or not jpeg:
                    continue
                # No new frame (a paused or finished source): sending the last one again finds a client gone.
                # The closing boundary goes right after the image, so a browser shows it at once.
                self.wfile.write(b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                 + jpeg + b"\r\n--" + BOUNDARY + b"\r\n")

    def send_events(self) -> None:
        """Server-Sent Events: status and faces of the newest frame, at most every EVENT_INTERVAL_S."""
        with self.streaming("events", EVENT_SEND_BUFFER, "text/event-stream", b"retry: 2000\n\n") as admitted:
            if not admitted:
                return
            seen = 0
            while True:
                seq = self.view.broadcast.next_faces(seen, timeout=KEEPALIVE_S)
                if self.view.broadcast.closed:
                    self.wfile.write(b"event: end\ndata: " + json.dumps(self.view.event()).encode() + b"\n\n")
                    return
                if seq is None:
                    self.wfile.write(b": keep-alive\n\n")
                    continue
                seen = seq
                self.wfile.write(b"data: " + json.dumps(self.view.event()).encode() + b"\n\n")
                time.sleep(EVENT_INTERVAL_S)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)
