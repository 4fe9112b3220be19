"""Load test of the studio on loopback: N simulated raters submit answers concurrently for S seconds.

The server runs in its own process (uvicorn, one worker), the raters are threads with their own HTTP client.
Every answer the server acknowledged must be in ``studio.sqlite`` afterwards with the value last sent (no
lost answer); any non-200 response is an error. Prints requests, errors and latency percentiles.

    python benchmarks/studio_load.py [--raters 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from robustxai.web._study import create_study  # noqa: E402
from web_fixtures import make_run  # noqa: E402

SERVER = """
import sys, uvicorn
from robustxai.web import create_app
uvicorn.run(create_app(sys.argv[1], admin_token="load-admin"), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def rater(base: str, token: str, stop: float, out: list[float], errors: list[str], sent: dict) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get(f"/r/{token}").text
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
        n = int(re.search(r"of (\d+)", page).group(1))  # type: ignore[union-attr]
        kinds = {}
        for pos in range(n):
            kinds[pos] = (
                "pair" if "Left is more useful" in client.get(f"/r/{token}?pos={pos}").text else "likert"
            )
        i = 0
        while time.perf_counter() < stop:
            pos = i % n
            value = i % 2 if kinds[pos] == "pair" else 1 + i % 5
            t0 = time.perf_counter()
            r = client.post(
                f"/r/{token}/answer", json={"position": pos, "value": value}, headers={"x-csrf-token": csrf}
            )
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:80]}")
            else:
                sent[(token, pos)] = value
            i += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    run = make_run(Path(tempfile.mkdtemp()) / "run")
    _, tokens = create_study(run, raters=args.raters, images=10, pairs=5, seed=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(run), str(port)], env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/favicon.ico", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        latencies: list[float] = []
        errors: list[str] = []
        sent: dict = {}
        stop = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=rater, args=(base, t, stop, latencies, errors, sent)) for t in tokens
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    conn = sqlite3.connect(str(run / "studio.sqlite"))
    orders = {tok: json.loads(order) for tok, order in conn.execute("SELECT token, item_order FROM raters")}
    stored = {
        (tok, orders[tok].index(no)): v
        for tok, no, v in conn.execute("SELECT token, item_no, value FROM answers")
    }
    lost = [k for k, v in sent.items() if stored.get(k) != v]
    lat = np.array(latencies) * 1000
    print(
        f"{args.raters} raters, {args.seconds:.0f} s: {len(lat)} answers ({len(lat) / args.seconds:.0f}/s), "
        f"{len(errors)} errors, {len(lost)} lost; latency ms: median {np.median(lat):.1f}, "
        f"p95 {np.percentile(lat, 95):.1f}, max {lat.max():.1f}"
    )
    if errors or lost:
        print("errors:", errors[:5], "lost:", lost[:5])
        sys.exit(1)


if __name__ == "__main__":
    main()
