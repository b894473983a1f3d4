"""Shipped trained priors (``NAME.pt`` with ``NAME.yaml``), loaded by name with :func:`mixdvae.dvae.load_prior`."""
