"""``hierspeech2 serve``: an HTTP API that OpenAI speech clients already speak, with voices,
conversion and super-resolution, on FastAPI + uvicorn.

:func:`create_app` builds the ASGI app from loaded pipelines (:class:`ServedModels`),
:class:`~hierspeech2.options.ServerOptions` (limits) and a :class:`VoiceLibrary`; one
:class:`Engine` thread runs the models behind a bounded queue.
"""

from __future__ import annotations

from .app import ServedModels, create_app
from .engine import Busy, Engine
from .voices import VoiceLibrary

__all__ = ["Busy", "Engine", "ServedModels", "VoiceLibrary", "create_app"]
