"""DVAE models (SRNN, VRNN, DKF): shapes, batching, step-wise generation, checkpoints, training, evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixdvae.dvae import DVAE, MODELS, SRNN, VRNN, CheckpointError, load_prior
from mixdvae.dvae.cv import CVParams, cv_filter, cv_nll, cv_predict_ahead, fit_cv
from mixdvae.dvae.evaluate import dvae_predictions, evaluate_dvae, iou_cxcywh
from mixdvae.dvae.training import SMOOTH_GATES

TINY = {"h_dim": 12, "z_dim": 3, "dense_dim": 12, "embed_dim": 6}


def make_model(name: str, **overrides) -> DVAE:
    torch.manual_seed(0)
    return MODELS[name]({**TINY, **overrides})


def trajectories(batch: int = 4, length: int = 9, seed: int = 0) -> torch.Tensor:
    """Random walks in model coordinates, first box (0, 0, aspect, 1)."""
    gen = torch.Generator().manual_seed(seed)
    steps = torch.randn(batch, length, 4, generator=gen) * torch.tensor([0.03, 0.02, 0.01, 0.01])
    steps[:, 0] = 0
    start = torch.tensor([0.0, 0.0, 0.4, 1.0])
    return start + torch.cumsum(steps, 1)


def run_steps(model: DVAE, x: torch.Tensor, z: torch.Tensor | None = None):
    batch, length, _ = x.shape
    state, x_prev = model.init_state(batch), model.x0(batch)
    means, variances = [], []
    for t in range(length):
        mean, var, state = model.step(state, x_prev, None if z is None else z[:, t])
        means.append(mean)
        variances.append(var)
        x_prev = x[:, t]
    return torch.stack(means, 1), torch.stack(variances, 1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_finite(name):
    model = make_model(name)
    x = trajectories()
    out = model.elbo(x)
    for key in ("loss", "recon", "kl"):
        assert out[key].shape == () and torch.isfinite(out[key])
    assert torch.allclose(out["loss"], out["recon"] + out["kl"])
    assert out["kl"].item() >= 0
    z_mean, z_var = model.encode(x)
    assert z_mean.shape == z_var.shape == (4, 9, TINY["z_dim"])
    assert (z_var > 0).all()
    state = model.init_state(4)
    assert all(s.shape[0] == 4 for s in state)
    mean, var, state = model.step(state, model.x0(4))
    assert mean.shape == var.shape == (4, 4)
    assert (var > 0).all() and torch.isfinite(mean).all()
    out["loss"].backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_batched_call_equals_separate_calls(name):
    model = make_model(name)
    x = trajectories(batch=3)
    z_mean, _ = model.encode(x)
    batched = model.predict_sequence(x)
    step_mean, step_var = run_steps(model, x, z_mean)
    for b in range(3):
        single = model.predict_sequence(x[b : b + 1])
        torch.testing.assert_close(single["mean"][0], batched["mean"][b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(single["var"][0], batched["var"][b], rtol=1e-5, atol=1e-8)
        zb, _ = model.encode(x[b : b + 1])
        torch.testing.assert_close(zb[0], z_mean[b], rtol=1e-5, atol=1e-6)
        sm, sv = run_steps(model, x[b : b + 1], z_mean[b : b + 1])
        torch.testing.assert_close(sm[0], step_mean[b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sv[0], step_var[b], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("history", [1, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_matches_teacher_forced_path(name, history):
    model = make_model(name, history=history)
    x = trajectories(batch=3, length=11)
    # prior path (z = None in step <-> prior means in the teacher-forced pass)
    tf = model.predict_sequence(x)
    mean, var = run_steps(model, x)
    torch.testing.assert_close(mean, tf["mean"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, tf["var"], rtol=1e-5, atol=1e-8)
    # given latents: the path elbo() decodes, with z from the encoder
    z_mean, _ = model.encode(x)
    tf = model.predict_sequence(x, z_mean)
    mean, var = run_steps(model, x, z_mean)
    torch.testing.assert_close(mean, tf["mean"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, tf["var"], rtol=1e-5, atol=1e-8)
    # and elbo's reconstruction term is the likelihood of x under its teacher-forced decoding of its own z
    gen = torch.Generator().manual_seed(3)
    out = model.elbo(x, generator=gen)
    mean, var = run_steps(model, x, out["z"])
    nll = 0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var).sum(-1)[:, 1:].mean()
    torch.testing.assert_close(nll, out["recon"], rtol=1e-4, atol=1e-5)


def test_history_features_average_the_last_increments():
    model = make_model("srnn", history=4)
    io = model.io
    assert io.feature_dim == 11
    x = trajectories(batch=2, length=8)
    x_prev, hist_prev, _ = io.sequence_history(x)
    n = torch.arange(8.0).view(1, 8, 1).expand(2, 8, 1)
    feats = io.features(x_prev, hist_prev, n)
    scale = x_prev[..., 3:4] * io.inc_std
    # step t = 7 (0-based): x_prev = x_7 (1-based), mean increment over x_3 .. x_7
    expected = (x[:, 6] - x[:, 2]) / 4 / scale[:, 7]
    torch.testing.assert_close(feats[:, 7, 4:8], expected, rtol=1e-5, atol=1e-5)
    # step t = 3: only x_1 .. x_3 are real, so the mean runs over 2 increments
    torch.testing.assert_close(feats[:, 3, 4:8], (x[:, 2] - x[:, 0]) / 2 / scale[:, 3], rtol=1e-5, atol=1e-5)
    assert (feats[:, :2, :8] == 0).all()  # no increment before two real boxes


def test_first_step_is_the_reference_guess_and_not_scored():
    model = make_model("srnn")
    mean, var, _ = model.step(model.init_state(2), model.x0(2))
    torch.testing.assert_close(mean, model.x0(2))
    assert (var > 0).all()
    x = trajectories(batch=2)
    y = x.clone()
    y[:, 0, 2] += 0.3  # another aspect ratio of the first box changes the features, not the scored steps count
    assert model._weights(x, None)[:, 0].sum() == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mask_ignores_padding(name):
    model = make_model(name)
    x = trajectories(batch=2, length=8)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    y = x.clone()
    y[1, 5:] = y[1, 4]  # another padding value
    y[1, 5:, 0] += 5.0
    a = model.elbo(x, mask=mask, generator=torch.Generator().manual_seed(1))
    b = model.elbo(y, mask=mask, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a["loss"], b["loss"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_variance_stays_sane_on_wild_inputs(name):
    model = make_model(name)
    state = model.init_state(3)
    x_prev = model.x0(3)
    wild = torch.tensor([[1e3, -1e3, 50.0, 1e-4], [0.0, 0.0, 0.0, 0.0], [-5.0, 3.0, -1.0, -2.0]])
    for _ in range(4):
        mean, var, state = model.step(state, x_prev)
        assert torch.isfinite(mean).all() and torch.isfinite(var).all() and (var > 0).all()
        x_prev = wild


def test_direct_parameterisation_for_other_data():
    model = SRNN({**TINY, "x_dim": 6, "param": "direct"})
    x = torch.rand(2, 5, 6)
    out = model.elbo(x)
    assert torch.isfinite(out["loss"])
    mean, var = run_steps(model, x)
    torch.testing.assert_close(mean, model.predict_sequence(x)["mean"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        SRNN({**TINY, "x_dim": 6})  # box increments need 4-d boxes


@pytest.mark.parametrize("name", sorted(MODELS))
def test_advance_gives_the_state_of_step_without_the_prediction(name, monkeypatch):
    """``advance`` returns exactly the state ``step`` returns (the warm-up over a track's past relies on it), with
    the prior's latents or given ones, and never runs the decoder."""
    model = make_model(name)
    x = trajectories(batch=3)
    zs = torch.randn(3, x.shape[1], model.config["z_dim"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for z in (None, zs):
            stepped, advanced = model.init_state(3), model.init_state(3)
            inputs = [model.x0(3)] + [x[:, t] for t in range(x.shape[1] - 1)]
            for t, x_prev in enumerate(inputs):
                z_t = None if z is None else z[:, t]
                stepped = model.step(stepped, x_prev, z_t)[2]
                advanced = model.advance(advanced, x_prev, z_t)
                assert all(torch.equal(a, b) for a, b in zip(advanced, stepped, strict=True))
        monkeypatch.setattr(model, "_decode", lambda *args: pytest.fail("advance ran the decoder"))
        model.advance(model.init_state(3), model.x0(3))


def test_rollout_with_own_means():
    model = make_model("srnn")
    x = trajectories(batch=3)
    teacher = model.rollout_nll(x, 0.0)
    torch.testing.assert_close(teacher["mean"], model.predict_sequence(x)["mean"], rtol=1e-5, atol=1e-6)
    free = model.rollout_nll(x, 1.0)
    assert torch.isfinite(free["nll"])
    # fully free-running from the second step: each mean is the increment from the previous mean
    state, x_prev = model.init_state(3), model.x0(3)
    mean, _, state = model.step(state, x_prev)
    mean, _, state = model.step(state, x[:, 0])
    mean, _, state = model.step(state, mean)
    torch.testing.assert_close(mean, free["mean"][:, 2], rtol=1e-5, atol=1e-6)


def test_block_scheduled_sampling_runs():
    model = make_model("srnn")
    x = trajectories(batch=400, length=40)
    with torch.no_grad():
        out = model.rollout_nll(x, 0.5, block=6, generator=torch.Generator().manual_seed(0), own_mse_weight=1.0)
    own = out["own"].numpy()
    assert not own[:, :2].any()  # the reference box and the first true box always come from the data
    assert abs(own[:, 2:].mean() - 0.5) < 0.06
    longest = max(max((len(r) for r in "".join("1" if v else "0" for v in row).split("0")), default=0) for row in own)
    assert longest <= 6
    with torch.no_grad():
        teacher = model.rollout_nll(x, 0.0)
    assert torch.isfinite(out["nll"]) and float(out["own_err"]) > 0 and float(teacher["own_err"]) == 0


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("name", sorted(MODELS))
def test_checkpoint_round_trip(tmp_path, name):
    model = make_model(name)
    model.meta = {"note": "test"}
    path = tmp_path / f"{name}.pt"
    model.save(path)
    loaded = DVAE.load(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config and loaded.meta == {"note": "test"}
    assert not loaded.training
    x = trajectories()
    torch.testing.assert_close(loaded.predict_sequence(x)["mean"], model.predict_sequence(x)["mean"])
    assert isinstance(load_prior(path), type(model))
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["model"] == name


def test_checkpoint_rejects_corrupt_and_mismatched_files(tmp_path):
    model = make_model("srnn")
    good = tmp_path / "good.pt"
    model.save(good)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        DVAE.load(garbage)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        DVAE.load(truncated)

    payload = torch.load(good, weights_only=True)
    payload["config"]["h_dim"] = 13
    bad_shape = tmp_path / "bad_shape.pt"
    torch.save(payload, bad_shape)
    with pytest.raises(CheckpointError, match="shape"):
        DVAE.load(bad_shape)

    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    missing = tmp_path / "missing.pt"
    torch.save(payload, missing)
    with pytest.raises(CheckpointError, match="missing"):
        DVAE.load(missing)

    payload = torch.load(good, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key][...] = float("nan")
    nan = tmp_path / "nan.pt"
    torch.save(payload, nan)
    with pytest.raises(CheckpointError, match="NaN"):
        DVAE.load(nan)

    payload = torch.load(good, weights_only=True)
    payload["config"]["model"] = "lstm"
    unknown = tmp_path / "unknown.pt"
    torch.save(payload, unknown)
    with pytest.raises(CheckpointError, match="unknown model"):
        DVAE.load(unknown)

    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="format"):
        DVAE.load(plain)

    with pytest.raises(CheckpointError, match="not 'vrnn'"):
        VRNN.load(good)
    with pytest.raises(FileNotFoundError):
        DVAE.load(tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="shipped priors"):
        load_prior("no_such_prior")


def test_shipped_prior_loads_by_name():
    try:
        prior = load_prior("srnn_mot")
    except FileNotFoundError:
        pytest.skip("data/priors/srnn_mot.pt not trained yet")
    assert isinstance(prior, SRNN) and prior.config["x_dim"] == 4
    x = trajectories(batch=2)
    mean, var = run_steps(prior, x)
    assert torch.isfinite(mean).all() and (var > 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_matches_cpu(name):
    model = make_model(name)
    x = trajectories()
    cpu = model.predict_sequence(x)["mean"]
    gpu = model.cuda().predict_sequence(x.cuda())["mean"].cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# training (tiny)


def test_train_prior_tiny(tmp_path):
    from mixdvae.dvae.training import train_prior

    config = {
        "seed": 1,
        "model": {"model": "srnn", **TINY},
        "data": {
            "window": 12,
            "real": {"roots": []},
            "synthetic": {"piecewise": 40, "walker": 40, "val_fraction": 0.25},
        },
        "train": {
            "batch_size": 8, "epochs": 3, "batches_per_epoch": 3, "kl_warmup_epochs": 2,
            "ss_start_epoch": 0, "ss_ramp_epochs": 1, "threads": 1,
        },
        "output": {"dir": str(tmp_path / "run"), "plot": True},
    }
    result = train_prior(config, log=lambda msg: None, progress=False)
    assert len(result.history) == 3
    assert result.history[-1]["p_own"] == pytest.approx(0.5) and result.history[0]["beta"] < 1
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    loaded = DVAE.load(result.checkpoint)
    assert loaded.meta["data"]["train_synthetic_windows"] == 60
    assert loaded.config["inc_std"] != [0.02, 0.015, 0.02, 0.015]  # measured on the training data
    # seeded: the same config gives the same weights
    again = train_prior({**config, "output": {"dir": str(tmp_path / "run2"), "plot": False}}, log=lambda m: None,
                        progress=False)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)


def test_variance_scale_multiplies_the_variance_and_survives_a_checkpoint(tmp_path):
    model = make_model("srnn")
    x = trajectories()
    _, var = run_steps(model, x)
    model.io.set_var_scale([2.0, 3.0, 1.0, 0.5], model.config)
    _, scaled = run_steps(model, x)
    torch.testing.assert_close(scaled[:, 1:], var[:, 1:] * torch.tensor([2.0, 3.0, 1.0, 0.5]))
    torch.testing.assert_close(scaled[:, 0], var[:, 0])  # the first-step guess keeps its fixed variance
    model.save(tmp_path / "scaled.pt")
    loaded = DVAE.load(tmp_path / "scaled.pt")
    torch.testing.assert_close(run_steps(loaded, x)[1], scaled)
    for bad in ([1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [1.0, float("nan"), 1.0, 1.0]):
        with pytest.raises(ValueError, match="var_scale"):
            model.io.set_var_scale(bad, {})
    model.config["var_scale"] = [1.0, -1.0, 1.0, 1.0]
    model.save(tmp_path / "bad_scale.pt")
    with pytest.raises(CheckpointError, match="var_scale"):
        DVAE.load(tmp_path / "bad_scale.pt")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_velocity_blend_mixes_the_network_with_the_recent_velocity(name, tmp_path):
    model = make_model(name, history=3)
    x = trajectories(batch=3, length=11)
    network, var = run_steps(model, x)
    model.io.set_velocity_blend(0.0, model.config)
    cv, cv_var = run_steps(model, x)
    torch.testing.assert_close(cv_var, var)  # the blend moves the mean only
    torch.testing.assert_close(cv[:, :2], network[:, :2])  # no velocity yet: the network alone
    for t in range(2, 11):  # x_t predicted from x_{t-1} and the mean of its last k = min(3, t - 1) increments
        k = min(3, t - 1)
        torch.testing.assert_close(cv[:, t], x[:, t - 1] + (x[:, t - 1] - x[:, t - 1 - k]) / k)
    model.io.set_velocity_blend(0.3, model.config)
    blended, _ = run_steps(model, x)
    torch.testing.assert_close(blended[:, 2:], 0.3 * network[:, 2:] + 0.7 * cv[:, 2:])
    torch.testing.assert_close(model.predict_sequence(x)["mean"], blended, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "blend.pt")
    torch.testing.assert_close(run_steps(DVAE.load(tmp_path / "blend.pt"), x)[0], blended)
    for bad in (-0.1, 1.5, float("nan"), True, "half"):
        with pytest.raises(ValueError, match="velocity_blend"):
            model.io.set_velocity_blend(bad, {})
    model.config["velocity_blend"] = 2.0
    model.save(tmp_path / "bad_blend.pt")
    with pytest.raises(CheckpointError, match="velocity_blend"):
        DVAE.load(tmp_path / "bad_blend.pt")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_smooth_gate_follows_jitter_free_tracks_and_leaves_jittery_ones(name, tmp_path):
    model = make_model(name, history=4)
    model.io.set_velocity_blend(0.5, model.config)
    t = torch.arange(12.0).view(1, 12, 1)
    straight = torch.tensor([0.0, 0.0, 0.4, 1.0]) + t * torch.tensor([0.02, -0.01, 0.0, 0.005])  # (1, 12, 4)
    jittery = trajectories(batch=2, length=12) * torch.tensor([30.0, 30.0, 1.0, 1.0])  # jerks of ~1 box height
    x = torch.cat([straight, jittery])
    blended, var = run_steps(model, x)
    model.io.set_smooth_gate(0.3, model.config)
    gated, gated_var = run_steps(model, x)
    torch.testing.assert_close(gated_var, var)  # the gate moves the mean only
    torch.testing.assert_close(gated[:, :3], blended[:, :3])  # a second difference needs three real boxes
    # the straight track has no jerk (lam = 1): from then on its last increment, the network left out
    torch.testing.assert_close(gated[0, 3:], x[0, 2:-1] + (x[0, 2:-1] - x[0, 1:-2]), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(gated[0, 3:], blended[0, 3:], atol=1e-4)
    torch.testing.assert_close(gated[1:], blended[1:], rtol=1e-4, atol=1e-4)  # jerk >> 0.3: the blend as before
    lam = model.io.smoothness(x[:, 5], torch.stack([x[:, 4 - j] for j in range(4)], 1), torch.full((3, 1), 6.0))
    assert lam[0].item() == pytest.approx(1.0) and (lam[1:] < 1e-6).all()
    # the teacher-forced pass reads the same histories as the step-by-step one
    torch.testing.assert_close(model.predict_sequence(x)["mean"], gated, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "gate.pt")
    reloaded = DVAE.load(tmp_path / "gate.pt")
    assert reloaded.io.smooth_gate == 0.3
    torch.testing.assert_close(run_steps(reloaded, x)[0], gated)
    model.io.set_smooth_gate(None, model.config)
    torch.testing.assert_close(run_steps(model, x)[0], blended)
    for bad in (-0.1, float("inf"), float("nan"), True, "on"):
        with pytest.raises(ValueError, match="smooth_gate"):
            model.io.set_smooth_gate(bad, {})
    model.config["smooth_gate"] = -1.0
    model.save(tmp_path / "bad_gate.pt")
    with pytest.raises(CheckpointError, match="smooth_gate"):
        DVAE.load(tmp_path / "bad_gate.pt")


def test_calibration_on_held_out_walks(tmp_path):
    from mixdvae.dvae.training import build_data, calibrate_prior, merge_config, train_prior
    from mixdvae.errors import ConfigError
    from tests.test_eth_ucy import straight, write_scene

    write_scene(tmp_path / "biwi_eth.txt",
                {pid: straight(1.0 + 0.1 * pid, range(0, 300, 10), start=(pid, 0), heading=0.4 * pid)
                 for pid in range(12)})
    config = {
        "seed": 2,
        "model": {"model": "srnn", **TINY, "history": 3},
        "data": {"window": 12, "real": {"roots": []},
                 "synthetic": {"piecewise": 20, "walker": 20, "calibration_sequences": 1},
                 "eth_ucy": {"root": str(tmp_path), "datasets": ["eth"], "weight": 0.5, "val_fraction": 0.25}},
        "train": {"batch_size": 8, "epochs": 2, "batches_per_epoch": 2, "kl_warmup_epochs": 1, "ss_start_epoch": 0,
                  "ss_ramp_epochs": 1, "threads": 1, "calibrate_blend": True, "calibrate_variance": True,
                  "smooth_tolerance": 0.006},
        "output": {"dir": str(tmp_path / "run"), "plot": False},
    }
    model = train_prior(config, log=lambda msg: None, progress=False).model
    val = build_data(merge_config(model.meta["train_config"], {}), log=lambda msg: None).val_walks
    # the blend maximises the 10-step IoU on the validation walks over its grid
    weight = model.config["velocity_blend"]
    assert weight in np.round(np.linspace(0, 1, 21), 2)
    best = evaluate_dvae(model, val).summary()["iou_10"]
    for other in (0.0, 0.5, 1.0):
        model.io.set_velocity_blend(other, {})
        assert evaluate_dvae(model, val).summary()["iou_10"] <= best
    model.io.set_velocity_blend(weight, {})
    scale = np.array(model.config["var_scale"])
    assert scale.shape == (4,) and not np.allclose(scale, 1.0)
    # on the validation walks the calibrated next-box errors (of the blended mean) have unit variance
    mean, var, _ = dvae_predictions(model, val.to_model(), horizon=0)
    scored = val.mask & (np.arange(val.length) >= 2)
    ratio = ((val.to_model() - mean) ** 2 / var)[scored].mean(0)
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-3)
    # the smooth-track gate: the best IoU on the jitter-free windows among the gates that cost the validation
    # walks at most train.smooth_tolerance IoU, off when none gains
    smooth = build_data(merge_config(model.meta["train_config"], {}), log=lambda msg: None).val_smooth
    assert len(smooth) and model.meta["data"]["calibration_smooth_windows"] == len(smooth)
    chosen = model.config["smooth_gate"] or 0.0
    assert chosen in (0.0, *SMOOTH_GATES)

    def scores(tau):
        model.io.set_smooth_gate(tau, {})
        return evaluate_dvae(model, smooth).summary()["iou_10"], evaluate_dvae(model, val).summary()["iou_10"]

    off, picked = scores(0.0), scores(chosen)
    assert picked[1] >= off[1] - 0.006 and picked[0] >= off[0]
    for tau in SMOOTH_GATES:
        on_smooth, on_real = scores(tau)
        assert on_real < off[1] - 0.006 or on_smooth <= picked[0]
    # calibrate_prior (train_prior.py --calibrate): the same calibrations on the trained weights, no training
    trained = DVAE.load(tmp_path / "run" / "srnn.pt")
    again = calibrate_prior({**config, "output": {"dir": str(tmp_path / "recal")}}, tmp_path / "run" / "srnn.pt",
                            log=lambda msg: None).model
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)
    for key in ("velocity_blend", "smooth_gate", "var_scale"):
        assert again.config[key] == pytest.approx(trained.config[key])
    assert DVAE.load(tmp_path / "recal" / "srnn.pt").config["var_scale"] == pytest.approx(trained.config["var_scale"])
    with pytest.raises(ConfigError, match="other windows"):
        calibrate_prior({**config, "seed": 3}, tmp_path / "run" / "srnn.pt", log=lambda msg: None)
    with pytest.raises(ConfigError, match="model.z_dim"):
        calibrate_prior({**config, "model": {**config["model"], "z_dim": 5}}, tmp_path / "run" / "srnn.pt",
                        log=lambda msg: None)


# ---------------------------------------------------------------------------------------------------------------
# constant-velocity predictor and evaluation helpers


def test_cv_filter_fits_simulated_noise():
    rng = np.random.default_rng(0)
    n, length = 80, 30
    vel = rng.normal(0, 0.02, size=(n, 1, 4))
    clean = np.arange(length)[None, :, None] * vel
    r_true = 1e-4
    x = clean + rng.normal(0, math.sqrt(r_true), size=clean.shape)
    x[:, 0] = clean[:, 0]
    params = fit_cv(x, starts=1)
    assert all(1e-5 < r < 1e-3 for r in params.r)
    assert cv_nll(x, np.ones(x.shape[:2], bool), params) < cv_nll(x, np.ones(x.shape[:2], bool), CVParams())
    mean1, var1, filt = cv_filter(x, None, params)
    ahead_mean, ahead_var = cv_predict_ahead(filt, 1, params)
    np.testing.assert_allclose(ahead_mean[:, :-1], mean1[:, 1:])
    np.testing.assert_allclose(ahead_var[:, :-1], var1[:, 1:])


def test_iou_and_horizon_one_equals_next_step():
    boxes = np.array([[10.0, 10.0, 4.0, 8.0]])
    assert iou_cxcywh(boxes, boxes)[0] == pytest.approx(1.0)
    assert iou_cxcywh(boxes, boxes + [[100, 0, 0, 0]])[0] == 0.0
    assert iou_cxcywh(boxes, boxes + [[2, 0, 0, 0]])[0] == pytest.approx(1 / 3)
    model = make_model("srnn")
    x = trajectories(batch=3, length=7).numpy()
    mean1, var1, mean_h = dvae_predictions(model, x, horizon=1)
    np.testing.assert_allclose(mean_h[:, 1:], mean1[:, 1:], rtol=1e-5, atol=1e-6)
    _, _, mean_3 = dvae_predictions(model, x, horizon=3)
    assert np.isnan(mean_3[:, :3]).all() and np.isfinite(mean_3[:, 3:]).all()
