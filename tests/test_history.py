"""Multi-turn signals: negative streaks, failed answers, repeated questions."""

from __future__ import annotations

from assistant.understanding.history import (
    PriorTurn,
    failed_answers,
    negative_streak,
    repeated_question,
)


def test_negative_streak_counts_back_to_the_first_non_negative() -> None:
    prior = [PriorTurn("a", sentiment="negative"), PriorTurn("b", sentiment="neutral"),
             PriorTurn("c", sentiment="negative"), PriorTurn("d", sentiment="negative")]
    assert negative_streak(prior, "negative") == 3
    assert negative_streak(prior, "neutral") == 0
    assert negative_streak([], "negative") == 1


def test_failed_answers_in_a_row() -> None:
    prior = [PriorTurn("a", bot_failed=True), PriorTurn("b"), PriorTurn("c", bot_failed=True)]
    assert failed_answers(prior, True) == 2
    assert failed_answers(prior, False) == 0


def test_a_reworded_repeat_is_found_and_a_new_question_is_not() -> None:
    prior = [PriorTurn("How do I export my project data to CSV?", intent="how_to"),
             PriorTurn("thanks", intent="thanks_goodbye")]
    again = repeated_question(prior, "HOW DO I EXPORT MY PROJECT DATA TO CSV??", "how_to",
                              threshold=0.7)
    assert again == "How do I export my project data to CSV?"
    assert repeated_question(prior, "I still can't export project data to CSV", "how_to",
                             threshold=0.7) is not None
    assert repeated_question(prior, "How do I invite a teammate to a project?", "how_to",
                             threshold=0.7) is None


def test_short_and_social_messages_are_not_repeats() -> None:
    prior = [PriorTurn("thanks a lot", intent="thanks_goodbye"), PriorTurn("hi there")]
    assert repeated_question(prior, "thanks a lot", "thanks_goodbye", threshold=0.7) is None
    assert repeated_question(prior, "hi there", None, threshold=0.7) is None
