"""Optimizers and schedules against torch.optim over several steps, on fresh random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors, optim


OPTIMIZERS = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd_momentum_dampening_decay": (
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
             lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.05),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05)),
}
SCHEDULES = {
    "step": (lambda o: optim.StepLR(o, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    "cosine": (lambda o: optim.CosineAnnealingLR(o, 10, 1e-3),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 1e-3)),
}


def _run(rng, make, make_ref, steps=6, schedule=None):
    shapes = [(7, 3), (5,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [hv.nn.Parameter(hv.tensor(a)) for a in init]
    ref_params = [torch.nn.Parameter(torch.tensor(a, dtype=torch.float64)) for a in init]
    opt, ref = make(params), make_ref(ref_params)
    sched = ref_sched = None
    if schedule:
        sched, ref_sched = schedule[0](opt), schedule[1](ref)
    for _ in range(steps):
        for p, q in zip(params, ref_params):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = hv.tensor(g)
            q.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        ref.step()
        if sched:
            sched.step()
            ref_sched.step()
            assert abs(sched.get_last_lr()[0] - ref_sched.get_last_lr()[0]) <= 1e-6 * ref_sched.get_last_lr()[0]
    return params, ref_params, opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch(name, rng):
    params, ref_params, _ = _run(rng, *OPTIMIZERS[name])
    for p, q in zip(params, ref_params):
        ref = q.detach().numpy()
        assert np.linalg.norm(p.numpy() - ref) <= 1e-5 * np.linalg.norm(ref)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedules_match_torch(schedule, rng):
    params, ref_params, opt = _run(rng, *OPTIMIZERS["adamw"], steps=12, schedule=SCHEDULES[schedule])
    for p, q in zip(params, ref_params):
        ref = q.detach().numpy()
        assert np.linalg.norm(p.numpy() - ref) <= 1e-5 * np.linalg.norm(ref)


def test_state_dict_round_trip_continues_identically(rng):
    params, _, opt = _run(rng, *OPTIMIZERS["adam"], steps=3)
    state = opt.state_dict()
    assert opt.step_count == 3
    twin_params = [hv.nn.Parameter(hv.tensor(p.numpy())) for p in params]
    twin = optim.Adam(twin_params, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)
    twin.load_state_dict(state)
    g = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    for ps, o in ((params, opt), (twin_params, twin)):
        for p, gi in zip(ps, g):
            p.grad = hv.tensor(gi)
        o.step()
    for p, q in zip(params, twin_params):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    with pytest.raises(errors.ShapeError):
        optim.Adam(twin_params[:1]).load_state_dict(state)


def test_learning_rate_is_device_state_that_can_be_set():
    p = hv.nn.Parameter(hv.ones(4))
    opt = optim.SGD([p], lr=0.5)
    assert opt.lr == 0.5
    opt.lr = 0.25
    p.grad = hv.ones(4)
    opt.step()
    np.testing.assert_array_equal(p.numpy(), np.full(4, 0.75, np.float32))


def test_zero_grad_and_parameters_without_gradients():
    a, b = hv.nn.Parameter(hv.ones(3)), hv.nn.Parameter(hv.ones(2))
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = hv.ones(3)
    opt.step()  # b has no gradient: left alone
    np.testing.assert_array_equal(a.numpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(b.numpy(), np.ones(2, np.float32))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.numpy(), np.zeros(3, np.float32))
    opt.zero_grad()
    assert a.grad is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(errors.HlxError):
        optim.SGD([hv.ones(3)], lr=0.1)  # does not require grad
    with pytest.raises(errors.DTypeError):
        optim.Adam([hv.ones(3, dtype=hv.float16).requires_grad_()])
    with pytest.raises(ValueError):
        optim.SGD([hv.nn.Parameter(hv.ones(2))], lr=-1.0)
    p = hv.nn.Parameter(hv.ones(3))
    p.grad = hv.ones(4)
    with pytest.raises(errors.ShapeError):
        optim.SGD([p], lr=0.1).step()
