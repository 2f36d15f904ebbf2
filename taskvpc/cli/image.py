"""``taskvpc image``: the local agent's image store (``<state-dir>/agent/images``) from the shell.

taskvpc image import NAME[:TAG] SOURCE     rootfs directory, OCI layout or `docker save` tar
taskvpc image import-busybox [NAME[:TAG]]  the examples' image, from the host's busybox-static
taskvpc image pull NAME[:TAG]              from a registry, with skopeo
taskvpc image ls [--json]
taskvpc image rm NAME[:TAG]...
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskvpc.agent.helpformat import DefaultsHelpFormatter
from taskvpc.cli import config

if TYPE_CHECKING:  # the store is imported when a command runs: ``taskvpc --help`` stays quick
    from taskvpc.agent.images import Image, ImageStore

PROG = "taskvpc image"


def add_parser(commands: Any) -> None:
    """Adds ``image`` to the ``taskvpc`` subcommands (``commands`` is argparse's subparsers action)."""
    image = commands.add_parser(
        "image", help="import, pull, list and remove container images", formatter_class=DefaultsHelpFormatter
    )
    image.add_argument("--state-dir", type=Path, default=None, help="default: as for 'taskvpc up'")
    actions = image.add_subparsers(dest="image_command", required=True)
    fmt = DefaultsHelpFormatter

    imported = actions.add_parser(
        "import", help="store a rootfs directory, OCI layout or docker-archive tar", formatter_class=fmt
    )
    imported.add_argument("reference", metavar="NAME[:TAG]")
    imported.add_argument("source", type=Path, metavar="SOURCE")
    imported.add_argument(
        "--cmd", default=None, metavar="'COMMAND ARGS'", help="the command of a rootfs directory's image"
    )
    busybox = actions.add_parser(
        "import-busybox",
        help="store the examples' image, built from the host's busybox-static",
        formatter_class=fmt,
    )
    busybox.add_argument("reference", metavar="NAME[:TAG]", nargs="?", default="busybox:latest")

    pull = actions.add_parser(
        "pull", help="fetch an image from its registry (needs skopeo and network)", formatter_class=fmt
    )
    pull.add_argument("reference", metavar="NAME[:TAG]")
    pull.add_argument("--username", default=None)
    pull.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")

    listing = actions.add_parser("ls", help="list stored images", formatter_class=fmt)
    listing.add_argument("--json", action="store_true", help="one JSON document with every image")

    remove = actions.add_parser(
        "rm", help="remove references (an image in use stays until unused)", formatter_class=fmt
    )
    remove.add_argument("references", metavar="NAME[:TAG]", nargs="+")
    for parser in (imported, busybox, pull, listing, remove):  # accepted after the action too
        parser.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from taskvpc.agent.images import ImageError, ImageStore

    state_dir: Path = args.state_dir or config.default_state_dir()
    store = ImageStore(state_dir / "agent" / "images")
    try:
        return _ACTIONS[args.image_command](store, args)
    except ImageError as error:
        print(f"{PROG} {args.image_command}: {error}", file=sys.stderr)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"{PROG} {args.image_command}: {where}{error.strerror or error}", file=sys.stderr)
    return 1


def _import(store: ImageStore, args: argparse.Namespace) -> int:
    from taskvpc.agent.images import ImageConfig

    image_config = ImageConfig(cmd=tuple(shlex.split(args.cmd))) if args.cmd else None
    _report("imported", store.import_source(args.reference, args.source, image_config))
    return 0


def _import_busybox(store: ImageStore, args: argparse.Namespace) -> int:
    from taskvpc.agent.images.busybox import CONFIG, build_rootfs

    with tempfile.TemporaryDirectory(prefix="taskvpc-busybox-") as scratch:
        rootfs = build_rootfs(Path(scratch) / "rootfs")
        _report("imported", store.import_source(args.reference, rootfs, CONFIG))
    return 0


def _pull(store: ImageStore, args: argparse.Namespace) -> int:
    credentials = None
    if args.password_stdin:
        if not args.username:
            print(f"{PROG} pull: --password-stdin needs --username", file=sys.stderr)
            return 2
        credentials = (args.username, sys.stdin.readline().rstrip("\n"))
    _report("pulled", store.pull(args.reference, credentials))
    return 0


def _list(store: ImageStore, args: argparse.Namespace) -> int:
    from taskvpc.agent.images.store import describe

    images = store.list()
    if args.json:
        print(json.dumps([describe(image) for image in images], indent=2))
        return 0
    rows = [("NAME", "IMAGE ID", "DIGEST", "LAYERS")]
    for image in images:
        summary = describe(image)
        rows.append((summary["name"], _short(image.id), image.digest, str(len(image.layers))))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


def _remove(store: ImageStore, args: argparse.Namespace) -> int:
    missing = 0
    for reference in args.references:
        if store.remove(reference):
            print(f"removed {reference}")
        else:
            print(f"{PROG} rm: no image {reference} here", file=sys.stderr)
            missing += 1
    kept = store.kept_images()
    if kept:
        print(f"kept while containers use them: {', '.join(_short(i) for i in kept)}", file=sys.stderr)
    return 1 if missing else 0


def _report(verb: str, image: Image) -> None:
    from taskvpc.agent.images import parse_reference

    print(f"{verb} {parse_reference(image.reference).familiar} ({image.digest})")


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


_ACTIONS = {
    "import": _import,
    "import-busybox": _import_busybox,
    "pull": _pull,
    "ls": _list,
    "rm": _remove,
}
