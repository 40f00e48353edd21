"""`edgedistill compress`: a stripped student -> a smaller stripped student (trimmed vocabulary, fewer layers or
another base distilled), picked by a latency budget.

It sits between strip and export and writes the same stripped format, so `edgedistill export` takes its output
unchanged. Above deploy/ and measure/ (it exports and times its candidates) and distill/ (it trains smaller
students); none of them imports it.

    compress.py     the stage: `CompressConfig`, `compress` (build the candidates, score, time, ship one)
    inputs.py       what it reads besides MODEL: annotated rows, --inputs, the rows held out to score on
    vocabulary.py   vocabulary trimming
    smaller.py      fewer layers, another base: smaller students distilled from MODEL's probabilities
    static.py       the static student (--into static): model2vec embeddings and a linear head
    cascade.py      the cascade candidate: the static student in front of the full one, its P, its shipping
    candidates.py   each candidate exported, scored and timed; the latency budget's choice; compress.md's table, plot
    evidence.py     what the scores are worth: the one rule (`keep_evidence`) and what compress says about it
"""
