"""Predict with a bundle and save the results, or compare two saved runs (used by check_arm64.sh).

Needs only onnxruntime, numpy and tokenizers: it loads the runtime copy inside the bundle.
    python arm64_predict.py BUNDLE OUT.json [INPUTS.jsonl]
    python arm64_predict.py --compare A.json B.json
"""

import json
import platform
import sys
from pathlib import Path


def predict(bundle: str, out: str, inputs: str | None) -> None:
    sys.path.insert(0, bundle)
    import onnxruntime
    from edge_runtime import EdgeModel  # the runtime shipped inside the bundle

    model = EdgeModel.load(bundle)
    if inputs:
        items = [json.loads(line) for line in Path(inputs).read_text().splitlines() if line.strip()][:200]
    else:  # no inputs given: the parity sample is not in the bundle, so use fixed synthetic text
        words = "the a dog cat man woman is are not running sitting park street happy sad red big small because".split()
        items = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(5 + i % 20)) for i in range(100)]
    preds = model.predict(items)
    Path(out).write_text(
        json.dumps(
            {
                "arch": platform.machine(),
                "onnxruntime": onnxruntime.__version__,
                "quantization": model.manifest["quantization"],
                "predictions": preds,
            }
        )
    )
    print(f"{platform.machine()}: {len(preds)} predictions", file=sys.stderr)


def compare(a: str, b: str) -> None:
    x, y = json.loads(Path(a).read_text()), json.loads(Path(b).read_text())
    pa, pb = x["predictions"], y["predictions"]
    key = "label" if "label" in pa[0] else "answer"
    agree = sum(p[key] == q[key] for p, q in zip(pa, pb)) / len(pa)
    diff = max((abs(p["probs"][k] - q["probs"][k]) for p, q in zip(pa, pb) for k in p.get("probs", {})), default=0.0)
    result = {
        "x": x["arch"],
        "y": y["arch"],
        "inputs": len(pa),
        "agreement": agree,
        "max_abs_prob_diff": diff,
        "quantization": x["quantization"].get("mode"),
        "onnxruntime": [x["onnxruntime"], y["onnxruntime"]],
    }
    print(json.dumps(result, indent=2))
    sys.exit(0 if agree == 1.0 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        predict(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
