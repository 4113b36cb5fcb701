"""The ``ase-cartnet`` command line: one module per command, imported only when it runs.

``ase-cartnet --help`` builds one stub parser per command from :data:`COMMANDS`; only the
command named on the line is imported and given its full parser, so the help answers without
loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ase_cartnet import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("predict", "predict ADPs (thermal ellipsoids) of structures with CartNet"),
    "view": ("predict", "write an interactive 3D view (HTML, offline) of predicted ellipsoids"),
    "relax": ("relax", "one-shot pre-relaxation of crystals with DeepRelax (positions and cell)"),
    "denoise": ("denoise", "pull distorted lattices back toward stable ones with EMPNN"),
    "property": ("property", "predict a crystal property (formation energy, …) with CrysToGraph"),
    "train": ("train", "train a model with the shared training loop"),
    "phonon-ref": (
        "phonon",
        "harmonic reference ADPs (phonopy force constants, eqns 2-3) of a structure",
    ),
    "phonon-dataset": (
        "phonon",
        "build an ASE database of teacher-relaxed structures with harmonic ADPs",
    ),
    "teacher-pairs": (
        "teacher",
        "build an ASE database of (substituted prototype, teacher-relaxed) pairs for DeepRelax",
    ),
}
"""Command name → (module in this package, one-line help)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the uninformative ``None`` and ``False`` of optional flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subparsers all show their defaults, options without a help
    text included."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        default = kwargs.get("default")
        if kwargs.get("help") is None and default not in (None, False, argparse.SUPPRESS):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)


def add_command(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
    """The parser of command ``name``, with its help from :data:`COMMANDS`."""
    help_text = COMMANDS[name][1]
    kwargs.setdefault("description", help_text[0].upper() + help_text[1:] + ".")
    return subparsers.add_parser(name, help=help_text, **kwargs)


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the line: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``ase-cartnet`` parser: full options for the command in ``argv``, stubs for the rest."""
    parser = Parser(
        prog="ase-cartnet",
        description="CartNet ADPs and other crystal models behind ASE; harmonic reference ADPs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _command_in(argv)
    if chosen is not None:
        importlib.import_module(f"ase_cartnet.cli.{COMMANDS[chosen][0]}").register(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ase-cartnet`` console script.

    Exit status: 0 done; 1 some files of an ``--out-dir`` batch failed (each named), or the
    file system refused a read or write (``OSError``: disk full, …; one line); 2 bad input (the
    package's own errors, ``AseCartnetError``, and argparse's usage errors; one line; with
    several inputs the good ones are still done); 130 interrupted. Any other exception is a
    bug and shows its traceback.
    """
    from ase_cartnet.errors import AseCartnetError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AseCartnetError as exc:  # InputError, CheckpointError, CIFError: the input's fault
        print(f"ase-cartnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system's answer, not a bug of ours
        print(f"ase-cartnet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ase-cartnet {args.command}: interrupted", file=sys.stderr)
        return 130
