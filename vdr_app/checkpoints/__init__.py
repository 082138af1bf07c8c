"""Builders of random test checkpoints, made offline: never the encoders that use them.

    tiny       every supported family at ~100-200k parameters, for tests and demos
               (`python -m vdr_app make-tiny-model DIR`)
    fullsize   the exact published architectures with random weights, for speed and memory
               figures (`make-tiny-model DIR --size full`)

Both load through the same `from_pretrained` path as real checkpoints (`vdr_app.models`); their
vectors mean nothing. torch / transformers / colpali_engine are imported inside functions only.
"""
