# Stage 01: simulated test sets with ground truth, and a figure of sample pairs.

rule simulate_datasets:
    input:
        nb="notebooks/01_simulate_datasets.ipynb",
    output:
        sets=directory(R / "data"),
        figure=report(R / "figures" / "simulated_pairs.png", category="01 simulated sets"),
        html=R / "notebooks" / "01_simulate_datasets.html",
    log:
        nb=R / "notebooks" / "01_simulate_datasets.ipynb",
    benchmark:
        R / "benchmarks" / "simulate_datasets.tsv"
    params:
        nb=lambda w, output: nb_params(
            profile=PROFILE,
            out_dir=str(Path(output.sets).resolve()),
            figure_path=str(Path(output.figure).resolve()),
            data_root=P.get("data_root"),
            test_sets=P["test_sets"],
            synthetic=P.get("synthetic", {}),
            seed=P["seeds"][0] if P.get("seeds") else 0,
            n_pairs_figure=P.get("sample_figure", {}).get("n_pairs", 3),
            tiles=P.get("sample_figure", {}).get("tiles", 8),
        ),
    threads: 1
    shell:
        NB_SHELL
