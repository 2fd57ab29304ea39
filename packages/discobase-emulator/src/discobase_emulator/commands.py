"""Application commands: global and guild CRUD and bulk overwrite, validated as Discord does.

`discord.app_commands.CommandTree.sync()` sends a bulk overwrite (PUT) of every command; a
mistake there must fail the way Discord fails it (400/50035 with the error at the command's
index and field), or a bot that syncs fine here would be rejected by Discord. Limits: names
1 to 32 characters of letters, digits, `-`, `_` and `'`, lower case for slash commands;
descriptions 1 to 100; 25 options and 25 choices; required options first; option names unique;
4,000 characters per command in all; 100 slash, 15 user and 15 message commands per scope
(30032). Posting a command whose name and type exist updates it (200, not 201), as Discord's
upsert does. `default_member_permissions` is kept and answered as a string.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .core import CORE, Core, user_of
from .errors import APIError, form_error, json_response, missing_access, unknown_guild
from .store import Command, Guild, User
from .validate import read_any_json

CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
MAX_COMMANDS = {CHAT_INPUT: 100, USER_COMMAND: 15, MESSAGE_COMMAND: 15}
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_TOTAL = 4000
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
OPTION_TYPES = range(1, 12)
NAME = re.compile(r"^[-_'\w]{1,32}$")

routes = web.RouteTableDef()


def _core(request: web.Request) -> Core:
    return request.app[CORE]


class FormError(Exception):
    """A field error at a dotted path, turned into one 50035 answer by the caller."""

    def __init__(self, path: str, code: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.message = message


def _name(value: Any, path: str, slash: bool) -> str:
    if not isinstance(value, str) or not value:
        raise FormError(path, "BASE_TYPE_REQUIRED", "This field is required")
    if len(value) > 32:
        raise FormError(path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    if slash and (not NAME.match(value) or value != value.lower()):
        raise FormError(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    return value


def _description(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise FormError(path, "BASE_TYPE_REQUIRED", "This field is required")
    if len(value) > 100:
        raise FormError(path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return value


def _choices(raw: Any, path: str) -> tuple[list[dict[str, Any]], int]:
    if not isinstance(raw, list):
        raise FormError(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(raw) > MAX_CHOICES:
        raise FormError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
    out = []
    size = 0
    for i, choice in enumerate(raw):
        if not isinstance(choice, dict):
            raise FormError(f"{path}.{i}", "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        name = choice.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise FormError(
                f"{path}.{i}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            raise FormError(
                f"{path}.{i}.value", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        size += len(name) + len(str(value))
        out.append(
            {k: v for k, v in choice.items() if k in ("name", "name_localizations", "value")}
        )
    return out, size


def _options(raw: Any, path: str, depth: int) -> tuple[list[dict[str, Any]], int]:
    """Validated options and the characters they count towards the 4,000.

    `depth` 0 is the command itself: it may hold groups and subcommands; a group (depth 1)
    holds only subcommands; a subcommand holds only plain options.
    """
    if raw is None:
        return [], 0
    if not isinstance(raw, list):
        raise FormError(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(raw) > MAX_OPTIONS:
        raise FormError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length.")
    out: list[dict[str, Any]] = []
    size = 0
    seen: set[str] = set()
    optional_seen = False
    kinds: set[bool] = set()  # True: a subcommand or group, False: a value option
    for i, opt in enumerate(raw):
        at = f"{path}.{i}"
        if not isinstance(opt, dict):
            raise FormError(at, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        otype = opt.get("type")
        if otype not in OPTION_TYPES:
            raise FormError(
                f"{at}.type", "BASE_TYPE_CHOICES", f"Value must be one of {tuple(OPTION_TYPES)}."
            )
        nested = otype in (SUB_COMMAND, SUB_COMMAND_GROUP)
        if nested and (depth >= 2 or (depth == 1 and otype == SUB_COMMAND_GROUP)):
            raise FormError(
                f"{at}.type",
                "APPLICATION_COMMAND_OPTION_INVALID_NESTING",
                "Subcommands cannot be nested this deep",
            )
        kinds.add(nested)
        if len(kinds) > 1:
            raise FormError(
                at,
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "Options cannot mix subcommands and values at the same level",
            )
        name = _name(opt.get("name"), f"{at}.name", slash=True)
        if name in seen:
            raise FormError(
                f"{at}.name",
                "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                "Option names must be unique",
            )
        seen.add(name)
        description = _description(opt.get("description"), f"{at}.description")
        size += len(name) + len(description)
        item: dict[str, Any] = {"type": otype, "name": name, "description": description}
        for key in (
            "name_localizations",
            "description_localizations",
            "channel_types",
            "min_value",
            "max_value",
            "min_length",
            "max_length",
            "autocomplete",
        ):
            if opt.get(key) is not None:
                item[key] = opt[key]
        if not nested:
            required = bool(opt.get("required", False))
            if required and optional_seen:
                raise FormError(
                    at,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
            optional_seen = optional_seen or not required
            if required:
                item["required"] = True
            if opt.get("choices"):
                item["choices"], more = _choices(opt["choices"], f"{at}.choices")
                size += more
        else:
            item["options"], more = _options(opt.get("options"), f"{at}.options", depth + 1)
            size += more
        out.append(item)
    return out, size


def validate_command(body: Any, path: str = "") -> dict[str, Any]:
    """One command as Discord stores it (without id and version); raises `FormError`."""
    prefix = f"{path}." if path else ""
    if not isinstance(body, dict):
        raise FormError(path or "_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used")
    ctype = body.get("type", CHAT_INPUT) or CHAT_INPUT
    if ctype not in MAX_COMMANDS:
        raise FormError(f"{prefix}type", "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3).")
    slash = ctype == CHAT_INPUT
    name = _name(body.get("name"), f"{prefix}name", slash)
    # Context-menu commands have no description; Discord stores an empty one.
    description = _description(body.get("description"), f"{prefix}description") if slash else ""
    options: list[dict[str, Any]] = []
    size = len(name) + len(description)
    if slash:
        options, more = _options(body.get("options"), f"{prefix}options", 0)
        size += more
    if size > MAX_TOTAL:
        raise FormError(
            path or "_root",
            "APPLICATION_COMMAND_TOO_LARGE",
            f"Command exceeds maximum size ({MAX_TOTAL})",
        )
    perms = body.get("default_member_permissions")
    if perms is not None:
        if isinstance(perms, bool) or not str(perms).isdigit():
            raise FormError(
                f"{prefix}default_member_permissions",
                "NUMBER_TYPE_COERCE",
                f'Value "{perms}" is not int.',
            )
        perms = str(int(str(perms)))
    out: dict[str, Any] = {
        "type": ctype,
        "name": name,
        "name_localizations": body.get("name_localizations"),
        "description": description,
        "description_localizations": body.get("description_localizations"),
        "default_member_permissions": perms,
        "dm_permission": body.get("dm_permission", True),
        "contexts": body.get("contexts"),
        "integration_types": body.get("integration_types") or [0],
        "nsfw": bool(body.get("nsfw", False)),
    }
    if slash:
        out["options"] = options
    return out


def _form(err: FormError) -> APIError:
    return form_error(err.path, err.code, err.message)


def command_json(cmd: Command) -> dict[str, Any]:
    out = {"id": str(cmd.id), "application_id": str(cmd.application_id), **cmd.data}
    if cmd.guild_id is not None:
        out["guild_id"] = str(cmd.guild_id)
    return out


def commands_of(core: Core, application_id: int, guild_id: int | None) -> list[Command]:
    """The commands of one scope (one guild, or global), oldest first as Discord lists them."""
    return sorted(
        (
            c
            for c in core.state.store.commands.values()
            if c.application_id == application_id and c.guild_id == guild_id
        ),
        key=lambda c: c.id,
    )


def find_command(
    core: Core, application_id: int, guild_id: int, name: str, ctype: int = CHAT_INPUT
) -> Command | None:
    """The command of this name and type a user would run in the guild (guild ones first)."""
    for scope in (guild_id, None):
        for cmd in commands_of(core, application_id, scope):
            if cmd.data["name"] == name and cmd.data["type"] == ctype:
                return cmd
    return None


def _scope(request: web.Request) -> tuple[Core, User, int | None]:
    """(core, bot, guild id or None): the application must be the caller's own."""
    core = _core(request)
    user = user_of(request)
    if int(request.match_info["application_id"]) != user.id:
        raise missing_access()
    raw = request.match_info.get("guild_id")
    if raw is None:
        return core, user, None
    guild: Guild | None = core.state.store.guilds.get(int(raw))
    if guild is None:
        raise unknown_guild()
    if user.id not in guild.members:
        raise missing_access()
    return core, user, guild.id


def _too_many(ctype: int) -> APIError:
    return APIError(
        400,
        30032,
        f"Maximum number of application commands reached ({MAX_COMMANDS[ctype]})",
    )


def _save(core: Core, cmd: Command) -> Command:
    cmd.data["version"] = str(core.state.ids.next())
    core.state.store.put_command(cmd)
    return cmd


def _find(core: Core, request: web.Request, user: User, guild_id: int | None) -> Command:
    cmd = core.state.store.commands.get(int(request.match_info["command_id"]))
    if cmd is None or cmd.application_id != user.id or cmd.guild_id != guild_id:
        raise APIError(404, 10063, "Unknown application command")
    return cmd


async def list_commands(request: web.Request) -> web.Response:
    core, user, guild_id = _scope(request)
    return json_response([command_json(c) for c in commands_of(core, user.id, guild_id)])


async def create_command(request: web.Request) -> web.Response:
    core, user, guild_id = _scope(request)
    try:
        data = validate_command(await read_any_json(request))
    except FormError as err:
        raise _form(err) from None
    existing = commands_of(core, user.id, guild_id)
    same = next(
        (c for c in existing if (c.data["name"], c.data["type"]) == (data["name"], data["type"])),
        None,
    )
    if same is not None:
        same.data = data
        _save(core, same)
        core.state.store.commit()
        return json_response(command_json(same))
    if sum(1 for c in existing if c.data["type"] == data["type"]) >= MAX_COMMANDS[data["type"]]:
        raise _too_many(data["type"])
    cmd = _save(core, Command(core.state.ids.next(), user.id, guild_id, data))
    core.state.store.commit()
    return json_response(command_json(cmd), 201)


async def bulk_overwrite(request: web.Request) -> web.Response:
    """Replace the scope's commands: same name and type keep their id, the rest are new."""
    core, user, guild_id = _scope(request)
    body = await read_any_json(request)
    if not isinstance(body, list):
        raise form_error("_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    wanted: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    try:
        for i, item in enumerate(body):
            data = validate_command(item, str(i))
            key = (data["name"], data["type"])
            if key in seen:
                raise FormError(
                    f"{i}.name",
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
            wanted.append(data)
    except FormError as err:
        raise _form(err) from None
    for ctype, limit in MAX_COMMANDS.items():
        if sum(1 for d in wanted if d["type"] == ctype) > limit:
            raise _too_many(ctype)
    old = {(c.data["name"], c.data["type"]): c for c in commands_of(core, user.id, guild_id)}
    out = []
    for data in wanted:
        cmd = old.pop((data["name"], data["type"]), None)
        if cmd is None:
            cmd = Command(core.state.ids.next(), user.id, guild_id, data)
        elif {k: v for k, v in cmd.data.items() if k != "version"} != data:
            cmd.data = data
        else:
            out.append(cmd)
            continue
        out.append(_save(core, cmd))
    for gone in old.values():
        core.state.store.delete_command(gone.id)
    core.state.store.commit()
    return json_response([command_json(c) for c in out])


async def get_command(request: web.Request) -> web.Response:
    core, user, guild_id = _scope(request)
    return json_response(command_json(_find(core, request, user, guild_id)))


async def edit_command(request: web.Request) -> web.Response:
    """PATCH: the fields sent replace the stored ones; the type never changes."""
    core, user, guild_id = _scope(request)
    cmd = _find(core, request, user, guild_id)
    body = await read_any_json(request)
    if not isinstance(body, dict):
        raise form_error("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used")
    merged = {**cmd.data, **body, "type": cmd.data["type"]}
    try:
        data = validate_command(merged)
    except FormError as err:
        raise _form(err) from None
    clash = any(
        c.id != cmd.id and (c.data["name"], c.data["type"]) == (data["name"], data["type"])
        for c in commands_of(core, user.id, guild_id)
    )
    if clash:
        raise form_error(
            "name",
            "APPLICATION_COMMANDS_DUPLICATE_NAME",
            "Application command names must be unique",
        )
    cmd.data = data
    _save(core, cmd)
    core.state.store.commit()
    return json_response(command_json(cmd))


async def delete_command(request: web.Request) -> web.Response:
    core, user, guild_id = _scope(request)
    cmd = _find(core, request, user, guild_id)
    core.state.store.delete_command(cmd.id)
    core.state.store.commit()
    return web.Response(status=204)


for _base in (
    r"/applications/{application_id:\d+}/commands",
    r"/applications/{application_id:\d+}/guilds/{guild_id:\d+}/commands",
):
    routes.get(_base)(list_commands)
    routes.post(_base)(create_command)
    routes.put(_base)(bulk_overwrite)
    routes.get(_base + r"/{command_id:\d+}")(get_command)
    routes.patch(_base + r"/{command_id:\d+}")(edit_command)
    routes.delete(_base + r"/{command_id:\d+}")(delete_command)
