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
