"""Setting one or a few names in an env file, for commands that keep their state there
(``nself db replica add``, ``nself hasura replica enable``): every other line, comment and
quote stays as written, the file is replaced atomically and keeps its mode."""

from __future__ import annotations

import io
from pathlib import Path

from nself_sdk.envfiles import quote, write_atomic


def set_values(path: Path, values: dict[str, str | None]) -> None:
    """Give each name its value in ``path`` (the last line of a name is replaced, earlier
    ones removed; a new name is appended); ``None`` removes the name."""
    from dotenv.parser import parse_stream

    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    bindings = list(parse_stream(io.StringIO(text)))
    last = {b.key: i for i, b in enumerate(bindings) if b.key in values}
    out: list[str] = []
    for index, binding in enumerate(bindings):
        chunk = binding.original.string
        if binding.key in values:
            if last[binding.key] != index:
                continue
            value = values[binding.key]
            if value is None:
                continue
            ending = "\n" if chunk.endswith("\n") else ""
            chunk = f"{binding.key}={quote(value)}{ending}"
        out.append(chunk)
    result = "".join(out)
    new = [f"{k}={quote(v)}\n" for k, v in values.items() if v is not None and k not in last]
    if new and result and not result.endswith("\n"):
        result += "\n"
    result += "".join(new)
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
    write_atomic(path, result, mode)
