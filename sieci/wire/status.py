"""A master's status: what a status request shows, built and formatted without I/O.

A status request is one line on the master's client port, easy to type with
``nc``: ``STATUS`` gets a table for people, ended by a line with a single
``.`` (like Gearman's text admin protocol); ``STATUS json`` gets one line of
JSON. With a secret, the line must carry an ``auth=`` field (see auth.py),
signed over the payload ``STATUS``.
"""

import json
import time

from sieci.wire.protocol import STATUS

JSON = b"json"
SIGNED_PAYLOAD = STATUS


def snapshot(master, now=None):
    """The master's state as plain data (what ``STATUS json`` sends)."""
    now = time.monotonic() if now is None else now
    totals = master.dispatcher.totals
    finished = totals["done"] or 1
    return {
        "master": master.name,
        "uptime": round(now - master.started_at, 3),
        "queue": len(master.dispatcher.pending_jobs),
        "workers": [_worker(link, now) for link in sorted(master.links, key=lambda link: link.name)],
        "totals": {
            "done": totals["done"],
            "failed": totals["failed"],
            "cancelled": totals["cancelled"],
            "average_wait": round(totals["wait_seconds"] / finished, 6),
            "average_run": round(totals["run_seconds"] / finished, 6),
        },
    }


def _worker(link, now):
    job = link.job
    return {
        "address": link.name,
        "state": link.state.state,
        "job": job.id if job else None,
        "running_for": round(now - job.dispatched_at, 3) if job and job.dispatched_at else None,
        "jobs_done": link.jobs_done,
    }


def encode_json(status):
    return json.dumps(status, separators=(",", ":")).encode() + b"\n"


def format_text(status):
    """The table for people, one master."""
    totals = status["totals"]
    lines = [f"master {status['master']}  up {_duration(status['uptime'])}  queue {status['queue']}",
             f"workers {len(status['workers'])}"]
    for worker in status["workers"]:
        doing = f"job {worker['job']} for {worker['running_for']:.1f} s" if worker["job"] is not None else ""
        lines.append(f"  {worker['address']:<24} {worker['state']:<10} {doing:<36} done {worker['jobs_done']}")
    lines.append(f"jobs done {totals['done']}  failed {totals['failed']}  cancelled {totals['cancelled']}  "
                 f"average wait {totals['average_wait']:.3f} s  average run {totals['average_run']:.3f} s")
    return "\n".join(lines) + "\n"


def _duration(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s"
