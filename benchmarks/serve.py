"""The studio under load: 1, 8 and 32 concurrent clients against a local `aurl serve`, each client asking
for pieces of --tokens tokens (one take, EOS held off so every piece has exactly that many), one request
after another, following each on its event stream until it is done.

Per row: requests sent and succeeded, latency from the request to its `done` event (p50, p95), and the
aggregate tokens/s (tokens of all pieces over the row's wall time). Target: 8 clients get at least 4x
the aggregate tokens/s of 1 client. The server is a separate process (`python -m aurl serve`), started
once for all rows with --max-batch equal to the most clients.

Run: .venv/bin/python benchmarks/serve.py --run runs/demo [--clients 1 8 32] [--requests 3] [--tokens 512]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, port: int, max_batch: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "aurl", "serve", "--run", run, "--port", str(port), "--max-batch", str(max_batch)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start in 120 s")


def one_request(client: httpx.Client, model: str, tokens: int, seed: int) -> tuple[bool, float, int]:
    """(succeeded, seconds from the request to its done event, tokens written)."""
    start = time.perf_counter()
    settings = {"num": 1, "max_tokens": tokens, "min_tokens": tokens, "seed": seed}
    response = client.post("/api/jobs", json={"model": model, "settings": settings})
    if response.status_code != 202:
        return False, time.perf_counter() - start, 0
    job_id, last = response.json()["id"], None
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=600) as events:
        for line in events.iter_lines():
            if line.startswith("event: "):
                last = line.removeprefix("event: ")
            elif line.startswith("data: ") and last in ("done", "failed", "cancelled"):
                job = json.loads(line.removeprefix("data: "))
                return last == "done", time.perf_counter() - start, sum(t["tokens"] for t in job["takes"])
    return False, time.perf_counter() - start, 0


def load(base: str, model: str, clients: int, requests: int, tokens: int, first_seed: int) -> dict:
    results: list[tuple[bool, float, int]] = []
    lock = threading.Lock()

    def client_loop(k: int) -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            for r in range(requests):
                result = one_request(client, model, tokens, first_seed + k * requests + r)
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies = sorted(seconds for ok, seconds, _ in results if ok)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))] if latencies else float("nan")
    return {
        "clients": clients,
        "sent": len(results),
        "ok": sum(ok for ok, _, _ in results),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": p95,
        "rate": sum(n for _, _, n in results) / wall,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained run directory (e.g. runs/demo)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=3, help="requests per client, one after another")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per piece")
    args = parser.parse_args()
    port = free_port()
    server = start_server(args.run, port, max(args.clients))
    try:
        base = f"http://127.0.0.1:{port}"
        model = httpx.get(f"{base}/api/models").json()["models"][0]["id"]
        load(base, model, 1, 1, args.tokens, 10_000)  # warm-up
        rows = [load(base, model, c, args.requests, args.tokens, 1000 * c) for c in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"### aurl serve, {model}: pieces of {args.tokens} tokens, {args.requests} requests per client")
    print("| clients | requests | succeeded | p50 latency (s) | p95 latency (s) | aggregate tokens/s | x 1 client |")
    print("|---|---|---|---|---|---|---|")
    single = next((r["rate"] for r in rows if r["clients"] == 1), rows[0]["rate"])
    for r in rows:
        print(
            f"| {r['clients']} | {r['sent']} | {r['ok']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['rate']:.0f} "
            f"| {r['rate'] / single:.2f}x |"
        )
    eight = next((r for r in rows if r["clients"] == 8), None)
    if eight is not None:
        verdict = "MET" if eight["rate"] >= 4 * single else "MISSED"
        print(f"target: 8 clients >= 4x the aggregate tokens/s of 1 client: {eight['rate'] / single:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
