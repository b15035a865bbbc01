"""jaxhead: audio-driven 3D talking heads with neural radiance fields, in JAX/Flax.

The package is a house of floors; a module imports only from its own floor or the floors below
it, never from above, and no two modules import each other (``tests/test_floors.py`` parses every
import, function-local ones included, and fails on an upward or circular one). Bottom up:

1. ``jaxhead.numerics`` (safe norms and similarities), ``jaxhead.face`` (landmark layouts, index
   sets, the eye-aspect ratio), ``jaxhead.files`` (publishing files written through a temporary
   file with the user's usual permissions), ``jaxhead.pretrained`` (published networks and the
   readers of their weight files), ``jaxhead.train`` (mesh, sharding, checkpoints, restore,
   optimisers, the
   shared loop), ``jaxhead.audio`` (audio I/O, MFCC / log-mel, HuBERT).
2. ``jaxhead.data``: the synthetic generator, the VOCASET reader and renderer, video datasets,
   frame caches, input pipelines.
3. ``jaxhead.sync`` (audio-lip sync stage), ``jaxhead.gpvae`` (pose / blink generator),
   ``jaxhead.preprocess`` (video -> dataset folder).
4. ``jaxhead.eval``: metrics only (PSNR / SSIM, lip region, LMD, LPIPS, FID, probes, Face Mesh).
5. ``jaxhead.disentangle``: latent-code extractor and landmark autoencoder.
6. ``jaxhead.nerf``: the head NeRF. Inside it, bottom up: ``config`` (data-only blocks) ->
   ``encoding`` / ``rays`` / ``render`` / ``patches`` / ``losses`` / ``perceptual`` (pure math)
   -> ``field`` / ``upsampler`` / ``model`` (modules) -> ``conditions`` (computed once into the
   data or the run) -> ``step`` (train step, renderer) -> ``heldout`` (the one held-out
   protocol) -> ``stage`` (task assembly) -> ``poses`` / ``render_video`` / ``evaluate``
   (rendering, the metric suite).
7. ``jaxhead.avatar`` (a video to a driven avatar: preprocessing, the stages, evaluation and
   renders as one resumable pipeline), ``jaxhead.experiments`` (research that uses the stages
   and is never used by them: swap test, probes, ablations).

``configs/`` and ``scripts/`` sit above all of it. docs/architecture.md says why.
"""

__version__ = "0.1.0"
