"""The shipped speech-enhancement example (noisy.wav, clean.wav): ``mixdvae.resources.shipped_dir("audio_demo")``."""
