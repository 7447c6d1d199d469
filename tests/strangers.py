#!/usr/bin/env python3
"""Hostile clients and servers for the barrier's e2e scenarios.

Each mode runs for --for seconds, then prints one summary line to stdout
and exits 0. They only ever talk to addresses of the test bed's own pods.

  listen-read PORT --token T   accept connections, read what arrives,
                               never send; report the most bytes any
                               connection delivered and whether the
                               token appeared in them
  reflect PORT                 accept a connection from X and connect it
                               to X:PORT (the pod talks to itself)
  relay PORT A B               accept a connection from A and connect it
                               to B:PORT, and the other way round
  flood PORT HOST... --conns N keep N idle connections open to each HOST
"""

import argparse
import socket
import threading
import time

lock = threading.Lock()
stats = {"connections": 0, "max_bytes": 0, "token_seen": False, "spliced": 0, "open": 0}


def server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1024)
    return s


def read_only(conn, token):
    got = b""
    conn.settimeout(0.5)
    while True:
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
        with lock:
            stats["max_bytes"] = max(stats["max_bytes"], len(got))
            if token and token.encode() in got:
                stats["token_seen"] = True


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def splice(conn, target, port):
    try:
        out = socket.create_connection((target, port), timeout=2)
    except OSError:
        conn.close()
        return
    with lock:
        stats["spliced"] += 1
    threading.Thread(target=pipe, args=(conn, out), daemon=True).start()
    threading.Thread(target=pipe, args=(out, conn), daemon=True).start()


def accept_loop(srv, handle):
    while True:
        conn, (addr, _) = srv.accept()
        with lock:
            stats["connections"] += 1
        threading.Thread(target=handle, args=(conn, addr), daemon=True).start()


def flood(host, port, conns):
    held = []
    while True:
        held = [c for c in held if c.fileno() != -1]
        while len(held) < conns:
            try:
                c = socket.create_connection((host, port), timeout=1)
            except OSError:
                time.sleep(0.05)
                break
            held.append(c)
            with lock:
                stats["open"] += 1
        # Notice the ones the pod closed, without ever sending a byte.
        for c in held:
            c.setblocking(False)
            try:
                if c.recv(4096) == b"":
                    c.close()
            except BlockingIOError:
                pass
            except OSError:
                c.close()
        time.sleep(0.01)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["listen-read", "reflect", "relay", "flood"])
    p.add_argument("port", type=int)
    p.add_argument("hosts", nargs="*")
    p.add_argument("--token", default="")
    p.add_argument("--conns", type=int, default=150)
    p.add_argument("--for", dest="duration", type=float, required=True)
    a = p.parse_args()

    if a.mode == "listen-read":
        srv = server(a.port)
        threading.Thread(
            target=accept_loop,
            args=(srv, lambda c, _addr: read_only(c, a.token)),
            daemon=True,
        ).start()
    elif a.mode == "reflect":
        srv = server(a.port)
        threading.Thread(
            target=accept_loop,
            args=(srv, lambda c, addr: splice(c, addr, a.port)),
            daemon=True,
        ).start()
    elif a.mode == "relay":
        x, y = a.hosts
        other = {x: y, y: x}
        srv = server(a.port)
        threading.Thread(
            target=accept_loop,
            args=(srv, lambda c, addr: splice(c, other[addr], a.port) if addr in other else c.close()),
            daemon=True,
        ).start()
    else:
        for h in a.hosts:
            threading.Thread(target=flood, args=(h, a.port, a.conns), daemon=True).start()

    time.sleep(a.duration)
    with lock:
        print(
            "mode={} connections={} max_bytes={} token_seen={} spliced={} opened={} carried={}".format(
                a.mode,
                stats["connections"],
                stats["max_bytes"],
                str(stats["token_seen"]).lower(),
                stats["spliced"],
                stats["open"],
                "yes" if stats["spliced"] > 0 else "no",
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
