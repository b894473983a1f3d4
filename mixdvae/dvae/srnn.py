"""SRNN, the stochastic recurrent network (Fraccaro et al., 2016) used by MixDVAE.

Generative model (features ``phi`` of x_{t-1}, see :mod:`.base` for the parameterisation)::

    h_t = LSTM(h_{t-1}, phi(x_{t-1}))
    p(z_t | h_t, z_{t-1}) = N(mu_z, diag v_z)([h_t, z_{t-1}])
    p(x_t | h_t, z_t)     = N(mu_x, diag v_x)([h_t, z_t])

Inference, as in the DVAE literature: a backward LSTM over ``[h_t, phi(x_t)]`` gives g_t, and
``q(z_t | z_{t-1}, g_t)``. Since h depends on x only, the teacher-forced pass runs one fused LSTM over the
whole sequence; only the z recurrence loops over time.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import DVAE, GaussianHead, lstm_cell, randn_like, reverse_valid


class SRNN(DVAE):
    model_name = "srnn"

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        x_dim, z_dim, h_dim, dense, embed = self._sizes()
        self.embed_x = self._feature_embedding()
        self.rnn = nn.LSTM(embed, h_dim, batch_first=True)
        self.prior_z = GaussianHead(h_dim + z_dim, dense, z_dim, cfg["z_logvar_range"])
        self.decoder = nn.Sequential(nn.Linear(h_dim + z_dim, dense), nn.Tanh(), nn.Linear(dense, 2 * x_dim))
        self.enc_rnn = nn.LSTM(h_dim + embed, h_dim, batch_first=True)
        self.post_z = GaussianHead(h_dim + z_dim, dense, z_dim, cfg["z_logvar_range"])

    def init_state(self, batch_size: int, device=None):
        """``(h, c, z_prev, hist, n)``: LSTM state, previous latent, past inputs (x_{t-2}, ...), steps taken."""
        device = device if device is not None else self.device
        h_dim, z_dim = self.config["h_dim"], self.config["z_dim"]
        zeros = torch.zeros
        return (
            zeros(batch_size, h_dim, device=device),
            zeros(batch_size, h_dim, device=device),
            zeros(batch_size, z_dim, device=device),
            self.io.init_history(batch_size, device),
            self._counter(batch_size, device),
        )

    def _decode(self, h, z, x_prev, n, features=None, hist=None):
        raw_mean, raw_logvar = self._decoder_heads(torch.cat([h, z], -1))
        return self.io.output(raw_mean, raw_logvar, x_prev, n, features, hist)

    def _transition(self, state, x_prev, z):
        h, c, z_prev, hist, n = state
        x_prev, z = self._cast(x_prev, z)
        features = self.io.features(x_prev, hist, n)
        h_new, c_new = lstm_cell(self.rnn, self.embed_x(features), h, c)
        if z is None:
            z, _ = self.prior_z(torch.cat([h_new, z_prev], -1))
        return (h_new, c_new, z, self.io.push(hist, x_prev), n + 1), (h_new, z, x_prev, n, features, hist)

    def _run(self, x, z=None, use_posterior=False, sample=False, generator=None, lengths=None):
        batch, length, _ = x.shape
        x_prev, n, feat_prev, feat_cur, hist_prev = self._sequence_inputs(x)
        h, _ = self.rnn(self.embed_x(feat_prev))  # (B, T, H): h_t from x_{<t}
        out = {}
        z_prev = torch.zeros(batch, self.config["z_dim"], device=x.device, dtype=x.dtype)
        if z is None and use_posterior:
            g, _ = self.enc_rnn(reverse_valid(torch.cat([h, self.embed_x(feat_cur)], -1), lengths))
            g = reverse_valid(g, lengths)
            zs, q_means, q_vars = [], [], []
            for t in range(length):
                q_mean, q_var = self.post_z(torch.cat([g[:, t], z_prev], -1))
                z_t = q_mean + q_var.sqrt() * randn_like(q_mean, generator) if sample else q_mean
                zs.append(z_t)
                q_means.append(q_mean)
                q_vars.append(q_var)
                z_prev = z_t
            z = torch.stack(zs, 1)
            out.update(q_mean=torch.stack(q_means, 1), q_var=torch.stack(q_vars, 1))
        if z is None:  # prior means, recursively
            zs, p_means, p_vars = [], [], []
            for t in range(length):
                p_mean, p_var = self.prior_z(torch.cat([h[:, t], z_prev], -1))
                zs.append(p_mean)
                p_means.append(p_mean)
                p_vars.append(p_var)
                z_prev = p_mean
            z = torch.stack(zs, 1)
            p_mean, p_var = torch.stack(p_means, 1), torch.stack(p_vars, 1)
        else:
            z_shift = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)
            p_mean, p_var = self.prior_z(torch.cat([h, z_shift], -1))
        mean, var = self._decode(h, z, x_prev, n, feat_prev, hist_prev)
        out.update(mean=mean, var=var, z=z, p_mean=p_mean, p_var=p_var, h=h)
        return out
