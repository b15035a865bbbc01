"""Real-video preprocessing into the AD-NeRF / RAD-NeRF / ER-NeRF dataset layout.

Import-light on purpose: ``mediapipe_worker`` runs under a separate interpreter that has
MediaPipe (and no jax / grain); the rest (``decode``, ``landmarks``, ``pose``, ``masks``,
``pipeline``) runs in the main environment. See docs/preprocess.md.
"""
