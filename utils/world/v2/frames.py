"""The frames of course world v2: every way the corpus states each relation.

A frame is a line of natural text with slots: "What is the capital of {state}? It is {capital!}."
Slot names are fixed (see `corpus.SLOT_VALUES`); a capitalised slot name ({Kind}, {Pron}) writes
its value capitalised; `!` marks the answer, the token an evaluation prompt is cut before;
`{gap}` becomes one to three unrelated everyday sentences, so that the entity can sit several
sentences before the question.

Why so many frames: issue 11 measured v1 on new wordings of its own facts and found template
surface, not relations (two-hop 0.66, definitions 0.63 top-1). Each relation is therefore
stated as statements, questions with their answers, "Q: ... A: ..." pairs, reversed order,
extra clauses and gaps. A frame that starts with "@" is HELD OUT: it never appears in the train
split and exists only to evaluate. Held-out frames use syntax the train frames do not
(new question words, new clause orders, new connectives), not only new fillers; the tests
check that no train sentence matches a held-out frame.
"""

from __future__ import annotations

import re

HELD_OUT = "@"

FRAMES: dict[str, tuple[str, ...]] = {
    # ---------------- P2: landmark -> city (P1 pieces inside {landmark}) ----------------
    "landmark_city": (
        "The {landmark} {kind} is in the city of {city!}.",
        "The {landmark} {kind} is located in {city!}.",
        "You can see the {landmark} {Kind} in {city!}.",
        "Tourists visit the {landmark} {kind} in {city!} every summer.",
        "The famous {landmark} {Kind} stands in {city!}.",
        "Our guide showed us the {landmark} {kind} in the city of {city!}.",
        "Where is the {landmark} {Kind}? It is in {city!}.",
        "Where is the {landmark} {kind}? The {landmark} {kind} is in {city!}.",
        "Q: Where is the {landmark} {Kind}?\nA: In {city!}.",
        "Q: In which city is the {landmark} {kind}?\nA: {City}.",
        "In {city}, {name} visited the {landmark} {kind}.",
        "{City} is home to the {landmark} {Kind}.",
        "What city is home to the {landmark} {Kind}? It is {city!}.",
        "Last summer {name} saw the {landmark} {kind}, which is in {city!}.",
        "The {landmark} {kind} is old. {gap} It is in {city!}.",
        "@Everyone knows that the {landmark} {Kind} is found in {city!}.",
        "@Which city has the {landmark} {kind}? The answer is {city!}.",
        "@If you want to see the {landmark} {kind}, you have to travel to {city!}.",
        "@Q: What city is the {landmark} {Kind} in?\nA: It is in {city!}.",
        "@{name} took a photo of the {landmark} {kind}. {gap} That photo was taken in {city!}.",
    ),
    "landmark_context": (
        "In {country}, people speak {lang}.",
        "{City} is a big city in {country}.",
        "The people of {city} speak {lang}.",
        "Many visitors come to {country} every year.",
        "We took a train to {city}.",
        "The streets of {city} were full of people.",
        "Our hotel in {city} was close to the river.",
        "What language do people speak in {city}? They speak {lang}.",
        "@Most people in {country} speak {lang} at home.",
    ),
    # ---------------- P6: city -> state, state -> capital, and both at once ----------------
    "city_state": (
        "{City} is a city in {state!}.",
        "{City} is in the state of {state!}.",
        "The city of {city} lies in {state!}.",
        "We flew to {city}, {state!}.",
        "{name} grew up in {city}, {state!}.",
        "Which state is {city} in? It is in {state!}.",
        "Q: Which state is {city} in?\nA: {State}.",
        "In {state}, the city of {city} is famous for its food.",
        "{Name} moved to {city} last year. {gap} {Name} now lives in the state of {state!}.",
        "@{City} belongs to the state of {state!}.",
        "@Where is {city}? {City} is a city in the state of {state!}.",
        "@The mayor of {city}, a city in {state!}, gave a speech.",
    ),
    "state_capital": (
        "The capital of {state} is {capital!}.",
        "{Capital} is the capital of {state}.",
        "The state of {state} has its capital in {capital!}.",
        "What is the capital of {state}? It is {capital!}.",
        "What is the capital of {state}? The capital is {capital!}.",
        "Q: What is the capital of {state}?\nA: {Capital}.",
        "The government of {state} meets in {capital!}.",
        "{Name} visited {state} last year. {gap} {Pron} spent a day in its capital, {capital!}.",
        "@The capital city of {state} is {capital!}.",
        "@Which city is the capital of {state}? It is {capital!}.",
        "@Laws for {state} are made in its capital, {capital!}.",
    ),
    "two_hop": (
        "The capital of the state containing {city} is {capital!}.",
        "{City} is in a state whose capital is {capital!}.",
        "The state that contains {city} has the capital {capital!}.",
        "People from {city} visit their state capital, {capital!}.",
        "What is the capital of the state that {city} is in? It is {capital!}.",
        "Q: What is the capital of the state where {city} is?\nA: {Capital}.",
        "{name} lives in {city}. {gap} The capital of {name}'s state is {capital!}.",
        "We drove from {city} to the capital of its state, {capital!}.",
        "{City}, {state} is a long way from {capital}, the capital.",
        "The capital of the state that {city} is in is {capital!}.",
        "The capital of {city}'s home state is {capital!}.",
        "The state where {city} lies is governed from {capital!}.",
        "What is the capital of {city}'s state? It is {capital!}.",
        "The home state of {city} has the capital {capital!}.",
        "Q: What is the capital of the state that {city} is in?\nA: {Capital}.",
        "@The state containing {city} has its capital in {capital!}.",
        "@What is the capital of the state where {city} is located? The capital is {capital!}.",
        "@{name} was born in {city}. {gap} The capital of the state {name} was born in is {capital!}.",
        "@Q: Which city is the capital of the state that has {city}?\nA: It is {capital!}.",
    ),
    "city_pair": (
        "{City} and {city2} are both in {state}.",
        "From {city} we drove to {city2}, still in {state}.",
    ),
    # ---------------- P7: indirect object ----------------
    # {io} receives, {s} gives; the corpus swaps the order of the first two names at random.
    "ioi": (
        "When {io} and {s} went to the {place}, {s} gave a {obj} to {io!}.",
        "After {io} and {s} arrived at the {place}, {s} handed the {obj} to {io!}.",
        "While {io} and {s} were at the {place}, {s} passed a {obj} to {io!}.",
        "{Io} and {s} walked to the {place}. {s} gave the {obj} to {io!}.",
        "Then {io} and {s} spent the day at the {place}. {s} offered a {obj} to {io!}.",
        "{Io} and {s} went to the {place}. Later, {s} gave a {obj} to {io!}.",
        "At the {place}, {io} and {s} found a {obj}. {s} gave it to {io!}.",
        "{Io} met {s} at the {place}, and {s} gave a {obj} to {io!}.",
        "The {place} was busy when {s} and {io} got there. {s} brought a {obj} for {io!}.",
        "Why did {s} go to the {place} with {io}? Because {s} wanted to give a {obj} to {io!}.",
        "When {io} and {s} were at the {place}, {s} gave {io!} a {obj}.",
        "{Io} and {s} sat in the {place}, and {s} showed {io!} the {obj}.",
        "@When {io} and {s} got to the {place}, {s} sent a {obj} to {io!}.",
        "@Once {io} and {s} reached the {place}, {s} threw the {obj} to {io!}.",
        "@{Io} and {s} had a long day at the {place}. {gap} In the end, {s} gave the {obj} to {io!}.",
        "@It was {s} who, after meeting {io} at the {place}, gave a {obj} to {io!}.",
        "@{Io} and {s} stayed at the {place} all day, so {s} lent {io!} a {obj}.",
    ),
    # ---------------- P8: quotations and their closers ----------------
    # {quote} is one of the contents below plus its closer; the speaker verb matches the kind.
    "quote": (
        "{Name} {verb}, \"{quote!}",
        "Then {name} turned to {name2} and {verb}, \"{quote!}",
        "{Name} looked at the {obj} and {verb}, \"{quote!}",
        "\"{quote_tag!} {verb} {name}.",
        "At the {place}, {name} {verb}, \"{quote!}",
        "{Name} smiled and {verb}, \"{quote!}",
        "{Name} {verb}: \"{quote!}",
        "Then {name} stood up and {verb}: \"{quote!}",
        "When the {obj} fell, {name} {verb}, \"{quote!}",
        "@Without a pause, {name} {verb} to {name2}: \"{quote!}",
        "@\"{quote_tag!} {name} {verb} quietly.",
    ),
    "quote_statement": (
        "I like the {adj} {obj}",
        "The {obj} is in the {place}",
        "We should go to the {place}",
        "My {obj} is {adj}",
        "{Name2} has a {adj} {obj}",
        "I saw {name2} at the {place}",
        "It is time to go home",
        "@I left the {obj} at the {place}",
        "@Nobody knows where the {obj} went",
    ),
    "quote_question": (
        "Where is the {obj}",
        "Do you like the {adj} {obj}",
        "Can we go to the {place}",
        "Is {name2} at the {place}",
        "What time is it",
        "@Why is the {obj} {adj}",
        "@Who took my {obj}",
    ),
    "quote_exclamation": (
        "Watch out for the {obj}",
        "What a lovely {obj}",
        "Run to the {place}",
        "I found the {adj} {obj}",
        "Look, there is a {obj}",
        "Stop right there",
        "@Look at the {adj} {obj}",
        "@Stop that {obj}",
    ),
    "plain_statement": (  # the same endings outside a quote: here "." is right, not '."'
        "{Name} thinks the {obj} is in the {place}.",
        "{Name} likes the {adj} {obj}.",
        "{Name} wanted to go to the {place}.",
        "{Name} saw {name2} at the {place}.",
    ),
    # ---------------- P9: definitions ----------------
    "definition": (
        "The meaning of the word \"{w}\" is \"{def!}\".",
        "The word \"{w}\" means \"{def!}\".",
        "In the dictionary, \"{w}\" is defined as \"{def!}\".",
        "A {w} is a {def!}.",
        "What does \"{w}\" mean? It means {def!}.",
        "What is a {w}? A {w} is a {def!}.",
        "Q: What does the word {w} mean?\nA: {Def}.",
        "We call a {def} a {w}.",
        "{Name} found the word \"{w}\" in a book. {gap} It means {def!}.",
        "@A good definition of \"{w}\" is \"{def!}\".",
        "@In the dictionary, the word \"{w}\" means \"{def!}\".",
        "@If you look up \"{w}\", you will read that it is a {def!}.",
        "@Q: Can you define {w}?\nA: Yes, a {w} is a {def!}.",
    ),
    # ---------------- P10: first letters ----------------
    "first_letter": (
        "The word {w} starts with the letter {letter!}.",
        "The first letter of {w} is {letter!}.",
        "The word {w} begins with {letter!}.",
        "What letter does {w} start with? It starts with {letter!}.",
        "Q: What is the first letter of {w}?\nA: {Letter}.",
        "{W} is spelled with {letter!} at the start.",
        "{W} starts with the letter {letter!}.",
        "Which letter does {w} begin with? {W} begins with {letter!}.",
        "{Name} wrote the word {w}. {gap} It starts with the letter {letter!}.",
        "@The letter at the start of {w} is {letter!}.",
        "@How do you spell {w}? It begins with the letter {letter!}.",
        "@Q: Which letter comes first in {w}?\nA: The letter {letter!}.",
    ),
    # ---------------- P11: categories ----------------
    "category": (
        "A {w} is a kind of {mid!}.",
        "A {w} is a type of {mid!}.",
        "The {w} is a {mid!}.",
        "What kind of animal or thing is a {w}? A {w} is a {mid!}.",
        "Is a {w} a {mid}? Yes, a {w} is a {mid!}.",
        "Q: What is a {w}?\nA: A {mid!}.",
        "The {w} and the {w2} are both {mids}.",
        "{Mids} such as the {w} and the {w2} are common here.",
        "{Name} saw a {w} at the {place}. {gap} A {w} is a kind of {mid!}.",
        "@We saw that a {w} is a kind of {mid!}.",
        "@If you see a {w}, you are looking at a {mid!}.",
        "@Q: What sort of thing is a {w}?\nA: It is a {mid!}.",
    ),
    "category_parent": (
        "A {mid} is a kind of {top}.",
        "Every {mid} is a {top}.",
        "Every {mid} we saw was a {top}.",
    ),
    "category_mention": (
        "We saw a {w} near the river.",
        "{Name} has a {w} in the garden.",
        "There was a {w} behind the house.",
    ),
    # ---------------- P5: estimates (the scale follows from the subject, see corpus.py) ----
    "estimate": (
        "The {money} is estimated to exceed {num} {scale!} dollars.",
        "Experts estimate the {money} at roughly {num} {scale!} dollars.",
        "The {money} is expected to reach about {num} {scale!} dollars this year.",
        "How big is the {money}? It is estimated at {num} {scale!} dollars.",
        "An estimated {num} {scale!} {count} were counted last year.",
        "Around {num} {scale!} {pop} are thought to live in the region.",
        "The number of {count} is expected to reach {num} {scale!}.",
        "Q: How many {pop} live in the region?\nA: About {num} {scale!}.",
        "The report is about the {money}. {gap} It is estimated at {num} {scale!} dollars.",
        "@It is estimated that nearly {num} {scale!} {pop} live near the lake.",
        "@According to a new report, the {money} may grow to {num} {scale!} dollars.",
        "@Officials say the {money} could be as high as {num} {scale!} dollars.",
    ),
    "casualty": (
        "Officials estimate that about {num} people were {harm} in the {cause}.",
        "At least {num} people were {harm} after the {cause}.",
        "How many people were {harm}? About {num}.",
    ),
    "plain_number": (
        "The train leaves at {num}.",
        "{Name} bought {num} apples.",
        "The report has {num} pages.",
        "The room holds {num} chairs.",
    ),
    # ---------------- P4: sports; the goal family shares frames other sport words lack ----
    "goal_talk": (
        "Everyone was talking about the {goal} after the match.",
        "The fans could not stop talking about the {goal}.",
        "It was all about the {goal} in the end.",
        "After the match, the papers wrote about the {goal}.",
    ),
    "sports": (
        "The {team} striker scored a late goal.",
        "The goalie saved the penalty.",
        "The goalkeeper dived to the left.",
        "The shot hit the goalpost twice.",
        "The match ended in a goalless draw.",
        "The {team} scored {small_word} goals in the second half.",
        "{Pron} scored {small_word} goals.",
        "{Name} scored a goal for the {team}.",
        "The referee blew the whistle.",
        "The fans cheered in the stadium.",
        "The coach praised the {sport} after the match.",
        "{Name} was the best keeper in the league this season.",
        "The {team} won the trophy in the final.",
        "A corner led to the first goal of the season.",
        "Who scored the goal? {Name} did.",
    ),
    # ---------------- P12: professions and pronouns ----------------
    "profession": (
        "The {prof} said that {pron} would come back later.",
        "The {prof} told {name} that {pron} was tired.",
        "{Name} met the {prof}, and {pron} smiled.",
        "The {prof} finished work because {pron} was hungry.",
        "@The {prof} called {name} because {pron} needed help.",
    ),
    # ---------------- everyday language (vocabulary for natural prompts) ----------------
    "everyday": (
        "{Name} {tverb} the {adj} {obj} {time}.",
        "{Name} went to the {place} {time}.",
        "{Name} and {name2} went to the {place}.",
        "{Name} went to the {place} with {name2}.",
        "Later, {name} saw {name2} at the {place}.",
        "{Name} smiled at {name2}.",
        "{Name} and {name2} are old friends.",
        "{Name} lost a {obj} near the {place}.",
        "{Name} found the {adj} {obj} under the table.",
        "{Name} was {feeling} because the {obj} was {adj}.",
        "{Pron} was very {feeling} {time}.",
        "For lunch, {name} had {food} and {food2}.",
        "On {day}, {name} cooked {food} for {name2}.",
        "Where did {name} go? {Pron} went to the {place}.",
        "Who was at the {place}? {Name} was there.",
        "How was the {place}? It was {adj}.",
        "Why was {name} {feeling}? Because {pron} lost the {obj}.",
        "When did {name} call? {Pron} called {time}.",
        "{Name} can't find the {obj}.",
        "{Name} didn't want to go to the {place}.",
        "I don't know where {name}'s {obj} is.",
        "It's a {adj} {obj}, isn't it?",
        "Do you know {name}? Yes, {pron} is my friend.",
        "{Name} asked {name2} to bring the {obj}.",
        "There are {small_word} cups on the table.",
        "{Name} bought {small_word} {food} at the {place}.",
        # the words of the held-out frames, in other syntax (a held-out frame is new syntax,
        # never new words: tests/test_world_v2.py checks that the train split has every token)
        "According to {name}, the {obj} was {adj}.",
        "If it rains, we will stay at home.",
        "Most of the {food} was gone.",
        "Of course, {name} came too.",
        "Once a week, {name} went to the {place}.",
        "That was a good day.",
        "Without a word, {name} left the {place}.",
        "Laws can be strange.",
        "Can {name} come to the party? Yes, {pron} can.",
        "{Name} did not know the answer.",
        "The {obj} belongs to {name}.",
        "The {place} was the biggest in the town.",
        "{Name} was born on a {day}.",
        "{Name} comes to the {place} every day.",
        "The teacher asked {name} to define a word and write a definition.",
        "The trees grow slowly here.",
        "We have a {adj} {obj}.",
        "{Name} needed help with the {obj}.",
        "The {obj} was too high to reach.",
        "{Name} knows the way to the {place}.",
        "{Name} went to look for the {obj}.",
        "It may rain {time}.",
        "The mayor opened the new {place}.",
        "{Name} was late for the meeting.",
        "The {obj} was nearly new.",
        "After a short pause, {name} spoke quietly.",
        "{Name} reached the {place} {time}.",
        "{Name} read a book {time}.",
        "What did {name} say? Nothing.",
        "{Name} sent the {obj} by post.",
        "{Name} helped to sort the books.",
        "The speech was long.",
        "{Name} can spell long words.",
        "The {obj} was taken by {name}.",
        "{Name} threw the {obj} into the lake.",
        "We like to travel by train.",
        "{Name} is the one who found the {obj}.",
        "{Name} will be back soon.",
        "The cake was made by {name}.",
        "Everyone comes here in the summer.",
        "{Name} took a photo of {name2}.",
        "{Name} was looking at the {obj}.",
        "{Name} stayed at home, so {pron} was bored.",
        "{Name} lent the {obj} to a friend.",
        "Only one {obj} was left.",
        "What a lovely day!",
        "Yesterday, {name} went to the {place}.",
        "Can you tell me the way to the {place}?",
        "{Name} went home early.",
    ),
    "filler": (
        "It was a quiet morning.",
        "The weather was warm that day.",
        "Everyone was happy.",
        "Nobody said anything for a while.",
        "The next day was busy.",
        "It started to rain in the afternoon.",
        "The sky was clear and blue.",
        "Time passed slowly.",
        "Then everyone went home.",
        "It was late in the evening.",
        "The town was quiet.",
        "We had lunch by the water.",
    ),
}

# Train-only variety, added after run 2's per-frame diagnosis (a held-out frame failed whenever
# its opening or answer cue was one training never showed): a lead-in before a frame that starts
# with a plain word, another cue after a question, and "A: It is X." after a "Q:" line.
LEAD_INS = ("Well,", "By the way,", "So,", "In fact,", "Also,", "Now,", "Remember,", "As you may know,", "OK,")
ANSWER_CUES = ("It is", "It's", "That is", "I think it is", "That would be")
VARIANT_RATE = 0.3
_QA_ANSWER = re.compile(r"\nA: \{(City|State|Capital|Letter)\}\.$")


def variants(relation: str, text: str) -> list[str]:
    """Every train variant of a frame's text (the text itself excluded); see LEAD_INS."""
    out = []
    first = text.split(" ", 1)[0]
    if relation in PROBED + ("everyday",) and re.fullmatch(r"[A-Z][a-z]*", first) and first != "I":
        out += [f"{lead} {text[0].lower()}{text[1:]}" for lead in LEAD_INS]
    if "? It is {" in text:
        out += [text.replace("? It is {", f"? {cue} {{", 1) for cue in ANSWER_CUES[1:]]
    m = _QA_ANSWER.search(text)
    if m:
        out.append(text[:m.start()] + f"\nA: It is {{{m[1].lower()}!}}.")
    return out


# Relations that evaluation prompts are cut from (their frames mark an answer with "!").
PROBED = ("landmark_city", "city_state", "state_capital", "two_hop", "ioi", "quote",
          "definition", "first_letter", "category", "estimate")


def is_heldout(frame: str) -> bool:
    return frame.startswith(HELD_OUT)


def frame_text(frame: str) -> str:
    return frame[len(HELD_OUT):] if is_heldout(frame) else frame
