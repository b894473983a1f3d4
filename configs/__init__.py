"""Shipped YAML configurations, found with :func:`mixdvae.resources.config_file`."""
