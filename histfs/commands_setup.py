"""Commands that set a repository up: `init`, `key`, `copy`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from histfs.arguments import open_repository, repo_location
from histfs.exit_status import EXIT_OK
from index.errors import ConfigError
from index.model.location import as_location
from index.model.repository import Repository


def cmd_init(args: argparse.Namespace) -> int:
    """`histfs init [--encryption repokey|none] REPO`; without REPO, the
    repository --repo, $HISTFS_REPO or the configuration file names."""
    from histfs.passphrase import new_passphrase

    if args.path and args.repo:
        raise ConfigError("the repository is given twice: as REPO and with --repo")
    path = as_location(args.path) if args.path else repo_location(args)
    with Repository.init(path, args.encryption,
                         passphrase=lambda: new_passphrase(str(path), for_init=True),
                         endpoint=args.endpoint) as repo:
        how = "encrypted with a key in the repository, protected by your passphrase" \
            if repo.config.encrypted else "not encrypted"
        print(f"created histfs repository {repo.root} (format {repo.config.version}, {how})")
        if repo.config.encrypted:
            print("keep the passphrase safe, and a copy of the key: "
                  f"histfs key export --repo {repo.root} FILE")
    return EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    """`histfs copy --from SRC --to DST [--host H] [SNAPSHOT ...]`; without
    --from, the source is $HISTFS_REPO or the configuration file's."""
    from histfs.passphrase import from_environment, passphrase_for
    from writer.copy import copy_snapshots

    target_at = as_location(args.target)

    def target_passphrase() -> str:
        # Another repository may have another passphrase.
        return from_environment("HISTFS_TO_PASSPHRASE", "HISTFS_TO_PASSPHRASE_FILE") \
            or passphrase_for(str(target_at))

    source_at = as_location(args.source) if args.source else repo_location(args,
                                                                           option="--from")
    with open_repository(source_at) as source, \
            Repository.open(target_at, passphrase=target_passphrase) as target:
        quiet = args.json or not sys.stderr.isatty()
        result = copy_snapshots(source, target, args.host, args.snapshots or None,
                                say=(lambda s: None) if quiet else
                                (lambda s: print(s, file=sys.stderr)))
    if args.json:
        print(json.dumps({
            "copied": [f"{r.host}/{r.name}" for r in result.copied],
            "skipped": [f"{r.host}/{r.name}" for r in result.skipped],
            "chunks": result.chunks, "chunks_added": result.chunks_added,
            "bytes_added": result.bytes_added,
        }))
    else:
        print(f"copied {len(result.copied)} snapshot(s), {len(result.skipped)} already "
              f"there; {result.chunks_added} of {result.chunks} chunks were new "
              f"({result.bytes_added / 1e6:.1f} MB)")
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    """`histfs key export|import|change-passphrase`."""
    from histfs.passphrase import asked_for, new_passphrase
    from index.model.repository import import_key

    root = repo_location(args)
    if args.key_command == "import":
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
        import_key(root, data, passphrase=asked_for(root))
        print(f"key of {root} restored from {args.file}")
        return EXIT_OK
    with open_repository(root) as repo:
        if args.key_command == "export":
            _write_secret(args.file, repo.export_key())
            print(f"key of {root} written to {args.file} (still protected by the passphrase)")
        else:
            repo.change_passphrase(new_passphrase(str(root), for_init=False))
            print(f"passphrase of {root} changed")
    return EXIT_OK


def _write_secret(path: str, data: bytes) -> None:
    """A new file readable by its owner alone: the copy of a key is as
    secret as the passphrase that protects it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
