"""Fitting a board: board profiles (:mod:`.boards`, data in ``profiles/``), int8 export and C source
(:mod:`.export`), the parsed ``.tflite`` (:mod:`.tflite_model`), the interpreters (:mod:`.runtime`; TFLite Micro
runs isolated in :mod:`._tflm_worker`), latency (:mod:`.latency`, ``cores.toml``), the check against a board
(:mod:`.fitcheck`, ``code_size.toml``) and the device side: the bundle
(:mod:`.bundle`) and its verifier, which needs only numpy and an interpreter (:mod:`.ondevice`).

Nothing here imports TensorFlow at import time, so a device install (``tinydistill[device]``) can verify.
"""
