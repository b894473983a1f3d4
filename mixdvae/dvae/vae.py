"""VAE, the frame-independent baseline (Kingma & Welling, 2014; the prior of VAE-VEM speech enhancement).

Generative model, the same for every frame (x_{t-1} enters only through the output parameterisation of
:mod:`.base`, e.g. the increments of ``box_increment``; ``log_power`` ignores it)::

    p(z_t) = N(0, I)
    p(x_t | z_t) = N(mu_x, diag v_x)(z_t)      (or the complex Gaussian of the power, likelihood itakura_saito)

Inference: ``q(z_t | x_t) = N(mu_q, diag v_q)(phi(x_t))``, one frame at a time. Same interface as the DVAEs
(``elbo``, ``encode``, ``init_state``, ``step``, ``save``/``load``), so the VEMs can swap one for the other.
"""

from __future__ import annotations

import torch

from .base import DVAE, GaussianHead, mlp


class VAE(DVAE):
    model_name = "vae"

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        x_dim, z_dim, _, dense, embed = self._sizes()
        self.embed_x = self._feature_embedding()
        self.post_z = GaussianHead(embed, dense, z_dim, cfg["z_logvar_range"])
        self.decoder = mlp(z_dim, dense, 2 * x_dim)

    def init_state(self, batch_size: int, device=None):
        """``(hist, n)``: past inputs (x_{t-2}, ...) and steps taken (the output parameterisation's only memory)."""
        device = device if device is not None else self.device
        return self.io.init_history(batch_size, device), self._counter(batch_size, device)

    def _decode(self, z, x_prev, n, features=None, hist=None):
        raw_mean, raw_logvar = self._decoder_heads(z)
        return self.io.output(raw_mean, raw_logvar, x_prev, n, features, hist)

    def _transition(self, state, x_prev, z):
        hist, n = state
        x_prev, z = self._cast(x_prev, z)
        if z is None:  # the prior mean
            z = torch.zeros(x_prev.shape[0], self.config["z_dim"], device=x_prev.device, dtype=x_prev.dtype)
        return (self.io.push(hist, x_prev), n + 1), (z, x_prev, n, self.io.features(x_prev, hist, n), hist)

    def _run(self, x, z=None, use_posterior=False, sample=False, generator=None, lengths=None):
        x_prev, n, feat_prev, feat_cur, hist_prev = self._sequence_inputs(x)
        out = self._independent_latents(x, z, use_posterior, sample, generator, lambda: self.embed_x(feat_cur))
        out["mean"], out["var"] = self._decode(out["z"], x_prev, n, feat_prev, hist_prev)
        return out
