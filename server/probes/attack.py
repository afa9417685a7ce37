#!/usr/bin/env python3
"""Loopback probes of a running glm-server that print figures (issue 15's measurements).

Standard library only. Every probe is bounded in count and time.

  attack.py huge-prompt URL PID MB [words|letters]   time and RSS peak of one MB-sized prompt
  attack.py slowloris URL N SECONDS       N slow-header connections; when each was closed
  attack.py drain URL PID                 one long stream, SIGTERM to PID, the stream's end as seen
  attack.py ttft URL LONG_TOKENS N        TTFT of N short chats beside one long prompt
"""

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse


def split(url):
    u = urllib.parse.urlparse(url)
    return u.hostname, u.port or 80


def post(url, path, body, timeout=600):
    host, port = split(url)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    data = json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"content-type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def huge_prompt(url, pid, mb, kind="words"):
    pid = int(pid)
    size = int(float(mb) * (1 << 20))
    if kind == "words":  # text that tokenizes to many tokens: the expensive case
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
        text = " ".join(words[i % 8] + str(i % 97) for i in range(size // 6))[:size]
    else:  # one run of a single letter
        text = "a" * size
    before = rss_kib(pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], rss_kib(pid))
            except OSError:
                return
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.monotonic()
    status, body = post(url, "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": text}], "max_tokens": 4})
    secs = time.monotonic() - t0
    done.set()
    t.join()
    msg = json.loads(body).get("error", {}).get("message", "")[:160]
    print(f"huge-prompt {mb} MB of {kind}: HTTP {status} in {secs * 1000:.1f} ms; "
          f"RSS before {before / 1024:.0f} MiB, peak during {peak[0] / 1024:.0f} MiB "
          f"(+{(peak[0] - before) / 1024:.0f} MiB); message: {msg}")


def health_probe(host, port):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/health")
        status = c.getresponse().status
    except OSError as e:
        status = f"failed ({type(e).__name__})"
    return f"{status} in {(time.monotonic() - t) * 1000:.0f} ms"


def slowloris(url, n, seconds):
    host, port = split(url)
    n, seconds = int(n), float(seconds)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        socks.append(s)
    t0 = time.monotonic()
    at_once = health_probe(host, port)
    held = None
    closed = {}
    while time.monotonic() - t0 < seconds and len(closed) < n:
        if held is None and time.monotonic() - t0 >= 3:
            held = health_probe(host, port)
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.send(b"X")
                if s.recv(1024) == b"":
                    closed[i] = time.monotonic() - t0
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = time.monotonic() - t0
        time.sleep(1.0)
    after = health_probe(host, port)
    times = sorted(closed.values())
    print(f"slowloris: {len(closed)}/{n} connections closed by the server within {seconds:.0f} s"
          + (f" (first at {times[0]:.1f} s, last at {times[-1]:.1f} s)" if times else "")
          + f"; /health right after opening them: {at_once}; 3 s later: {held}; afterwards: {after}")
    for s in socks:
        s.close()


def drain(url, pid):
    host, port = split(url)
    pid = int(pid)
    c = http.client.HTTPConnection(host, port, timeout=120)
    body = {"prompt": "hello", "max_tokens": 8000, "ignore_eos": True, "stream": True}
    c.request("POST", "/v1/completions", body=json.dumps(body).encode(),
              headers={"content-type": "application/json"})
    r = c.getresponse()
    events, t_term, last = [], None, ""
    t0 = time.monotonic()
    try:
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            events.append((time.monotonic() - t0, line))
            if t_term is None and len(events) >= 5:
                os.kill(pid, signal.SIGTERM)
                t_term = time.monotonic() - t0
        end = f"body ended cleanly at {time.monotonic() - t0 - t_term:.2f} s after SIGTERM"
    except Exception as e:  # an unterminated chunked body lands here
        end = f"body broke after {time.monotonic() - t0 - t_term:.2f} s: {type(e).__name__}: {e}"
    tail = [f"{t - t_term:+.2f}s {l[:150]}" for t, l in events[-3:]]
    print(f"drain: SIGTERM at t=0; {len(events)} data events; last three:")
    for l in tail:
        print("   ", l)
    print("   ", end)
    for _ in range(1000):
        try:
            state = open(f"/proc/{pid}/stat").read().split()[2]
        except OSError:
            state = "Z"
        if state == "Z":  # exited (a zombie until its parent reaps it)
            print(f"    process exited by {time.monotonic() - t0 - t_term:.2f} s after SIGTERM")
            return
        time.sleep(0.01)
    print("    process still alive 10 s after the stream ended")


def ttft(url, long_tokens, n):
    long_tokens, n = int(long_tokens), int(n)
    host, port = split(url)
    long_body = {"prompt": [100 + ((i * 7 + int(time.time())) % 1900) for i in range(long_tokens)], "max_tokens": 1}
    results = []
    lt = threading.Thread(target=lambda: post(url, "/v1/completions", long_body))
    lt.start()
    time.sleep(0.3)

    def short(i):
        c = http.client.HTTPConnection(host, port, timeout=600)
        body = {"messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 4,
                "stream": True}
        t0 = time.monotonic()
        c.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        seen = 0
        while True:
            line = r.readline()
            if not line:
                break
            if line.startswith(b"data: {") and b'"content":"' in line:
                seen += 1
                if seen == 2:  # the first chunk is the role delta
                    results.append(time.monotonic() - t0)
                    break
        r.read()

    ts = [threading.Thread(target=short, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
        time.sleep(0.1)
    for t in ts:
        t.join()
    lt.join()
    results.sort()
    p = lambda q: results[min(len(results) - 1, int(q * len(results)))]
    print(f"ttft beside a {long_tokens}-token prompt: {len(results)} short chats, "
          f"p50 {p(0.5):.2f} s, p99 {p(0.99):.2f} s, max {results[-1]:.2f} s")


if __name__ == "__main__":
    probes = {"huge-prompt": huge_prompt, "slowloris": slowloris, "drain": drain, "ttft": ttft}
    if len(sys.argv) < 2 or sys.argv[1] not in probes:
        print(__doc__)
        sys.exit(2)
    probes[sys.argv[1]](*sys.argv[2:])
