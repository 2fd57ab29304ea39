"""History paging, gateway RESUME and chunks, intents, threads, pins, nonces, limits, CDN URLs."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import discord
import pytest

from discobase_emulator import Emulator

TOKEN = "bot-token-1"
MiB = 1024 * 1024


async def general(emu: Emulator, http: aiohttp.ClientSession) -> str:
    async with http.get(emu.api_url + "/users/@me/guilds") as resp:
        guild_id = (await resp.json())[0]["id"]
    async with http.get(f"{emu.api_url}/guilds/{guild_id}/channels") as resp:
        return str((await resp.json())[0]["id"])


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(method, url, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body, dict(resp.headers)


# --- history ----------------------------------------------------------------------------------


async def test_history_paging_both_ways(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    contents = [f"m{i:03}" for i in range(260)]
    seeded = await emulator.control.seed_messages(channel.id, contents)
    newest_first = [m.content async for m in channel.history(limit=None)]
    assert newest_first == contents[::-1]
    oldest_first = [m.content async for m in channel.history(limit=None, oldest_first=True)]
    assert oldest_first == contents
    pivot = discord.Object(int(seeded[100]["id"]))
    after = [m.content async for m in channel.history(limit=None, after=pivot)]
    assert after == contents[101:]
    before = [m.content async for m in channel.history(limit=None, before=pivot)]
    assert before == contents[:100][::-1]
    around = [m.content async for m in channel.history(limit=5, around=pivot)]
    assert sorted(around) == contents[98:103]


async def test_history_order_and_limits_raw(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await general(emulator, http)
    seeded = await emulator.control.seed_messages(channel, [str(i) for i in range(10)])
    ids = [m["id"] for m in seeded]
    base = f"{emulator.api_url}/channels/{channel}/messages"
    _, page, _ = await call(http, "GET", f"{base}?after={ids[2]}&limit=3")
    assert [m["id"] for m in page] == [ids[5], ids[4], ids[3]]  # newest first, oldest after id
    _, page, _ = await call(http, "GET", f"{base}?around={ids[5]}&limit=3")
    assert [m["id"] for m in page] == [ids[6], ids[5], ids[4]]
    status, body, _ = await call(http, "GET", f"{base}?limit=101")
    assert status == 400
    assert body["code"] == 50035
    assert body["errors"]["limit"]["_errors"][0]["code"] == "NUMBER_TYPE_MAX"
    status, body, _ = await call(http, "GET", f"{base}?limit=0")
    assert (status, body["code"]) == (400, 50035)


# --- gateway ----------------------------------------------------------------------------------


async def test_resume_replays_missed_events(bot: Any, emulator: Emulator) -> None:
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.event(on_resumed)
    channel = bot.guilds[0].text_channels[0]
    await emulator.control.faults(gateway_disconnect=True)
    await emulator.control.post_as_user(channel.id, "while away")
    await asyncio.wait_for(resumed.wait(), 10)
    messages = await bot.wait_for_event("message")
    assert any(m.content == "while away" for m in messages)
    assert (await emulator.control.metrics())["gateway_connections"] == 2


async def test_invalid_session_reidentifies(bot: Any, emulator: Emulator) -> None:
    bot.ready_event.clear()
    await emulator.control.faults(invalid_session=True)
    await asyncio.wait_for(bot.ready_event.wait(), 10)  # READY again after re-IDENTIFY
    assert (await emulator.control.metrics())["gateway_connections"] == 2
    channel = bot.guilds[0].text_channels[0]
    await emulator.control.post_as_user(channel.id, "after reidentify")
    messages = await bot.wait_for_event("message", wait=10)
    assert any(m.content == "after reidentify" for m in messages)


async def test_member_chunks(emulator: Emulator, login: Any) -> None:
    intents = discord.Intents.default()
    intents.members = True
    async with login(emulator, intents=intents) as bot:
        guild = bot.guilds[0]
        members = await guild.chunk()
        assert {m.name for m in members} == {"bot", "owner"}
        found = await guild.query_members("own")
        assert [m.name for m in found] == ["owner"]


async def test_intents_filter_dispatches(emulator: Emulator, login: Any) -> None:
    no_content = discord.Intents.default()  # message_content off
    async with login(emulator, intents=no_content) as bot:
        channel = bot.guilds[0].text_channels[0]
        await emulator.control.post_as_user(channel.id, "secret")
        await channel.send("mine")
        messages = await bot.wait_for_event("message", count=2)
        assert sorted(m.content for m in messages) == ["", "mine"]
    no_messages = discord.Intents.default()
    no_messages.guild_messages = False
    async with login(emulator, intents=no_messages) as bot:
        channel = bot.guilds[0].text_channels[0]
        await channel.send("unseen")
        created = await channel.guild.create_text_channel("seen")
        await bot.wait_for_event("channel_create")
        assert created is not None
        assert not [e for e in bot.events if e[0] == "message"]


# --- threads and pins -------------------------------------------------------------------------


async def test_threads(bot: Any) -> None:
    channel = bot.guilds[0].text_channels[0]
    thread = await channel.create_thread(name="work", type=discord.ChannelType.public_thread)
    await bot.wait_for_event("thread_create")
    inside = await thread.send("in thread")
    assert inside.channel.id == thread.id
    await thread.edit(archived=True)
    with pytest.raises(discord.HTTPException) as err:
        await inside.edit(content="nope")
    assert err.value.code == 50083
    await thread.send("unarchives")
    fetched = await bot.fetch_channel(thread.id)
    assert isinstance(fetched, discord.Thread)
    assert not fetched.archived
    starter = await channel.send("starter")
    from_msg = await starter.create_thread(name="from message")
    assert from_msg.id == starter.id
    with pytest.raises(discord.HTTPException) as err:
        await starter.create_thread(name="again")
    assert err.value.code == 160004
    active = await channel.guild.active_threads()
    assert {t.name for t in active} == {"work", "from message"}


async def test_pins(bot: Any) -> None:
    channel = bot.guilds[0].text_channels[0]
    msg = await channel.send("pin me")
    await msg.pin()
    pins = [m async for m in channel.pins()]
    assert [p.id for p in pins] == [msg.id]
    assert pins[0].pinned
    history = [m async for m in channel.history(limit=2)]
    assert history[0].type == discord.MessageType.pins_add
    await msg.unpin()
    assert [m async for m in channel.pins()] == []


async def test_pin_limit(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    channel = await general(emulator, http)
    seeded = await emulator.control.seed_messages(channel, [str(i) for i in range(251)])
    base = f"{emulator.api_url}/channels/{channel}/messages/pins"
    for m in seeded[:250]:
        status, _, _ = await call(http, "PUT", f"{base}/{m['id']}")
        assert status == 204
    status, body, _ = await call(http, "PUT", f"{base}/{seeded[250]['id']}")
    assert (status, body["code"]) == (400, 30003)


# --- messages: nonce, limits ------------------------------------------------------------------


async def test_enforce_nonce(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    url = f"{emulator.api_url}/channels/{await general(emulator, http)}/messages"
    body = {"content": "once", "nonce": "n-1", "enforce_nonce": True}
    _, first, _ = await call(http, "POST", url, json=body)
    _, second, _ = await call(http, "POST", url, json=body)
    assert first["id"] == second["id"]
    assert first["nonce"] == "n-1"
    _, third, _ = await call(http, "POST", url, json={"content": "x", "nonce": "n-1"})
    assert third["id"] != first["id"]
    status, err, _ = await call(http, "POST", url, json={"content": "x", "nonce": "n" * 26})
    assert (status, err["code"]) == (400, 50035)


async def test_size_limits(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    channel = await general(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/messages"
    status, err, _ = await call(http, "POST", url, json={"content": "x" * 2001})
    assert (status, err["code"]) == (400, 50035)
    assert err["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    status, _, _ = await call(http, "POST", url, json={"content": "x" * 2000})
    assert status == 200
    status, err, _ = await call(http, "POST", url, json={"content": ""})
    assert (status, err["code"]) == (400, 50006)
    embeds = [{"description": "d" * 4000}, {"description": "d" * 2001}]
    status, err, _ = await call(http, "POST", url, json={"embeds": embeds})
    assert (status, err["code"]) == (400, 50035)

    def form(sizes: list[int]) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("payload_json", "{}", content_type="application/json")
        for i, size in enumerate(sizes):
            data.add_field(f"files[{i}]", io.BytesIO(b"\0" * size), filename=f"f{i}.bin")
        return data

    status, err, _ = await call(http, "POST", url, data=form([10] * 11))
    assert (status, err["code"]) == (400, 30015)
    status, err, _ = await call(http, "POST", url, data=form([10 * MiB + 1]))
    assert (status, err["code"]) == (413, 40005)
    status, err, _ = await call(http, "POST", url, data=form([9 * MiB] * 3))
    assert (status, err["code"]) == (413, 40005)
    status, body, _ = await call(http, "POST", url, data=form([10 * MiB, 10 * MiB]))
    assert status == 200
    assert [a["size"] for a in body["attachments"]] == [10 * MiB, 10 * MiB]


@pytest.mark.parametrize(
    ("embeds", "path"),
    [
        ([{"title": "t"}] * 11, ["embeds"]),
        ([{"title": "t" * 257}], ["embeds", "0", "title"]),
        ([{"description": "d" * 4097}], ["embeds", "0", "description"]),
        ([{"fields": [{"name": "n", "value": "v"}] * 26}], ["embeds", "0", "fields"]),
        ([{"fields": [{"name": "n" * 257, "value": "v"}]}], ["embeds", "0", "fields", "0", "name"]),
        (
            [{"fields": [{"name": "n", "value": "v" * 1025}]}],
            ["embeds", "0", "fields", "0", "value"],
        ),
        ([{"footer": {"text": "f" * 2049}}], ["embeds", "0", "footer", "text"]),
        ([{"author": {"name": "a" * 257}}], ["embeds", "0", "author", "name"]),
        (
            [{"description": "d" * 4096, "fields": [{"name": "n" * 256, "value": "v" * 1024}] * 2}],
            ["embeds"],
        ),
    ],
)
async def test_embed_limits(
    emulator: Emulator, http: aiohttp.ClientSession, embeds: list[Any], path: list[str]
) -> None:
    channel = await general(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/messages"
    status, err, _ = await call(http, "POST", url, json={"embeds": embeds})
    assert (status, err["code"]) == (400, 50035)
    errors = err["errors"]
    for part in path:
        errors = errors[part]
    assert errors["_errors"][0]["code"] in ("BASE_TYPE_MAX_LENGTH", "MAX_EMBED_SIZE_EXCEEDED")


async def test_embed_limits_are_inclusive(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    channel = await general(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/messages"
    fields = [{"name": "n" * 16, "value": "v" * 64}] * 25  # 2,000 characters
    exactly = [
        {"title": "t" * 256, "description": "d" * 1744, "fields": fields},  # 4,000
        {"description": "d" * 2000},  # 6,000 in all
    ]
    status, body, _ = await call(http, "POST", url, json={"embeds": exactly})
    assert status == 200
    assert len(body["embeds"][0]["fields"]) == 25
    exactly[1] = {"description": "d" * 2001}
    status, err, _ = await call(http, "POST", url, json={"embeds": exactly})
    assert err["errors"]["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"


async def test_bulk_delete_rules(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    channel = await general(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/messages/bulk-delete"
    seeded = await emulator.control.seed_messages(channel, ["a", "b"])
    status, err, _ = await call(http, "POST", url, json={"messages": [seeded[0]["id"]]})
    assert (status, err["code"]) == (400, 50035)
    status, err, _ = await call(http, "POST", url, json={"messages": [str(i) for i in range(101)]})
    assert (status, err["code"]) == (400, 50035)
    ids = [m["id"] for m in seeded]
    status, err, _ = await call(http, "POST", url, json={"messages": [ids[0], ids[0]]})
    assert (status, err["code"]) == (400, 50035)
    status, _, _ = await call(http, "POST", url, json={"messages": [*ids, str(int(ids[0]) - 1)]})
    assert status == 204


async def test_channel_limit(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.get(emulator.api_url + "/users/@me/guilds") as resp:
        guild_id = (await resp.json())[0]["id"]
    url = f"{emulator.api_url}/guilds/{guild_id}/channels"
    for i in range(499):  # #general is the first of 500
        status, _, _ = await call(http, "POST", url, json={"name": f"c{i}"})
        assert status == 201
    status, err, _ = await call(http, "POST", url, json={"name": "one-too-many"})
    assert (status, err["code"]) == (400, 30013)


async def test_guild_create_refused_for_bots(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    status, err, _ = await call(http, "POST", emulator.api_url + "/guilds", json={"name": "mine"})
    assert (status, err["code"]) == (403, 20001)


async def test_guild_create_when_allowed(login: Any) -> None:
    emu = Emulator(tokens=[TOKEN], profile="unlimited", allow_guild_create=True)
    async with emu, login(emu) as bot:
        joined = asyncio.Event()

        async def on_guild_join(guild: discord.Guild) -> None:
            joined.set()

        bot.event(on_guild_join)
        with pytest.warns(DeprecationWarning, match="create_guild"):
            guild = await bot.create_guild(name="legacy")
        await asyncio.wait_for(joined.wait(), 5)
        assert bot.get_guild(guild.id) is not None


# --- CDN --------------------------------------------------------------------------------------


async def test_signed_urls_expire_and_refresh(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    await emulator.control.set_attachment_ttl(0)
    sent = await channel.send(file=discord.File(io.BytesIO(b"payload"), "p.txt"))
    with pytest.raises(discord.NotFound):
        await sent.attachments[0].read()
    await emulator.control.set_attachment_ttl(3600)
    fresh = await channel.fetch_message(sent.id)
    assert fresh.attachments[0].url != sent.attachments[0].url
    assert await fresh.attachments[0].read() == b"payload"
    assert fresh.attachments[0].content_type is not None
    assert fresh.attachments[0].content_type.startswith("text/plain")
    tampered = fresh.attachments[0].url.replace("hm=", "hm=0")
    async with aiohttp.ClientSession() as session, session.get(tampered) as resp:
        assert resp.status == 403
    unsigned = fresh.attachments[0].url.split("?")[0]
    async with aiohttp.ClientSession() as session, session.get(unsigned) as resp:
        assert resp.status == 404


# --- rate limits that depend on message age ---------------------------------------------------


async def test_old_message_edits_30046(http: aiohttp.ClientSession) -> None:
    async with Emulator(tokens=[TOKEN], guilds=["g"], profile="fast") as emu:
        channel = await general(emu, http)
        _, msg, _ = await call(
            http, "POST", f"{emu.api_url}/channels/{channel}/messages", json={"content": "v0"}
        )
        await emu.control.age_messages(2 * 3600)
        _, (aged,), _ = await call(http, "GET", f"{emu.api_url}/channels/{channel}/messages")
        url = f"{emu.api_url}/channels/{channel}/messages/{aged['id']}"
        results = [await call(http, "PATCH", url, json={"content": f"v{i}"}) for i in range(4)]
        assert [r[0] for r in results] == [200, 200, 200, 429]
        _, body, headers = results[3]
        assert body["code"] == 30046
        assert headers["Via"] == "1.1 google"
        assert int(headers["X-RateLimit-Remaining"]) > 0  # a sub-limit the bucket doesn't show
        assert msg["id"] == aged["id"]  # aging keeps ids; the server tracks the age


async def test_delete_sub_buckets(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    channel = await general(emulator, http)
    young = await emulator.control.seed_messages(channel, ["young"])
    mid = await emulator.control.seed_messages(channel, ["hour"], age_seconds=3600)
    old = await emulator.control.seed_messages(channel, ["old"], age_seconds=20 * 86400)
    buckets = set()
    for m in (young, mid, old):
        status, _, headers = await call(
            http, "DELETE", f"{emulator.api_url}/channels/{channel}/messages/{m[0]['id']}"
        )
        assert status == 204
        buckets.add(headers["X-RateLimit-Bucket"])
    assert len(buckets) == 3


async def test_archived_public_threads_are_listed(bot: Any) -> None:
    """GET /channels/{id}/threads/archived/public: the channel's archived public threads
    only, as discord.py's TextChannel.archived_threads() reads them."""
    channel = bot.guilds[0].text_channels[0]
    await channel.create_thread(name="live", type=discord.ChannelType.public_thread)
    old = await channel.create_thread(name="old", type=discord.ChannelType.public_thread)
    await old.edit(archived=True)
    assert [t.name async for t in channel.archived_threads(limit=None)] == ["old"]
