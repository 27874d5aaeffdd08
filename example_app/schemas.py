"""Marshmallow schemas of the pet store."""
from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

SPECIES = ("dog", "cat", "bird", "fish", "rabbit")


class PetSchema(Schema):
    """One pet, as a row of an import CSV (``name,species,age``)."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    species = fields.String(required=True, validate=validate.OneOf(SPECIES))
    age = fields.Integer(required=True, validate=validate.Range(min=0, max=50))


class PetListSchema(Schema):
    """``GET /pets``."""

    pets = fields.List(fields.Nested(PetSchema), required=True)


class LongPingArgsSchema(Schema):
    """Query of ``POST /status/long``."""

    seconds = fields.Float(load_default=2.0, validate=validate.Range(min=0, max=300),
                           metadata={"description": "seconds to sleep, 0 to 300"})


class LongPingSchema(Schema):
    """Answer of ``POST /status/long``."""

    timeTook = fields.Integer(metadata={"description": "milliseconds slept"})
    cancelled = fields.Boolean(metadata={"description": "true when cancelled on the way"})


class ImportSchema(Schema):
    """The multipart body of ``POST /pets/import``: the file, and a form
    field (read by the view itself: flask-smorest loads one location per
    schema, and documents one multipart body)."""

    file = Upload(required=True, metadata={"description": "CSV: name,species,age"})
    delay = fields.Float(metadata={"description": "seconds per row (at most 1), for demos"})


class ImportResultSchema(Schema):
    """Answer of ``POST /pets/import``."""

    created = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    ids = fields.List(fields.Integer(), required=True)
    errors = fields.List(fields.Dict(), required=True,
                         metadata={"description": "{line, row, messages} per bad row"})


class OrdersArgsSchema(Schema):
    """JSON body of ``POST /reports/orders`` (a form works too)."""

    month = fields.String(load_default="2024-03",
                          validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$"),
                          metadata={"description": "YYYY-MM"})
    delay = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=1),
                         metadata={"description": "seconds per day, for demos"})
