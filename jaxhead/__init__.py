"""jaxhead: audio-driven 3D talking heads with neural radiance fields, in JAX/Flax.

Subpackages keep the split "pure math / modules / plumbing / entry points" visible:

- ``jaxhead.nerf``: rays, sampling, volume rendering, encodings (pure); field + upsampler (modules).
- ``jaxhead.sync``: audio & lip encoders (modules); InfoNCE / BCE losses (pure).
- ``jaxhead.gpvae``: Cauchy kernel, GP prior, KL (pure); Transformer VAE (modules).
- ``jaxhead.audio``: audio I/O, MFCC / log-mel in JAX, HuBERT in Flax.
- ``jaxhead.data``: synthetic generator, VOCASET reader + renderer, video datasets, pipelines.
- ``jaxhead.train``: mesh & sharding, checkpoints, optimizers, the shared loop, metrics.
- ``jaxhead.eval``: metrics.
"""

__version__ = "0.1.0"
