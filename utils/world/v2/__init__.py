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
    dictionaries.py  v1's dictionary specs trained on a v2 run, and their bars on v2 text
    mechanisms.py the chapter 04/06 targets: IOI head attention, state supernode ablation/swap
    report.py     all of the above in one command, and `ship` (a run into v2/artifacts)

Decisions a switch-over should know:
- Text convention: no normaliser. A document starts with a no-space word ("What"), every later
  word carries its space (" is"), so a prompt typed the natural way ("What is the capital of
  Texas?") is exactly corpus text, and decode(encode(text)) == text.
- Vocabulary: corpus tokens (words with and without a leading space, where the corpus writes
  them so) plus 255 character tokens, some of which are also corpus tokens (" E", "."); d_vocab
  1,696 at the time of writing (run 9's corpus). The
  inventory is derived from the frames, so it changes whenever a frame or a fact changes (and a
  model trained on one version cannot be scored with another: bars.py refuses).
- Held-out scheme: whole frames (43 of 324 at the time of writing), each marked "@", with syntax the train frames lack
  but only tokens the train split has; plus one fact (the last city of every state never
  appears in a two-hop frame in training).
- P5's scale word follows from the estimated subject (facts.SCALE_OF), so it is predictable.
"""
