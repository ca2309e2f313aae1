"""Batch encode/decode on Dask: a LocalCluster, a real scheduler with a worker killed mid-run,
failures, resume, Ctrl-C, and the executor's in-process path.

Kept fast: 32x32 images, 33 Gaussians (3 bpp), 60 steps; the Numba kernels are compiled into the
on-disk cache once here (``warm_kernels``), so workers load them instead of compiling. The
clusters listen on free ports of 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagegs
from imagegs import batch
from imagegs.cli import main

FAST = {"bpp": 3.0, "max_steps": 60, "polish_steps": 10}  # 32x32 at 3 bpp: 384 bytes, ~33 Gaussians
FAST_CLI = ["--bpp", "3", "--steps", "60", "--polish-steps", "10"]
SRC = str(Path(imagegs.__file__).resolve().parents[1])  # the workers import this copy of imagegs


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    """Compile the kernels into Numba's disk cache once, before any worker starts."""
    from imagegs import _jit

    _jit.prepare("fit")
    _jit.prepare("render")


def make_images(folder: Path, n: int, size: int = 32, *, sub: bool = True) -> list[str]:
    """``n`` smooth random RGB images, every other one in a subfolder; their relative paths."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    names = []
    for i in range(n):
        f = rng.uniform(1, 4, size=(3, 2))
        rgb = np.stack([0.5 + 0.5 * np.sin(2 * (f[c, 0] * xx + f[c, 1] * yy) + i) for c in range(3)], axis=2)
        rel = f"sub/img{i}.png" if sub and i % 2 else f"img{i}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / rel)
        names.append(rel)
    return names


def manifest(out: Path) -> dict[str, dict]:
    lines = (out / batch.MANIFEST).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["source"] for r in records}), "one record per file"
    return {r["source"]: r for r in records}


def no_partial_files(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def check_decodes(out: Path, names: list[str], size: int = 32) -> None:
    for rel in names:
        rgb = imagegs.decode(out / (rel + ".igs"))
        assert rgb.shape == (size, size, 3)


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes (made by imagegs.batch.executor) for the tests that
    only need some cluster; yields its client."""
    with batch.executor(workers=2, threads=1) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ the clusters


def test_local_cluster_of_two_processes_encodes_a_folder_and_decodes_it(tmp_path, capsys, cluster):
    src, out, decoded = tmp_path / "src", tmp_path / "out", tmp_path / "decoded"
    names = make_images(src, 6)
    status = main(["batch", "encode", str(src), "-o", str(out), *FAST_CLI, "--workers", "2", "--threads", "1",
                   "--quiet"])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "6 done" in text and "images/minute" in text
    records = manifest(out)
    assert sorted(records) == sorted(names)
    fields = {"source", "output", "bytes", "bpp", "psnr", "ssim", "seconds", "settings", "worker", "error"}
    for rel, r in records.items():
        assert fields <= set(r), fields - set(r)
        assert r["status"] == "done" and r["error"] is None and r["output"] == rel + ".igs"
        assert r["bytes"] == (out / r["output"]).stat().st_size and r["bpp"] <= FAST["bpp"]
        assert r["psnr"] > 15 and 0 < r["ssim"] <= 1 and r["settings"]["bpp"] == FAST["bpp"]
    assert len({r["worker"] for r in records.values()}) == 2, "both worker processes took files"
    check_decodes(out, names)

    assert main(["batch", "decode", str(out), "-o", str(decoded), "--scheduler", cluster.scheduler_info()["address"],
                 "--scale", "2", "--quiet"]) == 0
    for rel in names:
        with Image.open(decoded / rel) as im:  # a/img1.png.igs -> a/img1.png
            assert im.size == (64, 64)
    assert all(r["status"] == "done" for r in manifest(decoded).values())


def test_real_scheduler_survives_a_worker_killed_mid_run(tmp_path):
    from distributed import Client

    src, out = tmp_path / "src", tmp_path / "out"
    names = make_images(src, 6, size=48)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    dask = str(Path(sys.executable).with_name("dask"))  # the venv's 'dask' command
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    workers = {}
    try:
        for _ in range(2):
            wport = free_port()
            workers[f"tcp://127.0.0.1:{wport}"] = subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                 "--worker-port", str(wport), "--no-dashboard"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs += workers.values()
        with Client(address, timeout="30s") as watcher:
            watcher.wait_for_workers(2, timeout=60)
            killed: list[tuple[str, int]] = []

            def kill_a_busy_worker(rec: dict) -> None:
                if killed:
                    return
                for _ in range(100):  # a worker with a task in hand (the scheduler may be assigning it)
                    busy = {w: len(ts) for w, ts in watcher.processing().items() if ts and w in workers}
                    if busy:
                        break
                    time.sleep(0.05)
                victim = next(iter(busy))
                workers[victim].kill()
                workers[victim].wait()
                killed.append((victim, busy[victim]))

            # 400 steps at 48x48: long enough that the other worker is busy when the first file lands
            records = batch.encode_folder(src, out, scheduler=address, progress=False,
                                          on_record=kill_a_busy_worker, **dict(FAST, max_steps=400))
        assert killed and killed[0][1] >= 1
        assert sorted(r["source"] for r in records if r["status"] == "done") == sorted(names)
        assert all(r["status"] == "done" for r in manifest(out).values())
        survivor = next(w for w in workers if w != killed[0][0])
        assert manifest(out)[records[-1]["source"]]["worker"] == survivor
        no_partial_files(out)
        check_decodes(out, names, size=48)
    finally:
        for p in procs:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ failures, resume, Ctrl-C


def test_a_corrupt_image_and_a_non_image_are_recorded_and_the_rest_succeed(tmp_path, cluster, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    names = make_images(src, 3)
    (src / "sub" / "broken.png").write_bytes((src / names[0]).read_bytes()[:60])  # truncated PNG
    (src / "readme.txt").write_text("not an image")
    (src / ".DS_Store").write_bytes(b"\0")
    status = main(["batch", "encode", str(src), "-o", str(out), *FAST_CLI, "--scheduler",
                   cluster.scheduler_info()["address"], "--quiet"])
    captured = capsys.readouterr()
    assert status == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imagegs: error: 1 of 4 files failed (first: sub/broken.png:")
    assert "readme.txt (not an image file)" in captured.out
    records = manifest(out)
    assert records["sub/broken.png"]["status"] == "failed" and "sub/broken.png" in records["sub/broken.png"]["error"]
    assert records["readme.txt"]["status"] == "skipped"
    assert records[".DS_Store"]["status"] == "skipped"
    assert all(records[n]["status"] == "done" for n in names)
    assert not (out / "sub" / "broken.png.igs").exists()
    check_decodes(out, names)


def test_resume_does_no_work_and_a_changed_bpp_redoes_every_file(tmp_path, cluster):
    src, out = tmp_path / "src", tmp_path / "out"
    names = make_images(src, 3)
    first = batch.encode_folder(src, out, client=cluster, progress=False, **FAST)
    assert all(r["status"] == "done" and not r.get("resumed") for r in first)
    stamps = {n: (out / (n + ".igs")).stat().st_mtime_ns for n in names}

    made: list[dict] = []  # every file encoded again would be reported here
    second = batch.encode_folder(src, out, client=cluster, progress=False, on_record=made.append, **FAST)
    assert made == []
    assert all(r["resumed"] for r in second) and len(second) == 3
    assert {n: (out / (n + ".igs")).stat().st_mtime_ns for n in names} == stamps

    third = batch.encode_folder(src, out, client=cluster, progress=False, **dict(FAST, bpp=2.5))
    assert len(third) == 3 and not any(r.get("resumed") for r in third)
    assert all(r["settings"]["bpp"] == 2.5 and r["bpp"] <= 2.5 for r in manifest(out).values())
    assert all((out / (n + ".igs")).stat().st_mtime_ns != stamps[n] for n in names)


def test_ctrl_c_leaves_whole_files_and_a_manifest_that_resumes(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    names = make_images(src, 3, sub=False)

    def interrupt(rec: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.encode_folder(src, out, workers=0, progress=False, on_record=interrupt, **FAST)
    no_partial_files(out)
    assert [r["status"] for r in manifest(out).values()] == ["done"]
    records = batch.encode_folder(src, out, workers=0, progress=False, **FAST)
    assert sum(bool(r.get("resumed")) for r in records) == 1
    check_decodes(out, names)


# --------------------------------------------------------------------- the executor and the CLI


def _square(x: int, *, offset: int = 0) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x + offset


def test_map_tasks_in_process_and_on_a_cluster(cluster):
    local = list(batch.map_tasks(_square, range(5), workers=0, common={"offset": 1}, progress=False,
                                 errors="return"))
    assert [i for i, _ in local] == [0, 1, 2, 3, 4]
    assert [r for _, r in local if not isinstance(r, Exception)] == [1, 2, 5, 17]
    remote = dict(batch.map_tasks(_square, iter(range(20)), client=cluster, common={"offset": 1},
                                  progress=False, errors="return"))
    assert sorted(remote) == list(range(20)) and isinstance(remote[3], ValueError)
    assert all(remote[i] == i * i + 1 for i in range(20) if i != 3)
    with pytest.raises(ValueError, match="three"):
        list(batch.map_tasks(_square, range(5), client=cluster, progress=False))


def test_scan_names_and_sizes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / ".git").mkdir()
    for rel in ("x.png", "a/y.JPG", "a/z.txt", ".h.png", ".git/q.png", "out/old.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    scan = batch.scan_folder(tmp_path, {".png", ".jpg"}, exclude=[tmp_path / "out"])
    assert scan.files == ["a/y.JPG", "x.png"]
    assert scan.skipped == {".git/": "hidden folder", ".h.png": "hidden file", "a/z.txt": "not an image file"}
    assert batch.decoded_name("a/photo.png.igs") == "a/photo.png"
    assert batch.decoded_name("a/photo.jpg.igs") == "a/photo.jpg.png"
    assert batch.decoded_name("x.igs", "tif") == "x.tif"
    assert batch.cluster_size(cores=8, memory=64 * 2**30) == (8, 1)
    assert batch.cluster_size(cores=8, memory=2 * batch.MEMORY_LIMIT) == (2, 4)  # memory-bound
    assert batch.cluster_size(3, cores=8, memory=None) == (3, 2)
    assert batch.cluster_size(threads=2, cores=8, memory=None) == (4, 2)


@pytest.mark.parametrize("argv, wanted", [
    (["batch", "encode", "{missing}", "-o", "{out}", "--bpp", "1", "--workers", "0"], "not a folder"),
    (["batch", "encode", "{src}", "-o", "{out}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "--workers and --threads size the local cluster"),
    (["batch", "decode", "{src}", "-o", "{src}/f.txt", "--workers", "0"], "is a file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, wanted):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    paths = {"missing": tmp_path / "nope", "out": tmp_path / "out", "src": tmp_path / "src"}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and wanted in err[0], err


# ------------------------------------------------------------------- the benchmarks through it


def _timeless(records: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if not k.endswith("_s")} for r in records),
                  key=lambda r: (r["codec"], r["image"], str(r["target_bpp"])))


def test_bench_rd_on_a_cluster_makes_the_same_records(tmp_path, cluster):
    from imagegs.bench import rd

    src = tmp_path / "imgs"
    make_images(src, 2, size=48, sub=False)
    kw = dict(bpp="1,2", codecs="jpeg-420,webp,bc1", progress=False, report=False)
    rd.run_rd(src, tmp_path / "here", **kw)
    rd.run_rd(src, tmp_path / "there", executor={"client": cluster}, **kw)
    here, there = ([json.loads(x) for x in (tmp_path / d / "records.jsonl").read_text().splitlines()]
                   for d in ("here", "there"))
    assert len(here) == 2 * (2 + 2 + 1) and _timeless(there) == _timeless(here)
    rd.run_rd(src, tmp_path / "there", executor={"client": cluster}, **kw)  # resumed: nothing appended
    assert len((tmp_path / "there" / "records.jsonl").read_text().splitlines()) == len(here)


def test_bench_sr_on_a_cluster_keeps_items_and_fits_here(tmp_path, cluster):
    from imagegs.bench import sr

    src = tmp_path / "imgs"
    make_images(src, 1, size=48, sub=False)
    kw = dict(images=str(src), samples=[], scales=[2, 3], methods=["bicubic", "gaussians"], max_gaussians=40,
              gaussian_scales=[3], fit_steps=60, out_dir=None, progress=False)
    here = sr.run(work_dir=tmp_path / "here", **kw)
    there = sr.run(work_dir=tmp_path / "there", executor={"client": cluster}, **kw)
    for method in ("bicubic", "gaussians"):
        for s, row in here["table"][method].items():
            assert there["table"][method][s]["psnr"] == pytest.approx(row["psnr"], abs=1e-6)
    assert [p.name for p in (tmp_path / "there" / "fits").iterdir()] == \
        [p.name for p in (tmp_path / "here" / "fits").iterdir()]
    assert len(list((tmp_path / "there" / "items").iterdir())) == 3


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", "1s")
    make_images(tmp_path / "src", 1)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["batch", "encode", str(tmp_path / "src"), "-o", str(tmp_path / "out"), *FAST_CLI,
                 "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"imagegs: error: --scheduler {address}: cannot connect"), err


def test_bench_rd_command_takes_the_executor_options(tmp_path, capsys):
    src = tmp_path / "imgs"
    make_images(src, 1, size=48, sub=False)
    argv = ["bench", "rd", "--images", str(src), "--codecs", "jpeg-420", "--bpp", "1", "--out", str(tmp_path / "o"),
            "--quiet"]
    assert main(argv + ["--workers", "0"]) == 0  # through map_tasks, in this process
    assert len((tmp_path / "o" / "records.jsonl").read_text().splitlines()) == 1
    assert main(argv + ["--scheduler", "tcp://127.0.0.1:1", "--threads", "1"]) == 2
    assert "--workers and --threads size the local cluster" in capsys.readouterr().err
