#!/usr/bin/env python3
"""Repeated correct logins over submission (STARTTLS, AUTH PLAIN, QUIT), from
CLIENTS threads for SECONDS: the rate at which a server answers logins that
succeed, as mail clients make them again and again.

usage: logins.py HOST PORT SECONDS CLIENTS USER PASSWORD
prints: logins_per_s=N logins=N errors=N
"""
import smtplib
import ssl
import sys
import threading
import time

host, port, seconds, clients, user, password = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the bench server's certificate is self-signed
lock = threading.Lock()
done = {"logins": 0, "errors": 0}
stop = time.monotonic() + seconds


def run():
    while time.monotonic() < stop:
        try:
            s = smtplib.SMTP(host, port, timeout=30)
            s.starttls(context=ctx)
            s.login(user, password)
            s.quit()
            key = "logins"
        except Exception:  # counted; a run with errors is reported as such
            key = "errors"
        with lock:
            done[key] += 1


threads = [threading.Thread(target=run) for _ in range(clients)]
start = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
print(f"logins_per_s={done['logins'] / elapsed:.1f} logins={done['logins']} errors={done['errors']}")
sys.exit(1 if done["errors"] or not done["logins"] else 0)
