"""The torch-free core: what a bundle needs at run time, and the one copy of each shared rule.

Imports only the standard library, numpy, onnxruntime and tokenizers, and only relatively within this
package. `edgedistill export` copies this package into every bundle (BUNDLE/edge/), so the runtime,
`edgedistill bench` and the device kit (export/run_bundle.py) all run the same code, on this machine
or on a device with the bundle alone.

    runtime    EdgeModel, BundleError, sha256_file: load (a dir or a .zip) and predict
    feeds      tokenized inputs: exactly (batch, seq) real-text feeds for timing, example feeds, synthetic text
    timing     interleaved time slices and the percentile summary of ns timings
    process    the fresh-process child protocol: cold start, peak and current RSS
    machine    the machine record (CPU, ISA, versions, load) and the CPU's INT8 preset
    answers    gold normalisation and accuracy (numbers compare by value: families.answers_match)
    families   the task families: model class, optimum task, ONNX files, answer rule
    arith      safe arithmetic for numeric answers (same_number)
    template   input templates: plain {field} placeholders only, parsed once, filled without str.format
"""
