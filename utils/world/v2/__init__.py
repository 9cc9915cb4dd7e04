"""Course world v2 (issue 11): a corpus, tokenizer and evaluation built for natural prompts.

Not used by any chapter yet and not imported by v1: the shipped world (utils/world/*.py and its
artifacts) is unchanged. One job per module:

    facts.py      the fact tables (what is true in the world)
    frames.py     every way a relation is stated; held-out frames marked "@"
    corpus.py     the seeded generator of labelled documents, and the token inventory
    tokenizer.py  whole words + character fallback: never <|unk|> on ASCII text
    prompts.py    evaluation prompts cut from held-out frames, and natural prompts
    bars.py       the v2 quality bars and the measurements behind them
    train.py      the training entry point (reuses v1's model helpers)
"""
