"""Hints out of real-looking replies, and rejection of hints that name the true item."""

from __future__ import annotations

import pytest

from rec_gym.knowledge.extraction import extract_hints, leaks_title, title_variants


def test_a_numbered_list_with_preamble_and_closing_remark():
    reply = ("Here are some hints that could help:\n\n1. Prefer older, classic films.\n2. Favour niche titles over "
             "blockbusters.\n3. Continue any series the user has started.\n\nI hope these help!")
    assert extract_hints(reply) == ["Prefer older, classic films.", "Favour niche titles over blockbusters.",
                                    "Continue any series the user has started."]


def test_bullets_with_bold_labels_and_blank_lines_between():
    reply = ("### Hints\n\n- **Genre focus:** Recommend comedies when the history is full of them.\n\n"
             "* **Popularity** - Look for hidden gems rather than blockbusters.\n\n"
             "+ __Era__: keep to the decade of the history.\n")
    assert extract_hints(reply) == ["Recommend comedies when the history is full of them.",
                                    "Look for hidden gems rather than blockbusters.", "keep to the decade of the history."]


def test_bold_numbers_with_or_without_a_bold_label():
    reply = "**1. Genre focus:** Recommend more comedies.\n**2.** Prefer older, classic films.\n__3)__ Favour underrated titles."
    assert extract_hints(reply) == ["Recommend more comedies.", "Prefer older, classic films.", "Favour underrated titles."]


def test_points_of_several_sentences_and_wrapped_lines_stay_one_hint():
    reply = ("1) **Weight** the most recent movie most.\n   It predicts the next one well.\n"
             "2) Prefer older films. Classics suit this viewer.")
    assert extract_hints(reply) == ["Weight the most recent movie most. It predicts the next one well.",
                                    "Prefer older films. Classics suit this viewer."]


def test_hint_prefixes_on_lines_and_inline():
    assert extract_hints("Hint 1: Prefer older films.\nHint 2: Favour underrated titles.") == [
        "Prefer older films.", "Favour underrated titles."]
    assert extract_hints("Hint: Prefer older films. Hint: Favour underrated titles.") == [
        "Prefer older films.", "Favour underrated titles."]


def test_reasoning_blocks_and_fences_are_dropped():
    reply = ("<think>\n1. Maybe recommend Toy Story 2.\n</think>\n```markdown\n1. Continue any series the user has "
             "started.\n```")
    assert extract_hints(reply) == ["Continue any series the user has started."]
    assert extract_hints("the model thought here</think>\n- Favour underrated titles.") == ["Favour underrated titles."]


def test_paragraphs_without_markers_are_points_and_short_or_heading_points_are_not():
    reply = "Prefer older films and classic ones.\n\nFavour niche titles over blockbusters.\n\nOK.\n\nHints:"
    assert extract_hints(reply) == ["Prefer older films and classic ones.", "Favour niche titles over blockbusters."]
    assert extract_hints("1. Prefer older films.\n2. Prefer older films.") == ["Prefer older films."]
    assert extract_hints("1. " + "very long " * 80) == []


@pytest.mark.parametrize("hint, title", [
    ("Put Toy Story 2 near the top.", "Toy Story 2 (1999)"),
    ("Recommend toy story II.", "Toy Story 2 (1999)"),
    ("Suggest Toy Story Part Two", "Toy Story 2 (1999)"),
    ("Recommend The Matrix.", "Matrix, The (1999)"),
    ("Watch matrix again", "Matrix, The (1999)"),
    ("Try 'A New Hope'.", "Star Wars: Episode IV - A New Hope (1977)"),
    ("Se7en is the answer", "Seven (a.k.a. Se7en) (1995)"),
    ("Recommend Amélie tonight", "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)"),
    ("Recommend Heat.", "Heat (1995)"),
])
def test_a_hint_naming_the_true_item_or_a_close_variant_leaks(hint, title):
    assert leaks_title(hint, title)


@pytest.mark.parametrize("hint, title, allowed", [
    ("Prefer older, classic films.", "Toy Story 2 (1999)", ()),
    ("Pick up the pace with lighter films.", "Up (2009)", ()),
    ("Turn up the heat with thrillers.", "Heat (1995)", ()),
    ("Continue the series the user started with Toy Story.", "Toy Story 2 (1999)", ("Toy Story (1995)",)),
])
def test_hints_that_do_not_name_it_pass(hint, title, allowed):
    assert not leaks_title(hint, title, allowed)


def test_title_variants_cover_year_article_and_sequel_numbers():
    assert {"toy story 2", "toy story ii", "toy story two", "toy story part 2"} <= title_variants("Toy Story 2 (1999)")
    assert {"the matrix", "matrix"} <= title_variants("Matrix, The (1999)")
    assert {"rocky 2", "rocky ii"} <= title_variants("Rocky II (1979)")
