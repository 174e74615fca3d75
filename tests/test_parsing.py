"""parse_ranking: an LLM's numbered top-10 reply -> 0-based indices into the candidate titles.

Each test builds a small reply the way LLMs write them and checks the exact index list. Titles are
real MovieLens titles (articles moved to the end, alternative titles in parentheses).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_gym.llm.parsing import normalise_title, parse_ranking

# Real MovieLens-1M / MovieLens-latest titles, chosen for the traps they set: sequels, remakes
# with the same title, trailing articles in several languages, alternative titles, punctuation.
MOVIELENS = [
    "Toy Story (1995)",  # 0
    "Toy Story 2 (1999)",  # 1
    "Heat (1995)",  # 2
    "Alien (1979)",  # 3
    "Aliens (1986)",  # 4
    "Alien³ (a.k.a. Alien 3) (1992)",  # 5
    "Matrix, The (1999)",  # 6
    "Seven (Se7en) (1995)",  # 7
    "Misérables, Les (1995)",  # 8
    "City of Lost Children, The (Cité des enfants perdus, La) (1995)",  # 9
    "Star Wars: Episode IV - A New Hope (1977)",  # 10
    "Star Wars: Episode V - The Empire Strikes Back (1980)",  # 11
    "Hamlet (1990)",  # 12
    "Hamlet (1996)",  # 13
    "Psycho (1960)",  # 14
    "Psycho (1998)",  # 15
    "Postman, The (Postino, Il) (1994)",  # 16
    "Boot, Das (1981)",  # 17
    "Mariachi, El (1992)",  # 18
    "Few Good Men, A (1992)",  # 19
    "American Werewolf in London, An (1981)",  # 20
    "Tin Drum, The (Blechtrommel, Die) (1979)",  # 21
    "Appartement, L' (1996)",  # 22
    "Schindler's List (1993)",  # 23
    "Wallace & Gromit: A Close Shave (1995)",  # 24
    "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)",  # 25
    "L.A. Confidential (1997)",  # 26
    "Good, The Bad and The Ugly, The (1966)",  # 27
    "Godfather: Part II, The (1974)",  # 28
    "Die Hard (1988)",  # 29
    "Die Hard 2 (1990)",  # 30
    "Airplane! (1980)",  # 31
    "M*A*S*H (1970)",  # 32
    "12 Angry Men (1957)",  # 33
    "2001: A Space Odyssey (1968)",  # 34
    "Shawshank Redemption, The (1994)",  # 35
    "Usual Suspects, The (1995)",  # 36
    "Mr. Holland's Opus (1995)",  # 37
    "Jumanji (1995)",  # 38
    "GoldenEye (1995)",  # 39
    "Manon of the Spring (Manon des sources) (1986)",  # 40
    "Spider-Man (2002)",  # 41
    "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)",  # 42
    "Casino (1995)",  # 43
    "Sense and Sensibility (1995)",  # 44
    "Dracula: Dead and Loving It (1995)",  # 45
    "Twelve Monkeys (a.k.a. 12 Monkeys) (1995)",  # 46
    "Heat and Dust (1983)",  # 47
    "Grumpier Old Men (1995)",  # 48
    "Sabrina (1995)",  # 49
]


def idx(*titles: str) -> list[int]:
    return [MOVIELENS.index(t) for t in titles]


SMALL = ["Toy Story (1995)", "Heat (1995)", "Jumanji (1995)", "Casino (1995)"]


# ------------------------------------------------------------------ list structure


@pytest.mark.parametrize(
    "marker",
    ["{n}.", "{n})", "({n})", "#{n}", "{n} -", "{n}:", "[{n}]", "**{n}.**", "{n}. ", "- {n}."],
)
def test_every_numbering_style_is_read(marker):
    titles = ["Heat (1995)", "Toy Story (1995)", "Casino (1995)"]
    reply = "\n".join(f"{marker.format(n=n)} {title}" for n, title in enumerate(titles, 1))
    assert parse_ranking(reply, SMALL) == [1, 0, 3]


@pytest.mark.parametrize("bullet", ["-", "*", "•", "+"])
def test_bullet_lists_are_read_when_there_are_no_numbers(bullet):
    reply = f"My picks:\n{bullet} Casino (1995)\n{bullet} Jumanji (1995)\n{bullet} Heat (1995)"
    assert parse_ranking(reply, SMALL) == [3, 2, 1]


def test_numbers_above_9_and_out_of_order_numbers_keep_reply_order():
    reply = "10. Heat (1995)\n11. Jumanji (1995)\n3. Toy Story (1995)"
    assert parse_ranking(reply, SMALL) == [1, 2, 0]


def test_crlf_and_lone_cr_line_ends():
    assert parse_ranking("1. Heat (1995)\r\n2. Casino (1995)\r\n", SMALL) == [1, 3]
    assert parse_ranking("1. Heat (1995)\r2. Casino (1995)", SMALL) == [1, 3]


def test_a_single_line_list_is_split_at_its_numbers():
    reply = "1. Heat (1995) 2. Toy Story (1995) 3. Casino (1995) 4. Jumanji (1995)"
    assert parse_ranking(reply, SMALL) == [1, 0, 3, 2]


def test_a_single_line_list_after_a_preamble_on_the_same_line():
    reply = "Here you go: 1) Jumanji, 2) Heat, 3) Casino"
    assert parse_ranking(reply, SMALL) == [2, 1, 3]


def test_a_single_line_list_splits_only_at_consecutive_numbers_so_sequel_numbers_survive():
    reply = "1. Toy Story 2 (1999) 2. Toy Story (1995) 3. Heat (1995)"
    assert parse_ranking(reply, MOVIELENS) == idx("Toy Story 2 (1999)", "Toy Story (1995)", "Heat (1995)")


def test_a_number_inside_parentheses_of_a_title_does_not_split_a_single_line_list():
    reply = "1) Heat (1995), 2) Alien³ (a.k.a. Alien 3) (1992), 3) Alien (1979), 4) Aliens (1986)"
    expected = idx("Heat (1995)", "Alien³ (a.k.a. Alien 3) (1992)", "Alien (1979)", "Aliens (1986)")
    assert parse_ranking(reply, MOVIELENS) == expected


def test_a_title_with_a_number_and_period_is_not_split_into_a_list():
    # Two markers on the line are not enough to call it a one-line list: "2." belongs to the title,
    # so this names the sequel and never the original.
    reply = "1. Toy Story 2. A fun sequel"
    assert parse_ranking(reply, MOVIELENS) == idx("Toy Story 2 (1999)")


def test_preamble_and_closing_lines_are_ignored():
    reply = (
        "Based on your love of Heat (1995), here are my recommendations:\n"
        "1. Jumanji (1995)\n"
        "2. Casino (1995)\n"
        "I hope you enjoy Toy Story (1995) too!"
    )
    assert parse_ranking(reply, SMALL) == [2, 3]


def test_an_unnumbered_line_that_is_exactly_a_title_counts():
    reply = "Recommendations:\n**Casino (1995)**\nHeat (1995)\nToy Story"
    # "Toy Story" alone has no year, and a line that is not a list item must name a candidate exactly.
    assert parse_ranking(reply, SMALL) == [3, 1]


def test_sub_bullets_under_numbered_items_add_no_titles():
    reply = (
        "1. Heat (1995)\n"
        "   - Because you watched: Casino (1995)\n"
        "   - Toy Story (1995)\n"
        "2. Jumanji (1995)"
    )
    assert parse_ranking(reply, SMALL) == [1, 2]


def test_a_number_alone_on_its_line_takes_the_next_line():
    reply = "1.\n**Heat (1995)**\n2.\nCasino (1995)"
    assert parse_ranking(reply, SMALL) == [1, 3]


# ------------------------------------------------------------------ markup and spelling


@pytest.mark.parametrize(
    "line",
    [
        "1. **Heat (1995)**",
        "1. __Heat__ (1995)",
        "1. *Heat* (1995)",
        "1. _Heat (1995)_",
        "1. `Heat (1995)`",
        "### 1. Heat (1995)",
        "## Heat (1995)",
        "1. [Heat (1995)](https://www.imdb.com/title/tt0113277/)",
        "1. <b>Heat</b> (1995)",
        '1. "Heat" (1995)',
        "1. \u201cHeat\u201d (1995)",
        "> 1. Heat (1995)",
    ],
)
def test_markdown_html_and_quotes_around_the_title(line):
    assert parse_ranking(line, SMALL) == [1]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("1. Schindler&#39;s List (1993)", ["Schindler's List (1993)"]),
        ("1. Schindler&rsquo;s List (1993)", ["Schindler's List (1993)"]),
        ("1. Wallace &amp; Gromit: A Close Shave (1995)", ["Wallace & Gromit: A Close Shave (1995)"]),
        ("1. Wallace and Gromit: A Close Shave (1995)", ["Wallace & Gromit: A Close Shave (1995)"]),
    ],
)
def test_html_entities_and_ampersands(reply, expected):
    assert parse_ranking(reply, MOVIELENS) == idx(*expected)


@pytest.mark.parametrize(
    "line, title",
    [
        ("1. SCHINDLER\u2019S LIST (1993).", "Schindler's List (1993)"),
        ("1. schindlers list (1993)", "Schindler's List (1993)"),
        ("1. LA Confidential (1997)", "L.A. Confidential (1997)"),
        ("1. Mr Holland\u2019s Opus (1995)", "Mr. Holland's Opus (1995)"),
        ("1. Spiderman (2002)", "Spider-Man (2002)"),
        ("1. Star Wars: Episode IV \u2013 A New Hope (1977)", "Star Wars: Episode IV - A New Hope (1977)"),
        ("1. Star Wars Episode IV: A New Hope (1977)", "Star Wars: Episode IV - A New Hope (1977)"),
        ("1. Les Miserables (1995)", "Misérables, Les (1995)"),
        ("1. Airplane (1980)", "Airplane! (1980)"),
        ("1. MASH (1970)", "M*A*S*H (1970)"),
        ("1. Heat [1995]", "Heat (1995)"),
        ("1. Heat (1995 film)", "Heat (1995)"),
        ("1. Jumanji", "Jumanji (1995)"),
    ],
)
def test_case_punctuation_accents_and_a_missing_year_do_not_matter(line, title):
    assert parse_ranking(line, MOVIELENS) == idx(title)


@pytest.mark.parametrize(
    "line, title",
    [
        ("1. The Matrix (1999)", "Matrix, The (1999)"),
        ("1. Matrix, The (1999)", "Matrix, The (1999)"),
        ("1. Matrix (1999)", "Matrix, The (1999)"),
        ("1. A Few Good Men (1992)", "Few Good Men, A (1992)"),
        ("1. An American Werewolf in London (1981)", "American Werewolf in London, An (1981)"),
        ("1. Les Misérables (1995)", "Misérables, Les (1995)"),
        ("1. La Cité des enfants perdus (1995)", "City of Lost Children, The (Cité des enfants perdus, La) (1995)"),
        ("1. The City of Lost Children (1995)", "City of Lost Children, The (Cité des enfants perdus, La) (1995)"),
        ("1. L'Appartement (1996)", "Appartement, L' (1996)"),
        ("1. L' Appartement (1996)", "Appartement, L' (1996)"),
        ("1. Il Postino (1994)", "Postman, The (Postino, Il) (1994)"),
        ("1. The Postman (1994)", "Postman, The (Postino, Il) (1994)"),
        ("1. Das Boot (1981)", "Boot, Das (1981)"),
        ("1. Die Blechtrommel (1979)", "Tin Drum, The (Blechtrommel, Die) (1979)"),
        ("1. El Mariachi (1992)", "Mariachi, El (1992)"),
        ("1. The Good, the Bad and the Ugly (1966)", "Good, The Bad and The Ugly, The (1966)"),
        ("1. The Godfather: Part II (1974)", "Godfather: Part II, The (1974)"),
        ("1. Le Fabuleux Destin d'Amélie Poulain (2001)", "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)"),
        ("1. Die Hard (1988)", "Die Hard (1988)"),
    ],
)
def test_articles_moved_to_the_end_by_movielens_match_either_way(line, title):
    assert parse_ranking(line, MOVIELENS) == idx(title)


def test_an_article_at_the_front_of_a_candidate_matches_the_movielens_form_in_the_reply():
    candidates = ["The Usual Suspects (1995)", "The Matrix (1999)"]
    assert parse_ranking("1. Matrix, The (1999)\n2. Usual Suspects, The", candidates) == [1, 0]


@pytest.mark.parametrize(
    "line, title",
    [
        ("1. Seven (Se7en) (1995)", "Seven (Se7en) (1995)"),
        ("1. Se7en (1995)", "Seven (Se7en) (1995)"),
        ("1. Seven (1995)", "Seven (Se7en) (1995)"),
        ("1. Se7en", "Seven (Se7en) (1995)"),
        ("1. Alien 3 (1992)", "Alien³ (a.k.a. Alien 3) (1992)"),
        ("1. Alien³ (1992)", "Alien³ (a.k.a. Alien 3) (1992)"),
        ("1. 12 Monkeys (1995)", "Twelve Monkeys (a.k.a. 12 Monkeys) (1995)"),
        ("1. Manon des sources (1986)", "Manon of the Spring (Manon des sources) (1986)"),
        ("1. Toy Story (Pixar classic) (1995)", "Toy Story (1995)"),
    ],
)
def test_alternative_titles_in_parentheses_name_the_candidate(line, title):
    assert parse_ranking(line, MOVIELENS) == idx(title)


# ------------------------------------------------------------------ commentary after the title


@pytest.mark.parametrize(
    "line",
    [
        "1. Heat (1995) - because you liked Casino (1995)",
        "1. **Heat** (1995): A gritty crime epic like Casino.",
        "1. Heat - because you liked Casino",
        "1. Heat \u2014 a crime epic",
        "1. Heat: similar to Casino",
        "1. Heat, a crime epic with Pacino",
        "1. Heat (a crime epic)",
        "1. **Heat** \u2013 Michael Mann's crime epic",
        "1. Heat (1995) (dir. Michael Mann)",
        "1. Heat. Because you liked Casino.",
        "1. Heat - A crime epic with Pacino and De Niro",
    ],
)
def test_commentary_after_the_title_is_ignored(line):
    assert parse_ranking(line, SMALL) == [1]


def test_a_subtitle_is_not_mistaken_for_commentary():
    reply = "1. Alien: Resurrection\n2. Die Hard: With a Vengeance\n3. Star Wars: The Force Awakens"
    assert parse_ranking(reply, MOVIELENS + ["Star Wars (1977)"]) == []


def test_a_colon_in_a_candidate_title_is_kept():
    title = "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)"
    assert parse_ranking(f"1. {title} - a satire", MOVIELENS) == idx(title)


# ------------------------------------------------------------------ titles that are not candidates


@pytest.mark.parametrize(
    "line, candidates",
    [
        ("1. Toy Story (1995)", ["Toy Story 2 (1999)"]),
        ("1. Toy Story", ["Toy Story 2 (1999)"]),
        ("1. Toy Story 2 (1999)", ["Toy Story (1995)"]),
        ("1. Toy Story 3 (2010)", ["Toy Story (1995)", "Toy Story 2 (1999)"]),
        ("1. Aliens (1986)", ["Alien (1979)"]),
        ("1. Aliens", ["Alien (1979)"]),
        ("1. Alien (1979)", ["Aliens (1986)"]),
        ("1. Heat Wave", ["Heat (1995)"]),
        ("1. Heat Wave (1990)", ["Heat (1995)"]),
        ("1. Heat", ["Heat Wave (1990)", "Heat and Dust (1983)"]),
        ("1. The Heat (2013)", ["Heat (1995)"]),
        ("1. The Heat", ["Heat (1995)"]),
        ("1. Heat (1986)", ["Heat (1995)"]),
        ("1. Psycho (1998)", ["Psycho (1960)"]),
        ("1. Psycho (1998 remake)", ["Psycho (1960)"]),
        ("1. Die Hard 2 (1990)", ["Die Hard (1988)"]),
        ("1. Die Hard", ["Die Hard 2 (1990)"]),
        ("1. Hard (1988)", ["Die Hard (1988)"]),
        ("1. Star Wars (1977)", ["Star Wars: Episode IV - A New Hope (1977)"]),
        ("1. The Godfather (1972)", ["Godfather: Part II, The (1974)"]),
        ("1. Seven Samurai (1954)", ["Seven (Se7en) (1995)"]),
        ("1. Casino Royale (2006)", ["Casino (1995)"]),
    ],
)
def test_a_title_outside_the_candidate_set_never_matches(line, candidates):
    assert parse_ranking(line, candidates) == []


def test_a_year_less_title_shared_by_two_candidates_names_neither():
    reply = "1. Hamlet\n2. Psycho\n3. Heat"
    assert parse_ranking(reply, MOVIELENS) == idx("Heat (1995)")


def test_the_year_picks_between_remakes():
    reply = "1. Psycho (1998)\n2. Hamlet (1990)\n3. Psycho (1960)"
    assert parse_ranking(reply, MOVIELENS) == idx("Psycho (1998)", "Hamlet (1990)", "Psycho (1960)")


def test_an_exact_match_wins_over_an_alias_of_another_candidate():
    candidates = ["Matrix, The (1999)", "Matrix (1999)"]
    assert parse_ranking("1. Matrix (1999)\n2. The Matrix (1999)", candidates) == [1, 0]


def test_a_candidate_without_a_year_matches_a_reply_with_one():
    candidates = ["Portal 2", "Half-Life", "Portal"]
    assert parse_ranking("1. Portal (2007)\n2. Half Life (1998)\n3. Portal 2", candidates) == [2, 1, 0]


def test_the_sequel_and_the_original_are_told_apart_in_one_reply():
    reply = "1. Toy Story 2\n2. Aliens (1986)\n3. Toy Story\n4. Alien"
    expected = idx("Toy Story 2 (1999)", "Aliens (1986)", "Toy Story (1995)", "Alien (1979)")
    assert parse_ranking(reply, MOVIELENS) == expected


# ------------------------------------------------------------------ repeats, limits, degenerate input


def test_a_repeated_title_keeps_its_first_place():
    reply = "1. Heat (1995)\n2. Casino (1995)\n3. heat\n4. **Heat (1995)**\n5. Jumanji (1995)"
    assert parse_ranking(reply, SMALL) == [1, 3, 2]


def test_a_title_that_is_twice_in_the_candidate_set_can_be_named_twice():
    candidates = ["War of the Worlds (2005)", "Heat (1995)", "War of the Worlds (2005)"]
    reply = "1. War of the Worlds (2005)\n2. Heat (1995)\n3. War of the Worlds (2005)"
    assert parse_ranking(reply, candidates) == [0, 1, 2]


def test_never_more_indices_than_candidates():
    reply = "\n".join(f"{n}. {title}" for n, title in enumerate(SMALL * 3, 1))
    assert parse_ranking(reply, SMALL) == [0, 1, 2, 3]


@pytest.mark.parametrize("reply", ["", "   \n\n", "I cannot recommend movies.", "1.\n2.\n3."])
def test_a_reply_that_names_no_candidate_gives_an_empty_list(reply):
    assert parse_ranking(reply, SMALL) == []


def test_no_candidates_gives_an_empty_list():
    assert parse_ranking("1. Heat (1995)", []) == []


def test_a_reply_that_is_not_text_is_a_type_error():
    with pytest.raises(TypeError, match="reply as str"):
        parse_ranking(None, SMALL)  # type: ignore[arg-type]


# ------------------------------------------------------------------ normalise_title


@pytest.mark.parametrize(
    "title, normal",
    [
        ("Matrix, The (1999)", "thematrix 1999"),
        ("The Matrix (1999)", "thematrix 1999"),
        ("Misérables, Les (1995)", "lesmiserables 1995"),
        ("Appartement, L' (1996)", "lappartement 1996"),
        ("Seven (Se7en) (1995)", "seven se7en 1995"),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "thecityoflostchildren lacitedesenfantsperdus 1995",
        ),
        ("Star Wars: Episode IV - A New Hope (1977)", "starwarsepisodeivanewhope 1977"),
        ("Schindler&#39;s List (1993)", "schindlerslist 1993"),
        ("Wallace &amp; Gromit: A Close Shave (1995)", "wallaceandgromitacloseshave 1995"),
        ("Portal 2", "portal2"),
    ],
)
def test_normalise_title(title, normal):
    assert normalise_title(title) == normal


@pytest.mark.parametrize(
    "variants",
    [
        ["Half-Life", "Half Life", "HalfLife", "half‑life"],
        ["Schindler's List (1993)", "SCHINDLER’S LIST (1993)", "Schindler&#39;s List (1993)", "Schindlers List [1993]"],
        ["Misérables, Les (1995)", "Les Misérables (1995)", "LES MISERABLES (1995)"],
    ],
)
def test_spelling_variants_share_one_normal_form(variants):
    assert len({normalise_title(v) for v in variants}) == 1


def test_a_sequel_number_keeps_titles_apart():
    assert normalise_title("Toy Story (1995)") != normalise_title("Toy Story 2 (1995)")
    assert normalise_title("Alien³ (1992)") == normalise_title("Alien 3 (1992)") != normalise_title("Alien (1992)")


# ------------------------------------------------------------------ whole lists and arbitrary text


def test_a_shuffled_numbered_list_of_every_candidate_parses_back_in_that_order():
    order = list(range(len(MOVIELENS)))
    random.Random(7).shuffle(order)
    reply = "Here are my recommendations:\n\n" + "\n".join(f"{n}. {MOVIELENS[i]}" for n, i in enumerate(order, 1))
    assert parse_ranking(reply, MOVIELENS) == order


_STYLES = [
    "{n}. {t}",
    "{n}) **{t}**",
    "({n}) *{t}* - because you liked {other}",
    "#{n} {t}",
    "{n}: `{t}`",
    "- {n}. {t}",
    "### {n}. {t}\n   - similar to {other}",
]


@settings(max_examples=150, deadline=None)
@given(order=st.permutations(range(len(MOVIELENS))), style=st.sampled_from(_STYLES), crlf=st.booleans())
def test_any_order_in_any_style_parses_back_exactly(order, style, crlf):
    lines = [style.format(n=n, t=MOVIELENS[i], other="Heat and Dust (1983)") for n, i in enumerate(order, 1)]
    assert parse_ranking(("\r\n" if crlf else "\n").join(lines), MOVIELENS) == list(order)


@settings(max_examples=100, deadline=None)
@given(order=st.permutations(range(len(MOVIELENS))), marker=st.sampled_from(["{n}.", "{n})", "({n})", "#{n}", "**{n}.**"]))
def test_any_top_10_on_one_line_parses_back_exactly(order, marker):
    # Titles such as "Alien³ (a.k.a. Alien 3) (1992)" and "Toy Story 2 (1999)" hold numbers of their own.
    reply = "Here you go: " + ", ".join(f"{marker.format(n=n)} {MOVIELENS[i]}" for n, i in enumerate(order[:10], 1))
    assert parse_ranking(reply, MOVIELENS) == list(order[:10])


_REPLY_PIECES = st.sampled_from(
    MOVIELENS
    + ["1.", "2)", "(3)", "#4", "5 -", "-", "*", "\u2022", "**", "`", "\n", "\r\n", " ", ": ", " - ", ", ", "(", ")",
       "(1995)", "The", ", The", "Les", "&amp;", "&#39;", "because you liked", "Toy Story", "Aliens", "Heat Wave"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), st.lists(_REPLY_PIECES, max_size=40).map("".join)))
def test_any_text_gives_distinct_valid_indices(text):
    ranking = parse_ranking(text, MOVIELENS)
    assert isinstance(ranking, list)
    assert all(type(i) is int and 0 <= i < len(MOVIELENS) for i in ranking)
    assert len(ranking) == len(set(ranking)) <= len(MOVIELENS)
