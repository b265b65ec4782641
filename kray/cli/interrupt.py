"""Ctrl-C for a command that started something: the first stops it, the second leaves at once.

asyncio's own handling cancels the whole coroutine on the first Ctrl-C and raises KeyboardInterrupt
wherever the loop is on the second, which can leave a command waiting on its cleanup with nothing
said. Here the first Ctrl-C calls ``first`` (say what is being stopped, cancel the work; the command
then stops it within its own bound) and the second calls ``second`` (say what is left running and
how to clean it up) and ends the process at once with 130, as a shell reports SIGINT.

A process started with SIGINT ignored (a script's background job: POSIX shells ignore it there so
that a Ctrl-C aimed at the script spares it) keeps it ignored, as every program does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the event loop is the caller's: asyncio costs every `kray` start ~0.05-0.3 s
    import asyncio

EXIT_INTERRUPTED = 130


@dataclass
class Interrupts:
    first: Callable[[], None]
    second: Callable[[], None]
    count: int = 0
    installed: bool = False

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Handle SIGINT on ``loop`` (main thread only) unless this process was started with it ignored."""
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return False
        loop.add_signal_handler(signal.SIGINT, self._on_signal)
        self.installed = True
        return True

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.installed:
            loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt
            self.installed = False

    def _on_signal(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first()
            return
        try:
            self.second()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(EXIT_INTERRUPTED)
