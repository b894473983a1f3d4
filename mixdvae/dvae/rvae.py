"""RVAE, the recurrent VAE (Leglaive et al., 2020; the DVAE of the published RVAE-VEM speech enhancement).

The latents are independent a priori, as the VAE's; the temporal model is in the decoder, a forward LSTM over
the latents (causal: x_t depends on z_{1:t}; x_{t-1} enters only through the output parameterisation of
:mod:`.base`, e.g. the increments of ``box_increment``; ``log_power`` ignores it)::

    p(z_t) = N(0, I)
    h_t = LSTM(h_{t-1}, z_t)
    p(x_t | z_{1:t}) = N(mu_x, diag v_x)(h_t)     (or the complex Gaussian of the power, likelihood itakura_saito)

Inference: a bidirectional LSTM over ``phi(x)`` (a forward and a backward one, each within the valid prefix)
gives g_t, and ``q(z_t | x_{1:T}) = N(mu_q, diag v_q)(g_t)``: no recurrence over z, so the posterior of every
frame is computed at once.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import DVAE, GaussianHead, lstm_cell, mlp, reverse_valid


class RVAE(DVAE):
    model_name = "rvae"
    DEFAULTS = {"z_dim": 16}

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        x_dim, z_dim, h_dim, dense, embed = self._sizes()
        self.embed_x = self._feature_embedding()
        self.enc_forward = nn.LSTM(embed, h_dim, batch_first=True)
        self.enc_backward = nn.LSTM(embed, h_dim, batch_first=True)
        self.post_z = GaussianHead(2 * h_dim, dense, z_dim, cfg["z_logvar_range"])
        self.dec_rnn = nn.LSTM(z_dim, h_dim, batch_first=True)
        self.decoder = mlp(h_dim, dense, 2 * x_dim)

    def init_state(self, batch_size: int, device=None):
        """``(h, c, hist, n)``: the decoder LSTM's state, past inputs (x_{t-2}, ...), steps taken."""
        device = device if device is not None else self.device
        h_dim = self.config["h_dim"]
        return (
            torch.zeros(batch_size, h_dim, device=device),
            torch.zeros(batch_size, h_dim, device=device),
            self.io.init_history(batch_size, device),
            self._counter(batch_size, device),
        )

    def _decode(self, h, x_prev, n, features=None, hist=None):
        raw_mean, raw_logvar = self._decoder_heads(h)
        return self.io.output(raw_mean, raw_logvar, x_prev, n, features, hist)

    def _transition(self, state, x_prev, z):
        h, c, hist, n = state
        x_prev, z = self._cast(x_prev, z)
        if z is None:  # the prior mean
            z = torch.zeros(x_prev.shape[0], self.config["z_dim"], device=x_prev.device, dtype=x_prev.dtype)
        h, c = lstm_cell(self.dec_rnn, z, h, c)
        features = self.io.features(x_prev, hist, n)
        return (h, c, self.io.push(hist, x_prev), n + 1), (h, x_prev, n, features, hist)

    def encoder_context(self, embedded: torch.Tensor, lengths=None) -> torch.Tensor:
        """g (B, T, 2 h_dim): the forward and backward LSTMs over the embedded features (B, T, embed_dim) of
        x_t, the backward one within each valid prefix of ``lengths`` (B,) steps."""
        forward = self.enc_forward(embedded)[0]
        backward = reverse_valid(self.enc_backward(reverse_valid(embedded, lengths))[0], lengths)
        return torch.cat([forward, backward], -1)

    def _run(self, x, z=None, use_posterior=False, sample=False, generator=None, lengths=None):
        x_prev, n, feat_prev, feat_cur, hist_prev = self._sequence_inputs(x)
        out = self._independent_latents(x, z, use_posterior, sample, generator,
                                        lambda: self.encoder_context(self.embed_x(feat_cur), lengths))
        out["h"], _ = self.dec_rnn(out["z"])  # (B, T, H): h_t from z_{1:t}
        out["mean"], out["var"] = self._decode(out["h"], x_prev, n, feat_prev, hist_prev)
        return out
