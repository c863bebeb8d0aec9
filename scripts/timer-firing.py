#!/usr/bin/env python3
"""How late do timers fire? Requests N purchases that all fall due at the same instant, then
reads the global log for their ApprovalEscalated events and prints how long after the
deadline each was recorded (p50, p99, max), and when the last TimerFired was appended.

Usage: timer-firing.py BASE_URL SYSTEM_TOKEN AUDITOR_TOKEN [N] [LEAD_SECONDS]
(docs/performance.md, "Process managers"). Standard library only.
"""

import json
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

base, system, auditor = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
lead = int(sys.argv[5]) if len(sys.argv) > 5 else 30
run = uuid.uuid4().hex[:8]
deadline = (datetime.now(timezone.utc) + timedelta(seconds=lead)).replace(microsecond=0)


def call(method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def request(i):
    call("POST", f"/v1/purchases/T{run}-{i}/commands", system, {
        "type": "RequestPurchase", "requester": "nurse-1", "facility": "MAIN",
        "vendor_id": "V-1", "lines": [{"item_id": "GAUZE", "quantity": 1, "unit_price": "1.00"}],
        "reason": "timer bench", "approval_deadline": deadline.isoformat().replace("+00:00", "Z"),
    })


started = time.time()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(request, range(n)))
print(f"requested: {n} in {time.time() - started:.1f} s; deadline {deadline.isoformat()}")
if datetime.now(timezone.utc) >= deadline:
    sys.exit("the requests took longer than the lead time; raise LEAD_SECONDS")


def parse(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


late = []
last_fired = None
position = 1
while len(late) < n:
    page = call("GET", f"/v1/events?from={position}&limit=1000", auditor)
    for event in page["events"]:
        stream = event["stream_id"]
        if event["event_type"] == "ApprovalEscalated" and stream.startswith(f"purchase-T{run}-"):
            late.append((parse(event["metadata"]["recorded_at"]) - deadline).total_seconds())
        if event["event_type"] == "TimerFired" and stream == "timers-purchase_approval":
            last_fired = parse(event["metadata"]["recorded_at"])
    if page["events"]:
        position = page["next"]
    else:
        time.sleep(0.2)
late.sort()
print(f"escalated: {len(late)}")
print(f"late_p50_ms: {late[len(late) // 2] * 1000:.0f}")
print(f"late_p99_ms: {late[min(len(late) - 1, int(len(late) * 0.99))] * 1000:.0f}")
print(f"late_max_ms: {late[-1] * 1000:.0f}")
if last_fired:
    print(f"last_timer_fired_after_ms: {(last_fired - deadline).total_seconds() * 1000:.0f}")
