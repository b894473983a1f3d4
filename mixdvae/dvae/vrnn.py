"""VRNN, the variational recurrent neural network (Chung et al., 2015).

Generative model (``phi_x``: features of a box, ``phi_z``: latent embedding)::

    h_t = LSTM(h_{t-1}, [phi_x(x_{t-1}), phi_z(z_{t-1})])
    p(z_t | h_t)       = N(mu_z, diag v_z)(h_t)
    p(x_t | h_t, z_t)  = N(mu_x, diag v_x)([h_t, phi_z(z_t)])

Inference (filtering, as in the original VRNN): ``q(z_t | x_t, h_t)``. The deterministic state depends on
the sampled latents, so every pass loops over time.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import DVAE, GaussianHead, randn_like


class VRNN(DVAE):
    model_name = "vrnn"

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        x_dim, z_dim, h_dim, dense, embed = self._sizes()
        self.embed_x = self._feature_embedding()
        self.embed_z = nn.Sequential(nn.Linear(z_dim, embed), nn.Tanh())
        self.rnn = nn.LSTMCell(2 * embed, h_dim)
        self.prior_z = GaussianHead(h_dim, dense, z_dim, cfg["z_logvar_range"])
        self.post_z = GaussianHead(h_dim + embed, dense, z_dim, cfg["z_logvar_range"])
        self.decoder = nn.Sequential(nn.Linear(h_dim + embed, dense), nn.Tanh(), nn.Linear(dense, 2 * x_dim))

    def init_state(self, batch_size: int, device=None):
        """``(h, c, z_prev, hist, n)``: LSTM state, previous latent, past inputs (x_{t-2}, ...), steps taken."""
        device = device if device is not None else self.device
        h_dim, z_dim = self.config["h_dim"], self.config["z_dim"]
        return (
            torch.zeros(batch_size, h_dim, device=device),
            torch.zeros(batch_size, h_dim, device=device),
            torch.zeros(batch_size, z_dim, device=device),
            self.io.init_history(batch_size, device),
            self._counter(batch_size, device),
        )

    def _advance(self, h, c, z_prev, feat_prev):
        inputs = torch.cat([self.embed_x(feat_prev), self.embed_z(z_prev)], -1)
        return self.rnn(inputs, (h, c))

    def _decode(self, h, z, x_prev, n, features=None, hist=None):
        raw_mean, raw_logvar = self._decoder_heads(torch.cat([h, self.embed_z(z)], -1))
        return self.io.output(raw_mean, raw_logvar, x_prev, n, features, hist)

    def _transition(self, state, x_prev, z):
        h, c, z_prev, hist, n = state
        x_prev, z = self._cast(x_prev, z)
        features = self.io.features(x_prev, hist, n)
        h, c = self._advance(h, c, z_prev, features)
        if z is None:
            z, _ = self.prior_z(h)
        return (h, c, z, self.io.push(hist, x_prev), n + 1), (h, z, x_prev, n, features, hist)

    def _run(self, x, z=None, use_posterior=False, sample=False, generator=None, lengths=None):
        batch, length, _ = x.shape
        x_prev, n, feat_prev, feat_cur, hist_prev = self._sequence_inputs(x)
        state = self.init_state(batch, x.device)
        h, c, z_prev = state[0], state[1], state[2]
        given = z
        keys = ("mean", "var", "z", "p_mean", "p_var", "q_mean", "q_var")
        rows: dict[str, list] = {k: [] for k in keys}
        e_cur = self.embed_x(feat_cur) if given is None and use_posterior else None
        for t in range(length):
            h, c = self._advance(h, c, z_prev, feat_prev[:, t])
            p_mean, p_var = self.prior_z(h)
            if given is not None:
                z_t = given[:, t]
            elif use_posterior:
                q_mean, q_var = self.post_z(torch.cat([h, e_cur[:, t]], -1))
                z_t = q_mean + q_var.sqrt() * randn_like(q_mean, generator) if sample else q_mean
                rows["q_mean"].append(q_mean)
                rows["q_var"].append(q_var)
            else:
                z_t = p_mean
            mean, var = self._decode(h, z_t, x_prev[:, t], n[:, t], feat_prev[:, t], hist_prev[:, t])
            for key, value in zip(keys[:5], (mean, var, z_t, p_mean, p_var)):
                rows[key].append(value)
            z_prev = z_t
        return {k: torch.stack(v, 1) for k, v in rows.items() if v}
