"""The `reidplug data` commands: generate the synthetic dataset, inspect a dataset folder."""

from __future__ import annotations

import click

from reidplug.core.hookspecs import hookimpl
from reidplug.core.plural import plural


@click.group("data")
def data() -> None:
    """Datasets: generate the synthetic one, inspect a folder."""


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder to create (Market-1501 layout)")
@click.option("--ids", default=120, show_default=True, type=click.IntRange(2, 9999), help="identities, half for training")
@click.option("--cams", default=6, show_default=True, type=click.IntRange(2, 9), help="cameras")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--height", default=128, show_default=True, type=click.IntRange(16, None))
@click.option("--width", default=64, show_default=True, type=click.IntRange(8, None))
@click.option("--quiet", is_flag=True, help="no progress output")
def synth(out: str, ids: int, cams: int, seed: int, height: int, width: int, quiet: bool) -> None:
    """Generate the synthetic Re-ID dataset into OUT and print its splits."""
    from reidplug.reid.data.datasets.market1501 import Market1501
    from reidplug.reid.data.synthetic import generate

    if not quiet:  # at once: the imports and the first images take a while
        click.echo(f"synthetic set {out}: {plural(ids, 'identity', 'identities')}, {cams} cameras, seed {seed}, "
                   f"{height}x{width}", err=True)
    generate(out, ids=ids, cams=cams, seed=seed, height=height, width=width, progress=not quiet)
    dataset = Market1501(out, num_cameras=cams)
    dataset.name = "SyntheticMarket"
    click.echo(dataset.summary())


@data.command("show")
@click.argument("root", type=click.Path())
@click.option("--name", default="Market1501", show_default=True, help="dataset name (any registered dataset)")
@click.option("--verify", is_flag=True, help="also open and decode every image")
def show(root: str, name: str, verify: bool) -> None:
    """Read the dataset at ROOT and print its splits."""
    from reidplug.core.manager import registry
    from reidplug.reid.data.synthetic import META_FILE, read_meta

    meta = read_meta(root)
    synthetic = name.lower() in ("syntheticmarket", "synthetic")
    if synthetic and meta is None:
        from reidplug.core.errors import DataError

        raise DataError(f"{root}: not a generated synthetic dataset (no {META_FILE}); make one with `reidplug data synth --out {root}`")
    if meta is not None and (synthetic or name.lower() in ("market1501", "market")):
        # a generated folder: Market-1501 files, with as many cameras as it was made with
        from reidplug.reid.data.datasets.market1501 import Market1501

        dataset = Market1501(root, num_cameras=meta["params"]["cams"])
        dataset.name = "SyntheticMarket"
    else:
        dataset = registry("dataset").get(name, config_key="--name")(root)
    click.echo(dataset.summary())
    if verify:
        count = dataset.verify()
        click.echo(f"{plural(count, 'image')} decoded")


@hookimpl
def register_commands(cli):
    cli.add_command(data)
