"""The kernels' thread runner (imagegs._workers): every worker once, errors propagate, results
independent of the thread count, and a forked child gets threads of its own."""

from __future__ import annotations

import multiprocessing
import threading

import numba
import numpy as np
import pytest
import torch

from imagegs import _workers, render
from imagegs.gaussians import Gaussians
from imagegs.loss import ImageLoss


def test_every_worker_runs_once_and_errors_propagate():
    seen = []
    lock = threading.Lock()

    def worker(wk, n, out):
        with lock:
            seen.append((int(wk), int(n), threading.current_thread().name))
        out[wk] = wk + 1

    for n in (1, 2, 4):
        seen.clear()
        out = np.zeros(n, np.int64)
        _workers.run_workers(worker, n, out)
        assert sorted(s[:2] for s in seen) == [(k, n) for k in range(n)]
        assert out.tolist() == list(range(1, n + 1))
        assert {s[2] for s in seen if s[0] == 0} == {threading.current_thread().name}  # worker 0 here

    def bad(wk, n):
        if wk == 1:
            raise RuntimeError("worker 1 failed")

    with pytest.raises(RuntimeError, match="worker 1 failed"):
        _workers.run_workers(bad, 2)


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def test_render_and_loss_do_not_depend_on_the_thread_count(threads):
    torch.manual_seed(0)
    n = 400
    g = Gaussians(xy=torch.rand(n, 2), scale=torch.rand(n, 2) * 4 + 0.5, rot=torch.rand(n) * 3,
                  color=torch.rand(n, 3), height=70, width=90)
    target = torch.rand(3, 70, 90)
    renders, losses, grads = [], [], []
    for t in (1, 2, min(3, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(t)
        img = render(g).clone()
        x = img.clone().requires_grad_(True)
        loss = ImageLoss(target)(x)
        loss.backward()
        renders.append(img)
        losses.append(float(loss.detach()))
        grads.append(x.grad.clone())
    assert all(torch.equal(r, renders[0]) for r in renders)
    assert all(v == losses[0] for v in losses)
    assert all(torch.equal(gr, grads[0]) for gr in grads)


def _child(q):
    out = np.zeros(2, np.int64)
    _workers.run_workers(lambda wk, n, o: o.__setitem__(int(wk), 7), 2, out)
    q.put(out.tolist())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_forked_child_makes_its_own_threads():
    _workers.run_workers(lambda wk, n: None, 2)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(30)
    assert p.exitcode == 0, "the child hung or failed"
    assert q.get(timeout=5) == [7, 7]


def test_torch_serial_sets_one_thread_and_restores(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _workers.torch_serial():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), _workers.torch_serial():
            raise KeyError("x")
        assert torch.get_num_threads() == 2
        with _workers.torch_serial(active=False):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
