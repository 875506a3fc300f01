"""The `reidplug extract`, `query` and `export` commands: using a trained model (thin wrappers over reid.deploy)."""

from __future__ import annotations

import sys

import click

from reidplug.core.hookspecs import hookimpl

CONFIG = click.argument("config", type=click.Path(dir_okay=False))
OVERRIDES = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
FLIP = click.option("--flip/--no-flip", default=None,
                    help="Average each feature with the mirrored image's (default: TEST.FLIP.ENABLED).")
BATCH = click.option("--batch-size", type=int, default=None, help="Images per batch (default: TEST.IMS_PER_BATCH).")
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


@click.command("extract", short_help="Write the features of images to a .npz file.")
@CONFIG
@OVERRIDES
@click.option("-i", "--input", "source", required=True, metavar="DIR|GLOB|LIST.txt",
              help="A folder of images, a glob pattern (quote it), a text file with one path per line, or one image.")
@click.option("-o", "--output", required=True, metavar="FILE.npz", help="Where to write the features.")
@BATCH
@FLIP
@QUIET
def extract(config, overrides, source, output, batch_size, flip, quiet):
    """Features of images from a trained model (MODEL.WEIGHTS=...), written to a .npz file.

    The file holds `features` (N x D, float32) and `paths`, plus `pids` and `camids`
    when every file name follows Market-1501's `<pid>_c<cam>...` pattern.
    """
    from reidplug.reid.deploy.extract import extract_to_file

    done = extract_to_file(config, list(overrides), source, output, batch_size=batch_size, flip=flip,
                           progress=not quiet)
    ids = "; pids and camids from the file names" if done["ids"] else ""
    flip = "on" if done["flip"] else "off"
    click.echo(f"features of {_count(done['images'], 'image')} ({done['dim']}-d, flip {flip}) "
               f"from {done['weights']} -> {done['output']}{ids}")


@click.command("query", short_help="Rank a gallery for query images: PNG rows and JSON.")
@CONFIG
@OVERRIDES
@click.option("--query", "query_source", required=True, metavar="IMG|DIR",
              help="One query image, a folder of them (or a glob pattern or list file).")
@click.option("--gallery", required=True, metavar="DIR",
              help="The images to rank (a folder, a glob pattern or a list file).")
@click.option("--topk", type=int, default=10, show_default=True, help="Gallery images shown per query.")
@click.option("--rerank/--no-rerank", default=None, help="k-reciprocal re-ranking (default: TEST.RERANK.ENABLED).")
@click.option("-o", "--output", default=None, metavar="DIR",
              help="Where to write the PNG rank lists and rank_lists.json (default: OUTPUT_DIR/query).")
@BATCH
@FLIP
@QUIET
def query(config, overrides, query_source, gallery, topk, rerank, output, batch_size, flip, quiet):
    """Rank a gallery for each query image: one PNG per query (green right, red wrong where ids are known) and JSON."""
    from reidplug.reid.deploy.query import run_query

    done = run_query(config, list(overrides), query_source, gallery, output, topk=topk, rerank=rerank, flip=flip,
                     batch_size=batch_size, progress=not quiet)
    hits = f"; rank-1 correct for {done['rank1_hits']} of {done['queries']}" if done["rank1_hits"] is not None else ""
    click.echo(f"rank lists of {_count(done['queries'], 'query', 'queries')} against {done['gallery']} gallery images"
               f"{' (re-ranked)' if done['rerank'] else ''} -> {done['output']} "
               f"({_count(len(done['images']), 'PNG file')} and {done['json']}){hits}")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


@click.command("export", short_help="Export to ONNX or TorchScript, checked against PyTorch.")
@CONFIG
@OVERRIDES
@click.option("-f", "--format", "fmt", required=True, metavar="onnx|torchscript", help="The file format.")
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the model.")
@click.option("--dynamic-batch", is_flag=True, help="Accept any batch size (default: exactly --batch-size images).")
@click.option("--fp16", is_flag=True, help="Half-precision weights and compute (input and output stay float32).")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="The batch size of a fixed-batch file, and of the latency measurement.")
@click.option("--samples", default=None, metavar="DIR|GLOB|LIST.txt",
              help="Images for the check against PyTorch (default: 8 random images).")
@FLIP
def export(config, overrides, fmt, output, dynamic_batch, fp16, batch_size, samples, flip):
    """Export a trained model (MODEL.WEIGHTS=...) to ONNX or TorchScript, then check it against PyTorch.

    \b
    The file takes a float32 NCHW batch of RGB images resized to INPUT.SIZE_TEST,
    pixel values 0..255 (normalisation is inside), and returns the features that
    `reidplug extract` writes. Exits with 1 when the check fails.
    """
    from reidplug.reid.deploy.export import export_model

    report = export_model(config, list(overrides), fmt, output, dynamic_batch=dynamic_batch, fp16=fp16,
                          batch_size=batch_size, samples=samples, flip=flip, echo=click.echo)
    if not report["ok"]:
        click.echo(f"error: {report['output']}: the exported model does not match PyTorch "
                   f"(difference {report['max_diff']:.2e} > {report['tolerance']:.0e}); do not deploy it", err=True)
        sys.exit(1)  # not a user error (2): the exporter produced a wrong file


@hookimpl
def register_commands(cli):
    for command in (extract, query, export):
        cli.add_command(command)
