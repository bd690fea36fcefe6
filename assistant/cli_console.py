"""The Rich consoles every CLI module prints through.

Messages are soft-wrapped: a long path or error stays on one line, so a script (or a
person piping to ``grep``) sees it whole whatever the terminal width.
"""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
