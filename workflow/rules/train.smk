# Stage 02: one training run per (run, seed) the study needs.


def run_config(run, seed):
    """The complete training config of one run: profile `train` + the run's overrides + seed."""
    if run not in P.get("runs", {}):
        raise ValueError(f"profile {PROFILE!r} has no run {run!r} (define it under `runs:`)")
    cfg = deep_merge(P.get("train", {}), P["runs"][run])
    cfg["seed"] = int(seed)
    if P.get("data_root") and isinstance(cfg.get("data"), dict) and cfg["data"].get("name") != "synthetic":
        cfg["data"].setdefault("root", P["data_root"])
    return cfg


def check_runs():
    """Every run's training config, validated by bsr.training before any job starts."""
    from bsr.training import TrainConfig

    for run in P.get("runs", {}):
        try:
            TrainConfig.from_dict(run_config(run, SEEDS[0] if SEEDS else 0))
        except (ValueError, TypeError) as e:
            raise ValueError(f"profile {PROFILE!r}, run {run!r} (train + runs.{run}): {e}") from None


check_runs()


def run_steps(run):
    """Training steps of a run (both phases; an epoch budget counts as 1000 steps an epoch)."""
    cfg = run_config(run, SEEDS[0] if SEEDS else 0)
    phases = [cfg.get(k) or {} for k in ("phase1", "phase2")]
    return int(sum(p.get("steps") if p.get("steps") is not None else 1000 * (p.get("epochs") or 0)
                   for p in phases))


def checkpoint(run, seed):
    """A run's final checkpoint; ``pretrained:<name>`` is a shipped model (bsr.pretrained), trained by no rule."""
    from bsr.pretrained import weights_path
    from bsr.study.sets import pretrained_name

    if pretrained_name(run) is not None:
        return weights_path(pretrained_name(run))
    return R / "checkpoints" / run / f"seed{seed}" / "final.pt"


def checkpoints(runs):
    return [checkpoint(r, s) for r in sorted(set(runs)) for s in SEEDS]


rule train:
    input:
        nb="notebooks/02_train_bsr.ipynb",
    output:
        ck=R / "checkpoints" / "{run}" / "seed{seed}" / "final.pt",
        html=R / "notebooks" / "02_train_bsr" / "{run}_seed{seed}.html",
    log:
        nb=R / "notebooks" / "02_train_bsr" / "{run}_seed{seed}.ipynb",
    benchmark:
        R / "benchmarks" / "train_{run}_seed{seed}.tsv"
    params:
        nb=lambda w: nb_params(
            out_dir=str((R / "checkpoints" / w.run / f"seed{w.seed}").resolve()),
            train_config=run_config(w.run, w.seed),
        ),
    # the longest trainings start first, so that no long job is left alone at the end
    priority: lambda w: run_steps(w.run)
    threads: P.get("threads", 1)
    resources:
        gpu=lambda w: 1 if P.get("device") in ("cuda", "auto") and P["profile"] != "quick" else 0,
    shell:
        NB_SHELL
