"""A dependency-free progress bar for long loops (stderr, one line, rewritten in place).

    epoch 2/3 |#########-----------| 45% 120/266 loss 0.412 acc 0.871 1040 tok/s ETA 1m52s
"""
from __future__ import annotations

import sys
import time


def format_seconds(s: float) -> str:
    s = int(max(0, s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """``with Progress(total, "epoch 1") as bar: bar.update(1, loss=..., tokens=...)``.

    Quiet mode prints nothing; on a terminal the line is redrawn at most 5 times a second,
    elsewhere (logs, CI) a line is printed every ``log_every`` seconds.
    """

    def __init__(self, total: int, desc: str = "", quiet: bool = False, stream=None, log_every: float = 30.0):
        self.total, self.desc, self.quiet = total, desc, quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = log_every
        self.n = 0
        self.tokens = 0
        self.start = self.last = time.perf_counter()
        self.fields: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1, tokens: int = 0, **fields):
        self.n += n
        self.tokens += tokens
        self.fields.update(fields)
        now = time.perf_counter()
        if self.quiet:
            return
        if (self.tty and now - self.last > 0.2) or (not self.tty and now - self.last > self.log_every):
            self.last = now
            self._draw(end="\r" if self.tty else "\n")

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        frac = self.n / self.total if self.total else 0.0
        width = 20
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        parts = [f"{self.desc} |{bar}| {100 * frac:3.0f}% {self.n}/{self.total}"]
        for k, v in self.fields.items():
            parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        if self.tokens and elapsed > 0:
            parts.append(f"{self.tokens / elapsed:.0f} tok/s")
        if 0 < self.n < self.total:
            parts.append(f"ETA {format_seconds(elapsed / self.n * (self.total - self.n))}")
        else:
            parts.append(f"in {format_seconds(elapsed)}")
        return " ".join(parts)

    def _draw(self, end):
        self.stream.write(self.line() + end)
        self.stream.flush()

    def close(self):
        if not self.quiet:
            self._draw(end="\n")
