"""A real MJPEG-over-HTTP server on 127.0.0.1 (a classroom camera stand-in that can drop its clients), and frames that
carry their index."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


def frame_of(i: int) -> np.ndarray:
    """Frame i: its index readable back from the brightness of the top-left block (JPEG-safe)."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[:40, :40] = (i * 7) % 256
    return img


def index_of(frame: np.ndarray) -> int:
    return int(round(float(frame[5:35, 5:35].mean()) / 7))


class MjpegServer:
    """Serves frames as multipart/x-mixed-replace JPEGs at `fps`; each connection gets `per_connection` frames and is
    then cut off (a camera dropping out), the next one goes on from there. `refuse` answers new connections 503."""

    def __init__(self, fps: float = 20.0, per_connection: int = 1000, frames: list[np.ndarray] | None = None) -> None:
        self.fps, self.per_connection, self.sent, self.connections, self.refuse = fps, per_connection, 0, 0, False
        self.frames = frames  # played in a loop; None: frame_of(i)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if server.refuse:
                    self.send_error(503)
                    return
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(server.per_connection):
                        frame = server.frames[server.sent % len(server.frames)] if server.frames else \
                            frame_of(server.sent % 36)
                        ok, buf = cv2.imencode(".jpg", frame)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(buf)).encode() + b"\r\n\r\n" + buf.tobytes() + b"\r\n")
                        server.sent += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
