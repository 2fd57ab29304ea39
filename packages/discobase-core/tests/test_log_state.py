"""The table log format and the table state: round trips, replay, checkpoints."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discobase_core import state as state_module
from discobase_core.codec import (
    ATTACHMENT_LIMIT,
    ATTACHMENTS_PER_MESSAGE,
    CONTENT_LIMIT,
    dearmor,
    seal,
    unseal,
)
from discobase_core.errors import DatabaseCorruptionError, RecordTooLargeError
from discobase_core.log import (
    MAX_RECORD_BYTES,
    Delete,
    LogBlock,
    LogChunk,
    MessagePlan,
    Put,
    assemble_chunks,
    chunk_files,
    chunk_for_entry,
    decode_block,
    decode_chunk,
    encode_block,
    file_name,
    is_discobase_message,
    parse_file_name,
    plan_commit,
    read_blob,
)
from discobase_core.schema import TableSchema
from discobase_core.state import (
    DIRECTORY_SPAN,
    MANIFEST_FORMAT,
    SELF,
    TableState,
    read_checkpoint,
    read_pages,
)


class Pair(pydantic.BaseModel):
    a: str
    b: int


SCHEMA = TableSchema.from_model("Pair", Pair)


def new_state() -> TableState:
    return TableState(table_schema=SCHEMA, fields=("a", "b"))


def put(rid: int, a: int, b: int, payload: bytes = b"{}") -> Put:
    return Put(rid, (a, b), payload)


entries = st.lists(
    st.one_of(
        st.builds(put, st.integers(1, 50), st.integers(0, 5), st.integers(0, 2**64 - 1)),
        st.builds(Delete, st.integers(1, 50)),
    ),
    max_size=40,
)


@given(entries, st.integers(1, 2**40), st.integers(0, 3))
def test_block_round_trip(items: list[Put | Delete], commit: int, part: int) -> None:
    block = LogBlock(commit, part, part + 1, tuple(items))
    decoded, width = decode_block(encode_block(block, 2), where="test")
    assert decoded == block
    assert width == 2


def test_small_commit_goes_inline_and_big_one_into_files() -> None:
    [(block, small)] = plan_commit([put(1, 1, 2, b"x" * 100)], commit=1, width=2)
    assert small.content is not None
    assert len(small.content) <= CONTENT_LIMIT
    assert not small.files
    assert block.entries == (put(1, 1, 2, b"x" * 100),)
    [(_, big)] = plan_commit([put(n, 1, 2, b"y" * 5000) for n in range(10)], commit=2, width=2)
    assert big.content is None
    assert [name for name, _ in big.files] == ["logc-2-0.dscb"]
    chunk, width = decode_chunk(big.files[0][1], where="test")
    assert (chunk.commit, chunk.first, chunk.total, len(chunk.entries), width) == (2, 0, 10, 10, 2)


def test_a_record_bigger_than_one_file_spans_files_of_one_message() -> None:
    payload = b"z" * (ATTACHMENT_LIMIT + 10)
    [(_, plan)] = plan_commit([put(1, 0, 0, payload)], commit=1, width=2)
    assert [name for name, _ in plan.files] == ["log-1-0.dscb", "log-1-1.dscb"]
    assert all(len(data) <= ATTACHMENT_LIMIT for _, data in plan.files)
    reversed_files = list(reversed(plan.files))
    block, _ = decode_block(read_blob("", reversed_files, where="t"), where="t")
    assert block.entries[0] == put(1, 0, 0, payload)


def test_a_commit_bigger_than_one_message_is_split_into_numbered_parts() -> None:
    payload = b"q" * (MAX_RECORD_BYTES // 3 - 100)  # three fit in one message, four do not
    planned = plan_commit([put(n, 0, 0, payload) for n in range(1, 5)], commit=7, width=2)
    assert [(b.commit, b.part, b.parts) for b, _ in planned] == [(7, 0, 2), (7, 1, 2)]


def decode_plan(plan: MessagePlan) -> LogBlock:
    """What a reader makes of one planned message, whatever its layout."""
    if plan.content is not None:
        assert not plan.files
        return decode_block(dearmor(plan.content, where="t"), where="t")[0]
    names = [name for name, _ in plan.files]
    if chunk_files(names) is None:
        return decode_block(read_blob("", list(plan.files), where="t"), where="t")[0]
    return assemble_chunks([decode_chunk(d, where="t")[0] for _, d in plan.files], where="t")


sized_entries = st.lists(
    st.one_of(
        st.builds(
            put,
            st.integers(1, 10**6),
            st.integers(0, 5),
            st.integers(0, 2**64 - 1),
            st.integers(0, 3000).map(lambda n: b"p" * n),
        ),
        st.builds(Delete, st.integers(1, 10**6)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(sized_entries, st.integers(1, 2**40), st.integers(1, 8000))
def test_chunked_plans_round_trip_and_name_each_entry(
    items: list[Put | Delete], commit: int, chunk_bytes: int
) -> None:
    planned = plan_commit(items, commit=commit, width=2, chunk_bytes=chunk_bytes)
    assert [b.part for b, _ in planned] == list(range(len(planned)))
    assert all(b.commit == commit and b.parts == len(planned) for b, _ in planned)
    assert [e for b, _ in planned for e in b.entries] == items
    for block, plan in planned:
        assert decode_plan(plan) == block
        assert len(plan.files) <= ATTACHMENTS_PER_MESSAGE
        names = [name for name, _ in plan.files]
        if chunk_files(names) is None:
            continue
        chunks = {name: decode_chunk(data, where=name)[0] for name, data in plan.files}
        for chunk in chunks.values():
            assert (chunk.commit, chunk.part, chunk.parts) == (commit, block.part, block.parts)
            assert chunk.total == len(block.entries)
            sizes = [len(encode_block(LogBlock(1, 0, 1, (e,)), 2)) for e in chunk.entries]
            # about chunk_bytes of entries: more only when one entry alone is bigger
            assert len(chunk.entries) == 1 or sum(s - 29 for s in sizes) <= chunk_bytes
        for number, entry in enumerate(block.entries):
            name = chunk_for_entry(names, number)
            assert name is not None
            chunk = chunks[name]
            assert chunk.entries[number - chunk.first] == entry


def test_damage_to_one_chunk_leaves_the_others_readable() -> None:
    items = [put(n, n, n, b"r" * 400) for n in range(1, 120)]
    [(block, plan)] = plan_commit(items, commit=3, width=2, chunk_bytes=8 * 1024)
    assert len(plan.files) > 3
    broken = bytearray(plan.files[1][1])
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(DatabaseCorruptionError):
        decode_chunk(bytes(broken), where="attachment 1")
    others = [decode_chunk(d, where="t")[0] for n, (_, d) in enumerate(plan.files) if n != 1]
    assert all(isinstance(chunk, LogChunk) for chunk in others)
    with pytest.raises(DatabaseCorruptionError, match="complete sequence"):
        assemble_chunks(others, where="t")
    assert [e for c in others for e in c.entries] == [
        e for e in block.entries if e not in decode_chunk(plan.files[1][1], where="t")[0].entries
    ]


def test_chunk_names_say_the_layout() -> None:
    assert chunk_files(["logc-5-0.dscb", "logc-5-120.dscb"]) == [
        (0, "logc-5-0.dscb"),
        (120, "logc-5-120.dscb"),
    ]
    assert chunk_files(["log-5-0.dscb", "log-5-1.dscb"]) is None  # a split blob
    assert chunk_files([]) is None
    assert chunk_for_entry(["logc-5-120.dscb", "logc-5-0.dscb"], 119) == "logc-5-0.dscb"
    assert chunk_for_entry(["logc-5-120.dscb", "logc-5-0.dscb"], 120) == "logc-5-120.dscb"


def test_oversize_record_is_refused_before_anything_is_planned() -> None:
    with pytest.raises(RecordTooLargeError) as info:
        plan_commit([put(1, 0, 0, b"w" * (MAX_RECORD_BYTES + 1))], commit=1, width=2)
    assert info.value.details["limit"] == MAX_RECORD_BYTES


def test_foreign_messages_are_recognised() -> None:
    assert not is_discobase_message("hello, I am a person", [])
    assert not is_discobase_message("", ["cat.png"])
    [(_, plan)] = plan_commit([put(1, 1, 2)], commit=1, width=2)
    assert plan.content is not None
    assert is_discobase_message(plan.content, [])


@given(st.binary(max_size=300))
def test_garbage_blocks_raise_only_corruption(data: bytes) -> None:
    with pytest.raises(DatabaseCorruptionError):
        decode_block(data, where="garbage")


def test_truncated_or_edited_block_is_detected() -> None:
    blob = encode_block(LogBlock(1, 0, 1, (put(1, 2, 3, b"hello"),)), 2)
    for broken in (blob[:-1], blob[:10], blob[:-3] + b"xyz"):
        with pytest.raises(DatabaseCorruptionError) as info:
            decode_block(broken, where="message 42")
        assert "message 42" in str(info.value)


# -- state ---------------------------------------------------------------------------------


def model_apply(model: dict[int, tuple[int, int]], items: list[Put | Delete]) -> None:
    for item in items:
        if isinstance(item, Put):
            model[item.rid] = (item.keys[0], item.keys[1])
        else:
            model.pop(item.rid, None)


def assert_matches(state: TableState, model: dict[int, tuple[int, int]]) -> None:
    assert state.rids() == sorted(model)
    for a in range(6):
        expected = sorted(rid for rid, keys in model.items() if keys[0] == a)
        assert state.candidates({"a": a}) == expected
    for rid, (a, b) in model.items():
        assert rid in state.candidates({"a": a, "b": b})


@settings(max_examples=60, deadline=None)
@given(st.lists(entries, max_size=6), st.booleans())
def test_state_matches_a_dict_model_through_checkpoints(
    commits: list[list[Put | Delete]], full: bool
) -> None:
    state = new_state()
    model: dict[int, tuple[int, int]] = {}
    message_id = 1000
    pages_by_message: dict[int, dict[str, bytes]] = {}
    for number, items in enumerate(commits, start=1):
        message_id += 1
        state.apply(message_id, LogBlock(number, 0, 1, tuple(items)))
        model_apply(model, items)
        assert_matches(state, model)
        # Checkpoint after every commit, writing only dirty pages, and reload from them.
        plan = state.plan_checkpoint(full=full)
        page_ids = []
        for blob in plan.page_blobs:
            message_id += 1
            pages_by_message[message_id] = read_pages(blob, where="t")
            page_ids.append(message_id)
        message_id += 1
        manifest, own = read_checkpoint(plan.final_blob(page_ids), where="t")
        pages_by_message[message_id] = own
        state.finish_checkpoint(plan, page_ids, message_id)
        assert not state.dirty()
        assert set(manifest.refs.values()) <= {SELF, *pages_by_message}
        loaded = TableState.from_checkpoint(manifest, message_id, pages_by_message, where="t")
        assert_matches(loaded, model)
        assert loaded.directory == state.directory
        assert loaded.next_rid >= max(model, default=0) + 1


def test_checkpoint_writes_only_touched_pages() -> None:
    """Only directory pages are written (the indexes are rebuilt from them), and only those
    an update or an insert touched: random keys no longer dirty every index page."""
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, tuple(put(rid, rid, rid) for rid in range(1, 10_000))))
    first = state.plan_checkpoint()
    assert set(first.written) == {f"d:{n}" for n in range(5)}
    state.finish_checkpoint(first, [], 2)
    state.apply(3, LogBlock(2, 0, 1, (put(5, 99, 99),)))
    second = state.plan_checkpoint()
    assert set(second.written) == {"d:0"}
    state.finish_checkpoint(second, [], 4)
    state.apply(5, LogBlock(3, 0, 1, (put(10_000, 7, 7),)))
    assert set(state.plan_checkpoint().written) == {"d:4"}


def test_replay_ignores_an_unfinished_commit() -> None:
    state = new_state()
    blocks = [
        (0, 1, LogBlock(1, 0, 1, (put(1, 1, 1),))),
        (1, 2, LogBlock(2, 0, 2, (put(2, 2, 2),))),  # part 1 of commit 2 never arrived
        (2, 3, LogBlock(3, 0, 2, (put(3, 3, 3),))),
        (2, 4, LogBlock(3, 1, 2, (put(4, 4, 4),))),
        (0, 5, LogBlock(4, 0, 2, (put(5, 5, 5),))),  # the crash: last commit half-written
    ]
    assert state.replay(reversed(blocks)) == [2, 5]
    assert state.rids() == [1, 3, 4]
    assert state.next_commit == 5  # the unfinished commits' numbers are never reused
    loc = state.location(4)
    assert loc is not None
    assert (loc.lane, loc.message_id, loc.entry) == (2, 4, 0)


def test_replay_applies_commits_of_several_lanes_in_commit_order() -> None:
    state = new_state()
    blocks = [
        (1, 30, LogBlock(3, 0, 1, (Delete(1),))),
        (0, 10, LogBlock(1, 0, 1, (put(1, 1, 1),))),
        (2, 20, LogBlock(2, 0, 1, (put(1, 2, 2),))),
    ]
    assert state.replay(blocks) == []
    assert state.rids() == []


def test_put_of_an_existing_id_moves_its_index_entries() -> None:
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, (put(1, 10, 20), put(2, 10, 21))))
    state.apply(2, LogBlock(2, 0, 1, (put(1, 11, 20),)))
    assert state.candidates({"a": 10}) == [2]
    assert state.candidates({"a": 11}) == [1]
    assert state.candidates({"a": 10, "b": 20}) == []
    loc = state.location(1)
    assert loc is not None
    assert (loc.message_id, loc.entry) == (2, 0)


def test_added_field_gets_the_default_key_for_old_records() -> None:
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, (put(1, 10, 20), put(2, 11, 21))))
    state.add_field("c", 777)
    assert state.fields == ("a", "b", "c")
    assert state.candidates({"c": 777}) == [1, 2]


def test_file_names_carry_kind_commit_and_number() -> None:
    for kind, commit, number in [("log", 1, 0), ("ckpt", 99, 3), ("pages", 2**40, 9)]:
        assert parse_file_name(file_name(kind, commit, number)) == (kind, commit, number)
    for foreign in ("cat.png", "log-x-1.dscb", "log-1.dscb", "-1-2.dscb", "log-1-2.txt"):
        assert parse_file_name(foreign) is None


# ------------------------------------------------------------------ findings


def checkpoint_and_reload(state: TableState) -> TableState:
    plan = state.plan_checkpoint(full=True)
    pages_by_message: dict[int, dict[str, bytes]] = {}
    page_ids = []
    for number, blob in enumerate(plan.page_blobs, start=100):
        pages_by_message[number] = read_pages(blob, where="t")
        page_ids.append(number)
    manifest, own = read_checkpoint(plan.final_blob(page_ids), where="t")
    pages_by_message[99] = own
    return TableState.from_checkpoint(manifest, 99, pages_by_message, where="t")


def test_unicode_field_name_reopens() -> None:
    class Person(pydantic.BaseModel):
        имя: str
        名前: int

    state = TableState(
        table_schema=TableSchema.from_model("Person", Person), fields=("имя", "名前")
    )
    state.apply(1, LogBlock(1, 0, 1, (put(1, 10, 20), put(2, 11, 21))))
    loaded = checkpoint_and_reload(state)
    assert loaded.fields == ("имя", "名前")
    assert loaded.candidates({"имя": 10}) == [1]
    assert loaded.candidates({"名前": 21}) == [2]


def test_page_keys_with_bad_utf8_are_corruption() -> None:
    body = b"\x01\x03i:\xff\x00"  # one page, key "i:" + 0xFF (not UTF-8), empty page
    with pytest.raises(DatabaseCorruptionError, match="UTF-8"):
        read_pages(seal("pages", body), where="message 5")


def test_forged_counts_are_corruption_before_allocation() -> None:
    with pytest.raises(DatabaseCorruptionError, match="count"):
        read_pages(seal("pages", b"\xff\xff\xff\xff\x0f"), where="m")  # 2**32 pages
    with pytest.raises(DatabaseCorruptionError, match="count"):
        decode_block(seal("log", b"\x01\x00\x01\x02\xff\xff\xff\xff\x0f"), where="m")
    with pytest.raises(DatabaseCorruptionError, match="index keys"):
        # One put claiming 2**40 keys per record.
        decode_block(seal("log", b"\x01\x00\x01\x80\x80\x80\x80\x80\x20\x01\x01\x07"), where="m")


def test_directory_page_offsets_stay_inside_the_page() -> None:
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, (put(1, 10, 20),)))
    plan = state.plan_checkpoint(full=True)
    manifest, own = read_checkpoint(plan.final_blob([]), where="t")
    forged = bytearray(b"\x02\x01")  # width 2, one entry
    forged += b"\x80\x10"  # offset 2048: beyond the page's records
    forged += b"\x01\x00\x00" + bytes(16)
    own = {**own, "d:0": seal("dirp", bytes(forged))}
    with pytest.raises(DatabaseCorruptionError, match="offset"):
        TableState.from_checkpoint(manifest, 99, {99: own}, where="t")


def test_manifest_with_repeated_fields_or_negative_counts_is_corruption() -> None:
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, (put(1, 10, 20),)))
    manifest, own = read_checkpoint(state.plan_checkpoint(full=True).final_blob([]), where="t")
    for bad in ({"fields": ("a", "a")}, {"next_rid": -5}, {"records": -1}):
        with pytest.raises(DatabaseCorruptionError, match="twice or a negative"):
            TableState.from_checkpoint(manifest.model_copy(update=bad), 99, {99: own}, where="t")


def test_a_checkpoint_of_a_newer_format_is_refused_not_misread() -> None:
    state = new_state()
    plan = state.plan_checkpoint(full=True)
    plan.snapshot = plan.snapshot.model_copy(update={"format": MANIFEST_FORMAT + 1})
    with pytest.raises(DatabaseCorruptionError, match="upgrade discobase") as caught:
        read_checkpoint(plan.final_blob([]), where="t")
    assert caught.value.details["reason"] == "newer format"


@pytest.mark.parametrize("budget", [8_000, 12_000])
def test_checkpoint_blobs_fit_their_budget_with_many_small_pages(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found at a million records: thousands of small pages, whose keys and lengths the
    packing did not count, and a manifest naming all of them, overflowed a Discord message
    and the checkpoint failed for ever. Every blob stays within the budget plus framing."""
    monkeypatch.setattr(state_module, "_PACK_BUDGET", budget)
    state = new_state()
    for number in range(400):  # one record per directory page: 400 tiny pages
        rid = number * DIRECTORY_SPAN + 1
        state.apply(10 + number, LogBlock(number + 1, 0, 1, (put(rid, number, 7),)))
    plan = state.plan_checkpoint(full=True)
    assert len(plan.packs) > 2
    ids = list(range(100, 100 + len(plan.page_blobs)))
    blobs = [*plan.page_blobs, plan.final_blob(ids)]
    assert max(len(blob) for blob in blobs) <= budget + 64
    pages_by_message = {
        mid: read_pages(blob, where="t") for mid, blob in zip(ids, blobs[:-1], strict=True)
    }
    manifest, own = read_checkpoint(blobs[-1], where="t")
    pages_by_message[99] = own
    loaded = TableState.from_checkpoint(manifest, 99, pages_by_message, where="t")
    assert loaded.rids() == state.rids()
    assert loaded.candidates({"b": 7}) == state.rids()


def test_a_truncated_directory_page_is_named_corruption() -> None:
    state = new_state()
    state.apply(1, LogBlock(1, 0, 1, tuple(put(rid, rid, rid) for rid in range(1, 40))))
    plan = state.plan_checkpoint(full=True)
    manifest, own = read_checkpoint(plan.final_blob([]), where="t")
    _, body = unseal(own["d:0"], where="t", kind="dirc")
    for cut in (1, 7, len(body) // 2):
        own["d:0"] = seal("dirc", body[:-cut])
        with pytest.raises(DatabaseCorruptionError, match="directory page 0"):
            TableState.from_checkpoint(manifest, 9, {9: own}, where="t")


def test_a_checkpoint_rewrites_everything_when_its_kept_pages_sit_in_mostly_dead_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found at a million records: partial checkpoints kept referring to a few live pages in
    each of several 24 MiB messages, so superseded pages stayed stored (and undeletable)."""
    monkeypatch.setattr(state_module, "_REWRITE_SLACK", 0)
    state = new_state()
    rids = range(1, 10 * DIRECTORY_SPAN)
    state.apply(1, LogBlock(1, 0, 1, tuple(put(rid, rid, rid) for rid in rids)))
    first = state.plan_checkpoint(full=True)
    state.finish_checkpoint(first, [], 100)
    state.apply(2, LogBlock(2, 0, 1, (put(5, 1, 1),)))  # one page of ten changes
    second = state.plan_checkpoint()
    assert set(second.written) == {"d:0"}  # message 100 still holds nine live pages
    state.finish_checkpoint(second, [], 101)
    changed = [put(number * DIRECTORY_SPAN + 7, 2, 2) for number in range(1, 9)]
    state.apply(3, LogBlock(3, 0, 1, tuple(changed)))  # eight more: 100 keeps one live page
    third = state.plan_checkpoint()
    assert set(third.written) == {f"d:{n}" for n in range(10)}
    state.finish_checkpoint(third, [], 102)
    assert set(state.refs.values()) == {102}
