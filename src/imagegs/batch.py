"""Whole folders on many processes or machines: batch encode and decode, and the executor that
the benchmarks share.

    records = encode_folder("photos/", "out/", bpp=0.3)              # LocalCluster sized to this machine
    records = encode_folder("photos/", "out/", bpp=0.3, client=c)    # an existing dask Client
    for i, result in map_tasks(fn, items, workers=2): ...            # any per-item work

Engine: ``dask.distributed``. By default a ``LocalCluster`` of worker *processes*, each running
one task at a time with ``threads`` Numba and torch threads, sized so that workers x threads =
the cores this process may use and every worker has :data:`MEMORY_LIMIT` (a 2048x2048 encode fits
in it: docs/NOTES.md, "Batch encode/decode on Dask"); ``scheduler="tcp://host:8786"`` sends the same tasks to an existing
cluster, ``client=`` uses a ``Client`` the caller made, and ``workers=0`` runs the tasks in this
process without Dask (debugging, and the benchmarks' default).

Workers need no shared filesystem: an image travels to a worker as bytes, and the result (the
``.igs`` file, the decoded images) comes back as bytes that this process writes with
:func:`imagegs.io.atomic_write`. So Ctrl-C, or a worker killed mid-task (Dask runs its task
again elsewhere), never leaves a partial output file.

Every file gets one record in ``OUT/manifest.jsonl`` (appended as it finishes, one whole line at
a time; the file is rewritten at the end with one record per file). A rerun skips the files whose
output exists and whose record has the same settings and the same source bytes (SHA-256), so an
interrupted batch resumes and a changed setting redoes every file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import append_record, atomic_write, readable_extensions

__all__ = ["MANIFEST", "MEMORY_LIMIT", "BatchError", "cluster_size", "decode_folder", "encode_folder", "executor",
           "map_tasks", "scan_folder", "summarize"]

# Per-worker memory limit (bytes) of the default LocalCluster: the measured peak resident size of
# a 2048x2048 encode at 0.3 bpp, 1.92 GB (docs/results.md, Batch throughput), with 2x headroom. A worker that exceeds it is
# restarted by its nanny and its task runs again elsewhere (after 3 deaths the file is failed).
MEMORY_LIMIT = 4 * 2**30
MANIFEST = "manifest.jsonl"
IGS_SUFFIX = ".igs"
DEFAULT_FORMAT = "png"  # what batch decode writes
CONNECT_TIMEOUT = "20s"  # to reach an existing cluster's scheduler
# The local scheduler's HTTP server (metrics; the dashboard if bokeh is installed): a free port of
# this machine only (Dask would take 8787 on every interface, and warn when another cluster has it).
_HTTP_ADDRESS = "127.0.0.1:0"
_IN_FLIGHT_PER_THREAD = 2  # tasks submitted ahead per worker thread: bounds the bytes held here
_SCATTER_BYTES = 1 << 20  # shared task arguments larger than this go to the workers once, not per task
_LOST_TASK_RETRIES = 3  # a task the scheduler dropped (cancelled, not failed) is submitted again


class BatchError(ValueError):
    """Bad batch input (folder, options); the message names it."""


# ------------------------------------------------------------------------------------ the engine


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _total_memory() -> int | None:
    """Physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cluster_size(workers: int | None = None, threads: int | None = None, *, cores: int | None = None,
                 memory: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per worker) of the default LocalCluster.

    Default: as many workers as fit in memory at :data:`MEMORY_LIMIT` each, at most one per core,
    then threads = cores // workers, so that workers x threads = cores (one thread per worker is
    the most images per minute: no parallel overhead inside a fit). ``workers`` or ``threads``
    override either side.
    """
    cores = _cores() if cores is None else cores
    memory = _total_memory() if memory is None else memory
    if workers is None:
        by_memory = cores if memory is None else max(1, memory // MEMORY_LIMIT)
        workers = max(1, min(cores // (threads or 1), by_memory))
    if workers < 1 or (threads is not None and threads < 1):
        raise BatchError(f"workers and threads must be positive, got {workers} and {threads}")
    return workers, threads or max(1, cores // workers)


def _worker_env(threads: int) -> dict[str, str]:
    """Environment of a worker process: Numba and torch (OpenMP) use ``threads`` threads.
    Must be set before the worker imports them, hence the environment and not a call."""
    return {name: str(threads) for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@contextlib.contextmanager
def executor(client: Any = None, *, workers: int | None = None, threads: int | None = None,
             scheduler: str | None = None, warm: Sequence[str] = ()) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for the duration of the block, or None for ``workers=0``.

    ``client``: used as is (not closed). ``scheduler``: an address such as ``tcp://host:8786``
    to connect to. Otherwise a LocalCluster of :func:`cluster_size` processes, closed at the
    end. ``warm``: ``imagegs._jit`` commands ("fit", "render") whose Numba kernels are compiled
    into the on-disk cache here first, so that local workers load them instead of each
    compiling them (remote workers compile once per machine at their first task).
    """
    if client is not None:
        yield client
        return
    if workers == 0 and scheduler is None:
        yield None
        return
    from distributed import Client

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, ValueError) as e:  # dask: OSError("Timed out trying to connect to ..."), bad address
            raise BatchError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        with c:
            yield c
        return
    import logging

    import dask
    from distributed import LocalCluster

    from . import _jit

    n, t = cluster_size(workers, threads)
    for command in warm:
        _jit.prepare(command, notice=True)
    with dask.config.set(_pre_spawn_environ()), _environ_kept(), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=MEMORY_LIMIT,
                         env=_worker_env(t), dashboard_address=_HTTP_ADDRESS, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as c:
        yield c


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """Restore this process's environment on exit: Dask's nanny writes its pre-spawn variables
    (OMP_NUM_THREADS=1, ...) into it when it starts a worker."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _pre_spawn_environ() -> dict:
    """Dask configuration for the environment its nanny sets *before* starting a worker process
    (what the C libraries read at start-up). Dask's default sets MALLOC_TRIM_THRESHOLD_=65536, so
    glibc hands freed memory back to the system at once: a fit, which allocates and frees large
    tensors every step, then ran 1.5-4x slower in a worker than in ``imagegs encode`` (measured:
    docs/results.md, "Batch throughput"). None unsets it. (The nanny also copies these variables
    into this process's environment: the thread counts go through ``env=`` instead, which only the
    workers see.)"""
    return {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _in_flight(client: Any) -> int:
    """How many tasks to keep submitted: a few per worker thread of the cluster."""
    threads = sum(client.nthreads().values()) or 1
    return max(4, _IN_FLIGHT_PER_THREAD * threads)


def map_tasks(fn: Callable, items: Iterable, *, client: Any = None, workers: int | None = None,
              threads: int | None = None, scheduler: str | None = None, common: dict | None = None,
              total: int | None = None, progress: bool = True, desc: str = "tasks", unit: str = "task",
              errors: str = "raise", warm: Sequence[str] = ()) -> Iterator[tuple[int, Any]]:
    """Run ``fn(item, **common)`` for every item; yield ``(index, result)`` as each finishes.

    Where: see :func:`executor` (``client``, ``scheduler``, ``workers``/``threads`` of a
    LocalCluster; ``workers=0``: in this process, in order, without Dask). ``fn`` and the items
    must pickle (Dask uses cloudpickle: closures are fine). ``common``: keyword arguments shared
    by every call (large objects such as a model belong here, not in the items: those over 1 MiB
    pickled go to each worker once, the others travel with each task). ``items`` is consumed lazily: only a few tasks per worker thread are submitted
    ahead, so a generator that reads files holds few of them in memory at once.

    ``errors="raise"``: an exception in ``fn`` is raised here (the other tasks are cancelled);
    ``"return"``: it is yielded as the result. A worker that dies mid-task (killed, out of
    memory) is not an error: Dask runs its task again on another worker, and only after three
    deaths (``distributed.scheduler.allowed-failures``) is the task failed with ``KilledWorker``.
    ``progress``: one tqdm bar over ``total`` (default ``len(items)`` where it has one) with ETA.
    """
    from tqdm import tqdm

    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with executor(client, workers=workers, threads=threads, scheduler=scheduler, warm=warm) as c:
        bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            run = _run_local if c is None else _run_dask
            for index, result in run(c, fn, items, common or {}, errors):
                bar.update(1)
                yield index, result
        finally:
            bar.close()


def _run_local(_client: None, fn: Callable, items: Iterable, common: dict, errors: str
               ) -> Iterator[tuple[int, Any]]:
    for index, item in enumerate(items):
        try:
            result = fn(item, **common)
        except Exception as e:
            if errors == "raise":
                raise
            result = e
        yield index, result


def _run_dask(client: Any, fn: Callable, items: Iterable, common: dict, errors: str
              ) -> Iterator[tuple[int, Any]]:
    from distributed import as_completed

    def share() -> dict:
        """``common`` for client.submit: large values scattered to every worker once, small ones
        (settings) sent inline with each task (nothing to lose when a worker dies)."""
        return {k: client.scatter(v, broadcast=True) if _pickled_size(v) > _SCATTER_BYTES else v
                for k, v in common.items()}

    shared = share()
    queue = iter(enumerate(items))
    task_of: dict[str, tuple[int, Any, int]] = {}  # future key -> (index, item, resubmissions)
    live: dict[str, Any] = {}  # future key -> future not yet yielded (only this thread changes it)
    pending = as_completed()

    def launch(index: int, item: Any, tries: int) -> None:
        future = client.submit(fn, item, pure=False, **shared)
        task_of[future.key] = (index, item, tries)
        live[future.key] = future
        pending.add(future)

    def submit(count: int) -> None:
        for index, item in queue:
            launch(index, item, 0)
            count -= 1
            if count <= 0:
                return

    submit(_in_flight(client))
    try:
        for future in pending:
            index, item, tries = task_of.pop(future.key)
            live.pop(future.key, None)
            if future.status == "cancelled" and tries < _LOST_TASK_RETRIES:
                # the scheduler dropped the task ("already forgotten": a worker holding its
                # input died): not an error of fn, so send the shared values again and rerun it
                future.release()
                shared = share()
                launch(index, item, tries + 1)
                continue
            if future.status in ("error", "cancelled"):
                exc = future.exception() if future.status == "error" else RuntimeError(
                    f"the task was lost {tries + 1} times (workers died)")
                if errors == "raise":
                    raise exc
                result = exc
            else:
                result = future.result()
            future.release()
            submit(1)
            yield index, result
    finally:
        # interrupted: stop what is still queued or running (our own record of them: as_completed's
        # thread changes its dict as tasks finish)
        unfinished = list(live.values())
        if unfinished:
            client.cancel(unfinished)


def _pickled_size(value: Any) -> int:
    import pickle

    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # cloudpickle-only objects (closures): assume large
        return _SCATTER_BYTES + 1


def worker_name() -> str:
    """The Dask worker running this code (its address), else ``host:pid`` of this process."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------------- the folders


@dataclass
class Scan:
    """What :func:`scan_folder` found: the files to process and the ones skipped (with why)."""

    files: list[str] = field(default_factory=list)  # relative POSIX paths, sorted
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason


def scan_folder(src: str | os.PathLike, suffixes: Iterable[str], *, exclude: Sequence[str | os.PathLike] = (),
                what: str = "image") -> Scan:
    """Every file under ``src`` (subfolders too) whose lower-case suffix is in ``suffixes``;
    hidden files and folders (a name starting with '.') and other files are skipped, with the
    reason. Paths in ``exclude`` (the output folder inside the input) are not visited."""
    src = Path(src)
    if not src.is_dir():
        raise BatchError(f"{src}: not a folder (batch commands take a folder)")
    wanted = {s.lower() for s in suffixes}
    skip_dirs = {Path(p).resolve() for p in exclude}
    scan = Scan()
    for folder, dirs, names in os.walk(src):
        here = Path(folder)
        rel_dir = here.relative_to(src)
        for d in sorted(dirs):
            if d.startswith("."):
                scan.skipped[(rel_dir / d).as_posix() + "/"] = "hidden folder"
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip_dirs)
        for name in sorted(names):
            rel = (rel_dir / name).as_posix()
            if name.startswith("."):
                scan.skipped[rel] = "hidden file"
            elif Path(name).suffix.lower() not in wanted:
                scan.skipped[rel] = f"not an {what} file"
            else:
                scan.files.append(rel)
    scan.files.sort()
    return scan


class Manifest:
    """``OUT/manifest.jsonl``: the last record of each source file, appended as files finish.

    An interruption leaves at most a cut-off last line, which loading ignores; :meth:`close`
    rewrites the file atomically with one record per source, sorted."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.records[rec["source"]] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut off by an interruption: the file is redone

    def add(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_record(self.path, record)
        self.records[record["source"]] = record

    def close(self) -> None:
        text = "".join(json.dumps(self.records[k], sort_keys=True) + "\n" for k in sorted(self.records))
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line(exc: BaseException, rel: str) -> str:
    """An exception in the task of ``rel`` as one line that names it: the message (ValueError and
    OSError subclasses are phrased for the user), else the type and the message."""
    text = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    for name in (rel, Path(rel).name):  # readers name the (worker's temporary) file by its name
        if text.startswith(name + ":"):
            return rel + text[len(name):]
    return f"{rel}: {text}"


def _run_folder(src: Path, dst: Path, scan: Scan, task: Callable, common: dict, settings: dict,
                outputs: Callable[[str], list[Path]], *, client, workers, threads, scheduler, progress: bool,
                verbose: bool, desc: str, warm: Sequence[str], on_record: Callable[[dict], None] | None
                ) -> list[dict]:
    """What batch encode and decode share: resume, dispatch, atomic writes, the manifest.

    ``task((rel, data), **common)`` runs on a worker and returns a record with ``files``:
    {name relative to ``dst``: bytes}; ``outputs(rel)`` are the paths a finished file has. The
    records name the outputs relative to ``dst`` (``output``: the first, ``outputs``: all)."""
    from tqdm import tqdm

    manifest = Manifest(dst / MANIFEST)
    records: list[dict] = []
    todo: list[tuple[str, str]] = []  # (relative path, sha256)
    for rel in scan.files:
        digest = _sha256((src / rel).read_bytes())
        old = manifest.records.get(rel)
        if (old is not None and old.get("status") == "done" and old.get("settings") == settings
                and old.get("source_sha256") == digest and all(p.exists() for p in outputs(rel))):
            records.append(dict(old, resumed=True))
        else:
            todo.append((rel, digest))
    for rel, reason in scan.skipped.items():
        rec = {"source": rel, "status": "skipped", "error": reason, "settings": settings}
        manifest.add(rec)
        records.append(rec)

    def items() -> Iterator[tuple[str, bytes]]:
        for rel, _ in todo:
            yield rel, (src / rel).read_bytes()

    try:
        results = map_tasks(task, items(), client=client, workers=workers, threads=threads, scheduler=scheduler,
                            common=common, total=len(todo), progress=progress, desc=desc, unit="file",
                            errors="return", warm=warm)
        for index, result in results:
            rel, digest = todo[index]
            if isinstance(result, BaseException):  # the workers died, or the task failed outside its own catch
                error = (f"{rel}: the workers running it died (out of memory? each has "
                         f"{MEMORY_LIMIT / 2**30:g} GiB in the default cluster)"
                         if type(result).__name__ == "KilledWorker" else _one_line(result, rel))
                result = {"source": rel, "status": "failed", "error": error, "files": {}}
            files = result.pop("files", {})
            for name, data in files.items():
                atomic_write(dst / name, lambda tmp, b=data: Path(tmp).write_bytes(b))
            names = list(files)
            rec = dict(result, source=rel, output=names[0] if names else None, outputs=names,
                       settings=settings, source_sha256=digest)
            manifest.add(rec)
            records.append(rec)
            if verbose:
                tqdm.write(_describe(rec), file=sys.stderr)
            if on_record is not None:
                on_record(rec)
    finally:
        manifest.close()
    return records


def _describe(rec: dict) -> str:
    """One line per finished file (verbose mode)."""
    if rec["status"] != "done":
        return f"{rec['status']}: {rec.get('error')}"
    quality = f", {rec['psnr']:.2f} dB" if rec.get("psnr") is not None else ""
    bpp = f", {rec['bpp']:.4f} bpp" if rec.get("bpp") is not None else ""
    return f"{rec['source']}: {rec['bytes']} bytes{bpp}{quality}, {rec['seconds']:.1f} s on {rec['worker']}"


def _settings_json(options: dict) -> dict:
    """The options as plain JSON values (``Bits`` as its text), for the manifest and resume."""
    return json.loads(json.dumps({k: options[k] for k in sorted(options)}, default=str))


# ------------------------------------------------------------------------------------ encode


def _encode_task(item: tuple[str, bytes], *, options: dict, alpha: str) -> dict:
    """On a worker: one image's bytes -> a record with the .igs bytes (``files``) and its quality."""
    import torch

    from . import _jit
    from .codec import compress
    from .defaults import DEFAULT_TOP_K
    from .io import read_image
    from .metrics import quality_8bit
    from .renderer import render

    rel, data = item
    t0 = time.perf_counter()
    rec: dict = {"source": rel, "worker": worker_name()}
    try:
        with tempfile.TemporaryDirectory(prefix="imagegs-batch-") as tmp:
            path = Path(tmp) / Path(rel).name  # the reader's messages name the user's file
            path.write_bytes(data)
            image = read_image(path, alpha=alpha)
        _jit.prepare("fit")
        enc = compress(image, progress=False, **options)
        with torch.no_grad():
            rendering = render(enc.gaussians, top_k=options.get("top_k", DEFAULT_TOP_K)).clamp_(0, 1)
        psnr, ssim = quality_8bit(rendering, image.pixels)
    except Exception as e:  # noqa: BLE001 - recorded; the batch goes on
        return dict(rec, status="failed", error=_one_line(e, rel), seconds=time.perf_counter() - t0, files={})
    return dict(rec, status="done", error=None, bytes=len(enc.data), bpp=enc.bpp, psnr=psnr, ssim=ssim,
                width=image.width, height=image.height, gaussians=enc.num, seconds=time.perf_counter() - t0,
                files={rel + IGS_SUFFIX: enc.data})


def encode_folder(src: str | os.PathLike, dst: str | os.PathLike, *, bpp: float | None = None,
                  client: Any = None, workers: int | None = None, threads: int | None = None,
                  scheduler: str | None = None, alpha: str = "keep", progress: bool = True,
                  verbose: bool = False, on_record: Callable[[dict], None] | None = None,
                  **options) -> list[dict]:
    """Encode every image under ``src`` to ``dst/<relative path>.igs``; returns the records.

    ``bpp`` and ``**options``: :func:`imagegs.codec.compress`'s (``num_gaussians``, ``bits``,
    ``schedule``, ``max_steps``...; ``progress`` is the batch's bar, not a fit's). ``alpha``: as
    :func:`imagegs.read_image`. Where the work runs: :func:`executor`. ``verbose``: a line per
    finished file. ``on_record``: called with each new record as it is written (this process).

    One record per file (the manifest's): ``source``, ``output`` (relative to ``dst``), ``status`` (done, failed,
    skipped), ``bytes``, ``bpp``, ``psnr``, ``ssim`` (8-bit, of the decoded file), ``seconds``
    (on the worker), ``settings``, ``worker``, ``error``; files already done with these
    settings come back from the manifest with ``resumed=True``.
    """
    from .io import ALPHA_POLICIES

    if alpha not in ALPHA_POLICIES:
        raise BatchError(f"alpha must be one of {', '.join(ALPHA_POLICIES)}, got {alpha!r}")
    src, dst = Path(src), Path(dst)
    options = dict(options, bpp=bpp)
    settings = _settings_json(dict(options, alpha=alpha))
    scan = scan_folder(src, readable_extensions(), exclude=[dst])
    return _run_folder(src, dst, scan, _encode_task, {"options": options, "alpha": alpha}, settings,
                       lambda rel: [dst / (rel + IGS_SUFFIX)], client=client, workers=workers,
                       threads=threads, scheduler=scheduler, progress=progress, verbose=verbose,
                       desc="encode", warm=("fit",), on_record=on_record)


# ------------------------------------------------------------------------------------ decode


def decoded_name(rel: str, fmt: str = DEFAULT_FORMAT) -> str:
    """Where batch decode writes ``rel`` (an .igs path): 'a/photo.png.igs' -> 'a/photo.png',
    'a/photo.jpg.igs' -> 'a/photo.jpg.png', 'a/x.igs' -> 'a/x.png' (for ``fmt`` png)."""
    stem = rel[:-len(IGS_SUFFIX)] if rel.lower().endswith(IGS_SUFFIX) else rel
    ext = "." + fmt.lower().lstrip(".")
    return stem if stem.lower().endswith(ext) else stem + ext


def _decode_task(item: tuple[str, bytes], *, fmt: str, size: dict, lod: int | None, top_k: Any,
                 bit_depth: int | None, render_options: dict) -> dict:
    """On a worker: one .igs file's bytes -> a record with the image file(s) (``files``)."""
    import torch

    from . import _jit
    from .codec import decode_gaussians, output_depths, read_igs_header
    from .defaults import MAX_PIXELS, output_size
    from .io import write_images
    from .renderer import check_region, render

    rel, data = item
    t0 = time.perf_counter()
    rec: dict = {"source": rel, "worker": worker_name()}
    try:
        header = read_igs_header(data)
        h, w = output_size(header.height, header.width, max_pixels=MAX_PIXELS, **size)
        options = dict(render_options)
        if options.get("region") is not None:
            options["region"] = check_region(options["region"], h, w)
        g = decode_gaussians(data, lod=lod)
        if options.get("backend") != "reference":
            _jit.prepare("render")
        with torch.no_grad():
            pixels = render(g, h, w, top_k=header.top_k if top_k == "file" else top_k, **options).clamp_(0, 1)
        groups = header.groups or [("image", header.channels)]
        depths = output_depths(groups, header.metadata.get("bit_depths"), bit_depth)
        name = decoded_name(rel, fmt)
        files = {}
        with tempfile.TemporaryDirectory(prefix="imagegs-batch-") as tmp:
            for p in write_images(pixels, Path(tmp) / Path(name).name, groups=groups, bit_depths=depths):
                files[str(Path(name).with_name(p.name).as_posix())] = p.read_bytes()
    except Exception as e:  # noqa: BLE001 - recorded; the batch goes on
        return dict(rec, status="failed", error=_one_line(e, rel), seconds=time.perf_counter() - t0, files={})
    return dict(rec, status="done", error=None, bytes=sum(map(len, files.values())), width=w, height=h,
                gaussians=g.num, seconds=time.perf_counter() - t0, files=files)


def decode_folder(src: str | os.PathLike, dst: str | os.PathLike, *, fmt: str = DEFAULT_FORMAT,
                  width: int | None = None, height: int | None = None, scale: float | None = None,
                  lod: int | None = None, top_k: int | None | str = "file", bit_depth: int | None = None,
                  client: Any = None, workers: int | None = None, threads: int | None = None,
                  scheduler: str | None = None, progress: bool = True, verbose: bool = False,
                  on_record: Callable[[dict], None] | None = None, **render_options) -> list[dict]:
    """Decode every ``.igs`` file under ``src`` to ``dst`` (:func:`decoded_name`); returns the records.

    ``width``/``height``/``scale``: the output size (as ``imagegs decode``); ``lod``, ``top_k``
    (default: each file's), ``bit_depth`` (default: the source's) and ``**render_options``
    (``backend``, ``region``, ``antialias``, ``supersample``, ``filter_sigma``) as
    :func:`imagegs.render`. The rest as :func:`encode_folder`; a file's ``outputs`` are one image,
    or one per channel group for a texture stack.
    """
    from .io import check_image_path

    src, dst = Path(src), Path(dst)
    check_image_path(Path("x." + fmt), bit_depth=bit_depth)  # an unknown format fails before any work
    size = {"scale": scale, "out_width": width, "out_height": height}
    common = {"fmt": fmt, "size": size, "lod": lod, "top_k": top_k, "bit_depth": bit_depth,
              "render_options": render_options}
    settings = _settings_json(common)
    scan = scan_folder(src, [IGS_SUFFIX], exclude=[dst], what=".igs")
    scan.skipped.pop(MANIFEST, None)  # batch encode's own record of the folder
    manifest = Manifest(dst / MANIFEST)

    def outputs(rel: str) -> list[Path]:
        old = manifest.records.get(rel) or {}
        return [dst / p for p in old.get("outputs") or [decoded_name(rel, fmt)]]

    return _run_folder(src, dst, scan, _decode_task, common, settings, outputs, client=client,
                       workers=workers, threads=threads, scheduler=scheduler, progress=progress,
                       verbose=verbose, desc="decode", warm=("render",), on_record=on_record)


# ----------------------------------------------------------------------------------- summary


def summarize(records: Sequence[dict], wall_seconds: float) -> dict:
    """Counts and means of a batch's records: files, done (of which resumed), failed, skipped,
    total bytes, mean bpp and PSNR of the files done, wall time and images per minute (the files
    processed in this run, resumed ones excluded)."""
    done = [r for r in records if r.get("status") == "done"]
    fresh = [r for r in done if not r.get("resumed")]
    failed = [r for r in records if r.get("status") == "failed"]

    def mean(key: str) -> float | None:
        values = [r[key] for r in done if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return sum(values) / len(values) if values else None

    return {"files": len(records), "done": len(done), "resumed": len(done) - len(fresh), "failed": len(failed),
            "skipped": sum(r.get("status") == "skipped" for r in records),
            "bytes": sum(r.get("bytes") or 0 for r in done), "mean_bpp": mean("bpp"), "mean_psnr": mean("psnr"),
            "wall_seconds": wall_seconds,
            "images_per_minute": 60 * (len(fresh) + len(failed)) / wall_seconds if wall_seconds > 0 else None}
