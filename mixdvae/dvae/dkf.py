"""DKF, the deep Kalman filter (Krishnan et al., 2017): a nonlinear state-space model, all memory in z.

Generative model, with the previous box as the transition's input (Krishnan et al.'s "action" u_{t-1};
without it the deterministic prediction ``z = prior mean`` could not use the observed history)::

    p(z_t | z_{t-1}, x_{t-1}) = N(z_{t-1} + f(z_{t-1}, phi(x_{t-1})), diag v_z)      (gated residual transition)
    p(x_t | z_t, x_{t-1})     = N(mu_x, diag v_x)(z_t)      (x_{t-1} only through the increment parameterisation)

Inference: a backward LSTM over ``phi(x_t)`` gives g_t (the future), combined with z_{t-1} in
``q(z_t | z_{t-1}, g_t)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import DVAE, GaussianHead, mlp, randn_like, reverse_valid


class DKF(DVAE):
    model_name = "dkf"
    DEFAULTS = {"z_dim": 16}

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        x_dim, z_dim, h_dim, dense, embed = self._sizes()
        self.embed_x = self._feature_embedding()
        self.gate = nn.Sequential(nn.Linear(z_dim + embed, dense), nn.Tanh(), nn.Linear(dense, z_dim), nn.Sigmoid())
        self.proposal = mlp(z_dim + embed, dense, z_dim)
        self.transition_var = GaussianHead(z_dim + embed, dense, z_dim, cfg["z_logvar_range"])
        self.decoder = mlp(z_dim, dense, 2 * x_dim)
        self.enc_rnn = nn.LSTM(embed, h_dim, batch_first=True)
        self.post_z = GaussianHead(h_dim + z_dim, dense, z_dim, cfg["z_logvar_range"])

    def init_state(self, batch_size: int, device=None):
        """``(z_prev, hist, n)``: previous latent, past inputs (x_{t-2}, ...), steps taken."""
        device = device if device is not None else self.device
        return (
            torch.zeros(batch_size, self.config["z_dim"], device=device),
            self.io.init_history(batch_size, device),
            self._counter(batch_size, device),
        )

    def _prior(self, z_prev, e_prev):
        inputs = torch.cat([z_prev, e_prev], -1)
        mean = z_prev + self.gate(inputs) * self.proposal(inputs)
        _, var = self.transition_var(inputs)
        return mean, var

    def _decode(self, z, x_prev, n, features=None, hist=None):
        raw_mean, raw_logvar = self._decoder_heads(z)
        return self.io.output(raw_mean, raw_logvar, x_prev, n, features, hist)

    def _transition(self, state, x_prev, z):
        z_prev, hist, n = state
        x_prev, z = self._cast(x_prev, z)
        features = self.io.features(x_prev, hist, n)
        p_mean, _ = self._prior(z_prev, self.embed_x(features))
        z = p_mean if z is None else z
        return (z, self.io.push(hist, x_prev), n + 1), (z, x_prev, n, features, hist)

    def _run(self, x, z=None, use_posterior=False, sample=False, generator=None, lengths=None):
        batch, length, _ = x.shape
        x_prev, n, feat_prev, feat_cur, hist_prev = self._sequence_inputs(x)
        e_prev = self.embed_x(feat_prev)
        z_prev = torch.zeros(batch, self.config["z_dim"], device=x.device, dtype=x.dtype)
        out = {}
        if z is None:
            g = None
            if use_posterior:
                g, _ = self.enc_rnn(reverse_valid(self.embed_x(feat_cur), lengths))
                g = reverse_valid(g, lengths)
            rows: dict[str, list] = {"z": [], "p_mean": [], "p_var": [], "q_mean": [], "q_var": []}
            for t in range(length):
                p_mean, p_var = self._prior(z_prev, e_prev[:, t])
                if g is not None:
                    q_mean, q_var = self.post_z(torch.cat([g[:, t], z_prev], -1))
                    z_t = q_mean + q_var.sqrt() * randn_like(q_mean, generator) if sample else q_mean
                    rows["q_mean"].append(q_mean)
                    rows["q_var"].append(q_var)
                else:
                    z_t = p_mean
                rows["z"].append(z_t)
                rows["p_mean"].append(p_mean)
                rows["p_var"].append(p_var)
                z_prev = z_t
            out = {k: torch.stack(v, 1) for k, v in rows.items() if v}
            z = out["z"]
        else:
            z_shift = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)
            out["p_mean"], out["p_var"] = self._prior(z_shift, e_prev)
            out["z"] = z
        out["mean"], out["var"] = self._decode(z, x_prev, n, feat_prev, hist_prev)
        return out
