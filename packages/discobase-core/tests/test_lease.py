"""The single-writer lease: the fold of lease messages, fences and the record format."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discobase_core.errors import DatabaseCorruptionError
from discobase_core.lease import (
    DISCORD_EPOCH_MS,
    LEASE_TTL_MS,
    Fence,
    LeaseRecord,
    TableMark,
    decode_record,
    encode_record,
    fold,
    is_fenced,
    merge_fences,
    snowflake_ms,
)

T0 = 1_800_000_000_000  # some unix ms


def sid(ms: int, low: int = 0) -> int:
    """A snowflake minted at unix milliseconds `ms`."""
    return ((ms - DISCORD_EPOCH_MS) << 22) | low


def claim(holder: str = "a", ttl: int = LEASE_TTL_MS) -> LeaseRecord:
    return LeaseRecord("claim", holder=holder, ttl_ms=ttl)


def beat(term: int, holder: str = "a", **tables: TableMark) -> LeaseRecord:
    return LeaseRecord("beat", term, holder, tables)


def test_snowflake_ms_round_trip() -> None:
    assert snowflake_ms(sid(T0, 12345)) == T0


def test_nobody_holds_an_empty_lease() -> None:
    view = fold([])
    assert view.term is None
    assert not view.held
    assert view.free_at(T0)


def test_a_claim_holds_and_beats_extend_it() -> None:
    c = sid(T0)
    view = fold([(c, claim()), (sid(T0 + 10_000), beat(c)), (sid(T0 + 20_000), beat(c))])
    assert view.term == c
    assert view.held
    assert view.expires_ms == T0 + 20_000 + LEASE_TTL_MS
    assert not view.free_at(T0 + 49_000)
    assert view.free_at(T0 + 50_001)


def test_a_claim_while_the_holder_is_alive_is_void() -> None:
    first = sid(T0)
    view = fold([(first, claim("a")), (sid(T0 + 5_000), claim("b"))])
    assert view.term == first
    assert view.holder == "a"


def test_a_claim_after_expiry_supersedes_with_a_cutoff() -> None:
    first = sid(T0)
    second = sid(T0 + LEASE_TTL_MS + 1)
    late_beat = sid(T0 + LEASE_TTL_MS + 2)
    view = fold([(first, claim("a")), (second, claim("b")), (late_beat, beat(first, "a"))])
    assert view.term == second
    assert view.holder == "b"
    assert view.terms[first].cutoff_ms == T0 + LEASE_TTL_MS
    assert view.last_valid_ms == T0 + LEASE_TTL_MS + 1  # the late beat changed nothing


def test_a_release_frees_at_once_and_sets_the_cutoff() -> None:
    first = sid(T0)
    released = sid(T0 + 1_000)
    view = fold([(first, claim("a")), (released, LeaseRecord("release", first, "a"))])
    assert not view.held
    assert view.free_at(T0 + 1_001)
    assert view.terms[first].cutoff_ms == T0 + 1_000
    second = sid(T0 + 2_000)
    view = fold(
        [(first, claim("a")), (released, LeaseRecord("release", first, "a")), (second, claim())]
    )
    assert view.term == second


def test_a_beat_after_expiry_is_void_even_without_a_rival() -> None:
    first = sid(T0)
    view = fold([(first, claim()), (sid(T0 + LEASE_TTL_MS + 5), beat(first))])
    assert view.last_valid_ms == T0
    assert view.free_at(T0 + LEASE_TTL_MS + 1)


def test_each_term_uses_its_own_lease_length() -> None:
    first = sid(T0)
    second = sid(T0 + 3_500)
    view = fold([(first, claim("a", ttl=3_000)), (second, claim("b"))])
    assert view.term == second
    assert view.terms[first].cutoff_ms == T0 + 3_000


def test_a_page_starting_inside_a_term_anchors_on_its_oldest_beat() -> None:
    term = sid(T0 - 500_000)
    view = fold([(sid(T0), beat(term)), (sid(T0 + 10_000), beat(term))])
    assert view.term == term
    assert view.held
    assert view.expires_ms == T0 + 10_000 + LEASE_TTL_MS


def test_a_newer_terms_beat_proves_its_claim_and_voids_late_records_of_the_older() -> None:
    """Only the newest page is read: the newer term's claim may be missing while a late
    (void) beat of the older term is there. The newer term's number is its claim's id."""
    old = sid(T0)
    new_claim_ms = T0 + 2 * LEASE_TTL_MS
    new = sid(new_claim_ms, 7)  # its claim message is not in the page
    view = fold(
        [
            (sid(T0 + 5_000), beat(old, "a")),  # the page starts inside the old term
            (sid(new_claim_ms + 1_000), beat(old, "a")),  # late: after the new claim
            (sid(new_claim_ms + 2_000), beat(new, "b", User=TableMark(10, 10, 5))),
            (sid(new_claim_ms + 3_000), beat(new, "b")),
        ]
    )
    assert view.term == new
    assert view.holder == "b"
    assert view.terms[old].cutoff_ms == T0 + 5_000 + LEASE_TTL_MS  # not the late beat's
    assert view.fences("User") == [Fence(5, None)]
    assert view.expires_ms == new_claim_ms + 3_000 + LEASE_TTL_MS


def test_reservations_fences_and_acknowledged_commits() -> None:
    first = sid(T0)
    second = sid(T0 + LEASE_TTL_MS + 10)
    view = fold(
        [
            (first, claim("a")),
            (sid(T0 + 1), beat(first, "a", User=TableMark(2048, 300, 1, 40))),
            (second, claim("b")),
            (sid(T0 + LEASE_TTL_MS + 20), beat(second, "b", User=TableMark(4096, 600, 300, 0))),
        ]
    )
    assert view.reserved("User") == (4096, 600)
    assert view.reserved("Other") == (0, 0)
    assert view.fences("User") == [Fence(1, T0 + LEASE_TTL_MS + 1), Fence(300, None)]
    assert view.acked("User") == [(first, 40)]


def test_final_checkpoint_is_the_released_last_writers_and_nobody_elses() -> None:
    """A clean close names the checkpoint holding everything; any later term that reported
    the table (it may have written) or a term that did not release makes it unknown."""
    first, second, third = sid(T0), sid(T0 + 2_000), sid(T0 + 4_000)
    done = TableMark(2048, 300, 1, 40, checkpoint=777)
    records = [
        (first, claim("a")),
        (sid(T0 + 1), beat(first, "a", User=TableMark(2048, 300, 1, 40))),
        (sid(T0 + 1_000), LeaseRecord("release", first, "a", {"User": done})),
    ]
    assert fold(records).final_checkpoint("User") == 777
    assert fold(records).final_checkpoint("Other") == 0
    assert fold(records[:2]).final_checkpoint("User") == 0  # not released: it may have crashed
    records.append((second, claim("b")))  # a writer of other tables only
    records.append((sid(T0 + 2_001), beat(second, "b", Other=TableMark(1, 1, 1))))
    view = fold(records)
    assert view.final_checkpoint("User") == 777
    assert view.final_checkpoint("Other") == 0
    records.append((third, claim("c")))  # this process, about to open User as its writer
    records.append((sid(T0 + 4_001), beat(third, "c", User=TableMark(4096, 600, 300))))
    view = fold(records)
    assert view.final_checkpoint("User", own_term=third) == 777
    assert view.final_checkpoint("User") == 0  # seen by anyone else: the third term may write


def test_is_fenced_attributes_a_commit_to_its_term() -> None:
    fences = [Fence(1, T0), Fence(300, None)]
    assert not is_fenced(fences, 0, sid(T0 + 99_999))  # before the lease existed
    assert not is_fenced(fences, 5, sid(T0))  # within the first term's lease
    assert is_fenced(fences, 5, sid(T0 + 1))  # sent after the cutoff
    assert not is_fenced(fences, 301, sid(T0 + 99_999))  # the current term


def test_merge_fences_prefers_a_known_cutoff() -> None:
    merged = merge_fences([Fence(1, None), Fence(9, None)], [Fence(1, T0)], [Fence(9, None)])
    assert merged == [Fence(1, T0), Fence(9, None)]


def test_records_round_trip_through_message_content() -> None:
    record = LeaseRecord(
        "beat",
        123,
        "host:42:abcd",
        {
            "User": TableMark(1, 2, 3, 4),
            "Ünïcode": TableMark(5, 6, 7),
            "T": TableMark(1, 2, 3, 4, 5),
        },
    )
    content = encode_record(record)
    assert content.isascii()
    assert len(content) < 2000
    assert decode_record(content, where="x") == record


@pytest.mark.parametrize("content", ["dscb:AAAA", "hello", "dscb:"])
def test_garbage_is_corruption(content: str) -> None:
    with pytest.raises(DatabaseCorruptionError):
        decode_record(content, where="lease message")


_events = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["claim", "beat", "release"]), st.integers(1, 20)),
    max_size=40,
)


@settings(max_examples=300)
@given(_events, st.randoms(use_true_random=False))
def test_terms_never_overlap_and_order_of_reading_does_not_matter(
    events: list[tuple[int, str, int]], rnd: random.Random
) -> None:
    """Writers 0..3 post claims, beats and releases at increasing times (gaps of 1-20 s,
    against a 30 s lease); whatever they post, valid terms follow one another: each term's
    cutoff is at or before the next term's claim, and every term's last valid record is at
    or before its cutoff. The verdict does not depend on the order the records are read."""
    records: list[tuple[int, LeaseRecord]] = []
    terms_of: dict[int, int] = {}  # writer -> the term it believes it holds
    now = T0
    for writer, kind, gap in events:
        now += gap * 1_000
        message = sid(now, len(records))
        if kind == "claim":
            records.append((message, claim(str(writer))))
            if fold(records).term == message:
                terms_of[writer] = message
        else:
            term = terms_of.get(writer, 0)
            records.append((message, LeaseRecord(kind, term, str(writer))))  # type: ignore[arg-type]
    view = fold(records)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert fold(shuffled) == view
    ordered = sorted(view.terms.items())
    for (_, info), (next_term, _) in itertools.pairwise(ordered):
        assert info.cutoff_ms is not None
        assert info.cutoff_ms <= snowflake_ms(next_term)
