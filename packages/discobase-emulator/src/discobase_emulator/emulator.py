"""`Emulator`: one in-process server (REST, gateway, CDN, control) with start/stop and seeding.

Configured tokens and guilds are (re)created at start and on reset; with a data folder they are
matched by token and guild name so a restart serves the same ids.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from aiohttp import web

from .app import build_app
from .cdn import DEFAULT_TTL
from .control import EmulatorControl
from .core import Core, Faults
from .metrics import Metrics
from .ratelimit import RateLimiter
from .state import State
from .store import Store


class Emulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        tokens: Sequence[str] = (),
        guilds: Sequence[str] = (),
        profile: str = "discord",
        allow_guild_create: bool = False,
        attachment_ttl: float = DEFAULT_TTL,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.tokens = list(tokens)
        self.guild_names = list(guilds)
        self.profile = profile
        self.allow_guild_create = allow_guild_create
        self.attachment_ttl = attachment_ttl
        RateLimiter(profile)  # validate the profile name early
        self._runner: web.AppRunner | None = None
        self._core: Core | None = None
        self._control: EmulatorControl | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("emulator not started")
        return self._core

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def control(self) -> EmulatorControl:
        if self._control is None:
            self._control = EmulatorControl(self.url)
        return self._control

    async def start(self) -> None:
        store = Store(self.data_dir)
        metrics = Metrics()
        state = State(store, metrics)
        state.signer.ttl = self.attachment_ttl
        self._core = Core(state, RateLimiter(self.profile), metrics, self.allow_guild_create)
        app = build_app(self._core, self.reset)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        state.base_url = self.url
        self._seed()

    def _seed(self) -> None:
        state = self.core.state
        bots = [
            state.add_bot(tok, "bot" if i == 0 else f"bot{i + 1}")
            for i, tok in enumerate(self.tokens)
        ]
        for name in self.guild_names:
            guild = next((g for g in state.store.guilds.values() if g.name == name), None)
            if guild is None:
                state.create_guild(name, [b.id for b in bots])
            else:
                for bot in bots:
                    state.join(guild, bot)

    async def reset(self) -> None:
        """Back to a fresh start: configured bots and guilds only, zero metrics, no faults."""
        core = self.core
        await core.state.gateway.shutdown()
        core.state.store.wipe()
        core.state.interactions.clear()
        core.metrics.reset()
        core.limiter.set_profile(self.profile)
        core.limiter.reset()
        core.faults.release()
        core.faults = Faults()
        core.state.signer.ttl = self.attachment_ttl
        self._seed()

    async def stop(self) -> None:
        if self._control is not None:
            await self._control.close()
            self._control = None
        if self._core is not None:
            self._core.faults.release()
            await self._core.state.gateway.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._core is not None:
            self._core.state.store.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
