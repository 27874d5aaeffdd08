"""Reading a ``text/event-stream`` in tests, as the HTML standard says."""
from __future__ import annotations

import dataclasses
import json
import typing as t


@dataclasses.dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> t.Any:
        return json.loads(self.data)


def parse_events(lines: t.Iterable[str]) -> t.Iterator[Event | str]:
    """Events, and comments (as their text), from the stream's lines."""
    current = Event()
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                current.data = "\n".join(data)
                yield current
            current, data = Event(), []
        elif line.startswith(":"):
            yield line[1:].strip()
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value


def events_of_text(text: str) -> list[Event | str]:
    return list(parse_events(text.split("\n")))
