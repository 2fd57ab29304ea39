"""discobase-emulator: a local Discord API server that unmodified discord.py talks to.

REST under /api/v10, the gateway over WebSocket, a signed CDN path and a control API, with
Discord's size limits and rate limits (profiles `discord`, `fast`, `unlimited`).
"""

from .control import EmulatorControl
from .emulator import Emulator
from .patch import point_discord_at, use_emulator

__version__ = "0.1.0"

__all__ = ["Emulator", "EmulatorControl", "__version__", "point_discord_at", "use_emulator"]
