"""The Volunteer Bus (placeholder until the bus domain lands)."""

from __future__ import annotations

from flask import jsonify

from console.web import console, render


def dashboard_visits() -> list:
    return []


@console.get("/bus")
def bus():
    return render("error.html", status=200, message="志愿巴士模块建设中。")


@console.get("/bus/<int:visit_id>")
def bus_visit(visit_id: int):
    return bus()


@console.get("/bus/<int:visit_id>/progress.json")
def bus_progress(visit_id: int):
    return jsonify(total=0, done=0, failed=0, percent=100, finished=True)
