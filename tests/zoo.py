"""The project's model-zoo recipes (configs/) and the FastReID file (tests/fastreid_configs/) each mirrors.

tests/test_fastreid_tier.py validates them and checks that each resolves to its FastReID twin key for
key; tests/test_shipped_configs.py leaves them to that tier.
"""

ZOO_TWINS = {"Base-AGW.yml": "Base-AGW.yml", "Base-SBS.yml": "Base-SBS.yml", "Base-MGN.yml": "Base-MGN.yml"}
for _ours, _theirs in (("market1501", "Market1501"), ("dukemtmc", "DukeMTMC"), ("msmt17", "MSMT17")):
    for _name in ("bagtricks_R50-ibn", "bagtricks_R101-ibn", "bagtricks_S50", "AGW_R50", "AGW_R50-ibn", "sbs_R50",
                  "sbs_R50-ibn", "mgn_R50-ibn"):
        ZOO_TWINS[f"{_ours}/{_name}.yml"] = f"{_theirs}/{_name}.yml"
