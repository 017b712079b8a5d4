"""The evaluation report's list of misclassified held-out clips (the console plays them)."""

from __future__ import annotations


def test_report_lists_misclassified_held_out_clips() -> None:
    from tingyin.sound.evaluation import EvaluationReport, evaluate_predictions

    report = evaluate_predictions(
        ["dog", "dog", "rain"],
        ["dog", "rain", "rain"],
        ["dog", "rain"],
        {"dog": 2, "rain": 1},
        train_count=10,
        clip_hashes=["h1", "h2", "h3"],
        scores=[0.9, 0.61234567, 0.8],
    )
    assert report.misclassified == [
        {"content_hash": "h2", "label": "dog", "predicted": "rain", "score": 0.612346}
    ]
    # Reports stored before the field existed still load.
    old = {k: v for k, v in report.to_dict().items() if k != "misclassified"}
    assert EvaluationReport.from_dict(old).misclassified == []
