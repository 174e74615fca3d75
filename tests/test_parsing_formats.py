"""parse_ranking on the reply shapes beyond a numbered list: reasoning blocks, JSON arrays, comma
lists, and replies far longer than a top-10 list (the size cap and the bounded work per item)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rec_gym.llm import parsing
from rec_gym.llm.parsing import MAX_REPLY_CHARS, parse_ranking

CANDIDATES = [
    "Heat (1995)",  # 0
    "Casino (1995)",  # 1
    "Good, The Bad and The Ugly, The (1966)",  # 2
    "Postman, The (Postino, Il) (1994)",  # 3
    "Alien (1979)",  # 4
    "Toy Story (1995)",  # 5
]


@pytest.mark.parametrize("tag", ["think", "thinking", "reasoning", "THINK"])
def test_a_closed_reasoning_block_is_ignored(tag):
    reply = f"<{tag}>\n1. Alien (1979)\n2. Toy Story (1995)\n</{tag}>\n1. Heat (1995)\n2. Casino (1995)"
    assert parse_ranking(reply, CANDIDATES) == [0, 1]


def test_an_unclosed_reasoning_block_hides_the_rest_of_the_reply():
    reply = "1. Casino (1995)\n<think>\nMaybe:\n1. Heat (1995)\n2. Alien (1979)"
    assert parse_ranking(reply, CANDIDATES) == [1]


def test_a_reply_that_is_only_reasoning_ranks_nothing():
    assert parse_ranking("<think>1. Heat (1995)\n2. Casino (1995)</think>", CANDIDATES) == []
    assert parse_ranking("<think>1. Heat (1995)\n2. Casino (1995)", CANDIDATES) == []


def test_a_closing_tag_without_an_opening_tag_ends_the_reasoning():
    # Templates of reasoning models often put the opening <think> in the prompt.
    assert parse_ranking("1. Alien (1979)\nhmm</think>\n1. Casino (1995)", CANDIDATES) == [1]


def test_several_reasoning_blocks_are_all_ignored():
    reply = "<think>Alien (1979)</think>1. Heat (1995)\n<think>\n2. Toy Story (1995)</think>\n2. Casino (1995)"
    assert parse_ranking(reply, CANDIDATES) == [0, 1]


def test_a_json_array_of_titles_is_a_ranking():
    assert parse_ranking('["Casino (1995)", "Heat", "The Good, the Bad and the Ugly (1966)"]', CANDIDATES) == [1, 0, 2]


def test_a_json_array_in_a_fence_after_a_preamble():
    reply = 'Here you go:\n```json\n[\n  "Toy Story (1995)",\n  "Alien (1979)"\n]\n```\nEnjoy!'
    assert parse_ranking(reply, CANDIDATES) == [5, 4]


def test_a_json_array_of_objects_reads_their_title_field():
    reply = '[{"rank": 1, "title": "Alien (1979)"}, {"rank": 2, "name": "Heat (1995)", "why": "Casino (1995)"}]'
    assert parse_ranking(reply, CANDIDATES) == [4, 0]


def test_bracketed_numbers_are_not_mistaken_for_json():
    assert parse_ranking("[1] Casino (1995)\n[2] Heat (1995)", CANDIDATES) == [1, 0]


def test_json_nested_too_deeply_is_not_a_ranking_and_the_list_below_it_still_counts():
    assert parse_ranking("[" * 10_000 + "]" * 10_000 + "\n1. Heat (1995)", CANDIDATES) == [0]


def test_a_comma_list_on_one_line_keeps_titles_with_commas_whole():
    reply = "Heat (1995), Good, The Bad and The Ugly, The (1966), Postman, The (Postino, Il) (1994), Casino"
    assert parse_ranking(reply, CANDIDATES) == [0, 2, 3, 1]


def test_a_comma_list_after_a_preamble_and_with_unknown_titles():
    reply = "My picks: Casino, Jaws (1975), Alien, Heat."
    assert parse_ranking(reply, CANDIDATES) == [1, 4, 0]


def test_a_colon_in_the_first_title_of_a_comma_list_is_not_a_preamble():
    candidates = ["Star Wars: Episode IV - A New Hope (1977)", "Heat (1995)", "Alien (1979)"]
    assert parse_ranking("Star Wars: Episode IV - A New Hope, Alien, Heat", candidates) == [0, 2, 1]
    assert parse_ranking("Try these: Heat, Star Wars: Episode IV - A New Hope (1977)", candidates) == [1, 0]


def test_a_sentence_with_one_title_and_a_comma_is_not_a_list():
    assert parse_ranking("If you liked Heat, try something new.", CANDIDATES) == []


def test_the_reply_is_read_up_to_the_size_cap():
    padding = "x" * (MAX_REPLY_CHARS - len("1. Heat (1995)\n") - 1) + "\n"
    reply = "1. Heat (1995)\n" + padding + "2. Casino (1995)\n"
    assert len(reply) > MAX_REPLY_CHARS
    assert parse_ranking(reply, CANDIDATES) == [0]


def test_reasoning_does_not_count_towards_the_size_cap():
    reply = "<think>" + "y" * (2 * MAX_REPLY_CHARS) + "</think>1. Casino (1995)"
    assert parse_ranking(reply, CANDIDATES) == [1]


def test_the_lookups_for_a_long_item_do_not_grow_with_its_length(monkeypatch):
    # Work per item is bounded: a 30 kB item costs as many title lookups as a 3 kB one.
    def lookups(reply: str) -> list[int]:
        seen: list[int] = []
        lookup = parsing._lookup

        def counting(index, span, used, loose):
            seen.append(len(span))
            return lookup(index, span, used, loose)

        monkeypatch.setattr(parsing, "_lookup", counting)
        assert parse_ranking(reply, CANDIDATES) == [0]
        monkeypatch.setattr(parsing, "_lookup", lookup)
        return seen

    short, long = lookups("1. Heat - " + "a - " * 750), lookups("1. Heat - " + "a - " * 7500)
    assert len(long) == len(short) < 200 and max(long) == max(short) < 1200


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "1. " + "a, " * (n // 3),
        lambda n: "1. " + "a - " * (n // 4),
        lambda n: "1. " + "a (b " * (n // 5),
        lambda n: "1. " + " ".join(f"({i} 2. x" for i in range(n // 8)),
        lambda n: "a, " * (n // 3),
        lambda n: "<think>" + "1. Heat (1995)\n" * (n // 15),
        lambda n: "(1995 " + " " * n,
        lambda n: "[a](" * (n // 4),
    ],
)
def test_a_100_kb_reply_of_any_worst_case_shape_still_parses_the_list_before_it(shape):
    reply = "1. Casino (1995)\n2. Alien (1979)\n" + shape(100_000)
    assert parse_ranking(reply, CANDIDATES)[:2] == [1, 4]


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(len(CANDIDATES))), st.sampled_from(['"{}"', '{{"title": "{}"}}']))
def test_any_order_as_json_parses_back_exactly(order, element):
    reply = "[" + ", ".join(element.format(CANDIDATES[i].replace('"', '\\"')) for i in order) + "]"
    assert parse_ranking(reply, CANDIDATES) == list(order)


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(len(CANDIDATES))))
def test_any_order_as_a_comma_list_parses_back_exactly(order):
    assert parse_ranking(", ".join(CANDIDATES[i] for i in order), CANDIDATES) == list(order)


def _reference_lookup(index, span, loose):
    """What a span names by the tiers of the module docstring, with no shortcut (normalise, then look up)."""
    parts, year = parsing._title_parts(span)
    if not parts or len(span) > index.longest_span:
        return None
    for key in [parsing._key(parts, year)] + ([parsing._key(parts[:1], year)] if len(parts) > 1 else []):
        for table in (index.exact, index.alias):
            if table.get(key):
                return table[key][0]
    if loose:
        table = index.yearless if year is None else index.undated
        for key in (parsing._key(parts, None), parsing._key(parts[:1], None)):
            if table.get(key):
                return table[key][0]
    return None


_FRAGMENTS = ["Heat", "heat", "The", "the", ", The", ", L'", "L'", "Good", "Bad", "Ugly", ",", " ", "  ", "(1995)",
              "(1966)", " (1995 film)", "(", ")", "[", "]", "(Postino, Il)", "Postman", "&", "and", "é", "-", ".",
              "!", ":", "\n", "(x)", "Toy Story", "2", "Casino", "Alien", "a.k.a."]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=8), st.booleans())
@example(["Heat", "(x)"], True)  # the first title alone names "Heat (1995)"
@example(["Toy Story", " ", "(1995)", "(x)"], False)
@example(["Good", ",", " ", "The", " ", "Bad"], True)
def test_the_quick_checks_before_a_lookup_never_change_what_a_span_names(fragments, loose):
    span = "".join(fragments)
    index = parsing._candidate_index(tuple(CANDIDATES))
    assert parsing._lookup(index, span, set(), loose) == _reference_lookup(index, span, loose)
