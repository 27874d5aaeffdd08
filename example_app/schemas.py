"""Marshmallow schemas of the pet store."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

SPECIES = ("dog", "cat", "bird", "fish", "rabbit")


class PetSchema(Schema):
    """One pet, as a row of an import CSV (``name,species,age``)."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    species = fields.String(required=True, validate=validate.OneOf(SPECIES))
    age = fields.Integer(required=True, validate=validate.Range(min=0, max=50))
