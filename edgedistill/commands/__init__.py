"""Click commands, one file per CLI command; each is a thin layer over a plain function."""
