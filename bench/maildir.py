#!/usr/bin/env python3
"""Write a Maildir of generated messages, the same for every server a benchmark compares.
usage: maildir.py ROOT N words|notes
  words: 2-20 KiB of words to search, all seen, each with its own order number (the working mailbox)
  notes: short notes from 50 senders over three years, a quarter unseen (the very large mailbox)"""
import os, random, sys

root, n, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
rng = random.Random(1 if kind == "words" else 2)
words = "lorem ipsum dolor sit amet quartz invoice meeting report budget team".split()
months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
for i in range(n):
    if kind == "words":
        body = "\r\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(rng.randint(20, 250))) + "\r\n"
        body += f"order ref-{i:06d}\r\n"  # one message each: a selective search
        subject, to, date, flags = f"message {i} {rng.choice(words)}", "bench@local.test", f"Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000", "S"
    else:
        body = "body line of a note\r\n" * rng.randint(2, 40)
        subject, to, date = f"note {i}", "big@local.test", f"{1 + i % 28} {months[i % 12]} {2022 + i % 3} 10:{i % 60:02d}:00 +0000"
        flags = "" if i % 4 == 0 else "S"
    msg = (f"From: sender{i % 50}@bench.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Date: {date}\r\nMessage-ID: <{kind}{i}@bench.test>\r\n\r\n{body}")
    with open(os.path.join(root, "cur", f"{i}.{kind}:2,{flags}"), "w") as f:
        f.write(msg)
