"""Command line: ``builtup generate-demo | make-sheet | export-tile | train | fetch-weights``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builtup.config.encoders import LIBRARIES, weights_file, weights_name
from builtup.config.sheet import scan_unosat
from builtup.core.errors import InputError
from builtup.demo import generator as demo
from builtup.prepare.tiles import TileSet, export_tile


def _generate(args) -> None:
    demo.generate(
        args.root,
        seed=args.seed,
        size=args.size,
        train=args.train,
        test=args.test,
        acquisitions_per_city=args.acquisitions,
        test_acquisitions=args.test_acquisitions,
        label_style=args.labels,
    )


def _make_sheet(args) -> None:
    sheet = scan_unosat(args.root, relative_to=args.relative_to)
    text = sheet.to_csv(sep="\t", index=False)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)


def _export_tile(args) -> None:
    export_tile(TileSet.in_folder(args.tiles), args.index, args.output, args.mask)


def _train(args) -> None:
    import logging

    from builtup.train.data import stacks_under
    from builtup.train.loop import train
    from builtup.train.names import load_experiment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results = Path(args.results)
    fold = results / "folds" / args.fold
    experiment = load_experiment(args.experiment)
    out = Path(args.out or results / "models" / experiment.name / args.fold)
    model = experiment.model
    fetched = Path(weights_file(model.architecture, model.encoder, "resources/weights"))
    train(
        experiment,
        fold / "summary.json",
        fold / "tiles.tsv",
        stacks_under(results / "tiles"),
        out,
        workers=args.workers,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        max_epochs=args.max_epochs,
        mlruns=results / "mlruns",
        weights_file=fetched if model.encoder_weights == "imagenet" and fetched.is_file() else None,
    )


def _fetch_weights(args) -> None:
    from builtup.train.weights import fetch_weights

    out = args.output or f"resources/weights/{weights_name(args.library, args.encoder)}"
    summary = fetch_weights(args.library, args.encoder, out)
    print(f"{summary['path']}: sha256 {summary['sha256']} (from {summary['source']})")


def _count(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            upper = f"..{high}" if high is not None else " or more"
            raise argparse.ArgumentTypeError(f"{text} is not in {low}{upper}")
        return value

    parse.__name__ = "count"
    return parse


def _counts(text: str) -> int | tuple[int, int]:
    """An argparse type: a number of acquisitions (1 or more), or a range such as 2-6."""
    low, _, high = text.partition("-")
    count = _count(1)
    if not high:
        return count(low)
    bounds = count(low), count(high)
    if bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError(f"{text} is an empty range")
    return bounds


_counts.__name__ = "count or range"


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in one line naming the command, like every other user error."""

    def error(self, message):
        self.exit(2, f"ERROR: {self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="builtup", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate-demo", help="write the synthetic UNOSAT-like data set")
    g.add_argument("root", help="output folder, e.g. resources/demo")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--size",
        type=_count(64, demo.FULL_SIZE),
        default=1024,
        help=f"scene side in pixels, up to {demo.FULL_SIZE} (a whole Sentinel-2 tile)",
    )
    g.add_argument("--train", type=_count(1, 4), default=4, help="training cities (1 to 4)")
    g.add_argument("--test", type=_count(0, 4), default=2, help="test cities (0 to 4)")
    g.add_argument(
        "--acquisitions",
        type=_counts,
        default=2,
        help="acquisitions per city: a number (1 or more), or a range such as 2-6 drawn per "
        "city by seed, where an acquisition may repeat the previous date",
    )
    g.add_argument(
        "--test-acquisitions",
        type=_counts,
        help="the test cities' acquisitions, when they differ (same forms)",
    )
    g.add_argument(
        "--labels",
        choices=demo.LABEL_STYLES,
        default="districts",
        help="label polygons: districts (blocks merged with their streets, as UNOSAT drew "
        "them) or blocks (each block without its streets)",
    )
    g.set_defaults(func=_generate)

    s = sub.add_parser("make-sheet", help="scenes sheet from a folder in the UNOSAT layout")
    s.add_argument("root", help="data folder holding <City>_2015 folders")
    s.add_argument("-o", "--output", help="sheet to write (default, or -: standard output)")
    s.add_argument(
        "--relative-to",
        help="write paths under this folder relative to it, others absolute "
        "(default: the working directory)",
    )
    s.set_defaults(func=_make_sheet)

    e = sub.add_parser("export-tile", help="write one training tile as a GeoTIFF")
    e.add_argument("tiles", help="tile folder, e.g. results/tiles/38SLF_Mosul/20150108_DES")
    e.add_argument("index", type=int, help="tile number (column 'tile' of stats.tsv)")
    e.add_argument("output", help="GeoTIFF to write (3 bands)")
    e.add_argument("--mask", help="also write the tile's mask to this GeoTIFF")
    e.set_defaults(func=_export_tile)

    t = sub.add_parser("train", help="train (or resume) one experiment on one fold by hand")
    t.add_argument("experiment", help="experiment file, e.g. config/experiments/demo.yaml")
    t.add_argument("--fold", required=True, help="held-out city, or 'all'")
    t.add_argument("--results", default="results", help="results folder of the workflow")
    t.add_argument("--out", help="model folder (default results/models/<experiment>/<fold>)")
    t.add_argument("--workers", type=int, default=2, help="data loader processes")
    t.add_argument("--accelerator", help="override the experiment: cpu, gpu, auto")
    t.add_argument("--devices", type=int, help="override the experiment's device count")
    t.add_argument("--strategy", help="override the experiment's strategy (e.g. ddp)")
    t.add_argument("--max-epochs", type=int, help="override the experiment's epochs")
    t.set_defaults(func=_train)

    w = sub.add_parser(
        "fetch-weights",
        help="download an encoder's ImageNet weights into a file (and its .sha256), "
        "to copy to a machine without network",
    )
    w.add_argument("library", choices=LIBRARIES, help="smp encoder, or timm model")
    w.add_argument("encoder", help="encoder name, e.g. se_resnext50_32x4d")
    w.add_argument(
        "-o", "--output", help="default resources/weights/<library>-<encoder>-imagenet.pth"
    )
    w.set_defaults(func=_fetch_weights)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # an unwritable output, a folder where a file is expected
        where = f"{err.filename}: " if err.filename else ""
        print(f"ERROR: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
