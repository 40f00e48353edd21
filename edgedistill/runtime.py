"""Run an edgedistill bundle with onnxruntime, tokenizers and numpy only: no torch, no transformers.

The runtime itself lives in the torch-free core, edgedistill/edge/runtime.py. `edgedistill export`
copies that whole `edge` package into every bundle, and this file beside it as `edge_runtime.py`, so
an app or a device with Python runs the bundle with the runtime that made it:

    from edgedistill.runtime import EdgeModel
    # or, with the bundle dir on sys.path: from edge_runtime import EdgeModel
    model = EdgeModel.load("runs/x/bundle")
    model.predict([{"text": "my card was charged twice"}])
    # -> [{"label": "billing", "probs": {"billing": 0.93, ...}}]

    python BUNDLE/edge_runtime.py BUNDLE "some text" ...
"""

from __future__ import annotations

if __package__:  # imported as edgedistill.runtime
    from .edge.runtime import FORMAT_VERSION, BundleError, EdgeModel, sha256_file  # noqa: F401
else:  # BUNDLE/edge_runtime.py (imported or run): the core is the bundle's own edge/ package beside it
    import os as _os
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _here not in _sys.path:
        _sys.path.insert(0, _here)
    from edge.runtime import FORMAT_VERSION, BundleError, EdgeModel, sha256_file  # noqa: F401

__all__ = ["FORMAT_VERSION", "BundleError", "EdgeModel", "sha256_file"]

if __name__ == "__main__":  # python edge_runtime.py BUNDLE "some text" ...
    import json
    import os
    import sys

    m = EdgeModel.load(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps(m.predict(sys.argv[2:] or [input("text: ")]), indent=2))
