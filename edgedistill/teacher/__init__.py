"""The teacher stage: prompts, the client and its cache, parsing, teacher signal, costs, DSS import."""
