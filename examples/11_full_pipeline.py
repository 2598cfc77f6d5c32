# %% [markdown]
# # 11 - The whole of SpikeBERT on a real task: teacher, stage 1, stage 2, energy
#
# **What you will learn:** how the pieces of examples 05-10 fit together in one run, the same
# code as `python -m minispike run`: what each stage writes (config.json, log.jsonl,
# checkpoints/best, metrics.json), how the model of each stage is selected on the dev split,
# and how the test split is used once, at the end.
#
# **What you should know first:** examples 08 (stage 1), 09 (stage 2) and 10 (energy).
#
# **Time:** fast (`--fast`) about 17 s, full about 150 s of CPU time on one core (6 steps a
# stage (checks the plumbing, not the accuracy) or the built-in plan's epochs; with
# all-MiniLM-L6-v2 installed); measured on a 2-core machine shared with other jobs, where the
# wall-clock time was 6 to 10 times longer (examples/README.md)
#
# A downloaded task takes hours on a CPU unless `--budget N` caps every stage at N steps.
#
#     0. fine-tune the BERT teacher (all-MiniLM-L6-v2) on the task        pipeline.finetune_teacher
#     1. stage 1: the student's blocks imitate the plain teacher on        pipeline.pretrain
#        unlabelled text (the task's training sentences)                   (example 08)
#     2. stage 2: the student, started from stage 1, imitates the          pipeline.distill
#        fine-tuned teacher on the training set + augmented copies         (example 09)
#     3. energy of student and teacher on the test split                   pipeline.energy_report (example 10)
#
# Tasks: `builtin` (292 sentences shipped with minispike, no download) or a downloaded task
# (sst2, sst5, mr, subj, chnsenti, waimai; `python -m minispike download TASK`) in `--data-dir`:
#
#     python examples/11_full_pipeline.py --task sst2 --data-dir ../shared/data --budget 300
#
# Options: `--task`, `--data-dir`, `--budget`, `--teacher`, `--max-length` (cell by cell:
# `MINISPIKE_TASK`, `MINISPIKE_DATA_DIR`, `MINISPIKE_BUDGET`, `MINISPIKE_TEACHER`, `MINISPIKE_MAX_LENGTH`).
# Read next: docs/overview.md, docs/distillation.md, docs/results.md.

# %%
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

from minispike.pipeline import (PipelineError, RunPlan, StageConfig, demo_plan, make_small_teacher,  # noqa: E402
                                resolve_teacher, run)
from minispike.text import builtin_texts, get_task  # noqa: E402

args = _shared.options(
    "11 - The whole of SpikeBERT on a real task: teacher, stage 1, stage 2, energy.",
    ("--task", {"default": "builtin", "help": "builtin (default), sst2, sst5, mr, subj, chnsenti, waimai"}),
    ("--data-dir", {"default": None, "help": "where downloaded tasks live (not needed for builtin)"}),
    ("--budget", {"type": int, "default": None, "help": "at most this many optimiser steps per stage"}),
    ("--teacher", {"default": None, "help": "a BERT checkpoint directory (default: the installed MiniLM)"}),
    ("--max-length", {"type": int, "default": None, "help": "token limit (default 32 builtin, 64 otherwise)"}),
    out_help="output folder (runs go in 11_run/)", fast_help="6 steps per stage: checks the plumbing, not the accuracy")
OUT = Path(args.out)
FIGURES = ["11_full_pipeline_energy.png", "11_full_pipeline_stage2.png"]  # what this example writes into OUT

# %% [markdown]
# ## 1. The plan: settings per stage
#
# The built-in task uses the demo's sizes; a real task the plan's defaults, capped by `--budget`.

# %%
def make_plan(task, budget, fast, pretrained=True):
    """Settings per stage. The built-in task uses the demo's sizes; real tasks the plan's defaults."""
    steps = 6 if fast else budget
    if task == "builtin":  # the demo's stages, without its PCA start and labels-only twin
        return dataclasses.replace(demo_plan(pretrained, fast, budget), direct_baseline=False,
                                   embedding_init="random")
    plan = RunPlan(stage1_sentences=2000 if fast else None, augment_copies=1 if fast else 10)
    for t in (plan.teacher_train, plan.stage1_train, plan.stage2_train):
        t.max_steps = steps
        t.eval_every = min(t.eval_every or 200, steps) if steps else t.eval_every
    if fast:
        plan.student_overrides = {"dim": 128, "depth": 2, "heads": 4}
    return plan


try:
    task = get_task(args.task).name
except Exception as e:
    sys.exit(f"error: {e}")
run_dir = OUT / "11_run" / task
# overwrite=True: running the example again moves the previous run aside (to builtin.old-<date-time>)
cfg = StageConfig(task=task, data_dir=args.data_dir, quiet=False, overwrite=True,
                  max_length=args.max_length or (32 if task == "builtin" else 64))
teacher = args.teacher
try:
    pretrained = resolve_teacher(teacher) is not None
except PipelineError as e:
    sys.exit(f"error: {e}")
if not pretrained and task == "builtin":  # no MiniLM: a small BERT with a vocabulary of the built-in text
    teacher = make_small_teacher(OUT / "11_small_teacher", builtin_texts())
    print(f"note: all-MiniLM-L6-v2 is not installed: using a small random BERT ({teacher}) as the teacher")
plan = make_plan(task, args.budget, args.fast, pretrained)
print(f"task {task}; runs in {run_dir}; steps per stage: "
      f"{'6 (--fast)' if args.fast else args.budget or 'the plan epochs'}")

# %% [markdown]
# ## 2. Run every stage (`minispike.pipeline.run`, the same as `python -m minispike run`)

# %%
t0 = time.perf_counter()
try:
    summary = run(str(run_dir), cfg, plan, teacher=teacher)
except PipelineError as e:  # missing data, missing teacher, ...: one line, no traceback
    sys.exit(f"error: {e}")
wall = time.perf_counter() - t0

# %% [markdown]
# ## 3. The summary (also in `summary.json`)

# %%
te, s1, s2, en = summary["teacher"], summary.get("stage1"), summary["stage2"], summary["energy"]
print("=================== summary ===================")
print(f"task {task}, {wall:.0f} s in all")
print(f"  teacher  (BERT, fine-tuned)     dev {te['dev_accuracy']:.3f}  test {te['test_accuracy']:.3f}  "
      f"({te['steps']} steps)")
if s1:
    print(f"  stage 1  (features, embedding)  held-out loss {s1['held_out_loss']:.4f}  ({s1['steps']} steps, "
          f"{s1['sentences']} sentences)")
print(f"  stage 2  (SpikeBERT student)    dev {s2['dev_accuracy']:.3f}  test {s2['test_accuracy']:.3f}  "
      f"({s2['steps']} steps, {s2['train_sentences']} + {s2['augmented_sentences']} augmented sentences)")
print(f"  energy per test sentence: student {en['student_mj']:.4g} mJ, teacher {en['teacher_mj']:.4g} mJ, "
      f"ratio {en['ratio']:.4f}" + (f" (strict rule: {en['ratio_strict']:.4f})" if "ratio_strict" in en else ""))
print(f"  files: {run_dir / 'summary.json'}, {run_dir / 'energy.txt'}, */log.jsonl, */checkpoints/best")
if args.fast:
    print("  (--fast: 6 steps a stage, so the accuracies are near chance; drop --fast for a real run)")

# %% [markdown]
# ## 4. The pictures: energy per layer, and the stage-2 training curves

# %%
if _shared.pyplot() is not None:
    from minispike import plot
    teacher_energy = run_dir / "energy_teacher.json"
    print(f"saved {plot.energy_breakdown(run_dir / 'energy.json', OUT, filename='11_full_pipeline_energy', teacher=teacher_energy if teacher_energy.is_file() else None)}")
    log = plot.read_log(run_dir / "stage2" / "log.jsonl")
    print(f"saved {plot.training_curves(log, OUT, title=f'stage 2 on {task}', filename='11_full_pipeline_stage2')}")
