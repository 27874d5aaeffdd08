"""``POST /reports/orders``: a CSV file as the result, replayed byte for byte."""
from __future__ import annotations

import csv
import io
import random
import re
import time

from flask import abort, request, send_file
from flask_smorest import Blueprint

from flask_jobify import current_job

from .extensions import jobify
from .schemas import OrdersArgsSchema

bp = Blueprint("reports", __name__, url_prefix="/reports", description="Reports, as files.")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def order_rows(month: str, days: int = 28):
    """Made-up but deterministic orders of ``month``: the same month always
    gives the same file, so the job's result can be compared with a direct call."""
    rng = random.Random(month)
    for day in range(1, days + 1):
        for number in range(rng.randint(3, 8)):
            yield [f"{month}-{day:02d}", f"ORD-{day:02d}{number:02d}",
                   rng.choice(["food", "toy", "leash", "cage"]), f"{rng.uniform(2, 90):.2f}"]


@bp.route("/orders", methods=["POST"])
@bp.arguments(OrdersArgsSchema, location="json", required=False)
@bp.response(200, content_type="text/csv", description="The month's orders, as a CSV file")
@jobify.job(timeout=300)
def orders_report(args):
    """Build the CSV report of one month's orders (JSON ``{"month": "2024-03"}``
    or form field ``month``), sent as a file download."""
    data = args if request.is_json else request.form  # a form works too
    month = str(data.get("month", "2024-03"))
    if not MONTH.match(month):
        abort(400, "month must look like 2024-03.")
    try:
        delay = min(max(float(data.get("delay", 0.0) or 0.0), 0.0), 1.0)
    except (TypeError, ValueError):
        abort(400, "delay must be a number of seconds.")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "order", "item", "amount"])
    current_day = ""
    for row in order_rows(month):
        if row[0] != current_day:
            current_day = row[0]
            current_job.progress(100 * int(current_day[-2:]) / 28, f"orders of {current_day}")
            time.sleep(delay)
        writer.writerow(row)
    return send_file(
        io.BytesIO(out.getvalue().encode()), mimetype="text/csv",
        as_attachment=True, download_name=f"orders-{month}.csv",
    )
