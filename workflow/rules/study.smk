# Stages 03-07: comparison, robustness, PDG statistics, ablation, report.

S = P.get("study", {})
BASELINES = {"fusion": S.get("fusion", ["average", "max", "LP", "GFF"]),
             "registration": S.get("registration", [["ECC", "GFF"], ["TV-L1", "GFF"], ["phase", "GFF"]])}
DATA = R / "data"
COMMON = dict(profile=PROFILE, seeds=SEEDS, limit=S.get("limit"))


def paths(**kw):
    return {k: str(Path(v).resolve()) for k, v in kw.items()}


rule compare:
    input:
        nb="notebooks/03_compare.ipynb",
        data=DATA,
        ck=checkpoints(list(S.get("compare", {}).values()) + ([S["fusion_only"]] if S.get("fusion_only") else [])),
    output:
        tables=[report(R / "tables" / f"{t}.md", category="03 comparison")
                for t in ("table1", "table2", "table3", "table5", "registration_accuracy",
                          "content_check", "nda_targets")],
        figure=report(R / "figures" / "qualitative_compare.png", category="03 comparison"),
        html=R / "notebooks" / "03_compare.html",
    log:
        nb=R / "notebooks" / "03_compare.ipynb",
    benchmark:
        R / "benchmarks" / "compare.tsv"
    params:
        nb=lambda w: nb_params(**COMMON, **paths(data_dir=DATA, checkpoint_dir=R / "checkpoints", out_dir=R),
                               runs=S.get("compare", {}), fusion_only_run=S.get("fusion_only"),
                               n_qualitative=S.get("n_qualitative", 2),
                               n_target_pairs=S.get("n_target_pairs", 8), external_root=str(Path("results/external").resolve()),
                               **BASELINES),
    threads: P.get("threads", 1)
    shell:
        NB_SHELL


rule robustness:
    input:
        nb="notebooks/04_robustness.ipynb",
        data=DATA,
        ck=checkpoints([S.get("robustness", "bsr_dilate5")] + list(S.get("robustness_extra", {}).values())),
    output:
        tables=[report(R / "tables" / f"{t}.md", category="04 robustness") for t in ("table6", "robustness_epe")],
        figures=[report(R / "figures" / f"{f}.png", category="04 robustness")
                 for f in ("robustness_epe", "robustness_levels")],
        html=R / "notebooks" / "04_robustness.html",
    log:
        nb=R / "notebooks" / "04_robustness.ipynb",
    benchmark:
        R / "benchmarks" / "robustness.tsv"
    params:
        nb=lambda w: nb_params(**COMMON, **paths(data_dir=DATA, checkpoint_dir=R / "checkpoints", out_dir=R),
                               run=S.get("robustness", "bsr_dilate5"), extra_runs=S.get("robustness_extra", {}),
                               registration=[r for r in BASELINES["registration"] if r[0] != "phase"]),
    threads: P.get("threads", 1)
    shell:
        NB_SHELL


rule pdg_statistics:
    input:
        nb="notebooks/05_pdg_statistics.ipynb",
        data=DATA,
        ck=checkpoints(list(S.get("pdg", {}).values())),
    output:
        table=report(R / "tables" / "pdg_high_response.md", category="05 PDG statistics"),
        figures=[report(R / "figures" / f"{f}.png", category="05 PDG statistics")
                 for f in ("pdg_high_response", "pdg_feature_maps")],
        html=R / "notebooks" / "05_pdg_statistics.html",
    log:
        nb=R / "notebooks" / "05_pdg_statistics.ipynb",
    benchmark:
        R / "benchmarks" / "pdg_statistics.tsv"
    params:
        nb=lambda w: nb_params(**COMMON, **paths(data_dir=DATA, checkpoint_dir=R / "checkpoints", out_dir=R),
                               runs=S.get("pdg", {}), threshold=S.get("pdg_threshold", 0.6)),
    threads: 1
    shell:
        NB_SHELL


rule ablation:
    input:
        nb="notebooks/06_ablation.ipynb",
        data=DATA,
        ck=checkpoints(list(S.get("ablation", {}).values())),
    output:
        tables=[report(R / "tables" / f"{t}.md", category="06 ablation") for t in ("table4", "ablation_all_metrics")],
        figure=report(R / "figures" / "ablation_qualitative.png", category="06 ablation"),
        html=R / "notebooks" / "06_ablation.html",
    log:
        nb=R / "notebooks" / "06_ablation.ipynb",
    benchmark:
        R / "benchmarks" / "ablation.tsv"
    params:
        nb=lambda w: nb_params(**COMMON, **paths(data_dir=DATA, checkpoint_dir=R / "checkpoints", out_dir=R),
                               runs=S.get("ablation", {}), n_qualitative=S.get("n_qualitative", 2)),
    threads: P.get("threads", 1)
    shell:
        NB_SHELL


# The stages a profile's study asks for (a study of a shipped model has no PDG or ablation runs).
STUDY_OUTPUTS = [rules.simulate_datasets.output.html] + [
    out for key, out in (("compare", rules.compare.output.html), ("robustness", rules.robustness.output.html),
                         ("pdg", rules.pdg_statistics.output.html), ("ablation", rules.ablation.output.html))
    if key in S]


rule report:
    input:
        nb="notebooks/07_report.ipynb",
        done=STUDY_OUTPUTS,
    output:
        report=report(R / "REPORT.md", category="07 report"),
        html=R / "notebooks" / "07_report.html",
    log:
        nb=R / "notebooks" / "07_report.ipynb",
    benchmark:
        R / "benchmarks" / "report.tsv"
    params:
        nb=lambda w: nb_params(profile=PROFILE, root=str(R.resolve()),
                                     profile_config=dict(P, command_line_override=OVERRIDE) if OVERRIDE else P),
    shell:
        NB_SHELL
