"""Key names and values of FastReID releases before its HEAD, read as the ones they became.

FastTune's configs/search_trial.yml, and files written for FastReID 1.0-1.3, use
them. FastReID's HEAD loader refuses those files; reidplug reads each old key as
the HEAD key of the same meaning, so they run unchanged. A file that sets both an
old key and its new one keeps the new one. docs/fastreid.md lists the renames.
"""

from __future__ import annotations

from typing import Any

# old dotted key -> the HEAD key with the same meaning and value
RENAMED = {
    "INPUT.DO_AUTOAUG": "INPUT.AUTOAUG.ENABLED",
    "INPUT.DO_PAD": "INPUT.PADDING.ENABLED",
    "INPUT.PADDING_MODE": "INPUT.PADDING.MODE",
    "INPUT.DO_FLIP": "INPUT.FLIP.ENABLED",
    "INPUT.FLIP_PROB": "INPUT.FLIP.PROB",
    "SOLVER.FP16_ENABLED": "SOLVER.AMP.ENABLED",
    "SOLVER.AMP_ENABLED": "SOLVER.AMP.ENABLED",
}

# Old spellings of classifier and pooling names (FastReID 1.x compared lower-camel strings).
VALUES = {
    "MODEL.HEADS.CLS_LAYER": {"linear": "Linear", "arcSoftmax": "ArcSoftmax", "circleSoftmax": "CircleSoftmax",
                              "amSoftmax": "CosSoftmax", "cosSoftmax": "CosSoftmax"},
    "MODEL.HEADS.POOL_LAYER": {"avgpool": "GlobalAvgPool", "fastavgpool": "FastGlobalAvgPool",
                               "maxpool": "GlobalMaxPool", "gempool": "GeneralizedMeanPooling",
                               "gempoolP": "GeneralizedMeanPoolingP", "identity": "Identity"},
}


def upgrade(data: dict) -> None:
    """Rewrite old keys and values of `data` (one file's mapping) in place into HEAD form."""
    inp = data.get("INPUT")
    if isinstance(inp, dict) and isinstance(inp.get("PADDING"), int) and not isinstance(inp["PADDING"], bool):
        # FastReID 1.x: INPUT.PADDING was the pad size; at HEAD it is a section.
        inp["PADDING"] = {"SIZE": inp["PADDING"]}
    for old, new in RENAMED.items():
        _move(data, old, new)
    loader = data.get("DATALOADER")
    if isinstance(loader, dict) and ("PK_SAMPLER" in loader or "NAIVE_WAY" in loader):
        # 1.x chose the sampler with two switches (defaults: identity sampling, balanced);
        # HEAD names it in DATALOADER.SAMPLER_TRAIN.
        pk, naive = loader.pop("PK_SAMPLER", True), loader.pop("NAIVE_WAY", False)
        name = ("NaiveIdentitySampler" if naive else "BalancedIdentitySampler") if pk else "TrainingSampler"
        loader.setdefault("SAMPLER_TRAIN", name)
    for key, table in VALUES.items():
        section = _section(data, key.split(".")[:-1])
        leaf = key.rsplit(".", 1)[1]
        if section is not None and isinstance(section.get(leaf), str) and section[leaf] in table:
            section[leaf] = table[section[leaf]]


def _section(data: dict, parts: list[str]) -> dict | None:
    node: Any = data
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _move(data: dict, old: str, new: str) -> None:
    *parents, leaf = old.split(".")
    section = _section(data, parents)
    if section is None or leaf not in section:
        return
    value = section.pop(leaf)
    *new_parents, new_leaf = new.split(".")
    node = data
    for part in new_parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node.setdefault(new_leaf, value)


def upgrade_override(key: str, value: Any) -> tuple[str, Any]:
    """A command-line `KEY=VALUE` with an old key or value in HEAD form."""
    key = RENAMED.get(key, key)
    table = VALUES.get(key)
    if table and isinstance(value, str):
        value = table.get(value, value)
    return key, value
