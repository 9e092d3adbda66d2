"""The PHAE physics-informed autoencoder (encoder, physics decoder, training, weights).

Importing this package imports nothing heavy; :mod:`.model` and :mod:`.train`
import torch, :mod:`.data` and :mod:`.weights` only NumPy at import time.
The inference backend is :mod:`perfmap.deconv.phae` (``--method phae``) and the
training command ``perfmap train`` (:mod:`perfmap.cli.train`).

Reference: "Physics-informed autoencoder for DSC-MRI perfusion
post-processing: application to glioma grading" (the PHAE paper,
``shared/seeds/002_*.txt``).
"""
