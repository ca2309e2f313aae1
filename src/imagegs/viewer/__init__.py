"""The browser viewer: a local page that decodes .igs files itself and renders them with WebGL2.

The page (``index.html`` and the ES modules next to this file, shipped as package data) holds
the whole viewer: ``igs.js`` decodes the file from its bytes (docs/format.md), ``render.js`` draws
it on the GPU, ``app.js`` is the interface. Python only hands it bytes, in one of two ways:

- :class:`ViewerServer` / :func:`serve`: the standard library's HTTP server on 127.0.0.1, which
  answers GET for its own assets and the given files and nothing else (one request at a time,
  a timeout per connection, no directory listing, no path from the URL ever touches the disk);
- :func:`export_page`: one self-contained HTML file, the modules inlined and the files embedded
  in base64, that works from ``file://`` (browsers refuse module imports there).

Python checks only that each file exists, fits the size limit and starts with the .igs magic
number, so that a wrong file is one clear line on the command line; everything else (a corrupt
block, a truncated download) is the page's to report, as a user of the format would see it.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import signal
import threading
import webbrowser
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

__all__ = ["ViewerError", "ViewerServer", "serve", "export_page", "page_html", "MODULES", "MAX_FILE_BYTES",
           "DEFAULT_PORT"]

MODULES = ("igs.js", "render.js", "app.js")  # the page's ES modules, each after those it imports
ASSETS = ("index.html", *MODULES)
MAX_FILE_BYTES = 256 * 2**20  # largest .igs or original image the viewer takes (read into memory)
DEFAULT_PORT = 8765
REQUEST_TIMEOUT = 10.0  # seconds a connection may stay silent before the server drops it
STOP_WAIT = 2.0  # seconds `imagegs view` waits for the server to stop after Ctrl-C
_SCRIPT_TAG = '<script type="module" src="app.js"></script>'
_DATA_MARK = "<!--imagegs-data-->"


class ViewerError(ValueError):
    """A file the viewer cannot take (missing, too large, not an .igs file, unreadable image)."""


@dataclass(frozen=True)
class Item:
    """One file for the page: the name it shows and the bytes it decodes."""

    name: str
    data: bytes


def asset(name: str) -> bytes:
    """The bytes of one of the viewer's own files (package data)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.files(__name__) / name).read_bytes()


def _read_limited(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ViewerError(f"{path}: {what} of {size:,} bytes is over the viewer's limit of "
                              f"{MAX_FILE_BYTES:,} bytes")
        return path.read_bytes()
    except IsADirectoryError:
        raise ViewerError(f"{path}: is a folder, not {what}") from None
    except OSError as e:
        raise ViewerError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def read_igs(path: str | Path) -> Item:
    """An .igs file for the page; refuses a missing, huge or non-.igs file (one line naming it)."""
    from ..igsfile import MAGIC  # here: igsfile imports numba, which `imagegs --help` need not

    path = Path(path)
    data = _read_limited(path, "an .igs file")
    if not data.startswith(MAGIC):
        from ..container import MAGIC as MODEL_MAGIC

        hint = ("; it is a model file (.gsm): make an .igs with 'imagegs encode'"
                if data.startswith(MODEL_MAGIC) else "")
        raise ViewerError(f"{path}: not an .igs file{hint}")
    return Item(path.name, data)


def read_original(path: str | Path) -> Item:
    """The ``--original`` image as an 8-bit PNG the browser can show (any format imagegs reads:
    16-bit, TIFF, stacks; a stack shows its first three channels, grey stays grey)."""
    from PIL import Image as PILImage

    from ..io import ImageReadError, read_image, to_uint8

    path = Path(path)
    _read_limited(path, "an image")  # size and readability first, with the viewer's wording
    try:
        image = read_image(path)
    except ImageReadError as e:
        raise ViewerError(str(e)) from None
    pixels = to_uint8(image.pixels)  # (H, W, C)
    c = pixels.shape[2]
    shown = pixels[:, :, 0] if c < 3 else pixels[:, :, :4 if c == 4 else 3]
    buf = io.BytesIO()
    PILImage.fromarray(shown).save(buf, format="PNG")
    return Item(path.name, buf.getvalue())


def bundle() -> str:
    """The page's modules as one inline module: import lines dropped, ``export`` keywords removed
    (the modules keep their top-level names distinct for this)."""
    parts = []
    for name in MODULES:
        text = asset(name).decode("utf-8")
        text = re.sub(r"^import [^;]*;\s*$", "", text, flags=re.M)
        text = re.sub(r"^export (?=(async )?(function|class|const|let)\b)", "", text, flags=re.M)
        parts.append(f"// ---- {name}\n{text}")
    return "\n".join(parts).replace("</script", "<\\/script")


def page_html(files: list[Item] | None = None, original: Item | None = None) -> str:
    """index.html; with ``files``, the self-contained page (modules inlined, files embedded)."""
    html = asset("index.html").decode("utf-8")
    if files is None:
        return html
    payload = {"files": [{"name": f.name, "data": base64.b64encode(f.data).decode("ascii")} for f in files],
               "original": None if original is None else
               {"name": original.name, "data": base64.b64encode(original.data).decode("ascii")}}
    data = json.dumps(payload).replace("</", "<\\/")
    html = html.replace(_DATA_MARK, f'<script type="application/json" id="imagegs-data">{data}</script>')
    return html.replace(_SCRIPT_TAG, f'<script type="module">\n{bundle()}\n</script>')


def export_page(files: list[str | Path], out: str | Path, *, original: str | Path | None = None) -> Path:
    """Write one self-contained page showing ``files`` (and ``original``) to ``out``; works from file://."""
    from ..io import atomic_write

    items = [read_igs(f) for f in files]
    orig = None if original is None else read_original(original)
    text = page_html(items, orig)
    return atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _manifest(files: list[Item], original: Item | None) -> bytes:
    return json.dumps({"files": [{"name": f.name, "url": f"files/{i}", "bytes": len(f.data)}
                                 for i, f in enumerate(files)],
                       "original": None if original is None else {"name": original.name, "url": "original"}
                       }).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET of the viewer's assets, ``manifest.json``, ``files/<i>`` and ``original``; nothing else."""

    server_version = "imagegs-viewer"
    timeout = REQUEST_TIMEOUT
    routes: ClassVar[dict[str, tuple[bytes, str]]] = {}  # set per server (a subclass per ViewerServer)
    quiet = True

    def do_GET(self) -> None:  # http.server's hook
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):  # DNS rebinding: another site's name for us
            self.send_error(403, "wrong host")
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        route = self.routes.get("index.html" if path == "/" else path.lstrip("/"))
        if route is None:
            self.send_error(404)
            return
        body, kind = route
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_error(405)

    do_POST = do_PUT = do_DELETE = do_HEAD

    def log_message(self, format: str, *args) -> None:  # the base class's names
        if not self.quiet:
            super().log_message(format, *args)


_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class ViewerServer:
    """The viewer on http://127.0.0.1:PORT/ for ``files`` (paths of .igs files) and ``original``.

    ``port=0`` picks a free port. ``start()`` serves from a background thread; ``stop()`` ends it.
    Also a context manager.
    """

    def __init__(self, files: list[str | Path], *, original: str | Path | None = None, port: int = 0,
                 quiet: bool = True):
        if not files:
            raise ViewerError("give at least one .igs file")
        items = [read_igs(f) for f in files]
        orig = None if original is None else read_original(original)
        routes = {name: (asset(name), _TYPES[Path(name).suffix]) for name in ASSETS}
        routes["manifest.json"] = (_manifest(items, orig), "application/json")
        routes.update({f"files/{i}": (f.data, "application/octet-stream") for i, f in enumerate(items)})
        if orig is not None:
            routes["original"] = (orig.data, "image/png")
        handler = type("Handler", (_Handler,), {"routes": routes, "quiet": quiet})
        try:
            self.httpd = http.server.HTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            raise ViewerError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "ViewerServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="imagegs-viewer", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join()
            self.thread = None
        self.httpd.server_close()

    def __enter__(self) -> "ViewerServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(files: list[str | Path], *, original: str | Path | None = None, port: int = DEFAULT_PORT,
          open_browser: bool = True, announce=print) -> None:
    """Serve the viewer until interrupted (Ctrl-C), opening the default browser on it."""
    server = ViewerServer(files, original=original, port=port)
    server.start()
    announce(f"viewer on {server.url} (Ctrl-C to stop)")
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # started with Ctrl-C ignored: restore it
    try:
        if open_browser:
            webbrowser.open(server.url)
        while server.thread.is_alive():  # a join with a timeout: Ctrl-C is seen within a second
            server.thread.join(1.0)
    finally:  # at most STOP_WAIT: a client holding a request open must not keep Ctrl-C from exiting
        stopper = threading.Thread(target=server.stop, name="imagegs-viewer-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_WAIT)
