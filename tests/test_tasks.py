"""Task files: every class reachable, mappings valid, the reasoning recorded in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermbench.errors import ConfigError
from dermbench.plugins import load_plugins
from dermbench.tasks import task_from_toml

HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


@pytest.fixture(scope="module")
def tasks():
    return load_plugins(autoload=False).registries.tasks


def test_four_tasks_ship(tasks):
    assert tasks.names() == ["binary", "dermai13", "ham7", "triage3"]
    assert tasks.get("dermai13").num_classes == 13


@pytest.mark.parametrize("name", ["ham7", "binary", "triage3"])
def test_every_ham_code_and_isic_column_maps(tasks, name):
    task = tasks.get(name)
    ham = task.mapping("ham10000_dx")
    isic = task.mapping("isic2018")
    for code in HAM:
        assert ham[code] in task.classes
        assert isic[code.upper()] == ham[code]


def test_dermai13_takes_only_the_ham_classes_that_match_one_of_its_own(tasks):
    """akiec (with Bowen's disease), vasc (with pyogenic granulomas) and bkl (with solar lentigines and
    lichen-planus-like keratoses) each span several DermAI classes: dropped, as the paper drops
    unmatched classes (Section III-B)."""
    task = tasks.get("dermai13")
    ham, isic = task.mapping("ham10000_dx"), task.mapping("isic2018")
    assert {c: ham[c] for c in HAM if c in ham} == {"bcc": "BCC", "df": "Drmfib", "mel": "MM", "nv": "Nev"}
    assert {c: isic[c.upper()] for c in HAM if c.upper() in isic} == {c: ham[c] for c in HAM if c in ham}
    text = Path(task.source_file).read_text()
    for reason in ("akiec dropped", "vasc dropped", "bkl dropped", "Bowen's disease", "pyogenic granulomas"):
        assert reason in text
    dermofit = task.mapping("dermofit")
    assert (dermofit["PYO"], dermofit["IEC"], dermofit["SCC"]) == ("UncNeop", "OtMalNeop", "OtMalNeop")
    derm7pt = task.mapping("derm7pt_diagnosis")
    assert (derm7pt["dermatofibroma"], derm7pt["lentigo"]) == ("Drmfib", "SLent")
    assert "miscellaneous" not in derm7pt and "vascular lesion" not in derm7pt


def test_malignant_codes_and_triage_priorities(tasks):
    binary = tasks.get("binary").mapping("ham10000_dx")
    assert sorted(c for c in HAM if binary[c] == "malignant") == ["akiec", "bcc", "mel"]
    triage = tasks.get("triage3").mapping("ham10000_dx")
    assert [triage[c] for c in ("mel", "bcc", "akiec", "nv", "vasc", "df", "bkl")] == [
        "priority_1",
        "priority_1",
        "priority_1",
        "priority_2",
        "priority_3",
        "priority_3",
        "priority_3",
    ]
    for name in ("binary", "triage3"):
        t = tasks.get(name)
        assert t.is_decision_task and 0 < t.recall_constraint < 1


def test_identity_mapping_and_unknown_source(tasks):
    t = tasks.get("dermai13")
    assert t.mapping("task")["SebKer"] == "SebKer"
    assert t.mapping("dermai13_long")["Viral Warts"] == "VWat"
    with pytest.raises(ConfigError, match="no label mapping for source 'edra'"):
        t.mapping("edra")


def test_bad_task_file_is_named(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('name = "t"\nclasses = ["a", "b"]\n[mappings.src]\nx = "c"\n')
    with pytest.raises(ConfigError, match=r"t.toml: mapping 'src' targets unknown class\(es\) \['c'\]"):
        task_from_toml(f)
    f.write_text('classes = ["a"]\n')
    with pytest.raises(ConfigError, match="missing key 'name'"):
        task_from_toml(f)


HAM7 = Path(__file__).resolve().parents[1] / "tasks" / "ham7.toml"
SMOKE = [
    "--method",
    "erm",
    "--profile",
    "smoke",
    "--model",
    "tinycnn",
    "--image-size",
    "32",
    "--synthetic-n",
    "120",
]


def _run_task(task: str, tmp_path: Path, capsys) -> dict:
    import json

    from dermbench.cli.main import main

    assert (
        main(
            [
                "run",
                "--task",
                task,
                *SMOKE,
                "--out",
                str(tmp_path / "runs"),
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    (path,) = [
        p
        for p in (tmp_path / "runs").rglob("record.json")
        if json.loads(p.read_text())["task"]["name"] in task or task.endswith(".toml")
    ][-1:]
    return json.loads(path.read_text())


def test_a_task_file_under_a_new_name_runs_and_its_record_names_the_file_and_hash(tmp_path, capsys):
    """`--task FILE.toml` with a new name failed: "unknown task 'myham'"."""
    import hashlib

    f = tmp_path / "myham.toml"
    f.write_text(HAM7.read_text().replace('name = "ham7"', 'name = "myham"'))
    record = _run_task(str(f), tmp_path, capsys)
    assert record["task"]["name"] == "myham"
    assert record["task"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert record["config"]["task_file"] == str(f.resolve())
    assert record["run_id"].startswith("myham-erm-s0-")


def test_an_edited_copy_that_keeps_the_name_is_another_task_and_an_exact_copy_is_the_same(tmp_path, capsys):
    """An edited ham7.toml that kept the name ham7 was silently ignored (same run id, built-in file)."""
    from dermbench.plugins import get_plugins
    from dermbench.run.config import resolve_run

    plugins = get_plugins()
    plain = resolve_run(plugins, "ham7", "erm", {}, {"profile": "smoke"})
    copy = tmp_path / "copy.toml"
    copy.write_bytes(HAM7.read_bytes())
    assert resolve_run(plugins, str(copy), "erm", {}, {"profile": "smoke"}).run_id == plain.run_id
    edited = tmp_path / "edited.toml"
    edited.write_text(
        HAM7.read_text().replace('primary_metric = "macro_f1"', 'primary_metric = "balanced_accuracy"')
    )
    cfg = resolve_run(plugins, str(edited), "erm", {}, {"profile": "smoke"})
    assert cfg.run_id != plain.run_id and cfg.task_sha256 is not None
    edited.write_text(edited.read_text() + "\n# changed after configuring\n")
    from dermbench.tasks import task_of

    with pytest.raises(ConfigError, match="edited.toml changed since the run was configured"):
        task_of(cfg, plugins.registries.tasks)


@pytest.mark.parametrize(
    "line, message",
    [
        ('primary_metirc = "macro_f1"', "unknown key 'primary_metirc' (did you mean 'primary_metric'?)"),
        ("recall_constraint = 1.5", "recall_constraint must lie in (0, 1], got 1.5"),
        ('recall_constraint = "high"', "recall_constraint must be a int or float, got 'high'"),
        ("classes = 3", "classes must be a list, got 3"),
    ],
)
def test_a_bad_key_of_a_task_file_is_one_line_naming_it(tmp_path, line, message):
    f = tmp_path / "bad.toml"
    body = 'name = "t"\nclasses = ["a", "b"]\n'
    key = line.split(" ")[0]
    body = "\n".join(x for x in body.splitlines() if not x.startswith(key + " ")) + "\n" + line + "\n"
    with pytest.raises(ConfigError) as exc:
        task_from_toml(f.write_text(body) and f)
    assert message in str(exc.value) and "bad.toml" in str(exc.value) and "\n" not in str(exc.value)


def test_classes_listed_twice_are_refused(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('name = "t"\nclasses = ["a", "b", "a"]\n')
    with pytest.raises(ConfigError, match=r"class\(es\) \['a'\] are listed twice"):
        task_from_toml(f)
