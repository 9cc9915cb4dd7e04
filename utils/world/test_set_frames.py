"""The TEST frames of course world v2 (issue 26): written before any model was measured on them.

A frame here starts with "#": it never appears in the train split and is not a validation frame
("@" in frames.py). The validation frames choose among training runs; these are measured once,
after the choice is committed, so no decision has seen them. Each relation has at least 8, in
syntax that neither the train frames nor the validation frames use (new question words such as
"Tell me" and "Do you know", new clause orders, new connectives, the entity a few sentences back),
made only of tokens the train split has (tests/test_world.py checks both).

Once a model has been measured on these frames and a decision follows from it, they are spent:
move them to validation ("@") and write new ones.
"""

from __future__ import annotations

TEST = "#"

TEST_FRAMES: dict[str, tuple[str, ...]] = {
    "landmark_city": (
        "#Tell me where the {landmark} {kind} is. It is in {city!}.",
        "#So where is the {landmark} {Kind}? It is in {city!}.",
        "#Do you know where the {landmark} {kind} is? Yes, it is in {city!}.",
        "#The {landmark} {kind}, which many people visit, is in {city!}.",
        "#After a long day, we saw the {landmark} {kind} in {city!}.",
        "#{Name} wanted to see the {landmark} {kind}. {gap} So {pron} had to travel to {city!}.",
        "#Q: Tell me the city of the {landmark} {Kind}.\nA: It is in {city!}.",
        "#My friend told me that the {landmark} {kind} is in {city!}.",
    ),
    "city_state": (
        "#Tell me which state {city} is in. It is in {state!}.",
        "#Do you know where {city} is? Yes, it is in the state of {state!}.",
        "#{Name} told me that {city} is a city in {state!}.",
        "#We took a train to {city}. {gap} That city is in {state!}.",
        "#Q: Tell me where {city} is.\nA: It is in {state!}.",
        "#Most people know that {city} is in {state!}.",
        "#So which state is {city} in? It is in {state!}.",
        "#My friend lives in {city}, a city in {state!}.",
    ),
    "state_capital": (
        "#Tell me the capital of {state}. It is {capital!}.",
        "#Do you know the capital of {state}? Yes, it is {capital!}.",
        "#So what is the capital of {state}? The capital is {capital!}.",
        "#{State}? The capital of {state} is {capital!}.",
        "#Q: Can you tell me the capital of {state}?\nA: It is {capital!}.",
        "#{Name} lives in {state}. {gap} The capital of that state is {capital!}.",
        "#My teacher said that the capital of {state} is {capital!}.",
        "#Most people know that the capital of {state} is {capital!}.",
    ),
    "two_hop": (
        "#Tell me the capital of the state that {city} is in. It is {capital!}.",
        "#Do you know the capital of the state where {city} is? Yes, it is {capital!}.",
        "#{City} is a city. The capital of its state is {capital!}.",
        "#So what is the capital of the state that {city} is in? The capital is {capital!}.",
        "#If you live in {city}, the capital of your state is {capital!}.",
        "#{Name} lives in {city}. {gap} The capital of the state where {pron} lives is {capital!}.",
        "#Q: Tell me the capital of the state where {city} is.\nA: It is {capital!}.",
        "#My friend lives in {city}, and the capital of that state is {capital!}.",
    ),
    "ioi": (
        "#When {io} and {s} got home, {s} gave a {obj} to {io!}.",
        "#{Io} and {s} went to the {place} by car. Then {s} handed a {obj} to {io!}.",
        "#After {io} and {s} had lunch at the {place}, {s} gave the {obj} to {io!}.",
        "#{Io} and {s} were both at the {place}, and {s} gave a {obj} to {io!}.",
        "#So {io} and {s} went to the {place}, where {s} gave a {obj} to {io!}.",
        "#Because {io} and {s} were at the {place}, {s} brought a {obj} for {io!}.",
        "#{Io} and {s} met at the {place}. {gap} Later that day, {s} gave a {obj} to {io!}.",
        "#Do you know what happened when {io} and {s} went to the {place}? {s} gave a {obj} to {io!}.",
    ),
    "quote": (
        "#After a while, {name} {verb}, \"{quote!}",
        "#{Name} stood by the {place} and {verb}, \"{quote!}",
        "#Then, after a short pause, {name} {verb}: \"{quote!}",
        "#{Name} and {name2} were at the {place} when {name} {verb}, \"{quote!}",
        "#\"{quote_tag!} {name} {verb}, and {name2} smiled.",
        "#When {name2} came in, {name} {verb}, \"{quote!}",
        "#Later that day {name} {verb}, \"{quote!}",
        "#\"{quote_tag!} {verb} {name}, and then {pron} went home.",
    ),
    # new quote content, so the closer is predicted on sentences no quote in training held
    "quote_statement": (
        "#We had a lovely day at the {place}",
        "#The {adj} {obj} is my {obj}",
        "#I think {name2} is right",
    ),
    "quote_question": (
        "#Where did you put my {obj}",
        "#Is it time to go",
        "#Do you want some {food}",
    ),
    "quote_exclamation": (
        "#How {adj} the {obj} is",
        "#Come back here",
        "#I can't believe it",
    ),
    "definition": (
        "#Tell me what \"{w}\" means. It means {def!}.",
        "#Do you know what a {w} is? Yes, a {w} is a {def!}.",
        "#So what is a {w}? It is a {def!}.",
        "#If you say \"{w}\", you mean a {def!}.",
        "#{Name} asked what a {w} was. {gap} A {w} is a {def!}.",
        "#Q: Tell me the meaning of {w}.\nA: It means {def!}.",
        "#My teacher said that a {w} is a {def!}.",
        "#Most people know that a {w} is a {def!}.",
    ),
    "first_letter": (
        "#Tell me the first letter of {w}. It is {letter!}.",
        "#Do you know how {w} starts? It starts with {letter!}.",
        "#So which letter does {w} start with? It starts with {letter!}.",
        "#If you write {w}, the first letter is {letter!}.",
        "#{Name} wrote {w} on the card. {gap} The first letter of {w} is {letter!}.",
        "#Q: Tell me how {w} begins.\nA: The letter {letter!}.",
        "#My friend said that {w} starts with the letter {letter!}.",
        "#In the word {w}, the first letter is {letter!}.",
    ),
    "category": (
        "#Tell me what a {w} is. It is a {mid!}.",
        "#Do you know what a {w} is? Yes, a {w} is a {mid!}.",
        "#So what is a {w}? A {w} is a {mid!}.",
        "#If you see a {w}, you see a {mid!}.",
        "#{Name} saw a {w} at the {place}. {gap} That {w} is a {mid!}.",
        "#My teacher said that a {w} is a kind of {mid!}.",
        "#Q: Tell me what a {w} is.\nA: It is a {mid!}.",
        "#Most people know that a {w} is a {mid!}.",
    ),
    "estimate": (
        "#So how big is the {money}? It could reach {num} {scale!} dollars.",
        "#Tell me about the {money}. It is about {num} {scale!} dollars.",
        "#Most people think the {money} will be about {num} {scale!} dollars.",
        "#If you want to know, the {money} could reach {num} {scale!} dollars.",
        "#Do you know how many {pop} live here? About {num} {scale!}.",
        "#{Name} read that the {money} is near {num} {scale!} dollars.",
        "#The number of {count} could be near {num} {scale!}.",
        "#My friend said that the {money} may reach {num} {scale!} dollars.",
    ),
}
