"""``GET /pets`` and ``POST /pets/import`` (a CSV upload, row by row)."""
from __future__ import annotations

import csv
import io
import time

from flask import request
from flask_smorest import Blueprint
from marshmallow import ValidationError

from flask_jobify import current_job

from . import db
from .extensions import jobify
from .schemas import ImportResultSchema, ImportSchema, PetListSchema, PetSchema

bp = Blueprint("pets", __name__, url_prefix="/pets", description="The pets, and their import.")
pet_schema = PetSchema()


@bp.route("", methods=["GET"])
@bp.response(200, PetListSchema)
def list_pets():
    """Every pet, oldest first: a plain view, never a job."""
    return {"pets": db.all_pets()}


@bp.route("/import", methods=["POST"])
@bp.arguments(ImportSchema, location="files")
@bp.response(200, ImportResultSchema)
@jobify.job(timeout=600, result_ttl=24 * 3600)
def import_pets(files):
    """Import a CSV of pets (multipart field ``file``: ``name,species,age``).

    Each row is validated on its own: good rows are created, bad rows are
    reported in ``errors`` with their line number. As a job it publishes
    progress per row and stops between rows once cancelled. The form field
    ``delay`` (seconds per row, at most 1) slows it down for demos.
    """
    upload = files["file"]
    delay = min(max(request.form.get("delay", 0.0, type=float) or 0.0, 0.0), 1.0)
    rows = list(csv.DictReader(io.StringIO(upload.read().decode("utf-8-sig"))))
    created, errors = [], []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if current_job.cancelled:
            break
        try:
            created.append(db.add_pet(pet_schema.load(row, unknown="exclude")))
        except ValidationError as exc:
            errors.append({"line": number, "row": row, "messages": exc.messages})
        current_job.progress(100 * (number - 1) / len(rows), f"row {number - 1} of {len(rows)}")
        time.sleep(delay)
    return {"created": len(created), "failed": len(errors), "ids": created, "errors": errors}
