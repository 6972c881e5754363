#!/usr/bin/env python3
"""Generate a deterministic, mail-server-like source tree for benchmarks.

    .venv/bin/python scripts/gen_corpus.py OUT --scale S --day N [--seed K] [--jobs J]

OUT then holds "day N" of a simulated mail server. Day 0 is the initial state;
each later day changes a little of it, the way a real server does between two
nightly backups, so that incremental backups, deduplication and history can be
measured on something that looks like the real thing.

The three parts
---------------
``mail/``
    Dovecot Maildir++ trees: ``<user>/Maildir/{cur,new,tmp}`` plus one to
    three subfolders (``.Sent`` always, then ``.Archive``, ``.Junk``, ...)
    with their own cur/new/tmp and a ``maildirfolder`` marker. Names follow
    Dovecot: ``<time>.M<usec>P<pid>.mx1,S=<size>:2,<flags>`` in cur/, without
    the ``:2,`` part in new/. 95% of messages are 1.8-11 KB of RFC 5322 text:
    Received/DKIM/Message-ID headers and a body sliced out of a pool of
    Zipf-distributed word text (made once per day; message text compresses
    about 3x). 5% are 100 KB-3 MB multipart messages carrying a base64
    attachment of pseudo-random bytes (barely compressible). File mtimes are
    the delivery times in the names.
``pgsql/mail.sql``
    A plain-format pg_dump of a mail database: SET lines and CREATE TABLEs,
    one ``COPY public.<table> (...) FROM stdin;`` block per table (domains,
    users, messages, maillog, auth_log) of tab-separated rows of about 150
    bytes ordered by id (ids have gaps, as after deletions), then sequence
    values and constraints.
``es/nodes/0/indices/<uuid>/0/index/``
    Lucene shard directories as Elasticsearch keeps them: compound segment
    files ``_<n>.cfs`` (``n`` in base 36; 16 KB-20 MB, log-skewed so most are
    small; a codec header, pseudo-random bytes with stretches of low-entropy
    "structure", a CRC32 footer), a commit point ``segments_<gen>`` listing
    them and an empty ``write.lock``.

Scale 1 is about 300 users with 40,000 messages (1.1 GB), a 300 MB dump and
400 MB of segments in about 300 files. ``--scale`` multiplies the counts (and
below 1 also caps the largest segment at 20 MB * S), never going below a few
users, messages, rows and segments, so tiny scales still have every part.

Days
----
Going from day N-1 to day N touches only what that day changes:

* mail: about 0.5% of messages deleted; 2% moved from new/ to cur/ (gaining
  ``:2,S``) or renamed within cur/ to new flags (``:2,S`` -> ``:2,RS``, ...),
  a rename keeping the mtime; 1% new messages delivered into new/ of users
  picked in proportion to their mail, timestamped during day N.
* pgsql: about 0.3% of rows changed in place (flags, mailbox, status, last
  login) and 0.2% inserted, between neighbours whose ids leave room or
  appended with new ids; the dump is rewritten (atomically, by rename) and
  every other row stays byte-identical; sequence values follow.
* es: 1.5 * S merges a day (at least 1), each replacing 2-5 similar-sized
  segments of one shard by one new segment of about their total size (never
  above the largest segment size), plus 1-3 small new segments, and a new
  ``segments_<gen>`` replacing the old one in each shard touched.

Determinism
-----------
Every choice is drawn from a ``random.Random`` seeded by a string made of
(seed, day, part[, user or shard]); bulk pseudo-random bytes are BLAKE3
output (XOF mode, ~3x faster than ``randbytes``; blake3 is a histfs
dependency) keyed by 32 bytes drawn from such a generator. Nothing depends
on time, ``os.urandom``, the global generator, the number of worker
processes or directory listing order (every listing is sorted). Day N's
changes depend only on that day's generators and the day N-1 tree, so making
day N from nothing (day 0, then days 1..N in turn) and advancing a directory
one day at a time give byte-identical trees with identical file mtimes
(``1_700_000_000 + day * 86400 + offset``; day 0 files lie before that
epoch). Directory mtimes are left to the file system.

``OUT/.corpus-day`` records the day, scale and seed as JSON. Asking for an
earlier day, another scale or seed, a directory left half-way by an
interrupted run, or a non-empty directory that is not a corpus, is refused
with one line on stderr and exit status 2. Asking for the day it holds does
nothing. A summary line (day, files, bytes, seconds) goes to stderr.
"""

from __future__ import annotations

import argparse
import array
import base64
import json
import mmap
import os
import random
import re
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from itertools import accumulate
from multiprocessing import get_context
from pathlib import Path

import blake3

BASE_EPOCH = 1_700_000_000
DAY = 86_400
KB = 1024
MB = 1024 * 1024
STATE_NAME = ".corpus-day"
HOST = "mx1"
LOCAL_DOMAIN = "example.org"


Chunk = bytes | bytearray | memoryview


class Refused(Exception):
    """A request this corpus directory cannot satisfy (exit status 2)."""


# --------------------------------------------------------------------------- helpers


def rng_for(seed: int, day: int, *part: str) -> random.Random:
    """The generator for (seed, day, part...): a string seed is hashed with
    SHA-512 by `random`, so it does not depend on PYTHONHASHSEED."""
    return random.Random("/".join(("gen_corpus", str(seed), str(day), *part)))


def random_bytes(rng: random.Random, n: int) -> bytes:
    """`n` pseudo-random bytes keyed by `rng` (BLAKE3 extendable output)."""
    return blake3.blake3(rng.randbytes(32)).digest(length=n) if n > 0 else b""


def scaled(base: float, scale: float, minimum: int) -> int:
    return max(minimum, int(base * scale + 0.5))


def write_file(path: Path | str, chunks: Iterable[Chunk], mtime: int) -> None:
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    os.utime(path, (mtime, mtime))


# --------------------------------------------------------------------------- text


def _words(text: str) -> list[str]:
    return text.split()


_COMMON = _words("""
the of and to a in is it you that was for on are with as I his they be at one have
this from or had by not but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them
would like so these her make see him two has look more day could go come did no
most people my over know than call first who may down been now find any new work
part take get place made where after back little only year came show every good me
give our under name very through just form great think say help line before move
right old too same tell does set three want well also small end put home read hand
large even here must big high such follow why ask change went kind off need house
try again point near build last should never next while both between own still
meeting invoice report server backup attached please thanks regards schedule project
customer order payment account update review team tomorrow Monday Friday deadline
budget contract delivery quote issue ticket support password login mailbox quota
document draft agenda minutes call office price offer sales week month quarter
release version test deploy database restore storage disk network firewall
""")

_FIRST = _words("""James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David
Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew
Lisa Anthony Betty Mark Margaret Paul Sandra Steven Ashley Andrew Emily Kenneth Donna
Joshua Michelle Kevin Carol Brian Amanda George Melissa Anna Lukas Sophie Jan Marie
Pierre Camille Luca Giulia Lars Ingrid Pavel Olga Mateo Lucia""")

_LAST = _words("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez
Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King
Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell
Mueller Schmidt Schneider Fischer Weber Dubois Moreau Rossi Russo Novak Jensen
Nielsen Kowalski Silva""")

_DOMAINS = _words("""gmail.com outlook.com yahoo.com web.de gmx.net orange.fr example.com
example.net acme-corp.com globex.io initech.com umbrella.org wayne-ent.com
stark.industries hooli.xyz piedpiper.net vandelay.com contoso.com fabrikam.com
tailspin.org""")


@lru_cache(maxsize=4)
def _pseudo_words(n: int) -> list[str]:
    rng = random.Random("gen_corpus/vocabulary")
    onsets = _words("b c d f g h j k l m n p r s t v w z br cr dr fr gr pl st tr ch sh th")
    vowels = _words("a e i o u a e i o ou ea ai")
    codas = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "rt", "ng"]
    words: set[str] = set()
    while len(words) < n:
        syllables = 1 + int(rng.random() ** 1.5 * 3.5)
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
                  + rng.choice(codas))
    return sorted(words)


@lru_cache(maxsize=1)
def _token_table() -> tuple[bytes, ...]:
    """65,536 tokens of three words each, drawn with Zipf-like word
    frequencies (about 11% of words end in a comma or full stop), each token
    ending in a space, a line break (every ~12 words) or a paragraph break; a
    uniform 16-bit index picks one. Three words a token make joining fast."""
    vocab = [*_COMMON, *_pseudo_words(2500)]
    weights = [1.0 / (rank + 5) ** 1.05 for rank in range(len(vocab))]
    rng = random.Random("gen_corpus/tokens")
    words = [w.encode() for w in rng.choices(vocab, weights, k=3 * 65_536)]
    for i in range(0, len(words), 9):
        words[i] += b"," if i % 2 else b"."
    table = []
    for i in range(65_536):
        u = rng.random()
        end = b" " if u < 0.75 else b"\n" if u < 0.98 else b"\n\n"
        table.append(b" ".join(words[3 * i:3 * i + 3]) + end)
    return tuple(table)


@lru_cache(maxsize=2)
def text_pool(seed: int, day: int, size: int) -> bytes:
    """About `size` bytes of word text in lines; messages take slices of it
    instead of drawing every word."""
    table = _token_table()
    idx = array.array("H")
    idx.frombytes(random_bytes(rng_for(seed, day, "text-pool"), 2 * (size // 18 + 1)))
    if sys.byteorder == "big":
        idx.byteswap()
    return b"".join(map(table.__getitem__, idx)) + b"\n"


def text_slice(rng: random.Random, pool: bytes, n: int) -> bytes:
    """About `n` bytes of whole lines from `pool`."""
    start = pool.find(b"\n", int(rng.random() * max(1, len(pool) - n - 1))) + 1
    end = pool.rfind(b"\n", start, start + n) + 1
    return pool[start:end] if end > start else pool[start:start + n] + b"\n"


def subject_from(rng: random.Random, pool: bytes) -> str:
    start = int(rng.random() * (len(pool) - 100))
    words = pool[start:start + 20 + int(rng.random() * 50)].split()[1:-1]
    text = " ".join(w.decode().strip(",.") for w in words).strip() or "Hello"
    return text[0].upper() + text[1:]


@lru_cache(maxsize=1)
def correspondents(seed: int) -> tuple[tuple[str, str], ...]:
    """(display name, address) of people outside the server, fixed per seed."""
    rng = rng_for(seed, 0, "people")
    people = []
    for _ in range(3000):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        sep = rng.choice((".", "_", ""))
        number = rng.choice(("", "", str(rng.randrange(99))))
        address = f"{first.lower()}{sep}{last.lower()}{number}@{rng.choice(_DOMAINS)}"
        people.append((f"{first} {last}", address))
    return tuple(people)


# --------------------------------------------------------------------------- mail

MAIL_USERS = 300
MAIL_MESSAGES = 40_000
SUBFOLDERS = (".Archive", ".Junk", ".Trash", ".Drafts")
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_TABLE = bytes(_B64[i & 63] for i in range(256))
_ATTACHMENTS = (
    ("application/pdf", "report-{}.pdf"),
    ("image/jpeg", "IMG_{}.jpg"),
    ("application/zip", "files-{}.zip"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     "document-{}.docx"),
)
_INBOX_FLAGS = ("S",) * 14 + ("RS",) * 3 + ("FS", "FRS", "")


@dataclass(frozen=True)
class MailUser:
    name: str
    messages: int
    folders: tuple[str, ...]  # subfolders, e.g. (".Sent", ".Archive")


def mail_users(seed: int, scale: float) -> list[MailUser]:
    """The users of day 0 and how much mail each has then."""
    rng = rng_for(seed, 0, "mail-users")
    n_users = scaled(MAIL_USERS, scale, 3)
    n_messages = max(n_users, scaled(MAIL_MESSAGES, scale, 30))
    names: list[str] = []
    taken: set[str] = set()
    while len(names) < n_users:
        name = f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}"
        if name in taken:
            name += str(rng.randrange(2, 100))
        if name not in taken:
            taken.add(name)
            names.append(name)
    weights = [rng.lognormvariate(0.0, 1.0) for _ in names]
    spare = n_messages - n_users
    exact = [w / sum(weights) * spare for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(n_users), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: spare - sum(counts)]:
        counts[i] += 1
    users = []
    for name, count in zip(names, counts, strict=True):
        extra = rng.sample(SUBFOLDERS, rng.randint(0, 2))
        users.append(MailUser(name, count + 1, (".Sent", *extra)))
    return users


def attachment_base64(rng: random.Random, chars: int) -> bytearray:
    """Base64 text of pseudo-random bytes in 76-character lines, about
    `chars` long (uniform bytes mapped to the alphabet: it decodes fine)."""
    lines = max(1, chars // 77)
    text = bytearray(random_bytes(rng, lines * 77)).translate(_B64_TABLE)
    text[76::77] = b"\n" * lines
    return text


def dkim_header(rng: random.Random, domain: str) -> str:
    sig = base64.b64encode(rng.randbytes(256)).decode()
    body_hash = base64.b64encode(rng.randbytes(32)).decode()
    lines = "\n\t ".join(sig[i:i + 70] for i in range(0, len(sig), 70))
    return (f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain};\n"
            f"\ts=selector{rng.randrange(1, 3)}; t={rng.getrandbits(31)};\n"
            f"\th=from:to:subject:date:message-id:mime-version:content-type;\n"
            f"\tbh={body_hash};\n\tb={lines}")


def make_message(rng: random.Random, pool: bytes, people: Sequence[tuple[str, str]],
                 user: str, ts: int, sent: bool) -> list[Chunk]:
    """One message as chunks to write; 5% carry a large attachment."""
    me = f"{user}@{LOCAL_DOMAIN}"
    peer_name, peer = people[int(rng.random() * len(people))]
    peer_domain = peer.rsplit("@", 1)[1]
    date = formatdate(ts)
    headers: list[str] = []
    if sent:
        my_name = " ".join(w.capitalize() for w in user.split("."))
        sender, to = f"{my_name} <{me}>", f"{peer_name} <{peer}>"
        mid_domain = LOCAL_DOMAIN
    else:
        sender, to = f"{peer_name} <{peer}>", me
        mid_domain = peer_domain
        ip = ".".join(str(rng.randrange(1, 224 if i == 0 else 255)) for i in range(4))
        headers += [
            f"Return-Path: <{peer}>",
            f"Delivered-To: {me}",
            f"Received: from mail.{peer_domain} (mail.{peer_domain} [{ip}])\n"
            f"\tby {HOST}.{LOCAL_DOMAIN} (Postfix) with ESMTPS id {rng.getrandbits(44):011X}\n"
            f"\tfor <{me}>; {date}",
        ]
        if rng.random() < 0.6:
            headers.append(dkim_header(rng, peer_domain))
    headers += [
        f"Message-ID: <{rng.getrandbits(64):016x}.{ts:x}@{mid_domain}>",
        f"Date: {date}",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject_from(rng, pool)}",
        "MIME-Version: 1.0",
    ]
    if rng.random() >= 0.05:
        headers += ["Content-Type: text/plain; charset=utf-8; format=flowed",
                    "Content-Transfer-Encoding: 8bit", "", ""]
        head = "\n".join(headers).encode()
        size = int(1800 * 6.1 ** rng.random())
        return [head, text_slice(rng, pool, max(200, size - len(head)))]
    boundary = f"----=_Part_{rng.getrandbits(48):012x}"
    ctype, fname = _ATTACHMENTS[int(rng.random() * len(_ATTACHMENTS))]
    fname = fname.format(rng.randrange(1000, 9999))
    headers += [f'Content-Type: multipart/mixed; boundary="{boundary}"', "", ""]
    text = text_slice(rng, pool, 300 + int(rng.random() * 2500))
    head = ("\n".join(headers) + f"This is a multi-part message in MIME format.\n\n--{boundary}\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            ).encode()
    mid = (f"\n--{boundary}\nContent-Type: {ctype}; name=\"{fname}\"\n"
           f"Content-Disposition: attachment; filename=\"{fname}\"\n"
           "Content-Transfer-Encoding: base64\n\n").encode()
    size = int(100 * KB * 30 ** (rng.random() ** 2.7))
    return [head, text, mid, attachment_base64(rng, size - len(head) - len(text) - len(mid)),
            f"\n--{boundary}--\n".encode()]


def dovecot_base(rng: random.Random, ts: int) -> str:
    return f"{ts}.M{rng.randrange(1_000_000)}P{rng.randrange(300, 65_000)}.{HOST}"


@dataclass(frozen=True)
class Mailer:
    """What writing messages needs besides a generator: word text, people."""

    pool: bytes
    people: Sequence[tuple[str, str]]


def deliver(rng: random.Random, mailer: Mailer, directory: Path, user: str, ts: int,
            sent: bool, flags: str | None, taken: set[str]) -> None:
    """Write one new message into `directory` (cur/ if `flags` is not None)."""
    chunks = make_message(rng, mailer.pool, mailer.people, user, ts, sent)
    base = dovecot_base(rng, ts)
    while base in taken:
        base = dovecot_base(rng, ts)
    taken.add(base)
    name = f"{base},S={sum(map(len, chunks))}"
    if flags is not None:
        name += f":2,{flags}"
    write_file(directory / name, chunks, ts)


def pool_size(messages: int) -> int:
    return min(32 * MB, max(1 * MB, messages * 800))


def mail_day0(out: Path, seed: int, users: Sequence[MailUser], pool_bytes: int) -> None:
    """Day 0 for some users (a task: users are independent)."""
    mailer = Mailer(text_pool(seed, 0, pool_bytes), correspondents(seed))
    for user in users:
        rng = rng_for(seed, 0, "mail", user.name)
        maildir = out / "mail" / user.name / "Maildir"
        for folder in ("", *user.folders):
            for sub in ("cur", "new", "tmp"):
                (maildir / folder / sub).mkdir(parents=True, exist_ok=True)
            if folder:
                write_file(maildir / folder / "maildirfolder", [], BASE_EPOCH - 400 * DAY)
        taken: set[str] = set()
        for _ in range(user.messages):
            u = rng.random()
            if u < 0.08:
                ts = BASE_EPOCH - 1 - int(rng.random() * 2 * DAY)
                deliver(rng, mailer, maildir / "new", user.name, ts, False, None, taken)
                continue
            ts = BASE_EPOCH - 1 - int(rng.random() * 730 * DAY)
            if u < 0.68:
                flags = _INBOX_FLAGS[int(rng.random() * len(_INBOX_FLAGS))]
                deliver(rng, mailer, maildir / "cur", user.name, ts, False, flags, taken)
            else:
                folder = user.folders[int(rng.random() * len(user.folders))]
                flags = "S" if folder in (".Sent", ".Drafts") else rng.choice(("S", "RS"))
                deliver(rng, mailer, maildir / folder / "cur", user.name, ts,
                        folder in (".Sent", ".Drafts"), flags, taken)


def list_messages(mail: Path) -> list[str]:
    """Every message as "user/Maildir[/.Folder]/{cur,new}/name", sorted."""
    found: list[str] = []
    for user in sorted(os.listdir(mail)):
        maildir = f"{user}/Maildir"
        folders = ["", *sorted(f for f in os.listdir(mail / maildir) if f.startswith("."))]
        for folder in folders:
            for sub in ("cur", "new"):
                rel = f"{maildir}/{folder}/{sub}" if folder else f"{maildir}/{sub}"
                found += [f"{rel}/{name}" for name in sorted(os.listdir(mail / rel))]
    return found


def _next_flags(flags: str) -> str:
    """A plausible flag change: seen, then replied, then flagged, then unflagged."""
    for flag in "SRF":
        if flag not in flags:
            return "".join(sorted(flags + flag))
    return flags.replace("F", "")


def mail_day(out: Path, seed: int, day: int) -> None:
    """Apply day `day`'s mail changes to the tree of day `day - 1`."""
    mail = out / "mail"
    rng = rng_for(seed, day, "mail")
    messages = list_messages(mail)
    n = len(messages)
    doomed = set(rng.sample(range(n), min(n, max(1, int(0.005 * n + 0.5)))))
    for i in sorted(doomed):
        os.unlink(mail / messages[i])
    kept = [m for i, m in enumerate(messages) if i not in doomed]
    for i in sorted(rng.sample(range(len(kept)), min(len(kept), max(1, int(0.02 * n + 0.5))))):
        folder, sub, name = kept[i].rsplit("/", 2)
        if sub == "new":
            target = f"{folder}/cur/{name}:2,S"
        else:
            base, _, flags = name.partition(":2,")
            target = f"{folder}/cur/{base}:2,{_next_flags(flags)}"
        os.rename(mail / kept[i], mail / target)
    per_user: dict[str, int] = {}
    for m in kept:
        user = m.split("/", 1)[0]
        per_user[user] = per_user.get(user, 0) + 1
    users = sorted(os.listdir(mail))
    k = max(1, int(0.01 * n + 0.5))
    mailer = Mailer(text_pool(seed, day, pool_size(k)), correspondents(seed))
    recipients = rng.choices(users, weights=[per_user.get(u, 0) + 1 for u in users], k=k)
    times = sorted(BASE_EPOCH + day * DAY + int(rng.random() * DAY) for _ in range(k))
    taken: set[str] = set()
    for user, ts in zip(recipients, times, strict=True):
        deliver(rng, mailer, mail / user / "Maildir" / "new", user, ts, False, None, taken)


# --------------------------------------------------------------------------- pgsql

DUMP = "pgsql/mail.sql"
_T0 = BASE_EPOCH - BASE_EPOCH % DAY - 1000 * DAY  # midnight, well before any row


@lru_cache(maxsize=1)
def _clock() -> tuple[list[str], list[str]]:
    dates = [time.strftime("%Y-%m-%d ", time.gmtime(_T0 + d * DAY)) for d in range(4000)]
    hms = [f"{h:02d}:{m:02d}:{s:02d}+00" for h in range(24) for m in range(60) for s in range(60)]
    return dates, hms


def timestamp(t: int) -> str:
    """`t` as PostgreSQL prints a UTC timestamptz (fast: two table look-ups)."""
    dates, hms = _clock()
    d, s = divmod(t - _T0, DAY)
    if not 0 <= d < len(dates):
        return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))
    return dates[d] + hms[s]


PIECES = 4096  # distinct pre-made column groups per big table


@dataclass
class DumpContext:
    """Value pools shared by day 0 and later days (fixed per seed)."""

    seed: int
    domains: list[str]
    logins: list[str]
    people: list[str]
    subjects: list[str]
    relays: list[str]
    n_users: int
    _pieces: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    @classmethod
    def make(cls, seed: int, scale: float) -> DumpContext:
        rng = rng_for(seed, 0, "pgsql-context")
        domains = [LOCAL_DOMAIN] + [f"{w}.{rng.choice(('com', 'net', 'org', 'de'))}"
                                    for w in _pseudo_words(400)[::37]]
        logins = [u.name for u in mail_users(seed, scale)]
        people = [a for _, a in correspondents(seed)]
        vocab = [*_COMMON, *_pseudo_words(2500)[:600]]
        subjects = []
        for _ in range(5000):
            words = rng.choices(vocab, k=rng.randint(2, 9))
            prefix = rng.choice(("", "", "", "Re: ", "Fwd: ", "RE: "))
            subjects.append(prefix + " ".join(words).capitalize())
        relays = [f"mx{i}.{d}[{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
                  f"{rng.randrange(1, 255)}]:25" for d in _DOMAINS for i in (1, 2)]
        return cls(seed, domains, logins, people, subjects, relays,
                   scaled(TABLES_BY_NAME["users"].rows, scale, 5))

    def pieces(self, table: Table) -> tuple[list[str], list[str]]:
        """`table`'s two lists of column groups, 65,536 long (PIECES distinct
        ones repeated) so that a 16-bit random number picks one."""
        if table.name not in self._pieces:
            assert table.pieces is not None
            a, b = table.pieces(rng_for(self.seed, 0, "pgsql-pieces", table.name), self)
            self._pieces[table.name] = (a * (65_536 // len(a)), b * (65_536 // len(b)))
        return self._pieces[table.name]


RowFn = Callable[[random.Random, DumpContext, int, int], str]
MutateFn = Callable[[random.Random, DumpContext, list[bytes]], None]
PiecesFn = Callable[[random.Random, DumpContext], tuple[list[str], list[str]]]
Compose = Callable[[int, str, str, str, str], str]  # id, timestamp, 16 hex digits, pieces


@dataclass(frozen=True)
class Table:
    """A table of the dump. Small ones make each row with `row`; big ones
    (millions of rows: Python is slow per value) `compose` a row from its id,
    time, 16 random hex digits and two pre-made column groups (`pieces`)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    rows: int  # at scale 1
    mutate: MutateFn | None  # changes some fields of a row in place
    append_only: bool  # new rows only at the end (logs)
    row: RowFn | None = None  # (rng, context, id, unix time) -> row without newline
    compose: Compose | None = None
    pieces: PiecesFn | None = None


def make_row(table: Table, rng: random.Random, ctx: DumpContext, id_: int, t: int) -> str:
    if table.compose is None:
        assert table.row is not None
        return table.row(rng, ctx, id_, t)
    a, b = ctx.pieces(table)
    return table.compose(id_, timestamp(t), f"{rng.getrandbits(64):016x}",
                         a[rng.getrandbits(16)], b[rng.getrandbits(16)])


def _u16(rng: random.Random, n: int) -> array.array[int]:
    values = array.array("H")
    values.frombytes(random_bytes(rng, 2 * n))
    if sys.byteorder == "big":
        values.byteswap()
    return values


_ID_STEPS = bytes(1 + int((i / 256) ** 4 * 8) for i in range(256))  # mostly 1, up to 8


def table_rows(table: Table, rng: random.Random, ctx: DumpContext,
               n: int) -> Iterator[tuple[bytes, int]]:
    """Day 0's `n` rows in batches: (rows with newlines, last id). Ids grow
    with gaps, times spread evenly over the two years before day 0."""
    start, span = BASE_EPOCH - 730 * DAY - _T0, 730 * DAY
    dates, hms = _clock()
    last = 0
    for first in range(0, n, 20_000):
        k = min(20_000, n - first)
        ids = list(accumulate(random_bytes(rng, k).translate(_ID_STEPS), initial=last))[1:]
        last = ids[-1]
        secs = [start + i * span // n for i in range(first, first + k)]
        if table.compose is None:
            assert table.row is not None
            rows = [table.row(rng, ctx, i, _T0 + t) for i, t in zip(ids, secs, strict=True)]
        else:
            a, b = ctx.pieces(table)
            hexes = random_bytes(rng, 8 * k).hex()
            rows = list(map(
                table.compose, ids, [dates[t // DAY] + hms[t % DAY] for t in secs],
                map(hexes.__getitem__, map(slice, range(0, 16 * k, 16), range(16, 16 * k + 1, 16))),
                map(a.__getitem__, _u16(rng, k)), map(b.__getitem__, _u16(rng, k))))
        yield ("\n".join(rows) + "\n").encode(), last


def _domain_row(rng: random.Random, ctx: DumpContext, id_: int, t: int) -> str:
    name = ctx.domains[id_ % len(ctx.domains)]
    return (f"{id_}\t{name}\tMail domain {name} (plan {rng.choice('ABC')})\t"
            f"{timestamp(t)}\t{'t' if rng.random() < 0.9 else 'f'}")


def _user_row(rng: random.Random, ctx: DumpContext, id_: int, t: int) -> str:
    login = ctx.logins[id_ % len(ctx.logins)] if id_ < len(ctx.logins) else (
        f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}{id_}")
    crypt = f"{{SHA512-CRYPT}}$6${rng.randbytes(12).hex()}${rng.randbytes(43).hex()}"
    quota = rng.choice((1, 2, 5, 10, 20)) * 1024**3
    return (f"{id_}\t{1 + id_ % 7}\t{login}\t{crypt}\t{quota}\t{int(quota * rng.random() ** 2)}\t"
            f"{timestamp(t)}\t{timestamp(BASE_EPOCH - int(rng.random() * 60 * DAY))}\tt")


def _mutate_user(rng: random.Random, ctx: DumpContext, f: list[bytes]) -> None:
    f[5] = str(int(int(f[5]) * (0.9 + 0.2 * rng.random()))).encode()
    f[7] = timestamp(BASE_EPOCH + int(rng.random() * 365 * DAY)).encode()


_MAILBOXES = ("INBOX",) * 12 + ("Sent",) * 4 + ("Archive",) * 3 + ("Junk", "Trash", "Drafts")


def _message_pieces(rng: random.Random, ctx: DumpContext) -> tuple[list[str], list[str]]:
    r = rng.random
    a = [f"{1 + int(r() * ctx.n_users)}\t{rng.choice(_MAILBOXES)}\t{int(r() * 90_000)}\t"
         f"{int(1800 * 40 ** (r() ** 2))}\t{rng.choice(_INBOX_FLAGS)}" for _ in range(PIECES)]
    b = []
    for _ in range(PIECES):
        sender = rng.choice(ctx.people)
        b.append(f"{sender.rsplit('@', 1)[1]}>\t{sender}\t{rng.choice(ctx.subjects)}")
    return a, b


def _message_compose(id_: int, ts: str, hx: str, a: str, b: str) -> str:
    return f"{id_}\t{a}\t{ts}\t<{hx}@{b}"  # ..., received_at, message_id, sender, subject


def _mutate_message(rng: random.Random, ctx: DumpContext, f: list[bytes]) -> None:
    if rng.random() < 0.7:
        f[5] = _next_flags(f[5].decode()).encode()
    else:
        f[2] = rng.choice((b"Archive", b"Trash", b"INBOX"))


_STATUS = (("sent", "2.0.0"),) * 17 + (("deferred", "4.4.1"), ("bounced", "5.1.1"),
                                       ("deferred", "4.7.0"))


def _maillog_pieces(rng: random.Random, ctx: DumpContext) -> tuple[list[str], list[str]]:
    a = [f"{rng.choice(ctx.people)}\t{rng.choice(ctx.logins)}@{LOCAL_DOMAIN}"
         for _ in range(PIECES)]
    b = []
    for _ in range(PIECES):
        status, dsn = rng.choice(_STATUS)
        b.append(f"{status}\t{rng.choice(ctx.relays)}\t{rng.random() * 3:.2f}\t{dsn}\t"
                 f"{rng.choice(ctx.subjects)[:24]}")
    return a, b


def _maillog_compose(id_: int, ts: str, hx: str, a: str, b: str) -> str:
    return f"{id_}\t{ts}\t{hx[:11].upper()}\t{a}\t{b}"


def _mutate_maillog(rng: random.Random, ctx: DumpContext, f: list[bytes]) -> None:
    status, dsn = rng.choice(_STATUS)
    f[5], f[7], f[8] = status.encode(), f"{rng.random() * 900:.2f}".encode(), dsn.encode()


_SERVICES = ("imap",) * 6 + ("pop3", "submission", "sieve", "lmtp")


def _auth_pieces(rng: random.Random, ctx: DumpContext) -> tuple[list[str], list[str]]:
    a = [f"{rng.choice(ctx.logins)}\t{rng.choice(_SERVICES)}" for _ in range(PIECES)]
    b = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
         f"{rng.randrange(1, 255)}\t{'t' if rng.random() < 0.93 else 'f'}\t"
         f"{'TLSv1.3' if rng.random() < 0.8 else 'TLSv1.2'}" for _ in range(PIECES)]
    return a, b


def _auth_compose(id_: int, ts: str, hx: str, a: str, b: str) -> str:
    return f"{id_}\t{ts}\t{a}\t{b}"


TABLES = (
    Table("domains", (("id", "integer"), ("name", "text"), ("description", "text"),
                      ("created_at", "timestamp with time zone"), ("active", "boolean")),
          12, None, False, row=_domain_row),
    Table("users", (("id", "bigint"), ("domain_id", "integer"), ("username", "text"),
                    ("password", "text"), ("quota_bytes", "bigint"), ("used_bytes", "bigint"),
                    ("created_at", "timestamp with time zone"),
                    ("last_login", "timestamp with time zone"), ("active", "boolean")),
          1500, _mutate_user, False, row=_user_row),
    Table("messages", (("id", "bigint"), ("user_id", "bigint"), ("mailbox", "text"),
                       ("uid", "bigint"), ("size", "integer"), ("flags", "text"),
                       ("received_at", "timestamp with time zone"), ("message_id", "text"),
                       ("sender", "text"), ("subject", "text")),
          1_380_000, _mutate_message, False, compose=_message_compose, pieces=_message_pieces),
    Table("maillog", (("id", "bigint"), ("logged_at", "timestamp with time zone"),
                      ("queue_id", "text"), ("sender", "text"), ("recipient", "text"),
                      ("status", "text"), ("relay", "text"), ("delay", "numeric(8,2)"),
                      ("dsn", "text"), ("subject", "text")),
          465_000, _mutate_maillog, False, compose=_maillog_compose, pieces=_maillog_pieces),
    Table("auth_log", (("id", "bigint"), ("logged_at", "timestamp with time zone"),
                       ("username", "text"), ("service", "text"), ("remote_ip", "inet"),
                       ("success", "boolean"), ("tls", "text")),
          330_000, None, True, compose=_auth_compose, pieces=_auth_pieces),
)
TABLES_BY_NAME = {t.name: t for t in TABLES}

_DUMP_HEAD = """--
-- PostgreSQL database dump
--

-- Dumped from database version 15.6 (Debian 15.6-0+deb12u1)
-- Dumped by pg_dump version 15.6 (Debian 15.6-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

"""
_SETVAL = re.compile(rb"setval\('public\.(\w+)_id_seq', (\d+), true\)")


def _schema(table: Table) -> str:
    cols = ",\n".join(f"    {name} {sql_type}" + (" NOT NULL" if name == "id" else "")
                      for name, sql_type in table.columns)
    return (f"--\n-- Name: {table.name}; Type: TABLE; Schema: public; Owner: mail\n--\n\n"
            f"CREATE TABLE public.{table.name} (\n{cols}\n);\n\n\n"
            f"ALTER TABLE public.{table.name} OWNER TO mail;\n\n"
            f"--\n-- Name: {table.name}_id_seq; Type: SEQUENCE; Schema: public; Owner: mail\n"
            f"--\n\nCREATE SEQUENCE public.{table.name}_id_seq\n    START WITH 1\n"
            f"    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;\n\n\n")


def _copy_head(table: Table) -> bytes:
    cols = ", ".join(name for name, _ in table.columns)
    return (f"--\n-- Data for Name: {table.name}; Type: TABLE DATA; Schema: public; "
            f"Owner: mail\n--\n\nCOPY public.{table.name} ({cols}) FROM stdin;\n").encode()


def _dump_tail(max_ids: dict[str, int]) -> bytes:
    parts = []
    for table in TABLES:
        parts.append(f"--\n-- Name: {table.name}_id_seq; Type: SEQUENCE SET; Schema: public; "
                     f"Owner: mail\n--\n\nSELECT pg_catalog.setval('public.{table.name}_id_seq', "
                     f"{max_ids[table.name]}, true);\n\n\n")
    for table in TABLES:
        parts.append(f"--\n-- Name: {table.name} {table.name}_pkey; Type: CONSTRAINT; "
                     f"Schema: public; Owner: mail\n--\n\nALTER TABLE ONLY public.{table.name}\n"
                     f"    ADD CONSTRAINT {table.name}_pkey PRIMARY KEY (id);\n\n\n")
    parts.append("--\n-- PostgreSQL database dump complete\n--\n\n")
    return "".join(parts).encode()


def _dump_mtime(day: int) -> int:
    return BASE_EPOCH + day * DAY + 3 * 3600  # the nightly dump at 03:00


def pgsql_day0(out: Path, seed: int, scale: float) -> None:
    ctx = DumpContext.make(seed, scale)
    path = out / DUMP
    path.parent.mkdir(parents=True, exist_ok=True)
    max_ids: dict[str, int] = {}
    with open(path, "wb") as f:
        f.write(_DUMP_HEAD.encode())
        for table in TABLES:
            f.write(_schema(table).encode())
        for table in TABLES:
            rng = rng_for(seed, 0, "pgsql", table.name)
            f.write(_copy_head(table))
            for rows, last in table_rows(table, rng, ctx, scaled(table.rows, scale, 5)):
                f.write(rows)
                max_ids[table.name] = last
            f.write(b"\\.\n\n\n")
        f.write(_dump_tail(max_ids))
    os.utime(path, (_dump_mtime(0), _dump_mtime(0)))


def _row_id(data: mmap.mmap, start: int) -> int:
    return int(data[start:data.find(b"\t", start)])


def _previous_line(data: mmap.mmap, start: int, pos: int) -> int:
    """Where the row before the one starting at `pos` starts (block from `start`)."""
    return max(start, data.rfind(b"\n", start, pos - 1) + 1)


def _line_end(data: mmap.mmap, pos: int) -> int:
    end = data.find(b"\n", pos)
    assert end >= 0
    return end + 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_spliced(path: Path, src: int, data: mmap.mmap,
                   pieces: Sequence[bytes | tuple[int, int]], mtime: int) -> None:
    """Write `pieces` to `path`: new bytes, or (start, end) spans of the file
    open as `src` (mapped as `data`), copied by the kernel where it can."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for piece in pieces:
            if isinstance(piece, bytes):
                _write_all(fd, piece)
                continue
            pos, end = piece
            while pos < end:
                try:
                    copied = os.copy_file_range(src, fd, end - pos, pos)
                except OSError:  # not on this file system: through memory, then
                    copied = 0
                if copied == 0:
                    _write_all(fd, data[pos:end])
                    break
                pos += copied
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def pgsql_day(out: Path, seed: int, scale: float, day: int) -> None:
    """Change and insert about 0.5% of the rows, keeping all others as they
    are (copied with copy_file_range: the dump is never read whole)."""
    ctx = DumpContext.make(seed, scale)
    rng = rng_for(seed, day, "pgsql")
    path = out / DUMP
    with open(path, "rb") as src, mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as data:
        blocks: list[tuple[Table, int, int, int]] = []  # table, start, end, rows (about)
        for table in TABLES:
            head = _copy_head(table)
            start = data.find(head) + len(head)
            end = data.find(b"\\.\n", start)
            assert start >= len(head) and end >= start, f"{path}: no COPY block for {table.name}"
            sample = data[start:min(end, start + 256 * KB)]
            rows = round(sample.count(b"\n") * (end - start) / max(1, len(sample)))
            blocks.append((table, start, end, rows))
        total = sum(rows for *_, rows in blocks)
        # edits[block][line start] = [(order, new row)]: order 0 inserts before, 1 replaces
        edits: list[dict[int, list[tuple[int, bytes]]]] = [{} for _ in blocks]
        appended: list[list[bytes]] = [[] for _ in blocks]
        changeable = [i for i, b in enumerate(blocks) if b[0].mutate is not None and b[3] > 0]
        now = BASE_EPOCH + day * DAY

        def line_at(block: int) -> int:
            _, start, end, _ = blocks[block]
            pos = start + int(rng.random() * (end - start))
            return max(start, data.rfind(b"\n", start, pos) + 1)

        for _ in range(max(1, int(0.003 * total + 0.5))):
            b = rng.choices(changeable, weights=[blocks[i][3] for i in changeable])[0]
            table, p = blocks[b][0], line_at(b)
            if any(order == 1 for order, _ in edits[b].get(p, [])):
                continue  # already changed today
            fields = data[p:_line_end(data, p) - 1].split(b"\t")
            assert table.mutate is not None
            table.mutate(rng, ctx, fields)
            edits[b].setdefault(p, []).append((1, b"\t".join(fields) + b"\n"))
        for _ in range(max(1, int(0.002 * total + 0.5))):
            b = rng.choices(range(len(blocks)), weights=[rows for *_, rows in blocks])[0]
            table, start, end, _ = blocks[b]
            t = now + int(rng.random() * DAY)
            if table.append_only or rng.random() < 0.4:
                last = appended[b][-1] if appended[b] else None
                prev = (int(last.split(b"\t", 1)[0]) if last else
                        _row_id(data, _previous_line(data, start, end)))
                new_id = prev + 1 + int(rng.random() ** 4 * 3)
                appended[b].append(make_row(table, rng, ctx, new_id, t).encode() + b"\n")
                continue
            p = line_at(b)
            if p == start or any(order == 0 for order, _ in edits[b].get(p, [])):
                continue
            lo, hi = _row_id(data, _previous_line(data, start, p)), _row_id(data, p)
            if hi - lo < 2:
                continue  # no free id between the neighbours
            new_id = lo + 1 + int(rng.random() * (hi - lo - 1))
            row = make_row(table, rng, ctx, new_id, t).encode() + b"\n"
            edits[b].setdefault(p, []).append((0, row))

        pieces: list[bytes | tuple[int, int]] = []
        pos = 0
        max_ids: dict[str, int] = {}
        for b, (table, start, end, _) in enumerate(blocks):
            for p in sorted(edits[b]):
                pieces.append((pos, p))
                pos = p
                for order, row in sorted(edits[b][p], key=lambda e: e[0]):
                    pieces.append(row)
                    if order == 1:
                        pos = _line_end(data, p)
            pieces.append((pos, end))
            pieces += appended[b]
            pos = end
            last = appended[b][-1] if appended[b] else data[_previous_line(data, start, end):end]
            max_ids[table.name] = int(last.split(b"\t", 1)[0]) if last else 0
        pieces.append(_SETVAL.sub(lambda m: b"setval('public.%s_id_seq', %d, true)"
                                  % (m[1], max_ids[m[1].decode()]), data[pos:]))
        tmp = path.with_name(path.name + ".tmp")
        _write_spliced(tmp, src.fileno(), data, pieces, _dump_mtime(day))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- es

ES_INDICES = "es/nodes/0/indices"
ES_SEGMENTS = 300
ES_INDEX_COUNT = 5
SEG_MIN = 16 * KB
SEG_MAX = 20 * MB
CODEC_MAGIC = 0x3FD76C17
FOOTER_MAGIC = CODEC_MAGIC ^ 0xFFFFFFFF
# Maps uniform bytes to a skewed 16-symbol alphabet (~2.5 bits per byte):
# stands for the compressible structure (postings, norms, doc values).
_LOW_ENTROPY = bytes(0 if i < 128 else (i * 7919) % 15 + 1 for i in range(256))


def seg_max(scale: float) -> int:
    return max(8 * SEG_MIN, int(SEG_MAX * min(1.0, scale)))


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = digits[d] + out
        if n == 0:
            return out


def _codec_header(codec: str, version: int, ident: bytes, suffix: str = "") -> bytes:
    return (struct.pack(">IB", CODEC_MAGIC, len(codec)) + codec.encode()
            + struct.pack(">i", version) + ident + bytes([len(suffix)]) + suffix.encode())


def _write_with_footer(path: Path, pieces: list[Chunk], mtime: int) -> None:
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    magic = struct.pack(">Ii", FOOTER_MAGIC, 0)
    crc = zlib.crc32(magic, crc)
    write_file(path, [*pieces, magic, struct.pack(">q", crc)], mtime)


def write_segment(rng: random.Random, path: Path, size: int, mtime: int) -> None:
    """A compound segment file of exactly `size` bytes."""
    head = _codec_header("Lucene90CompoundData", 0, rng.randbytes(16))
    body = max(0, size - len(head) - 16)
    noise = memoryview(random_bytes(rng, body))
    structured = 0.1 + 0.3 * rng.random()
    pieces: list[Chunk] = [head]
    pos = 0
    while pos < body:
        n = min(body - pos, 4 * KB << int(rng.random() * 6))
        piece = noise[pos:pos + n]
        pieces.append(bytes(piece).translate(_LOW_ENTROPY) if rng.random() < structured else piece)
        pos += n
    _write_with_footer(path, pieces, mtime)


@dataclass
class Shard:
    path: Path  # .../<uuid>/0/index
    gen: int
    counter: int  # next segment number
    segments: list[tuple[int, int]]  # (number, size)

    def write_commit(self, rng: random.Random, mtime: int) -> None:
        old = self.path / f"segments_{base36(self.gen)}"
        self.gen += 1
        listing = b"".join(struct.pack(">B", len(name)) + name + struct.pack(">q", size)
                           for name, size in ((f"_{base36(n)}".encode(), s)
                                              for n, s in sorted(self.segments)))
        body = struct.pack(">qi", self.counter, len(self.segments)) + listing
        head = _codec_header("segments", 10, rng.randbytes(16), base36(self.gen))
        _write_with_footer(self.path / f"segments_{base36(self.gen)}", [head, body], mtime)
        if old.exists():
            old.unlink()

    @classmethod
    def read(cls, path: Path) -> Shard:
        names = sorted(os.listdir(path))
        commit = [n for n in names if n.startswith("segments_")]
        if len(commit) != 1:
            raise RuntimeError(f"{path}: expected one segments_N file, found {commit}")
        data = (path / commit[0]).read_bytes()
        pos = 5 + data[4] + 4 + 16
        pos += 1 + data[pos]
        (counter,) = struct.unpack_from(">q", data, pos)
        segments = [(int(n[1:-4], 36), (path / n).stat().st_size)
                    for n in names if n.endswith(".cfs")]
        return cls(path, int(commit[0][9:], 36), counter, sorted(segments))

    def add_segment(self, rng: random.Random, size: int, mtime: int) -> None:
        write_segment(rng, self.path / f"_{base36(self.counter)}.cfs", size, mtime)
        self.segments.append((self.counter, size))
        self.counter += 1


def es_plan(seed: int, scale: float) -> list[tuple[str, int]]:
    """Day 0's shards: (index uuid, number of segments)."""
    rng = rng_for(seed, 0, "es")
    n_segments = scaled(ES_SEGMENTS, scale, 4)
    n_indices = min(scaled(ES_INDEX_COUNT, scale, 1), n_segments // 2)
    uuids = sorted({rng.randbytes(16).hex() for _ in range(n_indices)})
    names = [base64.urlsafe_b64encode(bytes.fromhex(u)).decode().rstrip("=") for u in uuids]
    weights = [0.5 + rng.random() for _ in names]
    counts = [2 + int(w / sum(weights) * (n_segments - 2 * len(names))) for w in weights]
    counts[0] += n_segments - sum(counts)
    return list(zip(names, counts, strict=True))


def es_day0(out: Path, seed: int, scale: float, uuid: str, n_segments: int) -> None:
    rng = rng_for(seed, 0, "es", uuid)
    path = out / ES_INDICES / uuid / "0" / "index"
    path.mkdir(parents=True)
    shard = Shard(path, 0, 0, [])
    top = seg_max(scale)
    first = BASE_EPOCH - 30 * DAY
    write_file(path / "write.lock", [], first)
    # Log-skewed sizes, most small; stratified so that the total is near its mean.
    strata = [(i + rng.random()) / n_segments for i in range(n_segments)]
    rng.shuffle(strata)
    for u in strata:
        shard.counter += int(rng.random() ** 3 * 20)  # numbers of segments merged away
        size = int(SEG_MIN * (top / SEG_MIN) ** (u ** 2.3))
        shard.add_segment(rng, size, first + int(rng.random() * 29 * DAY))
    shard.write_commit(rng, BASE_EPOCH - 600)


def es_day(out: Path, seed: int, scale: float, day: int) -> None:
    """Merge a few segments and flush a few small new ones."""
    rng = rng_for(seed, day, "es")
    root = out / ES_INDICES
    shards = [Shard.read(root / uuid / "0" / "index") for uuid in sorted(os.listdir(root))]
    top = seg_max(scale)
    mtime = BASE_EPOCH + day * DAY + 3600
    touched: list[Shard] = []
    for _ in range(max(1, int(1.5 * scale + 0.5))):
        candidates = [s for s in shards if len(s.segments) >= 2]
        if not candidates:
            break
        shard = rng.choices(candidates, weights=[len(s.segments) for s in candidates])[0]
        by_size = sorted(shard.segments, key=lambda s: (s[1], s[0]))
        k = min(len(by_size), rng.randint(2, 5))
        while k > 2 and sum(size for _, size in by_size[:k]) > top:
            k -= 1  # fewer segments, to stay below the largest segment size
        fits = [i for i in range(len(by_size) - k + 1)
                if sum(size for _, size in by_size[i:i + k]) <= top]
        if not fits:
            continue  # nothing left to merge below the largest segment size
        first = rng.choice(fits)
        merged = by_size[first:first + k]
        for segment in merged:
            (shard.path / f"_{base36(segment[0])}.cfs").unlink()
            shard.segments.remove(segment)
        total = sum(size for _, size in merged)
        mtime += int(rng.random() * 3600)
        shard.add_segment(rng, max(SEG_MIN, int(total * (0.82 + 0.16 * rng.random()))), mtime)
        touched.append(shard)
    flushes = rng.randint(1, 3)
    for _ in range(flushes if scale <= 1 else int(flushes * scale + 0.5)):
        shard = shards[int(rng.random() * len(shards))]
        mtime += int(rng.random() * 3600)
        shard.add_segment(rng, min(top, int(SEG_MIN * 8 ** rng.random())), mtime)
        touched.append(shard)
    for shard in sorted({id(s): s for s in touched}.values(), key=lambda s: s.path):
        shard.write_commit(rng, mtime + 60)


# --------------------------------------------------------------------------- driver

Task = tuple[Callable[..., None], tuple[object, ...]]


def day0_tasks(out: Path, seed: int, scale: float) -> list[Task]:
    """The longest first; then mail in about 16 chunks of users, then shards."""
    tasks: list[Task] = [(pgsql_day0, (out, seed, scale))]
    users = mail_users(seed, scale)
    total = sum(u.messages for u in users)
    size = pool_size(total)
    chunk: list[MailUser] = []
    for user in users:
        chunk.append(user)
        if sum(u.messages for u in chunk) >= total / 16:
            tasks.append((mail_day0, (out, seed, tuple(chunk), size)))
            chunk = []
    if chunk:
        tasks.append((mail_day0, (out, seed, tuple(chunk), size)))
    tasks += [(es_day0, (out, seed, scale, uuid, n)) for uuid, n in es_plan(seed, scale)]
    return tasks


def day_tasks(out: Path, seed: int, scale: float, day: int) -> list[Task]:
    return [(pgsql_day, (out, seed, scale, day)), (mail_day, (out, seed, day)),
            (es_day, (out, seed, scale, day))]


def run_tasks(executor: Executor | None, tasks: list[Task]) -> None:
    if executor is None:
        for fn, args in tasks:
            fn(*args)
        return
    futures = [executor.submit(fn, *args) for fn, args in tasks]
    for future in futures:
        future.result()


def read_state(out: Path) -> dict[str, object] | None:
    path = out / STATE_NAME
    if not path.exists():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise Refused(f"{out} exists and is not a corpus (no {STATE_NAME}); "
                          "refusing to touch it")
        return None
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Refused(f"{path}: unreadable ({e})") from None
    return state


def write_state(out: Path, state: dict[str, object], day: int) -> None:
    tmp = out / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True) + "\n")
    os.utime(tmp, (BASE_EPOCH + day * DAY, BASE_EPOCH + day * DAY))
    os.replace(tmp, out / STATE_NAME)


def tree_summary(out: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) per part."""
    summary: dict[str, tuple[int, int]] = {}
    for part in ("mail", "pgsql", "es"):
        files = size = 0
        for top, _, names in os.walk(out / part):
            for name in names:
                files += 1
                size += os.lstat(os.path.join(top, name)).st_size
        summary[part] = (files, size)
    return summary


def generate(out: Path, scale: float, day: int, seed: int, jobs: int) -> int:
    """Bring `out` to `day`; return the first day applied (day + 1 if none)."""
    state = read_state(out)
    start = 0
    if state is not None:
        if state.get("scale") != scale or state.get("seed") != seed:
            raise Refused(f"{out} holds scale {state.get('scale')} seed {state.get('seed')}, "
                          f"not scale {scale} seed {seed}; refusing to mix them")
        if "pending" in state:
            raise Refused(f"{out} was left half-way to day {state['pending']} by an interrupted "
                          "run; delete it and generate again")
        have = state.get("day")
        if not isinstance(have, int):
            raise Refused(f"{out / STATE_NAME}: no valid day in it")
        if have > day:
            raise Refused(f"{out} holds day {have}; refusing to go back to day {day}")
        start = have + 1
    if start > day:
        return start
    out.mkdir(parents=True, exist_ok=True)
    if start == 0:  # make the word text once, before forking: the workers share it
        users = mail_users(seed, scale)
        text_pool(seed, 0, pool_size(sum(u.messages for u in users)))
    executor = (ProcessPoolExecutor(jobs, mp_context=get_context("fork")) if jobs > 1 else None)
    try:
        for d in range(start, day + 1):
            base = {"day": d - 1, "scale": scale, "seed": seed}
            write_state(out, {**base, "pending": d}, d)
            tasks = day0_tasks(out, seed, scale) if d == 0 else day_tasks(out, seed, scale, d)
            run_tasks(executor, tasks)
            write_state(out, {**base, "day": d}, d)
    finally:
        if executor is not None:
            executor.shutdown()
    return start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, metavar="OUT")
    parser.add_argument("--scale", type=float, required=True, help="1 = about 1.8 GB")
    parser.add_argument("--day", type=int, required=True, help="0 = initial state")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(3, os.cpu_count() or 1),
                        help="worker processes (the result does not depend on it)")
    args = parser.parse_args(argv)
    if not args.scale > 0 or args.day < 0 or args.seed < 0 or args.jobs < 1:
        parser.error("--scale must be > 0, --day, --seed >= 0 and --jobs >= 1")
    began = time.monotonic()
    try:
        first = generate(args.out, args.scale, args.day, args.seed, args.jobs)
    except Refused as e:
        print(f"gen_corpus: {e}", file=sys.stderr)
        return 2
    parts = tree_summary(args.out)
    files = sum(f for f, _ in parts.values())
    size = sum(s for _, s in parts.values())
    applied = f"days {first}-{args.day}" if first < args.day else (
        f"day {args.day}" if first == args.day else "nothing to do")
    detail = ", ".join(f"{p} {f}/{s / MB:.1f} MiB" for p, (f, s) in parts.items())
    print(f"gen_corpus: day {args.day} scale {args.scale:g} seed {args.seed} ({applied}): "
          f"{files} files, {size} bytes ({detail}), {time.monotonic() - began:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
