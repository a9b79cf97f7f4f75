"""Comparison studies end to end: `pcd compare` on a generated image folder (flags) and on
digits (--spec, with an ablation entry), a local Ray, the local MLflow store read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from service.study_files import EXPERIMENT, LocalMlflowStore, StudyFolder, Tags

from .conftest import cli_env, run_cli


def _env(store: Path) -> dict[str, str]:
    return cli_env(store)


def _image_folder(root: Path) -> Path:
    """train/ and test/ of four classes of gray 12x12 images (a stripe per class, noise)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 10)):
        for ci, cls in enumerate(("a", "b", "c", "d")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 120, (12, 12), dtype=np.uint8)
                arr[:, ci * 3 : ci * 3 + 3] = 200
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _runs(store: Path) -> tuple[list, list]:
    client = MlflowClient(LocalMlflowStore(store).uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    parents = [r for r in runs if Tags.PARENT_RUN not in r.data.tags]
    return parents, [r for r in runs if Tags.PARENT_RUN in r.data.tags]


@pytest.fixture(scope="module")
def image_comparison(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("compare")
    folder, store, out = _image_folder(tmp / "images"), tmp / "store", tmp / "study"
    args = [
        "compare", "--data", "image_folder", "--data-root", folder, "--student", "mlp_32",
        "--teacher-arch", "mlp_32", "--teacher-epochs", 2, "--methods", "ce,kd,pcd",
        "--seeds", 2, "--trials", 2, "--epochs", 2, "--out", out, "--json", "--num-cpus", 2,
    ]  # fmt: skip
    proc = run_cli([str(a) for a in args], _env(store), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "store": store, "json": json.loads(proc.stdout), "stderr": proc.stderr}


def test_pcd_compare_runs_end_to_end(image_comparison: dict) -> None:
    # Tune's console box (with its 10000-trial ceiling) stays out of the driver's output
    assert "Number of trials" not in image_comparison["stderr"]
    summary = StudyFolder(image_comparison["out"]).read_summary()
    assert summary is not None and summary.comparison is not None
    result = summary.comparison
    assert image_comparison["json"]["comparison"]["reference"] == result.reference == "pcd"
    assert [e.name for e in result.entries] == ["ce", "kd", "pcd"]
    for entry in result.entries:
        assert entry.seeds == [0, 1] and len(entry.test_top1_best_val) == 2
        assert len(entry.test_top1_last) == 2 and len(entry.hard_top1) == 2
        if entry.name == "pcd":
            assert entry.vs_reference is None
        else:
            d = entry.vs_reference
            assert d is not None and d.n == 2 and d.ci95 is not None
            assert d.verdict in ("no clear difference", f"{entry.name} better", "pcd better")
    assert result.entry("ce").tuning == "nothing to tune" and result.entry("ce").trials == 0
    assert result.hard_classes and len(result.hard_class_names) == len(result.hard_classes)
    assert set(result.hard_class_names) <= {"a", "b", "c", "d"}
    assert (
        "search kd" in image_comparison["stderr"]
        and "seeds (2 per entry)" in (image_comparison["stderr"])
    )


def test_mlflow_has_one_parent_with_trials_seed_runs_and_plot(image_comparison: dict) -> None:
    parents, children = _runs(image_comparison["store"])
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags[Tags.STUDY_KIND] == "comparison"
    assert {c.data.tags[Tags.PARENT_RUN] for c in children} == {parent.info.run_id}
    seed_runs = [c for c in children if c.data.tags.get(Tags.SEED_RUN) == "true"]
    trials = [c for c in children if Tags.TRIAL_ID in c.data.tags]
    assert sorted(c.info.run_name for c in seed_runs) == sorted(
        f"{e} seed {s}" for e in ("ce", "kd", "pcd") for s in (0, 1)
    )
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags.get(Tags.SOURCE_NAME) == "pcd study" for c in seed_runs)
    assert sorted(c.data.tags[Tags.ENTRY] for c in trials) == ["kd", "kd", "pcd", "pcd"]
    client = MlflowClient(LocalMlflowStore(image_comparison["store"]).uri)
    plots = [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert "plots/comparison.png" in plots
    assert "kd.delta_vs_reference" in parent.data.metrics


def test_tuned_entries_get_the_same_trials_and_epochs(image_comparison: dict) -> None:
    """Fair by construction: the same budget gives every tuned entry the same number of
    trials and epochs, in the summary and in MLflow."""
    summary = StudyFolder(image_comparison["out"]).read_summary()
    assert summary is not None and summary.comparison is not None
    kd, pcd = summary.comparison.entry("kd"), summary.comparison.entry("pcd")
    assert (kd.trials, kd.max_epochs) == (pcd.trials, pcd.max_epochs) == (2, 2)
    by_entry: dict[str, list[int]] = {}
    for row in summary.trials:
        by_entry.setdefault(str(row.entry), []).append(row.epochs)
    assert by_entry == {"kd": [2, 2], "pcd": [2, 2]}
    _, children = _runs(image_comparison["store"])
    epochs = {}
    for run in children:
        if Tags.TRIAL_ID in run.data.tags:
            entry = run.data.tags[Tags.ENTRY]
            epochs.setdefault(entry, []).append(int(run.data.tags[Tags.EPOCHS]))
    assert sorted(epochs["kd"]) == sorted(epochs["pcd"]) == [2, 2]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`pcd compare --spec` on digits: PCD tuned, and PCD at S=1 with PCD's tuned options."""
    tmp = tmp_path_factory.mktemp("ablation")
    spec = {
        "name": "ablate",
        "teacher": {"arch": "cnn_small", "epochs": 1},
        "student": "mlp_32",
        "budget": {"trials": 2, "max_epochs": 1},
        "scheduler": {"type": "none"},
        "comparison": {
            "seeds": 2,
            "entries": [
                "pcd",
                {"name": "pcd S=1", "method": "pcd", "tuned_from": "pcd", "fixed": {"stages": 1}},
            ],
        },
    }
    path = tmp / "ablate.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    store, out = tmp / "store", tmp / "study"
    args = ["compare", "--spec", str(path), "--out", str(out), "--num-cpus", "2"]
    proc = run_cli(args, _env(store), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "store": store, "args": args, "stdout": proc.stdout}


def test_a_tuned_from_entry_inherits_and_runs_no_search(ablation: dict) -> None:
    assert "Δ vs pcd" in ablation["stdout"] and "mlflow ui" in ablation["stdout"]
    summary = StudyFolder(ablation["out"]).read_summary()
    assert summary is not None and summary.comparison is not None
    tuned, ablated = summary.comparison.entry("pcd"), summary.comparison.entry("pcd S=1")
    assert ablated.options == {**tuned.options, "stages": 1}
    assert ablated.trials == 0 and ablated.tuning == "tuned_from pcd"
    _, children = _runs(ablation["store"])
    entries = [c.data.tags.get(Tags.ENTRY) for c in children if Tags.TRIAL_ID in c.data.tags]
    assert entries == ["pcd", "pcd"]


def test_a_restored_comparison_does_not_redo_its_search(ablation: dict) -> None:
    """A driver that died after the searches (state kept, seeds lost) resumes with the
    seed runs only: no new trial, the seed runs' MLflow runs found again, not duplicated."""
    folder = StudyFolder(ablation["out"])
    state = folder.read_state()
    assert state is not None and list(state.searches) == ["pcd"]
    before = folder.read_summary()
    folder.write_state(state.model_copy(update={"finished": False, "seed_results": {}}))
    folder.summary_file.unlink()
    proc = run_cli(ablation["args"], _env(ablation["store"]), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "search pcd" not in proc.stderr
    parents, children = _runs(ablation["store"])
    # 2 trials, 2 entries x 2 seeds and the teacher the comparison trained
    assert len(parents) == 1 and len(children) == 2 + 2 * 2 + 1
    assert [c.info.run_name for c in children if c.data.tags.get(Tags.KIND) == "teacher"] == [
        "teacher"
    ]
    after = folder.read_summary()
    assert before is not None and after is not None and after.comparison is not None
    assert after.comparison.entry("pcd").options == before.comparison.entry("pcd").options
    assert after.comparison.entry("pcd").trials == 2


PYTHON_API = """
import json, sys
from pathlib import Path
from service.comparison import compare
from service.settings import RunnerSettings

out = Path(sys.argv[1])
result = compare(
    "mlp_32", teacher_arch="cnn_small", methods=["ce", "kd"], seeds=2, trials=1, epochs=1,
    reference="ce", out=out / "study",
    settings=RunnerSettings(mlflow_local_dir=out / "store", num_cpus=2),
)
print(json.dumps(result.model_dump(mode="json")))
"""


def test_the_python_api_returns_the_comparison(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_API, str(tmp_path)],
        env=_env(tmp_path / "store"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["reference"] == "ce" and [e["name"] for e in result["entries"]] == ["ce", "kd"]
    kd = result["entries"][1]
    assert kd["trials"] == 1 and kd["seeds"] == [0, 1] and kd["vs_reference"]["n"] == 2
    assert (tmp_path / "study" / "summary.json").is_file()


def test_the_ablation_preset_on_four_classes_fails_before_any_training(tmp_path: Path) -> None:
    """S=5 cannot cut four classes: one line naming the entry, no teacher trained."""
    folder, out = _image_folder(tmp_path / "images"), tmp_path / "study"
    args = [
        "compare", "--data", "image_folder", "--data-root", str(folder), "--student", "mlp_32",
        "--teacher-arch", "mlp_32", "--preset", "pcd-ablation", "--out", str(out),
        "--num-cpus", "1",
    ]  # fmt: skip
    proc = run_cli(args, _env(tmp_path / "store"), timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: comparison.entries[3] (pcd S=5): space: pcd option 'stages'")
    assert "(data 'image_folder' has 4 classes)" in last and "Traceback" not in proc.stderr
    assert not (out / "teacher").exists()
