"""Every data command through the real CLI against an emulator, and each user error."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import aiohttp
import pydantic
import pytest
from cli_support import GUILD, TOKEN, Emu

import discobase


class Person(discobase.Table):
    name: str
    age: int = 0
    city: str | None = None
    tags: list[str] = pydantic.Field(default_factory=list)


def seed_people(emu: Emu) -> None:
    async def action(db: discobase.Database) -> None:
        people = db.table(type("Person", (Person,), {}))
        async with db.conn(TOKEN):
            for name, age, city in [
                ("ada", 36, "London"),
                ("alan", 41, None),
                ("grace", 36, "NYC"),
            ]:
                await people(name=name, age=age, city=city, tags=[name[0]]).save()

    emu.seed(action)


def test_tables_lists_each_table_with_its_record_count(emu: Emu) -> None:
    seed_people(emu)
    plain = emu.run("tables")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.splitlines() == [
        "table\trecords\tfields",
        "Person\t3\tname, age, city, tags",
    ]
    as_json = emu.run("tables", "--json")
    assert json.loads(as_json.stdout) == [
        {"name": "Person", "records": 3, "fields": ["name", "age", "city", "tags"]}
    ]


def test_schema_shows_types_defaults_and_indexes(emu: Emu) -> None:
    seed_people(emu)
    plain = emu.run("schema", "person")
    assert plain.exit_code == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0] == "field\ttype\tdefault\tindexed"
    assert "name\tstr\t(required)\tyes" in lines
    assert "age\tint\t0\tyes" in lines
    described = json.loads(emu.run("schema", "Person", "--json").stdout)
    assert described["table"] == "Person"
    assert [f["name"] for f in described["fields"]] == ["name", "age", "city", "tags"]
    assert described["fields"][2]["type"] == "str | None"


def test_find_filters_limits_and_prints_every_format(emu: Emu) -> None:
    seed_people(emu)
    found = json.loads(emu.run("find", "Person", "age=36", "--json").stdout)
    assert [(r["_id"], r["name"]) for r in found] == [(1, "ada"), (3, "grace")]
    assert found[0] == {"_id": 1, "name": "ada", "age": 36, "city": "London", "tags": ["a"]}
    limited = emu.run("find", "Person", "--limit", "1", "--nl")
    assert [json.loads(line)["name"] for line in limited.stdout.splitlines()] == ["ada"]
    nobody = emu.run("find", "Person", "city=", "--csv")  # empty text: None
    rows = list(csv.reader(io.StringIO(nobody.stdout)))
    assert rows == [["_id", "name", "age", "city", "tags"], ["2", "alan", "41", "", '["a"]']]
    plain = emu.run("find", "Person", "name=grace", "city=NYC")
    assert plain.stdout.splitlines()[1] == '3\tgrace\t36\tNYC\t["g"]'
    both = emu.run("find", "Person", "--json", "--csv")
    assert both.exit_code == 1
    assert "choose one of --json, --nl and --csv" in both.stderr


def test_count(emu: Emu) -> None:
    seed_people(emu)
    assert emu.run("count", "Person").stdout == "3\n"
    assert emu.run("count", "Person", "age=36").stdout == "2\n"
    assert emu.run("count", "Person", "age=36", "name=ada").stdout == "1\n"


def test_insert_an_object_an_array_and_json_lines(emu: Emu) -> None:
    seed_people(emu)
    one = emu.run("insert", "Person", '{"name": "linus", "age": 55}')
    assert one.exit_code == 0, one.stderr
    assert one.stdout == "inserted 1 records into Person: ids 4\n"
    many = emu.run("insert", "Person", "-", input='[{"name": "a"}, {"name": "b", "tags": ["x"]}]')
    assert many.stdout == "inserted 2 records into Person: ids 5, 6\n"
    lines = emu.run("insert", "Person", "--nl", input='{"name": "c"}\n\n{"name": "d"}\n')
    assert lines.stdout == "inserted 2 records into Person: ids 7, 8\n"
    assert emu.run("count", "Person").stdout == "8\n"
    found = json.loads(emu.run("find", "Person", "name=b", "--json").stdout)
    assert found == [{"_id": 6, "name": "b", "age": 0, "city": None, "tags": ["x"]}]


def test_update_sets_the_given_fields(emu: Emu) -> None:
    seed_people(emu)
    result = emu.run("update", "Person", "2", '{"city": "Cambridge", "age": 42}')
    assert result.exit_code == 0, result.stderr
    alan = json.loads(emu.run("find", "Person", "name=alan", "--json").stdout)
    assert alan == [{"_id": 2, "name": "alan", "age": 42, "city": "Cambridge", "tags": ["a"]}]
    assert emu.run("count", "Person", "city=Cambridge").stdout == "1\n"
    missing = emu.run("update", "Person", "99", '{"age": 1}')
    assert missing.exit_code == 1
    assert "table Person has no record with id 99" in missing.stderr


def test_delete_by_id_and_by_value_asks_before_deleting_several(emu: Emu) -> None:
    seed_people(emu)
    by_id = emu.run("delete", "Person", "2")
    assert by_id.stdout == "deleted 1 records from Person\n"
    refused = emu.run("delete", "Person", "age=36", input="n\n")
    assert refused.exit_code == 1
    assert "nothing deleted" in refused.stderr
    unanswered = emu.run("delete", "Person", "age=36", input="")
    assert unanswered.exit_code == 1
    assert "nothing deleted (pass --yes to delete without asking)" in unanswered.stderr
    assert emu.run("count", "Person").stdout == "2\n"
    confirmed = emu.run("delete", "Person", "age=36", input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert "deleted 2 records" in confirmed.stdout
    assert emu.run("count", "Person").stdout == "0\n"
    mixed = emu.run("delete", "Person", "1", "age=3")
    assert mixed.exit_code == 1
    assert "not both" in mixed.stderr


def test_delete_with_yes_does_not_ask(emu: Emu) -> None:
    seed_people(emu)
    result = emu.run("delete", "Person", "age=36", "--yes")
    assert result.stdout == "deleted 2 records from Person\n"
    assert emu.run("find", "Person", "--nl").stdout.count("\n") == 1


def test_check_on_a_healthy_table_and_stats(emu: Emu) -> None:
    seed_people(emu)
    checked = emu.run("check")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    assert checked.stdout == "Person: 3 of 3 records checked, ok\n"
    report = json.loads(emu.run("check", "Person", "--json").stdout)
    assert report == [
        {"table": "Person", "records": 3, "checked": 3, "ok": True, "problems": [], "repaired": []}
    ]
    stats = json.loads(emu.run("stats", "--json").stdout)
    assert stats["channel_limit"] == 500
    assert stats["channels"] == 4  # #general, the discobase category, #discobase-lease, #person
    assert stats["active_threads"] == 3  # Person's lanes 1 to 3
    (person,) = stats["tables"]
    assert person["records"] == 3
    assert person["messages"] >= 4  # 3 commits and a checkpoint
    assert person["live_bytes"] > 0
    assert set(person["indexes"]) == {"name", "age", "city", "tags"}
    assert sum(person["probe_histogram"].values()) == 12  # 3 records x 4 fields
    plain = emu.run("stats", "Person")
    assert f"Person: 3 records, {person['live_bytes']} live bytes" in plain.stdout


def test_compact_erases_a_deleted_record_and_reports_what_it_did(emu: Emu) -> None:
    seed_people(emu)
    assert emu.run("delete", "Person", "name=alan").exit_code == 0
    result = emu.run("compact", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    (report,) = json.loads(result.stdout)
    assert report["table"] == "Person"
    assert report["messages_deleted"] > 0
    assert report["bytes_deleted"] > 0
    assert report["messages_left"] == 0
    after = json.loads(emu.run("stats", "--json").stdout)["tables"][0]
    assert after["records"] == 2
    plain = emu.run("compact", "Person")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.splitlines()[0].startswith("table\tmessages")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("tables",), {"DISCOBASE_TOKEN": "wrong"}, "Discord rejected the bot token"),
        (("tables",), {"DISCOBASE_GUILD": "no such server"}, "the bot is not in a server named"),
        (("find", "Nope"), {}, "has no table 'Nope'"),
        (("find", "Person", "nope=1"), {}, "Person has no field 'nope'"),
        (("find", "Person", "age=old"), {}, "'old' is not a valid value for field 'age'"),
        (("find", "Person", "age"), {}, "'age' is not FIELD=VALUE"),
        (("insert", "Person", "{bad json"), {}, "the input is not valid JSON"),
        (("insert", "Person", '{"nmae": "x"}'), {}, "Person has no field 'nmae'"),
        (("insert", "Person", '{"age": "x"}'), {}, "invalid Person record: name: Field required"),
        (("tables",), {"DISCOBASE_API_URL": "http://127.0.0.1:9"}, "nothing answers at"),
        (("tables",), {"DISCOBASE_TOKEN": ""}, "no bot token given"),
        (("tables",), {"DISCOBASE_GUILD": ""}, "no server given"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(
    emu: Emu, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    seed_people(emu)
    result = emu.run(*args, **env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert "(" in result.stderr  # and what to do about it


def test_debug_shows_the_traceback(emu: Emu) -> None:
    seed_people(emu)
    result = emu.run("--debug", "find", "Nope")
    assert result.exit_code == 1
    assert isinstance(result.exception, discobase.DatabaseTableError)


def test_an_unknown_server_error_gives_the_invite_url(emu: Emu) -> None:
    result = emu.run("tables", DISCOBASE_GUILD="elsewhere")
    assert "oauth2/authorize" in result.stderr
    assert GUILD not in result.stderr


def test_help_never_shows_the_token(emu: Emu) -> None:
    for command in ("find", "tables", "import"):
        result = emu.run(command, "--help")
        assert result.exit_code == 0
        assert "DISCOBASE_TOKEN" in result.stdout
        assert TOKEN not in result.stdout


async def delete_lane_messages(url: str, thread_name: str) -> int:
    """Delete, as the bot, every message in one lane thread of a table (someone with the
    bot's token damaging the data): the records committed there become unreadable."""
    api = f"{url}/api/v10"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http:

        async def get(path: str) -> Any:
            async with http.get(api + path) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        (guild,) = await get("/users/@me/guilds")
        threads = (await get(f"/guilds/{guild['id']}/threads/active"))["threads"]
        deleted = 0
        for thread in threads:
            if thread["name"] != thread_name:
                continue
            for message in await get(f"/channels/{thread['id']}/messages?limit=100"):
                path = f"/channels/{thread['id']}/messages/{message['id']}"
                async with http.delete(api + path) as resp:
                    assert resp.status == 204, await resp.text()
                deleted += 1
        return deleted


def test_check_reports_unreadable_records_by_id_and_exits_1(emu: Emu) -> None:
    seed_people(emu)  # three saves, one at a time: each a commit, in a lane of its own
    assert asyncio.run(delete_lane_messages(emu.url, "person-lane-1")) == 1
    result = emu.run("check", "Person")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "Person: 2 of 3 records checked, 1 problems"
    assert lines[1].startswith("  Person record ")
    assert "gone (deleted by someone?)" in lines[1]
    report = json.loads(emu.run("check", "--json").stdout)
    [problem] = report[0]["problems"]
    names = {1: "ada", 2: "alan", 3: "grace"}
    assert lines[1].startswith(f"  Person record {problem['id']}: unreadable: ")
    for rid, name in names.items():  # the others still read
        if rid != problem["id"]:
            found = emu.run("find", "Person", f"name={name}", "--nl").stdout
            assert found.count("\n") == 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[1, 2]", "the update must be a JSON object"),
        ("{oops", "the update is not valid JSON"),
        ('{"age": "old"}', "invalid Person record: age:"),
        ('{"nope": 1}', "Person has no field 'nope'"),
    ],
)
def test_update_refuses_what_is_not_an_object_of_valid_fields(
    emu: Emu, document: str, message: str
) -> None:
    seed_people(emu)
    result = emu.run("update", "Person", "1", document)
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert json.loads(emu.run("find", "Person", "name=ada", "--json").stdout)[0]["age"] == 36
