"""``imagegs view``: the browser viewer (:mod:`imagegs.viewer`).

    imagegs view photo.igs                              # serve on 127.0.0.1, open the browser
    imagegs view a.igs b.igs --original photo.png --port 9000 --no-browser
    imagegs view photo.igs --export photo.html          # one self-contained page (file://)
"""

from __future__ import annotations

import argparse

from ._common import CLIError, check_output, nonnegative_int


def add_parsers(sub) -> None:
    """Register ``view`` on the ``imagegs`` sub-command parser ``sub``."""
    from ..viewer import DEFAULT_PORT

    p = sub.add_parser("view", help="view .igs files in the browser (WebGL2: zoom, levels, inspector)",
                       description="Serve a local page (127.0.0.1 only) that decodes the .igs files in "
                                   "the browser and renders them live with WebGL2, and open it; or "
                                   "write it as one self-contained page with --export.")
    p.add_argument("files", nargs="+", metavar="FILE.igs", help=".igs file(s) to show")
    p.add_argument("--original", metavar="IMAGE", help="the source image, for the toggle and split view")
    p.add_argument("--port", type=nonnegative_int, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free port)")
    p.add_argument("--no-browser", dest="browser", action="store_false", help="do not open a browser")
    p.add_argument("--export", metavar="PAGE.html",
                   help="write one self-contained page (files embedded, works from file://) instead of serving")
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    """``imagegs view``: serve the viewer until Ctrl-C, or write the exported page."""
    from .. import viewer

    if args.port > 65535:
        raise CLIError(f"--port must be at most 65535, got {args.port}")
    if args.export is not None:  # a ViewerError (a ValueError) prints as one line naming the file
        out = check_output(args.export, "the viewer page")
        path = viewer.export_page(args.files, out, original=args.original)
        print(f"{path} ({path.stat().st_size:,} bytes; open it in a browser)")
        return 0
    viewer.serve(args.files, original=args.original, port=args.port, open_browser=args.browser,
                 announce=lambda text: print(text, flush=True))
    return 0  # pragma: no cover - serve returns only through Ctrl-C (KeyboardInterrupt)
