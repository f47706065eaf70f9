"""Generative diffusion models (seed systems 002+003): DDPM/DDIM maths (ddpm), denoisers, offline digit-quality
metrics (metrics), central training (train); quantized federated training and resource allocation build on them."""
