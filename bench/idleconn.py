#!/usr/bin/env python3
"""Hold N idle SMTP connections to a server and report its memory per connection.

usage: idleconn.py HOST PORT N ROOTPID [--hold SECONDS] [--deadline SECONDS]

Opens N connections, waits for each one's 220 greeting (so the server really
took it), waits --hold seconds for memory to settle, and sums RSS and PSS
(/proc/PID/smaps_rollup) over ROOTPID and all its descendants, before and
after: a Go server is one process, Postfix's master forks one smtpd per
connection. While the N are held, a new client connects, is greeted, says
EHLO and QUIT: how long that takes shows whether the server still answers
promptly. Prints one line of key=value pairs for bench/run.sh; exits 1 if any
connection was not greeted or the new client was not answered.
"""
import argparse
import os
import resource
import socket
import sys
import time


def tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, []))
    return out


def memory(pid):
    """(RSS kB, PSS kB, processes) summed over the tree of pid."""
    rss = pss = 0
    procs = tree(pid)
    for p in procs:
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                for line in f:
                    if line.startswith('Rss:'):
                        rss += int(line.split()[1])
                    elif line.startswith('Pss:'):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss, len(procs)


def reply(sock):
    """Reads one SMTP reply (all its lines); returns its code or None."""
    buf = b''
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
        lines = buf.split(b'\r\n')
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b' ':
                return line[:3]


def new_client(host, port, timeout):
    """Seconds from connect to the reply to EHLO, or None."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if reply(s) != b'220':
                return None
            s.sendall(b'EHLO probe.client.test\r\n')
            if reply(s) != b'250':
                return None
            took = time.monotonic() - t0
            s.sendall(b'QUIT\r\n')
            return took
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('host')
    ap.add_argument('port', type=int)
    ap.add_argument('n', type=int)
    ap.add_argument('rootpid', type=int)
    ap.add_argument('--hold', type=float, default=3.0, help='seconds to wait before measuring')
    ap.add_argument('--deadline', type=float, default=300.0, help='give up opening after this long')
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 100), hard))

    r0, p0, np0 = memory(a.rootpid)
    socks, greeted, errors = [], 0, 0
    t0 = time.monotonic()
    end = t0 + a.deadline
    for _ in range(a.n):
        if time.monotonic() > end:
            break
        try:
            socks.append(socket.create_connection((a.host, a.port), timeout=10))
        except OSError:
            errors += 1
    for s in socks:  # the 220 greeting: the server really took the connection
        try:
            s.settimeout(max(1.0, end - time.monotonic()))
            if s.recv(512).startswith(b'220'):
                greeted += 1
        except OSError:
            errors += 1
    opened = time.monotonic() - t0
    time.sleep(a.hold)
    r1, p1, np1 = memory(a.rootpid)
    probes = [new_client(a.host, a.port, 10.0) for _ in range(5)]
    answered = [p for p in probes if p is not None]
    for s in socks:
        try:
            s.sendall(b'QUIT\r\n')
        except OSError:
            pass
        s.close()

    per = max(greeted, 1)
    new_ms = max(answered) * 1000 if answered else float('nan')
    print(f'conns={a.n} greeted={greeted} errors={errors} open_s={opened:.2f} procs={np0}->{np1} '
          f'rss_kB={r0}->{r1} pss_kB={p0}->{p1} rss_per_conn_kB={(r1 - r0) / per:.1f} '
          f'pss_per_conn_kB={(p1 - p0) / per:.1f} new_client_ms={new_ms:.2f} '
          f'new_clients_answered={len(answered)}/{len(probes)}')
    return 0 if greeted == a.n and len(answered) == len(probes) else 1


if __name__ == '__main__':
    sys.exit(main())
