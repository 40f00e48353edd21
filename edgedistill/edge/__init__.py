"""The torch-free core: what a bundle needs at run time, and the one copy of each shared rule.

Imports only the standard library, numpy, onnxruntime and tokenizers. `edgedistill export` copies
this package into every bundle, so the runtime, `edgedistill bench` and the device kit
(export/run_bundle.py) all run the same code, on this machine or on a device with the bundle alone.
"""
