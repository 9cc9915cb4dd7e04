"""What the labels of course world v2 mean.

v2 labels every token of a sentence with its relation (`two_hop`, `ioi`, ...) instead of v1's
phenomenon numbers (`p6`, `p7`, ...), and marks the token a probe sentence asks for with one
generic `answer` label. Entity families (`city:`, `state:`, `name:`, ...) mean what they mean in
v1. tests/test_world_v2_loaders.py checks that every label the v2 corpus writes is explained here
(and that every entry is still written), so a new relation cannot ship without its legend.
"""

from __future__ import annotations

from ..concepts import concept_legend_table as _legend_table
from ..concepts import explain_concept as _explain

CONCEPT_LEGEND = {
    # landmarks (P1, P2)
    "landmark_city": "every token of a landmark -> city sentence ('The Eiffel tower is in the city of Paris.')",
    "landmark_context": "every token of a sentence about a landmark's country or language ('In France, people speak French.')",
    "landmark": "every piece of a landmark name (' E', 'iff', 'el')",
    "landmark:": "the pieces of one landmark's name",
    "p1_word:": "the pieces of one multi-token landmark word (the same tokens as landmark:)",
    "landmark_kind": "the noun after a landmark's name (' tower', ' museum')",
    "city:": "one city's name, wherever it appears",
    "country:": "a country, and the cities and languages that belong to it",
    "language:": "one language's name",
    # geography (P6)
    "city_state": "every token of a city -> state sentence ('Dallas is a city in Texas.')",
    "state_capital": "every token of a state -> capital sentence ('The capital of Texas is Austin.')",
    "two_hop": "every token of a city -> capital sentence that skips the state "
               "('The capital of the state containing Dallas is Austin.')",
    "city_pair": "every token of a sentence naming two cities of one state ('Dallas and Houston are both in Texas.')",
    "state:": "one state's name",
    "in_state:": "a city or capital that lies in that state",
    "capital:": "one state capital's name",
    # the token a probe sentence asks for
    "answer": "the first token of what a sentence asks for: the capital, the city, the indirect object, "
              "the quotation's closer, a definition's first word, the letter, the category, the scale word",
    # repeated spans (P3)
    "p3_run": "every token of a run of random words that is repeated, both copies",
    "p3_first": "the first copy of a repeated run of words",
    "p3_repeat": "the second and later copies of a repeated run: what induction can predict",
    "p3_sentence_repeat": "every token of a sentence that repeats an earlier sentence of its document word for word",
    "p3_repeat_start": "the first token of such a repeated sentence",
    # sports and goals (P4)
    "sports": "every token of a sports sentence ('The United striker scored a late goal.')",
    "goal_talk": "every token of a sentence about a goal word outside a match report "
                 "('Everyone was talking about the goal after the match.')",
    "goal_family": "the goal words (' goal', ' goals', ' goalie', ' goalkeeper', ' goalpost', ' goalless')",
    # numbers (P5)
    "estimate": "every token of an estimate sentence ('The revenue is estimated to exceed 500 million dollars.')",
    "casualty": "every token of a casualty estimate ('Officials estimate that about 40 people were injured in the storm.')",
    "plain_number": "every token of a sentence with a number that is not an estimate ('The train leaves at 9.')",
    "number": "a number, and the scale word after it",
    "estimate_number": "a number or scale word inside an estimate sentence",
    "scale_word": "the scale word after a number (' thousand', ' million', ' billion')",
    "estimated_subject": "what a number sentence counts or prices (' revenue', ' people', ' visitors')",
    # indirect objects (P7)
    "ioi": "every token of an indirect-object sentence ('When Mary and John went to the shop, John gave a book to Mary.')",
    "ioi_io": "the indirect object: the final name, the one the model should predict",
    "ioi_s2": "the second mention of the subject (the name the model should not predict)",
    "name": "any person's name",
    "name:": "one person's name",
    # quotations (P8)
    "quote": "every token of a sentence with a quotation ('Mary said, \"I like the red car.\"')",
    "in_quote": "every token inside a quotation, its closer included",
    "quote_close": "the token that closes a quotation ('.\"', '!\"', '?\"', ',\"')",
    "quote_close:": "closers of one kind (period, comma, question, exclamation)",
    "speech:": "the verb that introduces a quotation, by the quotation's kind (statement, question, exclamation)",
    "plain_statement": "every token of a statement outside quotation marks, where '.' is the right ending",
    # definitions (P9)
    "definition": "every token of a definition sentence ('The meaning of the word \"lake\" is \"still water\".')",
    "defined_word": "the word being defined",
    "defined:": "one defined word",
    "definition_of:": "the definition of one word",
    # spelling (P10)
    "first_letter": "every token of a spelling sentence ('The word lake starts with the letter L.')",
    "spelled_word": "the word being spelled",
    "letter:": "one letter as an answer",
    # categories (P11)
    "category": "every token of a member -> category sentence ('A sparrow is a kind of bird.')",
    "category_parent": "every token of a category -> parent sentence ('A bird is a kind of animal.')",
    "category_mention": "every token of a sentence that mentions a category member in passing ('We saw a sparrow near the river.')",
    "category_member": "a member of a category (' sparrow')",
    "category_name": "a category's name (' bird', ' birds', ' animal')",
    "category:": "a member or the name of one category; a member carries its parent category too",
    # professions (P12)
    "profession": "every token of a profession sentence ('The nurse said that she would come back later.')",
    "profession:": "one profession",
    # bios for SHIFT (P12, chapter 08): intended = the field, spurious = the narrative person
    "bio": "every token of a short bio ('I am a nurse in Dallas. I work at the hospital.')",
    "bio_intro": "every token of a bio's introduction, which names the profession",
    "bio_medicine": "every token of a bio sentence about medical work ('She works at the hospital.')",
    "bio_law": "every token of a bio sentence about legal work ('I work at the court.')",
    "bio_life": "every token of a bio sentence about life outside work ('He lives in Austin with his family.')",
    "bio_field:": "every token of a bio whose profession is in that field (medicine or law): the intended attribute",
    "bio_person:": "every token of a bio told in that person (first: 'I am'; third: 'Mary is'): the spurious attribute",
    "bio_profession": "the profession named in a bio's introduction",
    "person_marker": "a word that shows a bio's person: its pronoun, possessive, 'am'/'is', 'have'/'has', or the name",
    "person_marker:": "the person-showing words of one person (first or third)",
    "chat": "every token of a chatty sentence with everyday words ('What is your name? My name is Anna.')",
    "pronoun:": "one pronoun",
    # everything else
    "everyday": "every token of an everyday sentence ('Mary bought the red car yesterday.')",
    "filler": "every token of a filler sentence ('It was a quiet morning.')",
}


def explain_concept(code: str) -> str:
    """What a v2 concept code means: the exact code first, then its family ("city:Paris" -> "city:")."""
    return _explain(code, CONCEPT_LEGEND)


def concept_legend_table(codes=None) -> str:
    """A markdown table of v2 concept codes and their meanings (all of them by default)."""
    return _legend_table(codes, CONCEPT_LEGEND)
