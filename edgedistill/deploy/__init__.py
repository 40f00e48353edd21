"""The export stage: optimum export and fusions, INT8, parity checks, the bundle."""
