"""The pets table: one SQLite file, so every gunicorn worker sees the same pets."""
from __future__ import annotations

import sqlite3
import typing as t

from flask import Flask, current_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS pets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    species TEXT NOT NULL,
    age INTEGER NOT NULL
)
"""


def connect(path: str | None = None) -> sqlite3.Connection:
    """Open the pets database (one short-lived connection per use)."""
    conn = sqlite3.connect(path or current_app.config["PETS_DATABASE"], timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def init_app(app: Flask) -> None:
    """Create the pets table if it does not exist yet."""
    with connect(app.config["PETS_DATABASE"]) as conn:
        conn.execute(SCHEMA)
    conn.close()


def all_pets() -> list[dict[str, t.Any]]:
    conn = connect()
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM pets ORDER BY id")]
    finally:
        conn.close()


def add_pet(pet: dict[str, t.Any]) -> int:
    conn = connect()
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO pets (name, species, age) VALUES (?, ?, ?)",
                (pet["name"], pet["species"], pet["age"]),
            )
        return int(cursor.lastrowid or 0)
    finally:
        conn.close()
