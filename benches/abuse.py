#!/usr/bin/env python3
"""Honest issuance under abuse, one command:

    benches/abuse.py [--seconds 15] [--streams 200] [--idle 300] [--flood-connections 32]

Builds the release binaries, starts the test OIDC issuer and `writ serve` (SQLite) on loopback,
then measures an honest agent's POST /v1/writs latency (one connection, one request at a time)
twice for the same length of time: unloaded, and while another client (wrk) floods
`Authorization: Bearer <garbage>` requests, `--streams` clients hold revocation streams and
`--idle` sockets sit idle (reconnecting whenever the broker closes them). Prints p50/p99 of both
and their ratio; the goal is an honest p99 under abuse of at most 2x its unloaded value. Also
prints the broker's CPU time in each phase and how many garbage requests it refused.

Needs: cargo, wrk. Everything stays on 127.0.0.1. The abusers share the machine's cores with the
broker, so this measures the broker's isolation and the machine at once: compare ratios from one
run.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUEST = {
    "task": "refund-order-42",
    "rights": [{"resource": "orders/42", "operations": ["read"]}],
    "services": ["orders-api"],
    "ttl": 300,
}
POLICY = """
[[policy]]
name = "bench"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "bench", serviceaccount = { name = "writ-bench" } } }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "10m"
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build():
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--bin", "writ", "-p", "writ"],
        cwd=REPO, check=True)
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "writ-testkit", "--bin", "writ-test-issuer"],
        cwd=REPO, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=REPO, check=True, capture_output=True, text=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release")


def start_issuer(binaries, work):
    token = os.path.join(work, "identity.jwt")
    out = open(os.path.join(work, "issuer.out"), "w+")
    process = subprocess.Popen(
        [os.path.join(binaries, "writ-test-issuer"), "--port", "0", "--ttl", "6h",
         "--audience", "writ", "--namespace", "bench", "--service-account", "writ-bench",
         "--token-out", token], stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith("issuer="):
                with open(token) as f:
                    return process, line[len("issuer="):], f.read().strip()
        time.sleep(0.1)
    raise SystemExit("the test issuer did not start")


def start_broker(binaries, work, issuer, streams):
    port = free_port()
    os.makedirs(os.path.join(work, "policies"))
    with open(os.path.join(work, "policies", "bench.toml"), "w") as f:
        f.write(POLICY)
    config = os.path.join(work, "writ.toml")
    with open(config, "w") as f:
        f.write(f"""listen = "127.0.0.1:{port}"
database_url = "sqlite://{work}/writ.db"
key_dir = "{work}/keys"
policy_dir = "{work}/policies"
[connections]
max_revocation_streams = {max(streams, 1)}
max = {max(1024, 4 * streams)}
[[issuer]]
name = "kubernetes"
issuer = "{issuer}"
audience = "writ"
agent = "k8s:{{kubernetes.io/namespace}}/{{kubernetes.io/serviceaccount/name}}"
""")
    log = open(os.path.join(work, "writ.log"), "w")
    process = subprocess.Popen([os.path.join(binaries, "writ"), "serve", "--config", config],
                               stderr=log, stdout=subprocess.DEVNULL,
                               env={**os.environ, "WRIT_LOG": "warn"})
    for _ in range(150):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the broker did not become ready")


def honest(port, token, seconds):
    """Latencies (ms) of sequential issuance on one keep-alive connection."""
    body = json.dumps(REQUEST)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/writs", body, headers)
            response = connection.getresponse()
            response.read()
        except OSError:
            # Closed while idle between requests (header timeout): reconnect, do not count.
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        if response.status != 201:
            raise SystemExit(f"an honest request was answered {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def hold(port, count, request, stop):
    """Keeps `count` sockets open (sending `request` on each), reopening those the broker closes."""
    def keep():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    if request:
                        s.sendall(request)
                    s.settimeout(1)
                    while not stop.is_set():
                        try:
                            if not s.recv(65536):
                                break
                        except socket.timeout:
                            continue
            except OSError:
                time.sleep(0.1)
    threads = [threading.Thread(target=keep, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--flood-connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")

    binaries = build()
    work = tempfile.mkdtemp(prefix="writ-abuse.")
    processes = []
    try:
        issuer_process, issuer, token = start_issuer(binaries, work)
        processes.append(issuer_process)
        broker, port = start_broker(binaries, work, issuer, args.streams)
        processes.append(broker)
        print(f"machine: nproc={os.cpu_count()} ; broker on 127.0.0.1:{port} (SQLite), "
              f"{args.seconds}s per phase")

        honest(port, token, 2)  # warm up
        cpu0 = cpu_seconds(broker.pid)
        calm = honest(port, token, args.seconds)
        calm_cpu = cpu_seconds(broker.pid) - cpu0

        stop = threading.Event()
        hold(port, args.streams, b"GET /v1/revocations/stream HTTP/1.1\r\nHost: x\r\n\r\n", stop)
        hold(port, args.idle, b"", stop)
        flood_script = os.path.join(work, "flood.lua")
        with open(flood_script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.path = "/v1/writs"\n'
                    'wrk.headers["Authorization"] = "Bearer garbage.garbage.garbage"\n'
                    'wrk.headers["Content-Type"] = "application/json"\nwrk.body = "{}"\n')
        flood = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.flood_connections}", f"-d{args.seconds + 2}s", "-s",
             flood_script, f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
        processes.append(flood)
        time.sleep(1)
        cpu0 = cpu_seconds(broker.pid)
        abused = honest(port, token, args.seconds)
        abused_cpu = cpu_seconds(broker.pid) - cpu0
        flood_out, _ = flood.communicate()
        stop.set()
        garbage = next((line.split()[0] for line in flood_out.splitlines()
                        if "requests in" in line), "?")

        def row(name, latencies, cpu):
            print(f"{name:<10} requests={len(latencies):>6} p50_ms={statistics.median(latencies):7.2f} "
                  f"p99_ms={percentile(latencies, 99):7.2f} broker_cpu_s={cpu:6.2f}")
        print()
        row("unloaded", calm, calm_cpu)
        row("abused", abused, abused_cpu)
        ratio = percentile(abused, 99) / percentile(calm, 99)
        print(f"\ngarbage requests refused during the abused phase: {garbage}; "
              f"streams held: {args.streams}; idle sockets: {args.idle}")
        print(f"honest p99 under abuse / unloaded: {ratio:.2f}x (goal: at most 2x)")
    finally:
        for process in processes:
            process.kill()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
